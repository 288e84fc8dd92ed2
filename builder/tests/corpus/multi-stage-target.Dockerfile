FROM alpine AS deps
RUN echo deps
FROM alpine AS unused
RUN echo unused
FROM deps AS test
RUN echo test
FROM alpine AS release
COPY --from=deps /x /x
