FROM alpine
RUN echo backslash \\
RUN echo next
