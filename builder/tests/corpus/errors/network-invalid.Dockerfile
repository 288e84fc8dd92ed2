FROM alpine
RUN --network=bridge ls
