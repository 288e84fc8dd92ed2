FROM alpine
RUN --mount=type=cache,target=/c \
    --mnt=x echo
