FROM alpine
ARG SRCS="a b"
COPY $SRCS /dst/
COPY ${SRCS%%b} /first
