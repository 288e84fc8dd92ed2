FROM alpine
COPY --fromm=x a b
