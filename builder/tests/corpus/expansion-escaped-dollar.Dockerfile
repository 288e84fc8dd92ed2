FROM alpine
ENV A=\$HOME B="\$HOME" C='$HOME' D=$$ E=$ F=${A}x
