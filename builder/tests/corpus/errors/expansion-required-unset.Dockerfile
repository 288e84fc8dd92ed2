FROM alpine
WORKDIR ${DIR:?set DIR please}
