FROM alpine AS first
COPY --from=second /x /x
FROM alpine AS second
RUN touch /x
