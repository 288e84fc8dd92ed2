FROM alpine
ENV SET=value EMPTY=
ENV A=${SET:-default} B=${UNSET:-default} C=${EMPTY:-default} D=${EMPTY-default}
ENV E=${SET:+alt} F=${UNSET:+alt} G=${EMPTY:+alt} H=${EMPTY+alt}
ENV I="${SET:?must be set}" J=${UNSET:-${SET}} K=${UNSET:-"quoted default"}
