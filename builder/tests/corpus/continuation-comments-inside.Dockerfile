FROM alpine
RUN set -e; \
# a comment that is dropped
    echo one; \
    # an indented comment, dropped too
    echo two
