FROM --platform=$BUILDPLATFORM golang:1.22 AS build
RUN go version
FROM --platform=linux/arm64 alpine AS final
COPY --from=build /go/bin /bin
