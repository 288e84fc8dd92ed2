FROM alpine
ARG SRCS="a b"
# COPY splits its arguments on blanks before expansion, as BuildKit does
COPY ${SRCS%% *} /first
