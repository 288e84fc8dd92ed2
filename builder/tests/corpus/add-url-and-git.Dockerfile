FROM alpine
ADD https://github.com/moby/buildkit.git#v0.13.0 /src
ADD --keep-git-dir git@github.com:user/repo.git /repo
ADD archive.tar.xz /extract/
