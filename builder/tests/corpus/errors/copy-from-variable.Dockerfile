FROM alpine
COPY --from=$STAGE /x /y
