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

/// The changes under `upper`, given the image's layer directories.
pub fn changes(upper: &Path, layers: &[PathBuf]) -> Vec<FilesystemChange> {
    let mut out = Vec::new();
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
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

pub async fn handler(req: ApiRequest) -> Result<Response<Body>, ApiError> {
    let query = req.param("id").to_string();
    let d = req.daemon.with_engine(move |e| e.inspect(&query)).await?;
    let image = d.config.image_id.clone();
    let layers = req
        .daemon
        .with_images(move |store| store.layer_chain(&image))
        .await?;
    let upper = d.rootfs_upper.clone();
    let list = tokio::task::spawn_blocking(move || changes(&upper, &layers)).await?;
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
}
