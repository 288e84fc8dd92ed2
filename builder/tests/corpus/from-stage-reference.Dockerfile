FROM alpine AS base
RUN echo base
FROM base AS child
RUN echo child
FROM child
