RUN echo before from
FROM alpine
