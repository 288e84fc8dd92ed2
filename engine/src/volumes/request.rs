//! Mounts as a container asks for them (`-v`, `--mount`, `--tmpfs`, an
//! image's VOLUME), parsed and checked with Docker's rules and messages
//! (moby's `volume/mounts/linux_parser.go`), and the resolved mount points
//! a container keeps in its record (Docker's `Mounts` in inspect).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// `--mount type=bind,bind-recursive=...` (Docker 25+).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindRecursive {
    /// Submounts come along; read-only applies to them too where the
    /// kernel allows it.
    #[default]
    Enabled,
    /// Only the source mount itself.
    Disabled,
    /// Submounts come along and stay writable under a read-only bind.
    Writable,
    /// Submounts come along and must be read-only too (an error otherwise).
    Readonly,
}

/// One mount as asked for (`--mount`, HostConfig.Mounts, or a parsed `-v`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountRequest {
    pub typ: MountType,
    /// A host path (bind), a volume name (empty: anonymous), nothing (tmpfs).
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Bind propagation (`rprivate` when empty).
    pub propagation: String,
    /// `-v` creates a missing bind source; `--mount` refuses it.
    pub create_source: bool,
    pub bind_recursive: BindRecursive,
    /// Volumes: do not copy the image's content in.
    pub no_copy: bool,
    /// Labels and driver options for a volume this mount creates.
    pub labels: BTreeMap<String, String>,
    pub driver: String,
    pub driver_options: BTreeMap<String, String>,
    /// Tmpfs: bytes (0: the kernel's default, half of RAM) and mode bits
    /// (0: 1777).
    pub tmpfs_size: i64,
    pub tmpfs_mode: u32,
    /// Docker's `Mode` text for inspect (what `-v` gave after the target).
    pub mode: String,
    /// Volumes: mount this directory of the volume (`volume-subpath`).
    pub subpath: String,
}

/// A mount of a created container, as kept in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MountPoint {
    pub typ: MountType,
    /// The volume's name.
    pub name: String,
    /// Host path: the bind source or the volume's `_data`; empty for tmpfs.
    pub source: String,
    pub destination: String,
    /// `local` for volumes, empty otherwise.
    pub driver: String,
    pub mode: String,
    pub rw: bool,
    /// Binds: `rprivate` unless asked otherwise; empty for the others.
    pub propagation: String,
    /// Copy the image's content at the destination into an empty volume.
    pub copy_data: bool,
    /// Tmpfs: the whole option list (flags and data).
    pub tmpfs_options: String,
    pub bind_recursive: BindRecursive,
    /// Shown in `Mounts` (a `--tmpfs` is not, as in Docker).
    pub listed: bool,
    /// Volumes: the directory of the volume to mount.
    pub subpath: String,
}

/// `-v`'s mode words, checked as moby does.
#[derive(Debug, Default, PartialEq, Eq)]
struct Modes {
    read_only: bool,
    propagation: String,
    no_copy: bool,
}

fn parse_modes(text: &str) -> Option<Modes> {
    let mut m = Modes::default();
    let (mut rw_seen, mut label_seen, mut prop_seen, mut copy_seen) = (false, false, false, false);
    if text.is_empty() {
        return Some(m);
    }
    for word in text.split(',') {
        let seen = match word {
            "rw" | "ro" => {
                m.read_only = word == "ro";
                &mut rw_seen
            }
            "z" | "Z" => &mut label_seen,
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {
                m.propagation = word.to_string();
                &mut prop_seen
            }
            "nocopy" => {
                m.no_copy = true;
                &mut copy_seen
            }
            // macOS consistency flags: accepted and meaningless on Linux.
            "consistent" | "cached" | "delegated" => continue,
            _ => return None,
        };
        if *seen {
            return None;
        }
        *seen = true;
    }
    Some(m)
}

/// Parses one `HostConfig.Binds` entry (`-v`): `SRC:DST[:MODE]`,
/// `DST[:MODE]` for an anonymous volume, SRC a host path (bind) or a name.
pub fn parse_bind(spec: &str) -> Result<MountRequest, String> {
    let invalid = |why: &str| format!("invalid volume specification: '{spec}': {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [t] => ("", *t, ""),
        [a, b] if !b.starts_with('/') && parse_modes(b).is_some() && a.starts_with('/') => {
            ("", *a, *b)
        }
        [s, t] => (*s, *t, ""),
        [s, t, m] => (*s, *t, *m),
        _ => return Err(format!("invalid volume specification: '{spec}'")),
    };
    if target.is_empty() {
        return Err(invalid("invalid mount config: target must not be empty"));
    }
    let modes = parse_modes(mode).ok_or_else(|| invalid(&format!("invalid mode: {mode}")))?;
    let typ = if source.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    if typ == MountType::Bind && modes.no_copy {
        return Err(invalid(&format!("invalid mode: {mode}")));
    }
    if typ == MountType::Volume && !modes.propagation.is_empty() {
        return Err(invalid(&format!("invalid mode: {mode}")));
    }
    let req = MountRequest {
        typ,
        source: source.to_string(),
        target: target.to_string(),
        read_only: modes.read_only,
        propagation: modes.propagation,
        create_source: true,
        no_copy: modes.no_copy,
        mode: mode.to_string(),
        ..MountRequest::default()
    };
    check(&req).map_err(|e| invalid(&e))?;
    Ok(req)
}

/// One `HostConfig.Tmpfs` entry (`--tmpfs DST[:OPTIONS]`).
pub fn parse_tmpfs(target: &str, options: &str) -> Result<MountRequest, String> {
    let req = MountRequest {
        typ: MountType::Tmpfs,
        target: target.to_string(),
        mode: options.to_string(),
        ..MountRequest::default()
    };
    check(&req).map_err(|e| format!("invalid tmpfs specification: '{target}': {e}"))?;
    Ok(req)
}

/// The checks moby applies to every mount (`--mount` errors carry this
/// text after "invalid mount config for type ...").
pub fn check(req: &MountRequest) -> Result<(), String> {
    let typ = req.typ.as_str();
    let config = |why: String| format!("invalid mount config for type \"{typ}\": {why}");
    if !req.target.starts_with('/') {
        return Err(config(format!(
            "invalid mount path: '{}' mount path must be absolute",
            req.target
        )));
    }
    if normalize(&req.target) == "/" {
        return Err(config(
            "invalid specification: destination can't be '/'".into(),
        ));
    }
    match req.typ {
        MountType::Bind => {
            if req.source.is_empty() {
                return Err(config("field Source must not be empty".into()));
            }
            if !req.source.starts_with('/') {
                return Err(config(format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    req.source
                )));
            }
            if !matches!(
                req.propagation.as_str(),
                "" | "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            ) {
                return Err(config(format!(
                    "invalid propagation mode: {}",
                    req.propagation
                )));
            }
        }
        MountType::Volume => {
            if req.source.starts_with('/') {
                return Err(config(format!(
                    "invalid volume name: '{}' (a host path needs type=bind)",
                    req.source
                )));
            }
            if !req.source.is_empty() {
                super::store::check_name(&req.source).map_err(|e| config(e.to_string()))?;
            }
            if req.subpath.starts_with('/') || req.subpath.split('/').any(|c| c == "..") {
                return Err(config(
                    "subpath must be a relative path within the volume".into(),
                ));
            }
        }
        MountType::Tmpfs => {
            if !req.source.is_empty() {
                return Err(config("field Source must not be specified".into()));
            }
            if !req.subpath.is_empty() {
                return Err(config("Subpath is only valid for volumes".into()));
            }
            if req.tmpfs_size < 0 {
                return Err(config("invalid tmpfs size: must not be negative".into()));
            }
        }
    }
    Ok(())
}

/// `/a//b/../c/` → `/a/c` (lexically; targets are resolved in the rootfs
/// later).
pub fn normalize(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

/// The tmpfs option list a container mounts: Docker's defaults (`noexec,
/// nosuid, nodev`) with the request's words over them, and the size and
/// mode of `--mount type=tmpfs`.
pub fn tmpfs_options(req: &MountRequest) -> String {
    let mut flags: BTreeMap<&str, &str> =
        BTreeMap::from([("exec", "noexec"), ("suid", "nosuid"), ("dev", "nodev")]);
    let mut data: Vec<String> = Vec::new();
    for word in req.mode.split(',').filter(|w| !w.is_empty()) {
        match word {
            "exec" | "noexec" => {
                flags.insert("exec", word_static(word));
            }
            "suid" | "nosuid" => {
                flags.insert("suid", word_static(word));
            }
            "dev" | "nodev" => {
                flags.insert("dev", word_static(word));
            }
            other => data.push(other.to_string()),
        }
    }
    if req.tmpfs_size > 0 {
        data.retain(|d| !d.starts_with("size="));
        data.push(format!("size={}", req.tmpfs_size));
    }
    if req.tmpfs_mode != 0 {
        data.retain(|d| !d.starts_with("mode="));
        data.push(format!("mode={:o}", req.tmpfs_mode));
    }
    if req.read_only && !data.iter().any(|d| d == "ro") {
        data.push("ro".into());
    }
    let mut words: Vec<String> = flags.values().map(|s| s.to_string()).collect();
    words.extend(data);
    words.join(",")
}

fn word_static(w: &str) -> &'static str {
    match w {
        "exec" => "exec",
        "noexec" => "noexec",
        "suid" => "suid",
        "nosuid" => "nosuid",
        "dev" => "dev",
        _ => "nodev",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_parse_as_moby_does() -> Result<(), String> {
        let b = parse_bind("/src:/dst:ro,rslave")?;
        assert_eq!(
            (b.typ, b.source.as_str(), b.target.as_str()),
            (MountType::Bind, "/src", "/dst")
        );
        assert!(b.read_only && b.create_source);
        assert_eq!(b.propagation, "rslave");
        let v = parse_bind("data:/data:nocopy")?;
        assert_eq!((v.typ, v.source.as_str()), (MountType::Volume, "data"));
        assert!(v.no_copy && !v.read_only);
        let anon = parse_bind("/data")?;
        assert_eq!((anon.typ, anon.source.as_str()), (MountType::Volume, ""));
        let anon_ro = parse_bind("/data:ro")?;
        assert!(anon_ro.read_only && anon_ro.source.is_empty());
        assert!(parse_bind("/src:/dst:bogus").is_err_and(|e| e.contains("invalid mode: bogus")));
        assert!(parse_bind("/src:rel").is_err_and(|e| e.contains("must be absolute")));
        assert!(parse_bind("/src:/").is_err());
        assert!(parse_bind("/a:/b:ro:x").is_err());
        assert!(parse_bind("data:/d:rshared").is_err());
        assert!(parse_bind("/s:/d:ro,rw").is_err());
        Ok(())
    }

    #[test]
    fn tmpfs_options_keep_dockers_defaults_under_the_requests() -> Result<(), String> {
        let t = parse_tmpfs("/x", "size=64m,mode=1777,exec")?;
        assert_eq!(tmpfs_options(&t), "nodev,exec,nosuid,size=64m,mode=1777");
        let m = MountRequest {
            typ: MountType::Tmpfs,
            target: "/y".into(),
            tmpfs_size: 1 << 20,
            tmpfs_mode: 0o700,
            read_only: true,
            ..MountRequest::default()
        };
        assert_eq!(
            tmpfs_options(&m),
            "nodev,noexec,nosuid,size=1048576,mode=700,ro"
        );
        assert!(parse_tmpfs("rel", "").is_err());
        Ok(())
    }

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(normalize("/a//b/../c/"), "/a/c");
        assert_eq!(normalize("/.."), "/");
    }
}
