FROM alpine
RUN echo [a] && test [ -f x ]
CMD echo ["not", "json"] at start? no
