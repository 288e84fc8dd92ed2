FROM alpine
LABEL description="빌드 이미지 ✓"
ENV GREETING=안녕 FULL="${GREETING}하세요"
RUN echo "héllo wörld"
