FROM alpine
RUN ['single', 'quotes']
CMD ["unterminated
ENTRYPOINT [ "ok" ] trailing
