FROM alpine
ARG NAME=world
COPY <<"EOF" /double
hello $NAME
EOF
COPY <<'EOF' /single
hello $NAME
EOF
COPY <<EOF /plain
hello $NAME
EOF
