FROM alpine
ARG A=default
ARG B
ARG C=c
RUN echo $A $B $C
