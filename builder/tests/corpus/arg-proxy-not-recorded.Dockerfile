FROM alpine
ARG HTTPS_PROXY
RUN wget https://example.com
