# escape=`
FROM alpine
COPY C:\in\a.txt `
     C:\out\
RUN dir c:\ `
  && echo `"quoted`"
