//! Which of the engine's device nodes a container gets, and where: the
//! `--device` mappings and, with `--privileged`, every node of the engine's
//! /dev (the pod's: its device-plugin devices such as /dev/fuse). Resolved
//! at create with Docker's rules and words (moby's `DevicesFromPath`,
//! runc's `HostDevices`); the runtime binds each node in, since a user
//! namespace cannot mknod one. Device cgroup permissions cannot be enforced
//! in a pod (attaching a device program to a cgroup needs the node's
//! privileges), so a node bound in is usable as its file mode allows.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::config::DeviceMapping;
use crate::runtime::spec::DeviceSpec;

/// Nodes every container gets anyway (`runtime::dev`), and the pod's
/// `ptmx`, which would hide the container's own devpts multiplexer.
const ALWAYS_PRESENT: &[&str] = &["null", "zero", "full", "random", "urandom", "tty", "ptmx"];
/// Directories of /dev a privileged container does not take nodes from
/// (runc's list): they are the container's own or not devices.
const SKIPPED_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The devices for a container's mappings, plus all of `dev_root`'s nodes
/// when `privileged`.
pub fn resolve(
    mappings: &[DeviceMapping],
    privileged: bool,
    dev_root: &Path,
) -> Result<Vec<DeviceSpec>, String> {
    let mut out = Vec::new();
    if privileged {
        host_devices(dev_root, dev_root, &mut out)
            .map_err(|e| format!("listing the devices of {}: {e}", dev_root.display()))?;
    }
    for m in mappings {
        let destination = if m.path_in_container.is_empty() {
            m.path_on_host.clone()
        } else {
            m.path_in_container.clone()
        };
        if !destination.starts_with('/') {
            return Err(format!(
                "invalid device mapping {}: the path in the container {destination:?} must be \
                 absolute",
                m.path_on_host
            ));
        }
        // Docker: in privileged mode the node is there already.
        if privileged && destination == m.path_on_host {
            continue;
        }
        from_path(&m.path_on_host, Path::new(&destination), &mut out).map_err(|e| {
            format!(
                "error gathering device information while adding custom device {:?}: {e}",
                m.path_on_host
            )
        })?;
    }
    Ok(out)
}

fn is_device(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() || md.file_type().is_block_device()
}

/// One device, or every device under a directory (its subpaths kept under
/// `destination`). A symlink is followed first (`/dev/disk/by-id/...`).
fn from_path(host: &str, destination: &Path, out: &mut Vec<DeviceSpec>) -> io::Result<()> {
    let host = Path::new(host);
    let resolved = if fs::symlink_metadata(host)?.file_type().is_symlink() {
        fs::canonicalize(host)?
    } else {
        host.to_path_buf()
    };
    let md = fs::symlink_metadata(&resolved)?;
    if is_device(&md) {
        out.push(DeviceSpec {
            source: resolved,
            destination: destination.to_path_buf(),
        });
        return Ok(());
    }
    if !md.is_dir() {
        return Err(io::Error::other("not a device node"));
    }
    let mut found = Vec::new();
    walk(&resolved, &mut |path| {
        if let Ok(rel) = path.strip_prefix(&resolved) {
            found.push(DeviceSpec {
                source: path.to_path_buf(),
                destination: destination.join(rel),
            });
        }
    })?;
    out.extend(found);
    Ok(())
}

/// Calls `each` with every device node under `dir`, not following symlinks.
fn walk(dir: &Path, each: &mut dyn FnMut(&Path)) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    entries.sort();
    for path in entries {
        let md = fs::symlink_metadata(&path)?;
        if md.is_dir() {
            walk(&path, each)?;
        } else if is_device(&md) {
            each(&path);
        }
    }
    Ok(())
}

/// The nodes of the engine's /dev a privileged container gets.
fn host_devices(dev_root: &Path, dir: &Path, out: &mut Vec<DeviceSpec>) -> io::Result<()> {
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(dir)?
        .map(|e| e.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())))
        .collect::<io::Result<_>>()?;
    entries.sort();
    let top = dir == dev_root;
    for (name, path) in entries {
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            // Gone while listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if md.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                host_devices(dev_root, &path, out)?;
            }
        } else if is_device(&md)
            && !(top && (ALWAYS_PRESENT.contains(&name.as_str()) || name == "console"))
        {
            if let Ok(rel) = path.strip_prefix(dev_root) {
                out.push(DeviceSpec {
                    source: path.clone(),
                    destination: Path::new("/dev").join(rel),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host: &str, container: &str) -> DeviceMapping {
        DeviceMapping {
            path_on_host: host.into(),
            path_in_container: container.into(),
            cgroup_permissions: "rwm".into(),
        }
    }

    #[test]
    fn a_device_maps_to_its_path_or_the_one_given() -> Result<(), String> {
        let got = resolve(
            &[
                mapping("/dev/null", ""),
                mapping("/dev/zero", "/dev/nothing"),
            ],
            false,
            Path::new("/dev"),
        )?;
        assert_eq!(
            got,
            vec![
                DeviceSpec {
                    source: "/dev/null".into(),
                    destination: "/dev/null".into()
                },
                DeviceSpec {
                    source: "/dev/zero".into(),
                    destination: "/dev/nothing".into()
                },
            ]
        );
        Ok(())
    }

    #[test]
    fn what_is_not_a_device_is_refused_in_dockers_words() {
        let err = |m: DeviceMapping| resolve(&[m], false, Path::new("/dev")).err();
        let missing = err(mapping("/dev/no-such-device", "")).unwrap_or_default();
        assert!(
            missing.starts_with(
                "error gathering device information while adding custom device \
                 \"/dev/no-such-device\""
            ) && missing.contains("No such file"),
            "{missing}"
        );
        let file = err(mapping("/etc/hostname", "")).unwrap_or_default();
        assert!(file.ends_with("not a device node"), "{file}");
        let relative = err(mapping("/dev/null", "dev/null")).unwrap_or_default();
        assert!(relative.contains("must be absolute"), "{relative}");
    }

    #[test]
    fn a_directory_gives_the_devices_under_it() -> Result<(), Box<dyn std::error::Error>> {
        // Making device nodes needs privilege the unit tests may lack:
        // the machine's own /dev has real ones.
        let got = resolve(&[mapping("/dev", "/hostdev")], false, Path::new("/dev"))?;
        assert!(got
            .iter()
            .any(|d| d.source == Path::new("/dev/null")
                && d.destination == Path::new("/hostdev/null")));
        assert!(got.iter().all(|d| d.destination.starts_with("/hostdev")));
        Ok(())
    }

    #[test]
    fn privileged_takes_the_engines_nodes_but_not_the_containers_own() -> Result<(), String> {
        let got = resolve(&[mapping("/dev/null", "")], true, Path::new("/dev"))?;
        assert!(got.iter().all(|d| d.destination != Path::new("/dev/null")
            && d.destination != Path::new("/dev/ptmx")
            && !d.destination.starts_with("/dev/pts")));
        Ok(())
    }
}
