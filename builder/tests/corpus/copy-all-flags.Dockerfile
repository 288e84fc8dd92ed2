FROM alpine AS ctx
RUN mkdir /src
FROM alpine
COPY --from=ctx --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=docs/ src/ /dst/
