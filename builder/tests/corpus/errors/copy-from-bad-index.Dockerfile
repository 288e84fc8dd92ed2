FROM alpine
COPY --from=7 /x /y
