FROM alpine
HEALTHCHECK PING localhost
