FROM alpine
ENV FILE=/usr/local/lib/archive.tar.gz V=1.2.3-beta
ENV BASE=${FILE##*/} DIR=${FILE%/*} NOEXT=${FILE%%.*} SHORT=${FILE#*/}
ENV DOTS=${V//./_} FIRST=${V/./-} MAJOR=${V%%.*} PRE=${V#*-}
