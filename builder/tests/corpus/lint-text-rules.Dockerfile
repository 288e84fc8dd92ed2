FROM --platform=linux/amd64 alpine AS context
ARG DB_PASSWORD
ARG PUBLIC_KEY
ENV API_TOKEN=x GITHUB_TOKEN_FILE=/run/t
EXPOSE 80/TCP 8080:80 443
WORKDIR app
WORKDIR /srv

FROM --platform=$TARGETPLATFORM alpine AS amd64-tools
WORKDIR /abs
WORKDIR rel

FROM --platform=linux/arm64 alpine AS tools-arm64
FROM scratch AS next
WORKDIR inherits-nothing
