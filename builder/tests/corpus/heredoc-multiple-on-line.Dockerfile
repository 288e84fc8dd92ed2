FROM alpine
RUN cat <<A > /a && cat <<B > /b
first
A
second
B
COPY <<one <<two /dir/
1
one
2
two
