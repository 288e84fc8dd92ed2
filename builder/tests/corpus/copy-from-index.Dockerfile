FROM alpine
RUN echo zero
FROM alpine
COPY --from=0 /x /y
