//! RUN `--mount`s as runtime mounts: cache directories kept under the data
//! root between builds, binds from the context or another stage, tmpfs,
//! secrets (bound read-only from the `--secret` file, never in a layer or in
//! history) and SSH agents (a relay socket of the build's, see
//! `ssh_agent`). Mount points the runtime had to create are removed from
//! the layer afterwards.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};

use hutch_engine::runtime::{MountKind, MountSpec};
use hutch_images::ImageStore;
use sha2::{Digest as _, Sha256};

use super::image::ImageState;
use super::view::MergedView;
use super::BuildError;
use crate::dockerfile::{Mount, MountType};
use crate::stages::Source;

pub struct MountInputs<'a> {
    pub context: &'a Path,
    pub data_root: &'a Path,
    pub tmp: &'a Path,
    pub secrets: &'a HashMap<String, PathBuf>,
    /// Asked for secrets `secrets` does not have.
    pub secret_source: Option<&'a dyn super::SecretSource>,
    /// Asked for SSH agents.
    pub ssh_source: Option<&'a dyn super::SshSource>,
    pub store: &'a ImageStore,
    /// Sources of the mounts with `from=`, in order.
    pub sources: &'a [Source],
    pub results: &'a [Option<ImageState>],
    pub workdir: &'a str,
}

/// Mounts ready for the container; views stay mounted while this lives.
pub struct Prepared {
    pub mounts: Vec<MountSpec>,
    /// Mount targets (relative, no leading `/`) and their parents.
    pub stubs: Vec<String>,
    /// Environment the mounts add (`SSH_AUTH_SOCK`), unless the RUN's
    /// own environment sets it.
    pub env: Vec<(String, String)>,
    _views: Vec<MergedView>,
}

pub fn prepare(mounts: &[Mount], inp: &MountInputs<'_>) -> Result<Prepared, BuildError> {
    let mut out = Prepared {
        mounts: Vec::new(),
        stubs: Vec::new(),
        env: Vec::new(),
        _views: Vec::new(),
    };
    let mut from_index = 0;
    let mut ssh_index = 0;
    for m in mounts {
        let from = m.from.as_deref().filter(|f| !f.is_empty());
        let source_of_from = if from.is_some() {
            let s = inp.sources.get(from_index).cloned();
            from_index += 1;
            s
        } else {
            None
        };
        let target = |default: Option<String>| -> Result<String, BuildError> {
            let t = m
                .target
                .clone()
                .or(default)
                .ok_or_else(|| BuildError::Invalid("a mount needs a target".into()))?;
            Ok(if t.starts_with('/') {
                t
            } else {
                format!("{}/{t}", inp.workdir.trim_end_matches('/'))
            })
        };
        let (dest, kind) = match m.kind {
            MountType::Cache => {
                let dest = target(None)?;
                let id = m.id.clone().unwrap_or_else(|| dest.clone());
                let hex: String = Sha256::digest(id.as_bytes())
                    .iter()
                    .take(16)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                let dir = inp.data_root.join(super::cache_dirs::MOUNTS).join(hex);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir)
                        .map_err(|e| BuildError::io("creating a cache mount", e))?;
                    let mode = m.mode.unwrap_or(0o755);
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                        .map_err(|e| BuildError::io("creating a cache mount", e))?;
                    chown(&dir, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
                        .map_err(|e| BuildError::io("creating a cache mount", e))?;
                } else {
                    // Its mtime is its last use, which `docker builder prune
                    // --filter until=` goes by (advisory: a failure only
                    // makes it look older).
                    let touched = std::fs::File::open(&dir)
                        .and_then(|d| d.set_modified(std::time::SystemTime::now()));
                    if let Err(e) = touched {
                        tracing::debug!(%e, "marking a cache mount used");
                    }
                }
                (
                    dest,
                    MountKind::Bind {
                        source: dir,
                        readonly: false,
                        recursive: false,
                    },
                )
            }
            MountType::Bind => {
                let dest = target(None)?;
                let rel =
                    super::copy::clean(m.source.as_deref().unwrap_or("")).ok_or_else(|| {
                        BuildError::Invalid("a bind mount's source is outside its root".into())
                    })?;
                let root = match &source_of_from {
                    None => inp.context.to_path_buf(),
                    Some(Source::Local(dir)) => dir.clone(),
                    Some(src) => {
                        let layers = match src {
                            Source::Stage(i) => inp
                                .results
                                .get(*i)
                                .and_then(Option::as_ref)
                                .ok_or_else(|| {
                                    BuildError::Invalid(format!("stage {i} was not built"))
                                })?
                                .lower_dirs(inp.store),
                            Source::Image(name) => {
                                ImageState::load(inp.store, name)?.lower_dirs(inp.store)
                            }
                            // (Local is the arm above.)
                            Source::Scratch | Source::Local(_) => Vec::new(),
                        };
                        let v = MergedView::mount(&layers, inp.tmp)
                            .map_err(|e| BuildError::io("RUN --mount=type=bind", e))?;
                        let root = v.path().to_path_buf();
                        out._views.push(v);
                        root
                    }
                };
                let source = root.join(&rel);
                if source.symlink_metadata().is_err() {
                    return Err(BuildError::Invalid(format!(
                        "RUN --mount=type=bind: \"/{rel}\" not found"
                    )));
                }
                (
                    dest,
                    MountKind::Bind {
                        source,
                        readonly: m.readonly,
                        recursive: true,
                    },
                )
            }
            MountType::Tmpfs => {
                let dest = target(None)?;
                let mut options = String::from("mode=1777");
                if let Some(size) = m.size {
                    options.push_str(&format!(",size={size}"));
                }
                (
                    dest,
                    MountKind::Tmpfs {
                        options,
                        readonly: false,
                    },
                )
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .and_then(|t| t.rsplit('/').next())
                                .map(str::to_string)
                        })
                        .ok_or_else(|| BuildError::Invalid("a secret mount needs an id".into()))?;
                let dest = target(Some(format!("/run/secrets/{id}")))?;
                let found = match (inp.secrets.get(&id), inp.secret_source) {
                    (Some(src), _) => Some(src.clone()),
                    (None, Some(source)) => source
                        .secret_file(&id)
                        .map_err(|e| BuildError::Run(format!("secret {id}: {e}")))?,
                    (None, None) => None,
                };
                match found {
                    Some(src) => (
                        dest,
                        MountKind::Bind {
                            source: src,
                            readonly: true,
                            recursive: false,
                        },
                    ),
                    None if m.required => {
                        return Err(BuildError::Invalid(format!(
                            "secret {id}: not found (pass --secret id={id},src=FILE)"
                        )))
                    }
                    None => continue,
                }
            }
            MountType::Ssh => {
                // As BuildKit: numbered targets, and SSH_AUTH_SOCK names the
                // first ssh mount whether or not its agent is there.
                let dest = target(Some(format!("/run/buildkit/ssh_agent.{ssh_index}")))?;
                ssh_index += 1;
                if out.env.is_empty() {
                    out.env.push(("SSH_AUTH_SOCK".into(), dest.clone()));
                }
                let id =
                    m.id.clone()
                        .unwrap_or_else(|| super::ssh_agent::DEFAULT_ID.into());
                let socket = match inp.ssh_source {
                    Some(source) => source
                        .agent_socket(&id, inp.tmp)
                        .map_err(|e| BuildError::Run(format!("SSH agent {id}: {e}")))?,
                    None => None,
                };
                let Some(socket) = socket else {
                    if m.required {
                        return Err(BuildError::Invalid(format!(
                            "no SSH key {id:?} forwarded from the client (pass --ssh {id})"
                        )));
                    }
                    continue;
                };
                let own = || -> std::io::Result<()> {
                    chown(&socket, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))?;
                    let mode = m.mode.unwrap_or(0o600);
                    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode))
                };
                own().map_err(|e| BuildError::io("preparing the SSH agent socket", e))?;
                (
                    dest,
                    MountKind::Bind {
                        source: socket,
                        readonly: false,
                        recursive: false,
                    },
                )
            }
        };
        let rel = dest.trim_start_matches('/').to_string();
        let mut cur = Some(Path::new(&rel));
        while let Some(p) = cur {
            if p.as_os_str().is_empty() {
                break;
            }
            out.stubs.push(p.to_string_lossy().to_string());
            cur = p.parent();
        }
        out.mounts.push(MountSpec {
            destination: PathBuf::from(dest),
            kind,
        });
    }
    Ok(out)
}

/// Removes from the upper dir the mount points the runtime created (deepest
/// first, only while empty); `stubs` holds only paths the image lacks.
pub fn remove_stubs(upper: &Path, stubs: &BTreeSet<String>) {
    let mut list: Vec<&String> = stubs.iter().collect();
    list.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in list {
        let p = upper.join(s);
        match p.symlink_metadata() {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&p);
            }
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&p);
            }
            _ => {}
        }
    }
}
