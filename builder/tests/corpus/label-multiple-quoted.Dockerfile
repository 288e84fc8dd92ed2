FROM alpine
LABEL org.opencontainers.image.title="My App" version=1.0 "key with space"="v"
LABEL multi.line="a" \
      other="b"
LABEL legacy-key legacy value
