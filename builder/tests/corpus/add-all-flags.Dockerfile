FROM alpine
ADD --chown=1000:1000 --chmod=644 --link --keep-git-dir=true --unpack=false --exclude=.git --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/file.tar.gz /opt/
