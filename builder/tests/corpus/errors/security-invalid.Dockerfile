FROM alpine
RUN --security=root ls
