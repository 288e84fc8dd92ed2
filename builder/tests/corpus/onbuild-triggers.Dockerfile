FROM alpine
ONBUILD COPY . /app/src
onbuild RUN --mount=type=cache,target=/c make
ONBUILD ENV A=1
