FROM alpine AS one
FROM alpine AS two
FROM alpine
