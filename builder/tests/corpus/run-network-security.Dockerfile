FROM alpine
RUN --network=none echo offline
RUN --network=host echo host
RUN --network=default --security=insecure echo insecure
RUN --security=sandbox echo sandbox
