#!/usr/bin/env python3
"""Writes the starting corpus of each fuzz target into fuzz/corpus/TARGET:
the shapes the parsers must survive, from which libFuzzer mutates."""

import hashlib
import io
import json
import os
import sys
import tarfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def tar(entries, fmt=tarfile.PAX_FORMAT):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as t:
        for e in entries:
            e = dict(e)
            info = tarfile.TarInfo(e.pop("name"))
            data = e.pop("data", b"")
            for k, v in e.items():
                setattr(info, k, v)
            if info.type == tarfile.REGTYPE:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return out.getvalue()


D, S, L = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE

put("dockerfile", "rich", r'''# syntax=docker/dockerfile:1
# escape=\
ARG BASE=alpine:3.19
FROM --platform=$BUILDPLATFORM ${BASE} AS build
ENV A=1 B="two words" C=${A:-x}${B:+y}
LABEL org.x="y" \
      other=z
WORKDIR /src/${A}
COPY --chown=1:1 --chmod=755 --from=other a* /dst/
ADD --checksum=sha256:0000 https://example.com/x.tgz /x
RUN --mount=type=cache,target=/root/.cache,id=x,sharing=locked \
    --mount=type=bind,from=build,source=/a,target=/b \
    --network=none echo "$A" 'b' && true
RUN <<EOT bash
  echo hi
EOT
COPY <<-EOF2 /etc/conf
	k=v
EOF2
HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD curl -f http://localhost/ || exit 1
SHELL ["/bin/sh", "-c"]
EXPOSE 80/tcp 53/udp 8000-8010
VOLUME ["/data", "/logs"]
USER 1000:1000
STOPSIGNAL SIGTERM
ONBUILD RUN echo built
ENTRYPOINT ["/bin/app", "--flag"]
CMD exec app
FROM scratch AS final
COPY --from=build /x /
''')
put("dockerfile", "escape_backtick", "# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY [\"a b\", \"/c\"]\n")
put("shell_words", "expansions",
    'a${B:-x}$C\\$"q ${D#*/}" \'s\' ${E:?msg} ${D%%/*} ${B/1/2}\0B=1\0C=two words\0D=a/b/c')
put("dockerignore", "patterns", "**/*.go\n!keep.go\n# c\n/abs\n../up\n[a-z]?\\*x\n\0a/b.go\0keep.go\0x/y/z")
for i, ref in enumerate(["busybox", "library/busybox:1.36", "localhost:5000/a/b:c",
                         "docker.io/x/y@sha256:" + "01" * 32, "[::1]:5000/x:y",
                         "127.0.0.1:5000/bench/debian:bookworm"]):
    put("reference", f"ref{i}", ref)

# Layers: the tricks the unpacker must contain.
put("layer_tar", "dotdot", tar([dict(name="../x", data=b"a")]))
put("layer_tar", "abs_symlink_write", tar([dict(name="l", type=S, linkname="/"),
                                           dict(name="l/etc/x", data=b"a")]))
put("layer_tar", "rel_symlink_write", tar([dict(name="d", type=D, mode=0o755),
                                           dict(name="d/l", type=S, linkname="../.."),
                                           dict(name="d/l/x", data=b"a")]))
put("layer_tar", "hardlink_out", tar([dict(name="h", type=L, linkname="../../etc/shadow")]))
put("layer_tar", "hardlink_via_symlink", tar([dict(name="l", type=S, linkname="/etc"),
                                              dict(name="h", type=L, linkname="l/passwd")]))
put("layer_tar", "whiteouts", tar([dict(name="a", type=D, mode=0o755),
                                   dict(name="a/.wh..wh..opq"), dict(name="a/.wh.b"),
                                   dict(name=".wh.c"), dict(name=".wh..."), dict(name="a/f", data=b"1")]))
put("layer_tar", "replacements", tar([dict(name="x", data=b"1"), dict(name="x", type=D, mode=0o755),
                                      dict(name="x/y", data=b"2"), dict(name="x", data=b"3"),
                                      dict(name="y", type=L, linkname="x"), dict(name="x", type=S, linkname="y")]))
put("layer_tar", "devices", tar([dict(name="null", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
                                 dict(name="fifo", type=tarfile.FIFOTYPE),
                                 dict(name="blk", type=tarfile.BLKTYPE, devmajor=8, devminor=0)]))
put("layer_tar", "modes_ids", tar([dict(name="s", data=b"x", mode=0o4755, uid=70000, gid=5),
                                   dict(name="d", type=D, mode=0o000), dict(name="d/f", data=b"y"),
                                   dict(name="t", type=D, mode=0o1777)]))
put("layer_tar", "pax_xattrs", tar([dict(name="f", data=b"z", pax_headers={
    "SCHILY.xattr.user.a": "b", "SCHILY.xattr.security.capability": "\x01\x00\x00\x02",
    "SCHILY.xattr.trusted.x": "y", "mtime": "1.5"})]))
put("layer_tar", "gnu_longname", tar([dict(name="a/" * 60 + "f", data=b"x")], fmt=tarfile.GNU_FORMAT))
put("layer_tar", "symlink_loop", tar([dict(name="a", type=S, linkname="b"), dict(name="b", type=S, linkname="a"),
                                      dict(name="a/x", data=b"1")]))

# docker load: both archive forms, around one tiny layer.
layer = tar([dict(name="hello", data=b"hi\n")], fmt=tarfile.USTAR_FORMAT)
diff = hashlib.sha256(layer).hexdigest()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
cid = hashlib.sha256(config).hexdigest()


def files(entries):
    return tar([dict(name=n, data=d) for n, d in entries], fmt=tarfile.USTAR_FORMAT)


put("docker_load", "docker_archive", files([
    (cid + ".json", config), ("l/layer.tar", layer),
    ("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": ["x:1"],
                                   "Layers": ["l/layer.tar"]}]).encode())]))
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + cid, "size": len(config)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": "sha256:" + diff, "size": len(layer)}]}).encode()
mid = hashlib.sha256(manifest).hexdigest()
index = json.dumps({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + mid,
    "size": len(manifest), "annotations": {"io.containerd.image.name": "docker.io/library/x:1",
                                           "org.opencontainers.image.ref.name": "1"}}]}).encode()
put("docker_load", "oci_layout", files([
    ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index),
    ("blobs/sha256/" + cid, config), ("blobs/sha256/" + diff, layer), ("blobs/sha256/" + mid, manifest)]))
print(f"seeds written under {ROOT}", file=sys.stderr)
