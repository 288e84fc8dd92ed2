FROM alpine
COPY a.txt <<EOF b.txt /dst/
inline
EOF
