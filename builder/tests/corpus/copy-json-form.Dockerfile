FROM alpine
COPY ["file with spaces.txt", "other", "/dest dir/"]
ADD ["a b", "/c"]
