FROM alpine AS dup
RUN echo one
FROM alpine AS dup
RUN echo two
FROM dup
