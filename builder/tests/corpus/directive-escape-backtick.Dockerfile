# escape=`
FROM mcr.microsoft.com/windows/servercore
WORKDIR C:\app
RUN echo one `
    two
COPY src\file.txt C:\dst\
