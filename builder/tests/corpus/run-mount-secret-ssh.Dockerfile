FROM alpine
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true npm ci
RUN --mount=type=secret,id=token,env=TOKEN curl -H "auth: $TOKEN" x
RUN --mount=type=ssh,id=default,required git clone git@host:repo
