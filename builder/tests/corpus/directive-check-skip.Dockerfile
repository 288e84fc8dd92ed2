# check=skip=JSONArgsRecommended;error=true
FROM alpine
MAINTAINER someone
CMD echo hi
