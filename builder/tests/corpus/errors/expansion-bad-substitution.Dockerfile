FROM alpine
USER ${:-x}
