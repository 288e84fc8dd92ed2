FROM alpine
RUN --mount=type=secret ls
