FROM alpine
RUN <<-EOT
	echo tabbed
		echo twice
	EOT
RUN echo after
