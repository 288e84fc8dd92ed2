FROM alpine
COPY -- --weird-name /dst
RUN -- echo dashes
