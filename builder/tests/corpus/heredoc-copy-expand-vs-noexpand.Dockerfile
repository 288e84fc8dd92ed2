FROM alpine
ENV GREETING="hi there"
COPY <<EOF /expanded
${GREETING} and \$escaped and "quotes kept"
EOF
COPY <<"EOF" /literal
${GREETING}
EOF
