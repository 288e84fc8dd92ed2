    # indented comment
FROM alpine
  # another
	RUN echo tabbed
