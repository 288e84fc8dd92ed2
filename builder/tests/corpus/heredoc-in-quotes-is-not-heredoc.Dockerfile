FROM alpine
RUN echo '<<EOF' "<<X"
RUN echo next
