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
use std::path::Path;

use super::config::DeviceMapping;
use crate::runtime::dev::DEVICES;
use crate::runtime::spec::DeviceSpec;

/// Top-level nodes of /dev a privileged container does not take: the
/// pod's `ptmx` would hide the container's own devpts multiplexer, and
/// runc leaves `console` out (the [`DEVICES`] it gets anyway).
const NOT_TAKEN: &[&str] = &["ptmx", "console"];
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
        host_devices(dev_root, &mut out)
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
    walk(&resolved, &|_| false, &mut |rel| {
        out.push(DeviceSpec {
            source: resolved.join(rel),
            destination: destination.join(rel),
        })
    })
}

/// The nodes of the engine's /dev a privileged container gets.
fn host_devices(dev_root: &Path, out: &mut Vec<DeviceSpec>) -> io::Result<()> {
    walk(dev_root, &|name| SKIPPED_DIRS.contains(&name), &mut |rel| {
        let top_name = rel.to_str().filter(|_| rel.parent() == Some(Path::new("")));
        if top_name.is_some_and(|n| DEVICES.contains(&n) || NOT_TAKEN.contains(&n)) {
            return;
        }
        out.push(DeviceSpec {
            source: dev_root.join(rel),
            destination: Path::new("/dev").join(rel),
        });
    })
}

/// Calls `each` with the path (relative to `root`) of every device node
/// under `root`, in name order, not following symlinks and not entering
/// directories whose name `skip_dir` picks.
fn walk(
    root: &Path,
    skip_dir: &dyn Fn(&str) -> bool,
    each: &mut dyn FnMut(&Path),
) -> io::Result<()> {
    fn visit(
        root: &Path,
        rel: &Path,
        skip_dir: &dyn Fn(&str) -> bool,
        each: &mut dyn FnMut(&Path),
    ) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let md = match fs::symlink_metadata(root.join(&rel)) {
                Ok(md) => md,
                // Gone while listed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if md.is_dir() {
                if !skip_dir(&name.to_string_lossy()) {
                    visit(root, &rel, skip_dir, each)?;
                }
            } else if is_device(&md) {
                each(&rel);
            }
        }
        Ok(())
    }
    visit(root, Path::new(""), skip_dir, each)
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
