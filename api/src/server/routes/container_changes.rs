//! `GET /containers/{id}/changes` (`docker diff`): the container's overlay
//! upper directory read against its image's layers. A char device 0:0 is a
//! whiteout (deleted); an entry the layers also have is modified; anything
//! else was added. The directories the runtime makes to mount over
//! (`/proc`, `/dev`, `/sys`) are not changes of the container's own.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ChangeType, FilesystemChange};
use hyper::{Response, StatusCode};

use super::super::error::ApiError;
use super::super::request::ApiRequest;
use super::super::response::{self, Body};

/// Mount points the runtime makes in every rootfs.
const RUNTIME_MOUNTS: &[&str] = &["/proc", "/dev", "/sys"];
/// Files the runtime adds to bind-mount over when the image lacks them.
/// Docker makes them in its init layer, which `docker diff` leaves out, so
/// they (and a directory they alone touched) are not changes either.
const RUNTIME_FILES: &[&str] = &["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// The changes under `upper`, given the image's layer directories.
pub fn changes(upper: &Path, layers: &[PathBuf]) -> Vec<FilesystemChange> {
    let mut out = Vec::new();
    // Directories holding a runtime file we left out.
    let mut runtime_parents = Vec::new();
    let mut stack = vec![PathBuf::from("/")];
    while let Some(rel) = stack.pop() {
        let dir = upper.join(rel.strip_prefix("/").unwrap_or(&rel));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = rel.join(entry.file_name());
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let in_layers = layers.iter().any(|l| {
                l.join(path.strip_prefix("/").unwrap_or(&path))
                    .symlink_metadata()
                    .is_ok()
            });
            let whiteout = meta.file_type().is_char_device() && meta.rdev() == 0;
            let runtime_mount = RUNTIME_MOUNTS.iter().any(|m| path == Path::new(m));
            if meta.is_dir() {
                stack.push(path.clone());
            }
            if runtime_mount {
                continue;
            }
            if !in_layers && RUNTIME_FILES.iter().any(|f| path == Path::new(f)) {
                runtime_parents.push(rel.clone());
                continue;
            }
            let kind = if whiteout {
                ChangeType::_2
            } else if in_layers {
                ChangeType::_0
            } else {
                ChangeType::_1
            };
            out.push(FilesystemChange {
                path: path.display().to_string(),
                kind,
            });
        }
    }
    // A directory only the runtime's files touched is unchanged, unless
    // something else under it changed.
    let touched_only_by_runtime = |c: &FilesystemChange| {
        let dir = Path::new(&c.path);
        c.kind == ChangeType::_0
            && runtime_parents.iter().any(|p| p == dir)
            && !out.iter().any(|o| Path::new(&o.path).parent() == Some(dir))
    };
    let drop: Vec<bool> = out.iter().map(touched_only_by_runtime).collect();
    let mut keep = drop.into_iter().map(|d| !d);
    out.retain(|_| keep.next().unwrap_or(true));
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

pub async fn handler(req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let query = req.param("id").to_string();
    let d = req
        .daemon
        .with_engine(move |e| e.inspect_at_rest(&query))
        .await?;
    let image = d.config.image_id.clone();
    let layers = req
        .daemon
        .with_images(move |store| store.layer_chain(&image))
        .await?;
    let upper = d.rootfs_upper.clone();
    let list = tokio::task::spawn_blocking(move || changes(&upper, &layers)).await?;
    // Docker answers `null`, not `[]`, for a container that changed nothing
    // (a nil Go slice); clients such as bollard tell the two apart.
    let list = (!list.is_empty()).then_some(list);
    Ok(response::json(StatusCode::OK, &list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_modified_and_runtime_mounts() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let layer = dir.path().join("layer");
        let upper = dir.path().join("upper");
        for d in ["etc", "proc", "tmp"] {
            std::fs::create_dir_all(layer.join(d))?;
        }
        std::fs::write(layer.join("etc/hosts"), "x")?;
        for d in ["etc", "proc", "tmp/new"] {
            std::fs::create_dir_all(upper.join(d))?;
        }
        std::fs::write(upper.join("etc/hosts"), "y")?;
        std::fs::write(upper.join("tmp/new/file"), "z")?;
        let got: Vec<(String, ChangeType)> = changes(&upper, &[layer])
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/etc".into(), ChangeType::_0),
                ("/etc/hosts".into(), ChangeType::_0),
                ("/tmp".into(), ChangeType::_0),
                ("/tmp/new".into(), ChangeType::_1),
                ("/tmp/new/file".into(), ChangeType::_1),
            ]
        );
        Ok(())
    }

    #[test]
    fn runtime_files_are_not_changes() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let layer = dir.path().join("layer");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(layer.join("etc"))?;
        std::fs::create_dir_all(upper.join("etc"))?;
        for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            std::fs::write(upper.join(f), "")?;
        }
        assert!(changes(&upper, std::slice::from_ref(&layer)).is_empty());
        // Anything else in /etc makes it changed again.
        std::fs::write(upper.join("etc/added"), "x")?;
        let got: Vec<(String, ChangeType)> = changes(&upper, &[layer])
            .into_iter()
            .map(|c| (c.path, c.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/etc".into(), ChangeType::_0),
                ("/etc/added".into(), ChangeType::_1),
            ]
        );
        Ok(())
    }
}
