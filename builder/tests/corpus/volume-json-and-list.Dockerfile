FROM alpine
VOLUME ["/data", "/with space"]
VOLUME /a /b
ENV V=/var/v
VOLUME $V
