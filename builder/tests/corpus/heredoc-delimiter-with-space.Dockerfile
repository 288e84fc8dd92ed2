FROM alpine
RUN python3 << END
print(1)
END
