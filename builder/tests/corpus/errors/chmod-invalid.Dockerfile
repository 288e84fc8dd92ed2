FROM alpine
COPY --chmod=rwxrwxrwx a b
