FROM golang
RUN --mount=type=cache,target=/root/.cache/go-build,id=gobuild,sharing=locked,uid=1000,gid=1000,mode=0700 \
    --mount=type=cache,target=/go/pkg/mod \
    go build ./...
