FROM alpine
HEALTHCHECK CMD ["/bin/check", "--quick"]
HEALTHCHECK --interval=0s cmd /bin/check
