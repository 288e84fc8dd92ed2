//! `hutch __archive`: a container's files for the API's archive endpoints
//! (`docker cp`). The daemon spawns it per request; it chroots into the
//! container's root first (`/proc/PID/root` of a running container, or the
//! view of a stopped one's filesystem the daemon mounted), so every path —
//! symlinks included — resolves inside the container, as it would for the
//! container's own processes. Owners are translated through the
//! container's ID maps (container IDs in the tar, engine IDs on disk).
//!
//! Output protocol: `stat` prints the path's stat as JSON; `get` prints
//! that line, then the tar stream; `put` reads a tar on stdin. Exit codes:
//! 2 for a path that does not exist, 3 for a `put` destination that is not
//! a directory, 1 for anything else (the reason on stderr).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Print the path's stat (Docker's `X-Docker-Container-Path-Stat`).
    Stat(Target),
    /// Print the stat line, then a tar of the path.
    Get(Target),
    /// Extract a tar from stdin into the path (a directory).
    Put(Target),
}

#[derive(Debug, Args)]
pub struct Target {
    /// The running container's init process.
    #[arg(long, required_unless_present = "root", conflicts_with = "root")]
    pid: Option<i32>,
    /// A stopped container's filesystem, mounted by the daemon (only for
    /// containers whose IDs are the engine's, 1:1).
    #[arg(long)]
    root: Option<PathBuf>,
    /// A path inside the container.
    #[arg(long)]
    path: String,
}

/// Exit code for a path that does not exist.
const NOT_FOUND: u8 = 2;
/// Exit code for a `put` destination that is not a directory.
const NOT_A_DIRECTORY: u8 = 3;

pub fn run(cmd: ArchiveCommand) -> anyhow::Result<ExitCode> {
    let (ArchiveCommand::Stat(t) | ArchiveCommand::Get(t) | ArchiveCommand::Put(t)) = &cmd;
    let (maps, root) = match (t.pid, &t.root) {
        (Some(pid), _) => (IdMaps::of(pid)?, PathBuf::from(format!("/proc/{pid}/root"))),
        (None, Some(root)) => (IdMaps::identity(), root.clone()),
        (None, None) => anyhow::bail!("--pid or --root is required"),
    };
    // Before anything else reads a path: from here on, `/` is the
    // container's root.
    nix::unistd::chroot(&root).context("entering the container's root")?;
    std::env::set_current_dir("/").context("entering the container's root")?;
    let path = PathBuf::from(if t.path.is_empty() { "/" } else { &t.path });
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            eprintln!("Could not find the file {} in container", t.path);
            return Ok(ExitCode::from(NOT_FOUND));
        }
        Err(e) => return Err(e).context(format!("stat {}", t.path)),
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(64 << 10, stdout.lock());
    match cmd {
        ArchiveCommand::Stat(_) => {
            writeln!(out, "{}", stat_json(&path, &meta))?;
        }
        ArchiveCommand::Get(_) => {
            writeln!(out, "{}", stat_json(&path, &meta))?;
            let mut tar = tar::Builder::new(out);
            let name = base_name(&path);
            append(&mut tar, &path, &name, &maps)?;
            tar.into_inner()?.flush()?;
            return Ok(ExitCode::SUCCESS);
        }
        ArchiveCommand::Put(_) => {
            if !meta.is_dir() {
                eprintln!("extraction point is not a directory");
                return Ok(ExitCode::from(NOT_A_DIRECTORY));
            }
            extract(&path, &maps)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Go's `os.FileMode` bits, which Docker's path stat carries.
fn go_mode(meta: &fs::Metadata) -> u32 {
    let t = meta.file_type();
    let mut mode = meta.permissions().mode() & 0o777;
    if t.is_dir() {
        mode |= 1 << 31;
    }
    if t.is_symlink() {
        mode |= 1 << 27;
    }
    if t.is_block_device() {
        mode |= 1 << 26;
    }
    if t.is_fifo() {
        mode |= 1 << 25;
    }
    if t.is_socket() {
        mode |= 1 << 24;
    }
    if t.is_char_device() {
        mode |= (1 << 26) | (1 << 21);
    }
    let raw = meta.mode();
    if raw & 0o4000 != 0 {
        mode |= 1 << 23;
    }
    if raw & 0o2000 != 0 {
        mode |= 1 << 22;
    }
    if raw & 0o1000 != 0 {
        mode |= 1 << 20;
    }
    mode
}

fn stat_json(path: &Path, meta: &fs::Metadata) -> String {
    let mtime = chrono::DateTime::from_timestamp(meta.mtime(), meta.mtime_nsec() as u32)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default();
    let link = if meta.file_type().is_symlink() {
        fs::read_link(path)
            .map(|l| l.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    serde_json::json!({
        "name": base_name(path),
        "size": meta.len(),
        "mode": go_mode(meta),
        "mtime": mtime,
        "linkTarget": link,
    })
    .to_string()
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// Appends `path` (and, for a directory, what is under it) as `name`.
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    maps: &IdMaps,
) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let t = meta.file_type();
    let mut header = tar::Header::new_gnu();
    header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
    header.set_uid(u64::from(maps.uid_inside(meta.uid())));
    header.set_gid(u64::from(maps.gid_inside(meta.gid())));
    if t.is_file() {
        tar.append_data(&mut header, name, File::open(path)?)?;
    } else if t.is_symlink() {
        header.set_size(0);
        tar.append_link(&mut header, name, fs::read_link(path)?)?;
    } else if t.is_dir() {
        header.set_size(0);
        tar.append_data(&mut header, format!("{name}/"), io::empty())?;
        let mut entries: Vec<_> = fs::read_dir(path)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for child in entries {
            let child_name = format!("{name}/{}", child.to_string_lossy());
            append(tar, &path.join(&child), &child_name, maps)?;
        }
    }
    // Device nodes, fifos and sockets are not copied (as `docker cp`).
    Ok(())
}

/// Unpacks the tar on stdin into `dest`, owners mapped to engine IDs.
fn extract(dest: &Path, maps: &IdMaps) -> anyhow::Result<()> {
    let input =
        hutch_images::unpack::auto_decoder(io::stdin().lock()).context("reading the archive")?;
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        let header = entry.header();
        let (uid, gid) = (
            hutch_images::unpack::header_uid(header)?,
            hutch_images::unpack::header_gid(header)?,
        );
        if !entry.unpack_in(dest)? {
            continue;
        }
        let target = dest.join(&rel);
        let uid = u32::try_from(uid).ok().and_then(|u| maps.uid_outside(u));
        let gid = u32::try_from(gid).ok().and_then(|g| maps.gid_outside(g));
        if let (Some(uid), Some(gid)) = (uid, gid) {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", target.display()))?;
        }
    }
    Ok(())
}

/// A container's `uid_map` and `gid_map`: `inside outside count` lines.
struct IdMaps {
    uid: Vec<(u32, u32, u32)>,
    gid: Vec<(u32, u32, u32)>,
}

impl IdMaps {
    fn of(pid: i32) -> anyhow::Result<IdMaps> {
        let read = |file: &str| -> anyhow::Result<Vec<(u32, u32, u32)>> {
            let text = fs::read_to_string(format!("/proc/{pid}/{file}"))
                .with_context(|| format!("reading the container's {file}"))?;
            Ok(text
                .lines()
                .filter_map(|l| {
                    let mut n = l.split_whitespace().map(|v| v.parse::<u32>().ok());
                    Some((n.next()??, n.next()??, n.next()??))
                })
                .collect())
        };
        Ok(IdMaps {
            uid: read("uid_map")?,
            gid: read("gid_map")?,
        })
    }

    /// The engine's IDs, 1:1 (`UsernsMode::Identity`).
    fn identity() -> IdMaps {
        let all = vec![(0, 0, hutch_engine::bootstrap::ENGINE_IDS)];
        IdMaps {
            uid: all.clone(),
            gid: all,
        }
    }

    fn inside(map: &[(u32, u32, u32)], outside: u32) -> u32 {
        map.iter()
            .find(|(_, o, n)| outside >= *o && outside - o < *n)
            .map_or(65534, |(i, o, _)| i + (outside - o))
    }

    fn outside(map: &[(u32, u32, u32)], inside: u32) -> Option<u32> {
        map.iter()
            .find(|(i, _, n)| inside >= *i && inside - i < *n)
            .map(|(i, o, _)| o + (inside - i))
    }

    fn uid_inside(&self, id: u32) -> u32 {
        Self::inside(&self.uid, id)
    }
    fn gid_inside(&self, id: u32) -> u32 {
        Self::inside(&self.gid, id)
    }
    fn uid_outside(&self, id: u32) -> Option<u32> {
        Self::outside(&self.uid, id)
    }
    fn gid_outside(&self, id: u32) -> Option<u32> {
        Self::outside(&self.gid, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_translate_both_ways() {
        let maps = IdMaps {
            uid: vec![(0, 1024, 1024), (65534, 3000, 1)],
            gid: vec![(0, 0, 65536)],
        };
        assert_eq!(maps.uid_inside(1024), 0);
        assert_eq!(maps.uid_inside(3000), 65534);
        assert_eq!(maps.uid_inside(5), 65534);
        assert_eq!(maps.uid_outside(1), Some(1025));
        assert_eq!(maps.uid_outside(2000), None);
        assert_eq!(maps.gid_outside(7), Some(7));
    }

    #[test]
    fn go_file_modes() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let meta = fs::symlink_metadata(dir.path())?;
        assert_eq!(go_mode(&meta) & (1 << 31), 1 << 31);
        let file = dir.path().join("f");
        fs::write(&file, "x")?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640))?;
        assert_eq!(go_mode(&fs::symlink_metadata(&file)?), 0o640);
        Ok(())
    }
}
