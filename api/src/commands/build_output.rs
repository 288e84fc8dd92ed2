//! `hutch build --output`: where the result goes besides the image store,
//! spelled as buildx spells it. `type=docker` and `type=oci` are the image
//! as an archive (docker-archive, OCI image layout), `type=tar` and
//! `type=local` its files (one tar, or a directory); a bare `DIR` is
//! `type=local,dest=DIR` and a bare `-` is `type=tar` to standard output.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hutch_builder::exec::rootfs::Export;
use hutch_images::archive::ArchiveFormat;
use hutch_images::{Digest, ImageStore, Reference};

#[derive(Debug, PartialEq, Eq)]
pub enum Dest {
    File(PathBuf),
    Stdout,
}

#[derive(Debug, PartialEq, Eq)]
pub enum BuildOutput {
    /// The image as an archive.
    Archive(ArchiveFormat, Dest),
    /// The image's files as one tar.
    Tar(Dest),
    /// The image's files in a directory.
    Local(PathBuf),
}

impl BuildOutput {
    pub fn parse(spec: &str) -> anyhow::Result<BuildOutput> {
        if !spec.contains('=') {
            return Ok(if spec == "-" {
                BuildOutput::Tar(Dest::Stdout)
            } else {
                BuildOutput::Local(PathBuf::from(spec))
            });
        }
        let (mut kind, mut dest) = (None, None);
        for part in spec.split(',') {
            match part.split_once('=') {
                Some(("type", t)) => kind = Some(t.to_owned()),
                Some(("dest", d)) if !d.is_empty() => dest = Some(d.to_owned()),
                Some(("dest", _)) => anyhow::bail!("--output: dest is empty"),
                Some(("name" | "tar" | "compression" | "oci-mediatypes", _)) => {}
                Some((k, _)) => anyhow::bail!("--output: unknown option {k:?}"),
                None => anyhow::bail!("--output: {part:?} is not KEY=VALUE"),
            }
        }
        let kind = kind.ok_or_else(|| anyhow::anyhow!("--output needs type=TYPE"))?;
        let file = |dest: Option<String>| match dest.as_deref() {
            Some("-") => Ok(Dest::Stdout),
            Some(d) => Ok(Dest::File(PathBuf::from(d))),
            None => Err(anyhow::anyhow!(
                "--output type={kind} needs dest=FILE (or -)"
            )),
        };
        Ok(match kind.as_str() {
            "docker" => BuildOutput::Archive(ArchiveFormat::Docker, file(dest)?),
            "oci" => BuildOutput::Archive(ArchiveFormat::Oci, file(dest)?),
            "tar" => BuildOutput::Tar(file(dest)?),
            "local" => match dest.as_deref() {
                Some("-") | None => anyhow::bail!("--output type=local needs dest=DIR"),
                Some(d) => BuildOutput::Local(PathBuf::from(d)),
            },
            other => {
                anyhow::bail!("--output type={other} is not supported (docker, oci, tar, local)")
            }
        })
    }

    /// Whether the output takes standard output (where the image ID
    /// would go otherwise).
    pub fn to_stdout(&self) -> bool {
        matches!(
            self,
            BuildOutput::Archive(_, Dest::Stdout) | BuildOutput::Tar(Dest::Stdout)
        )
    }

    /// Whether the output takes a build for several platforms: a docker
    /// archive holds one image per name (buildx refuses it too).
    pub fn takes_several(&self) -> bool {
        !matches!(self, BuildOutput::Archive(ArchiveFormat::Docker, _))
    }

    /// Writes images `ids` (one, or a build's platforms), named `names` in
    /// an archive: several as one OCI index, or their files a directory
    /// per platform. `tmp` holds the overlays the files are read through.
    pub fn write(
        &self,
        store: &ImageStore,
        ids: &[String],
        names: &[Reference],
        tmp: &Path,
    ) -> anyhow::Result<()> {
        match self {
            BuildOutput::Archive(format, dest) => with_dest(dest, |w| match ids {
                [id] => Ok(store.save_image(id, names, *format, w)?),
                _ if *format == ArchiveFormat::Oci => {
                    let digests = ids
                        .iter()
                        .map(|id| id.parse())
                        .collect::<Result<Vec<Digest>, _>>()?;
                    Ok(store.save_platforms(&digests, names, w)?)
                }
                _ => anyhow::bail!(
                    "a docker archive holds one image per name, not several platforms"
                ),
            }),
            BuildOutput::Tar(dest) => with_dest(dest, |w| {
                Export::write_images(store, ids, tmp, w)?;
                Ok(())
            }),
            BuildOutput::Local(dir) => {
                let (reader, writer) = std::io::pipe().context("a pipe")?;
                let (store, ids, tmp) = (store.clone(), ids.to_vec(), tmp.to_path_buf());
                let writing = std::thread::spawn(move || {
                    Export::write_images(&store, &ids, &tmp, writer).map(drop)
                });
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let mut archive = tar::Archive::new(reader);
                archive.set_preserve_permissions(true);
                archive.set_overwrite(true);
                // tar's unpack keeps every entry inside `dir` (no `..`, no
                // writing through a symlink it made); the files are the
                // caller's, as BuildKit's local exporter leaves them.
                let unpacked = archive
                    .unpack(dir)
                    .with_context(|| format!("writing the files to {}", dir.display()));
                // Closing the pipe ends a writer the unpack gave up on.
                drop(archive);
                let written = writing
                    .join()
                    .map_err(|_| anyhow::anyhow!("the export thread panicked"))?;
                unpacked?;
                Ok(written.context("reading the image's files")?)
            }
        }
    }
}

fn with_dest(
    dest: &Dest,
    write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    match dest {
        Dest::Stdout => {
            let mut out = std::io::stdout().lock();
            write(&mut out)?;
            Ok(out.flush()?)
        }
        Dest::File(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            write(&mut out)?;
            Ok(out.flush()?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_read_as_buildx_reads_them() {
        let file = |p: &str| Dest::File(PathBuf::from(p));
        for (spec, want) in [
            ("out", BuildOutput::Local(PathBuf::from("out"))),
            ("-", BuildOutput::Tar(Dest::Stdout)),
            (
                "type=docker,dest=i.tar",
                BuildOutput::Archive(ArchiveFormat::Docker, file("i.tar")),
            ),
            (
                "type=oci,dest=-",
                BuildOutput::Archive(ArchiveFormat::Oci, Dest::Stdout),
            ),
            ("type=tar,dest=fs.tar", BuildOutput::Tar(file("fs.tar"))),
            (
                "type=local,dest=dist",
                BuildOutput::Local(PathBuf::from("dist")),
            ),
        ] {
            assert_eq!(BuildOutput::parse(spec).ok(), Some(want), "{spec}");
        }
        for bad in [
            "type=registry,dest=x",
            "type=oci",
            "type=local,dest=-",
            "dest=x",
            "type=tar,dest=x,bogus=1",
            "type=tar,dest=",
        ] {
            assert!(BuildOutput::parse(bad).is_err(), "{bad}");
        }
    }
}
