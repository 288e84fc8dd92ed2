FROM alpine AS Build
RUN echo x
from alpine AS second
FROM build
