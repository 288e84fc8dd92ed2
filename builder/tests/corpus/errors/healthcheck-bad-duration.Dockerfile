FROM alpine
HEALTHCHECK --timeout=10 CMD true
