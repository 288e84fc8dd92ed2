FROM alpine
ARG TARGETARCH
ARG CACHE_ROOT=/cache
RUN --mount=type=cache,id=apk-$TARGETARCH,target=${CACHE_ROOT}/apk,sharing=private apk add x
