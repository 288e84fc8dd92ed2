FROM alpine
ENV A=1 B="two words" C='single $A' D=with\ space
ENV LEGACY value with spaces
ENV E=
