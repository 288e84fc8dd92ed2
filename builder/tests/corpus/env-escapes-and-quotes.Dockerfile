FROM alpine
ENV P=/usr/local/bin:$PATH
ENV Q="quote \" inside" R=\$NOT_EXPANDED S="$UNSET-x"
ENV T='it'\''s'
