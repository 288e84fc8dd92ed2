FROM alpine
ARG A=1 B C="three 3"
RUN echo $A $B $C
