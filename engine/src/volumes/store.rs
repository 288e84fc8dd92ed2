//! The local volume driver's store under the data root:
//!
//! ```text
//! volumes/<name>/_data          the volume's content (Docker's Mountpoint)
//!                volume.json     Volume: driver, labels, options, created-at
//!                stage/          where a container's init copies the image's
//!                                content before renaming it into `_data`
//!                                (no container sees it)
//! volumes/.new-<rand>/          a volume being created (renamed into place)
//! volumes/.removed-<rand>/      a removed volume, deleted right after
//! ```
//!
//! A volume appears by one rename of a complete directory, so a crash never
//! leaves a half-made volume under its name; leftovers are deleted at open.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::containers::state::{read_json, write_json};

/// A volume is a directory named after it (NAME_MAX).
const MAX_NAME_LEN: usize = 255;

/// The label Docker (23+) puts on anonymous volumes; `volume prune` removes
/// only those unless asked for all.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// The only driver there is.
pub const LOCAL_DRIVER: &str = "local";

/// One volume's record (`volume.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    /// The local driver's options (`type`, `device`, `o`).
    pub options: BTreeMap<String, String>,
    /// RFC 3339, seconds, as Docker writes `CreatedAt`.
    pub created_at: String,
    /// Where the content lives (`volumes/<name>/_data`).
    #[serde(skip)]
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn is_anonymous(&self) -> bool {
        self.labels.contains_key(ANONYMOUS_LABEL)
    }

    /// What a container mounts for this volume.
    pub fn backing(&self) -> Backing {
        match self.options.get("type").map(String::as_str) {
            Some("tmpfs") => Backing::Tmpfs {
                options: self.options.get("o").cloned().unwrap_or_default(),
            },
            _ if self.has_bind_option() => Backing::Bind {
                device: PathBuf::from(self.options.get("device").cloned().unwrap_or_default()),
            },
            _ => Backing::Data,
        }
    }

    fn has_bind_option(&self) -> bool {
        self.options
            .get("o")
            .is_some_and(|o| o.split(',').any(|w| w == "bind" || w == "rbind"))
    }
}

/// What backs a volume's mount in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// Its `_data` directory.
    Data,
    /// `type=tmpfs`: a tmpfs with these options.
    Tmpfs { options: String },
    /// `o=bind,device=/path`: a bind of that path.
    Bind { device: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("get {0}: no such volume")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What `create` is asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeCreate {
    /// `None` or empty: an anonymous volume with a random 64-hex name.
    pub name: Option<String>,
    /// Empty means `local`.
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// The volumes directory.
#[derive(Debug)]
pub struct VolumeStore {
    root: PathBuf,
}

impl VolumeStore {
    /// Opens (creating) `<data_root>/volumes` and deletes leftovers of
    /// interrupted creates and removes.
    pub fn open(data_root: &Path) -> io::Result<VolumeStore> {
        let root = data_root.join("volumes");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o701)
            .create(&root)?;
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".removed-") {
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), %e, "deleting a leftover volume directory");
                }
            }
        }
        Ok(VolumeStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `volumes/<name>/_data`.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    /// `volumes/<name>/stage` (see the module docs).
    pub fn stage_path(&self, name: &str) -> PathBuf {
        self.dir(name).join("stage")
    }

    /// Creates a volume; an existing one of that name is returned as it is
    /// (Docker's create is idempotent). The flag says whether it is new.
    pub fn create(&self, req: &VolumeCreate) -> Result<(Volume, bool), VolumeError> {
        let driver = if req.driver.is_empty() {
            LOCAL_DRIVER
        } else {
            req.driver.as_str()
        };
        if driver != LOCAL_DRIVER {
            return Err(VolumeError::Invalid(format!(
                "create {}: error looking up volume plugin {driver}: plugin \"{driver}\" not found",
                req.name.as_deref().unwrap_or("")
            )));
        }
        let (name, mut labels) = match req.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => {
                check_name(n)?;
                (n.to_string(), req.labels.clone())
            }
            None => {
                let mut labels = req.labels.clone();
                labels.insert(ANONYMOUS_LABEL.into(), String::new());
                (crate::containers::ids::new_id()?, labels)
            }
        };
        if let Ok(existing) = self.get(&name) {
            return Ok((existing, false));
        }
        check_options(&req.options)?;
        labels.retain(|k, _| !k.is_empty());
        let volume = Volume {
            name: name.clone(),
            driver: LOCAL_DRIVER.into(),
            labels,
            options: req.options.clone(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            mountpoint: self.data_path(&name),
        };
        // Not named after the volume: a name may use the whole NAME_MAX.
        let staging = self
            .root
            .join(format!(".new-{}", &crate::containers::ids::new_id()?[..12]));
        let made = (|| {
            fs::DirBuilder::new().mode(0o755).create(&staging)?;
            fs::DirBuilder::new()
                .mode(0o755)
                .create(staging.join("_data"))?;
            fs::DirBuilder::new()
                .mode(0o700)
                .create(staging.join("stage"))?;
            write_json(&staging.join("volume.json"), &volume)?;
            fs::rename(&staging, self.dir(&name))
        })();
        match made {
            Ok(()) => Ok((volume, true)),
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                // Another create of the same name won the race.
                match self.get(&name) {
                    Ok(existing) => Ok((existing, false)),
                    Err(_) => Err(e.into()),
                }
            }
        }
    }

    /// One volume by name.
    pub fn get(&self, name: &str) -> Result<Volume, VolumeError> {
        if check_name(name).is_err() {
            return Err(VolumeError::NotFound(name.to_string()));
        }
        let mut v: Volume = match read_json(&self.dir(name).join("volume.json")) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        v.mountpoint = self.data_path(name);
        Ok(v)
    }

    /// Every volume, by name.
    pub fn list(&self) -> io::Result<Vec<Volume>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.root)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            match self.get(name) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(%name, %e, "skipping an unreadable volume"),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Deletes a volume and its content (the caller checked it is unused).
    pub fn remove(&self, name: &str) -> Result<(), VolumeError> {
        self.get(name)?;
        let gone = self.root.join(format!(
            ".removed-{}",
            &crate::containers::ids::new_id()?[..12]
        ));
        fs::rename(self.dir(name), &gone)?;
        make_removable(&gone);
        fs::remove_dir_all(&gone)?;
        Ok(())
    }

    /// Whether a volume's `_data` has no entries (then a container's first
    /// mount of it copies the image's content in).
    pub fn is_empty(&self, name: &str) -> io::Result<bool> {
        Ok(fs::read_dir(self.data_path(name))?.next().is_none())
    }

    /// Bytes used by a volume's content (`system df`): its files' sizes,
    /// each inode once, as Docker counts them.
    pub fn size(&self, name: &str) -> u64 {
        crate::du::dir_size(&self.data_path(name))
    }
}

/// A container may have left directories without write permission for
/// their owner; the engine's root may delete them anyway, but only when it
/// can write the parent: give owners write on every directory first.
fn make_removable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(md) = fs::symlink_metadata(path) else {
        return;
    };
    if md.is_dir() {
        let mode = md.mode() & 0o7777;
        if mode & 0o700 != 0o700 {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700));
        }
        if let Ok(entries) = fs::read_dir(path) {
            for e in entries.flatten() {
                make_removable(&e.path());
            }
        }
    }
}

/// Docker's rule for local volume names, plus the filesystem's: the name
/// is a directory's (dockerd fails later, with a 500 naming the path).
pub fn check_name(name: &str) -> Result<(), VolumeError> {
    if name.len() > MAX_NAME_LEN {
        return Err(VolumeError::Invalid(format!(
            "create {name}: a local volume name is at most {MAX_NAME_LEN} characters \
             (it names a directory)"
        )));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if name.len() >= 2 && first_ok && rest_ok {
        Ok(())
    } else {
        Err(VolumeError::Invalid(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, \
             only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host \
             directory, use absolute path"
        )))
    }
}

/// The local driver's options, as Docker accepts them, limited to what a
/// pod can mount: tmpfs volumes and binds of a directory. Block devices
/// and network filesystems need mount rights a pod does not have.
pub fn check_options(opts: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    for key in opts.keys() {
        if !matches!(key.as_str(), "type" | "device" | "o" | "size") {
            return Err(VolumeError::Invalid(format!("invalid option: {key:?}")));
        }
    }
    if opts.contains_key("size") {
        return Err(VolumeError::Invalid(
            "quota size requested but no quota support".into(),
        ));
    }
    let typ = opts.get("type").map(String::as_str).unwrap_or("");
    let o = opts.get("o").map(String::as_str).unwrap_or("");
    let bind = o.split(',').any(|w| w == "bind" || w == "rbind");
    if opts.is_empty() {
        return Ok(());
    }
    match typ {
        "tmpfs" => Ok(()),
        _ if bind => match opts.get("device") {
            Some(d) if d.starts_with('/') => Ok(()),
            _ => Err(VolumeError::Invalid(
                "a bind volume needs an absolute host path as its device option".into(),
            )),
        },
        _ => Err(VolumeError::Invalid(format!(
            "the local driver in hutch mounts tmpfs volumes (type=tmpfs) and binds \
             (type=none,o=bind,device=/path) only: a pod cannot mount type {typ:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_and_anonymous_volumes_are_labelled() -> Result<(), VolumeError> {
        let dir = tempfile::tempdir()?;
        let store = VolumeStore::open(dir.path())?;
        let req = VolumeCreate {
            name: Some("data".into()),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            ..VolumeCreate::default()
        };
        let (v, new) = store.create(&req)?;
        assert!(new && !v.is_anonymous());
        assert!(store.data_path("data").is_dir() && store.is_empty("data")?);
        let (again, new) = store.create(&req)?;
        assert!(!new);
        assert_eq!(again, v);
        let (anon, _) = store.create(&VolumeCreate::default())?;
        assert!(anon.is_anonymous() && anon.name.len() == 64);
        assert_eq!(store.list()?.len(), 2);
        store.remove("data")?;
        assert!(matches!(store.get("data"), Err(VolumeError::NotFound(_))));
        assert!(matches!(
            store.remove("data"),
            Err(VolumeError::NotFound(_))
        ));
        Ok(())
    }

    #[test]
    fn a_name_may_fill_name_max_and_no_more() -> Result<(), VolumeError> {
        let dir = tempfile::tempdir()?;
        let store = VolumeStore::open(dir.path())?;
        let longest = "v".repeat(MAX_NAME_LEN);
        let named = |name: &str| VolumeCreate {
            name: Some(name.into()),
            ..VolumeCreate::default()
        };
        store.create(&named(&longest))?;
        assert_eq!(store.get(&longest)?.name, longest);
        store.remove(&longest)?;
        // One more is a client's mistake (400), and no volume (404), not
        // the filesystem's ENAMETOOLONG as a server error.
        let too_long = "v".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            store.create(&named(&too_long)),
            Err(VolumeError::Invalid(_))
        ));
        assert!(matches!(
            store.get(&too_long),
            Err(VolumeError::NotFound(_))
        ));
        assert!(matches!(
            store.remove(&too_long),
            Err(VolumeError::NotFound(_))
        ));
        assert!(store.list()?.is_empty());
        Ok(())
    }

    #[test]
    fn names_and_options_are_checked_as_docker_does() {
        assert!(check_name("a").is_err());
        assert!(check_name("/abs").is_err());
        assert!(check_name("ok_1.x-y").is_ok());
        let opts = |kv: &[(&str, &str)]| {
            check_options(
                &kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert!(opts(&[("type", "tmpfs"), ("o", "size=1m")]).is_ok());
        assert!(opts(&[("type", "none"), ("o", "bind"), ("device", "/srv")]).is_ok());
        assert!(opts(&[("type", "none"), ("o", "bind")]).is_err());
        assert!(opts(&[("type", "nfs"), ("o", "addr=1.2.3.4")]).is_err());
        assert!(opts(&[("bogus", "1")]).is_err());
    }
}
