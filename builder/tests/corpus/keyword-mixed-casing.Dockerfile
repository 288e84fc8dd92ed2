FROM alpine
RUN echo a
run echo b
Copy a b
