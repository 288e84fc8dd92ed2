FROM alpine
ARG A=1
ARG B=2
ENV B=overridden
RUN make
