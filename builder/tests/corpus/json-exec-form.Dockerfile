FROM alpine
RUN ["echo", "exec form", "$HOME"]
ENTRYPOINT ["/bin/app", "--flag"]
CMD ["serve"]
