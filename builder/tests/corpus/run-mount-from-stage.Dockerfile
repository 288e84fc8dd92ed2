FROM alpine AS tools
RUN echo tools
FROM alpine
RUN --mount=type=bind,from=tools,source=/usr/bin,target=/tools ls /tools
RUN --mount=type=cache,from=busybox,target=/c ls
