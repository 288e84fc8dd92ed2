FROM alpine
ENV A=$1 B=${@:-at} C=$#x D=x$-y
