FROM alpine AS a
RUN echo a
FROM alpine AS b
RUN echo b
FROM alpine AS c
COPY --from=a /a /a
COPY --from=b /b /b
FROM c
