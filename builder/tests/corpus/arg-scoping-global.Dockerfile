ARG GLOBAL=g
FROM alpine
RUN echo "not visible: $GLOBAL"
ARG GLOBAL
RUN echo "now visible: $GLOBAL"
ENV FROM_ARG=$GLOBAL
FROM alpine
COPY --from=0 /x /x
RUN echo "other stage: $GLOBAL"
ARG GLOBAL=stage-default
RUN echo "stage default wins: $GLOBAL"
