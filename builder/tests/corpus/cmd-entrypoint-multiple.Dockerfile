FROM alpine
CMD ["a"]
ENTRYPOINT ["e1"]
CMD ["b"]
ENTRYPOINT e2
