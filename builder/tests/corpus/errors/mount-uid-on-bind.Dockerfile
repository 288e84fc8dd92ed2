FROM alpine
RUN --mount=type=bind,target=/x,uid=1 ls
