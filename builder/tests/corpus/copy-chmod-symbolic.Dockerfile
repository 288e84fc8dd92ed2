FROM alpine
COPY --chmod=u=rwx,go=rx a /a
COPY --chmod=+x b /b
COPY --chmod=$MODE c /c
