FROM alpine
RUN ["cat", "<<EOF"]
RUN echo not a body
