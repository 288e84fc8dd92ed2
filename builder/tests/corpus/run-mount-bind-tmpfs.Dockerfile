FROM alpine
RUN --mount=type=bind,source=go.mod,target=/src/go.mod,rw \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=target=/ctx \
    ls /ctx
