//! A container's mounts, resolved at create: `-v` (Binds), `--mount`,
//! `--tmpfs`, `--volumes-from`, anonymous volumes (`-v /path`, the
//! request's and the image's VOLUME), with Docker's precedence (the
//! request's own mounts over volumes-from over the image's VOLUMEs), the
//! volumes they name created as needed, and the runtime's mount list.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::config::CreateOptions;
use crate::runtime::{BindMount, IdMap, MountKind, MountSpec, SubmountsReadonly};
use crate::volumes::request::{self, normalize, parse_bind, parse_tmpfs, tmpfs_options};
use crate::volumes::{
    Backing, BindRecursive, MountPoint, MountRequest, MountType, VolumeCreate, VolumeError,
    VolumeStore,
};

/// What resolving needs from the engine.
pub struct MountInputs<'a> {
    pub opts: &'a CreateOptions,
    /// The image's VOLUME destinations.
    pub image_volumes: &'a [String],
    pub volumes: &'a VolumeStore,
    pub data_root: &'a Path,
    pub id_map: &'a IdMap,
    /// The mount points of a container named by `--volumes-from`.
    pub volumes_from: &'a dyn Fn(&str) -> Result<Vec<MountPoint>, String>,
}

/// The container's mount points, and the volumes this create made (to
/// remove again if the create fails).
#[derive(Debug, Default)]
pub struct Resolved {
    pub points: Vec<MountPoint>,
    pub created: Vec<String>,
}

/// Resolves every mount of a container being created. On error the
/// volumes made so far are in `created` of nothing: they are removed here.
pub fn resolve(inp: &MountInputs) -> Result<Resolved, String> {
    let mut out = Resolved::default();
    match resolve_into(inp, &mut out) {
        Ok(()) => Ok(out),
        Err(e) => {
            for name in &out.created {
                let _ = inp.volumes.remove(name);
            }
            Err(e)
        }
    }
}

fn resolve_into(inp: &MountInputs, out: &mut Resolved) -> Result<(), String> {
    let opts = inp.opts;
    // The request's own mounts: a destination may appear once.
    let mut requests: Vec<MountRequest> = Vec::new();
    for b in &opts.binds {
        requests.push(parse_bind(b)?);
    }
    for m in &opts.mounts {
        request::check(m)?;
        if m.typ != MountType::Bind && m.bind_recursive != BindRecursive::Enabled {
            return Err(format!(
                "invalid mount config for type \"{}\": BindOptions must not be specified",
                m.typ.as_str()
            ));
        }
        requests.push(m.clone());
    }
    for (target, options) in &opts.tmpfs {
        requests.push(parse_tmpfs(target, options)?);
    }
    let mut taken = BTreeSet::new();
    for r in &requests {
        if !taken.insert(normalize(&r.target)) {
            return Err(format!("Duplicate mount point: {}", normalize(&r.target)));
        }
    }
    // `-v /path` sends an anonymous volume through Config.Volumes, as does
    // the image's VOLUME: both give way to the request's mounts.
    let mut from_points: Vec<MountPoint> = Vec::new();
    for spec in &opts.volumes_from {
        let (container, mode) = spec.split_once(':').unwrap_or((spec, ""));
        let force_rw = match mode {
            "" => None,
            "rw" => Some(true),
            "ro" => Some(false),
            other => return Err(format!("invalid mode for volumes-from: {other}")),
        };
        for mut p in (inp.volumes_from)(container)? {
            let dest = normalize(&p.destination);
            if taken.contains(&dest) {
                continue;
            }
            if let Some(rw) = force_rw {
                p.rw = rw;
            }
            // The volume is already populated by its first user.
            p.copy_data = false;
            taken.insert(dest);
            from_points.push(p);
        }
    }
    for target in opts.volumes.iter().chain(inp.image_volumes) {
        let dest = normalize(target);
        if !target.starts_with('/') {
            return Err(format!(
                "invalid mount config for type \"volume\": invalid mount path: '{target}' mount \
                 path must be absolute"
            ));
        }
        if dest == "/" || !taken.insert(dest) {
            continue;
        }
        requests.push(MountRequest {
            typ: MountType::Volume,
            target: target.clone(),
            ..MountRequest::default()
        });
    }
    let legacy_tmpfs: BTreeSet<String> = opts.tmpfs.keys().map(|t| normalize(t)).collect();
    for r in &requests {
        let mut point = point_for(inp, r, out)?;
        // `--tmpfs` lives in HostConfig.Tmpfs, not in Mounts.
        if point.typ == MountType::Tmpfs && legacy_tmpfs.contains(&point.destination) {
            point.listed = false;
        }
        out.points.push(point);
    }
    out.points.extend(from_points);
    for p in &out.points {
        if p.typ == MountType::Volume {
            prepare_volume(inp, p)?;
        }
    }
    // Parents before children, as Docker sorts them.
    out.points
        .sort_by_key(|p| Path::new(&normalize(&p.destination)).components().count());
    Ok(())
}

fn point_for(
    inp: &MountInputs,
    r: &MountRequest,
    out: &mut Resolved,
) -> Result<MountPoint, String> {
    let destination = normalize(&r.target);
    match r.typ {
        MountType::Bind => {
            let source = bind_source(inp, r)?;
            Ok(MountPoint {
                typ: MountType::Bind,
                source: source.display().to_string(),
                destination,
                mode: r.mode.clone(),
                rw: !r.read_only,
                propagation: if r.propagation.is_empty() {
                    "rprivate".into()
                } else {
                    r.propagation.clone()
                },
                bind_recursive: r.bind_recursive,
                listed: true,
                ..MountPoint::default()
            })
        }
        MountType::Volume => {
            let (volume, new) = inp
                .volumes
                .create(&VolumeCreate {
                    name: Some(r.source.clone()).filter(|s| !s.is_empty()),
                    driver: r.driver.clone(),
                    labels: r.labels.clone(),
                    options: r.driver_options.clone(),
                })
                .map_err(|e| e.to_string())?;
            if new {
                out.created.push(volume.name.clone());
            }
            // `-v name:/dst` shows Docker's default SELinux mode word.
            let mode = if r.create_source && r.mode.is_empty() && !r.source.is_empty() {
                "z".to_string()
            } else {
                r.mode.clone()
            };
            Ok(MountPoint {
                typ: MountType::Volume,
                name: volume.name.clone(),
                source: volume.mountpoint.display().to_string(),
                destination,
                driver: volume.driver.clone(),
                mode,
                rw: !r.read_only,
                // A subpath is the user's own directory of the volume.
                copy_data: !r.no_copy && r.subpath.is_empty(),
                subpath: r.subpath.clone(),
                listed: true,
                ..MountPoint::default()
            })
        }
        MountType::Tmpfs => Ok(MountPoint {
            typ: MountType::Tmpfs,
            destination,
            rw: !r.read_only,
            tmpfs_options: tmpfs_options(r),
            listed: true,
            ..MountPoint::default()
        }),
    }
}

/// A bind's source: absolute, not the engine's own files, and existing
/// (`-v` creates a missing one as a directory, `--mount` refuses it).
fn bind_source(inp: &MountInputs, r: &MountRequest) -> Result<PathBuf, String> {
    let source = PathBuf::from(normalize(&r.source));
    if !source.exists() {
        if !r.create_source {
            return Err(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                source.display()
            ));
        }
        fs::create_dir_all(&source).map_err(|e| {
            format!(
                "error while creating mount source path '{}': {e}",
                source.display()
            )
        })?;
    }
    let real = fs::canonicalize(&source)
        .map_err(|e| format!("bind source path {}: {e}", source.display()))?;
    check_not_engine_files(
        inp.data_root,
        &real,
        r.bind_recursive != BindRecursive::Disabled,
    )?;
    Ok(real)
}

/// A container may not reach the engine's data root (other containers'
/// layers and state, supervisor sockets, the image store) through a bind:
/// neither a path inside it, other than a volume's content, nor (when the
/// bind brings submounts along) one of its parents.
pub fn check_not_engine_files(
    data_root: &Path,
    source: &Path,
    recursive: bool,
) -> Result<(), String> {
    let root = fs::canonicalize(data_root).unwrap_or_else(|_| data_root.to_path_buf());
    let volumes = root.join("volumes");
    if let Ok(rest) = source.strip_prefix(&volumes) {
        let mut parts = rest.components();
        let _name = parts.next();
        if parts.next().is_some_and(|c| c.as_os_str() == "_data") {
            return Ok(());
        }
    }
    let inside = source.starts_with(&root);
    let above = recursive && root.starts_with(source);
    if inside || above {
        return Err(format!(
            "invalid mount config for type \"bind\": bind source path {} {} hutch's data root \
             {}: a container must not reach the engine's files",
            source.display(),
            if inside { "is inside" } else { "contains" },
            root.display()
        ));
    }
    Ok(())
}

/// A volume in a private-mode container: a fresh volume is handed to the
/// container's root, so the container can fill it with its own IDs; a
/// volume already holding another range's files is refused, since they
/// would show as nobody (the data root's filesystem cannot be idmapped).
fn prepare_volume(inp: &MountInputs, p: &MountPoint) -> Result<(), String> {
    if inp.id_map.is_identity() {
        return Ok(());
    }
    let volume = inp.volumes.get(&p.name).map_err(|e| e.to_string())?;
    if volume.backing() != Backing::Data {
        return Ok(());
    }
    let Some(root) = inp.id_map.to_engine(0) else {
        return Err("the container's ID map has no root".into());
    };
    let data = &volume.mountpoint;
    let md = fs::metadata(data).map_err(|e| format!("volume {}: {e}", p.name))?;
    let owner_mapped = (0..=65535u32).any(|i| inp.id_map.to_engine(i) == Some(md.uid()));
    if md.uid() == root || owner_mapped {
        return Ok(());
    }
    let empty = inp.volumes.is_empty(&p.name).map_err(|e| e.to_string())?;
    if !empty {
        return Err(format!(
            "volume {} holds files of engine ID {}, outside this private-mode container's ID \
             range: they would show as nobody; use it from identity-mode containers, or give \
             this container a fresh volume",
            p.name,
            md.uid()
        ));
    }
    for dir in [data.clone(), inp.volumes.stage_path(&p.name)] {
        std::os::unix::fs::chown(&dir, Some(root), Some(root))
            .map_err(|e| format!("handing volume {} to the container's root: {e}", p.name))?;
    }
    Ok(())
}

/// The runtime's mounts for a container's mount points, in order.
pub fn runtime_mounts(
    points: &[MountPoint],
    volumes: &VolumeStore,
) -> Result<Vec<MountSpec>, String> {
    let mut out = Vec::with_capacity(points.len());
    for p in points {
        let destination = PathBuf::from(&p.destination);
        let kind = match p.typ {
            MountType::Bind => MountKind::UserBind(BindMount {
                source: PathBuf::from(&p.source),
                readonly: !p.rw,
                recursive: p.bind_recursive != BindRecursive::Disabled,
                propagation: p.propagation.clone(),
                submounts: submounts(p.bind_recursive),
                populate: false,
                subpath: String::new(),
            }),
            MountType::Tmpfs => MountKind::Tmpfs {
                options: p.tmpfs_options.clone(),
                readonly: !p.rw,
            },
            MountType::Volume => {
                let volume = volumes.get(&p.name).map_err(|e| match e {
                    VolumeError::NotFound(_) => format!("volume {} is gone", p.name),
                    other => other.to_string(),
                })?;
                if !p.subpath.is_empty() && volume.backing() != Backing::Data {
                    return Err(format!(
                        "volume {}: a subpath needs a volume whose content is on the data root",
                        p.name
                    ));
                }
                match volume.backing() {
                    Backing::Data => MountKind::UserBind(BindMount {
                        source: volume.mountpoint.clone(),
                        readonly: !p.rw,
                        recursive: false,
                        propagation: String::new(),
                        submounts: SubmountsReadonly::IfPossible,
                        populate: p.copy_data,
                        subpath: p.subpath.clone(),
                    }),
                    Backing::Tmpfs { options } => MountKind::Tmpfs {
                        options,
                        readonly: !p.rw,
                    },
                    // A host directory: its content is the user's, not
                    // the image's.
                    Backing::Bind { device } => MountKind::UserBind(BindMount {
                        source: device,
                        readonly: !p.rw,
                        recursive: true,
                        propagation: String::new(),
                        submounts: SubmountsReadonly::IfPossible,
                        populate: false,
                        subpath: String::new(),
                    }),
                }
            }
        };
        out.push(MountSpec { destination, kind });
    }
    Ok(out)
}

fn submounts(r: BindRecursive) -> SubmountsReadonly {
    match r {
        BindRecursive::Enabled | BindRecursive::Disabled => SubmountsReadonly::IfPossible,
        BindRecursive::Writable => SubmountsReadonly::Writable,
        BindRecursive::Readonly => SubmountsReadonly::Required,
    }
}

/// The names of the volumes a container's mount points use.
pub fn volume_names(points: &[MountPoint]) -> impl Iterator<Item = &str> {
    points
        .iter()
        .filter(|p| p.typ == MountType::Volume)
        .map(|p| p.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        opts: &'a CreateOptions,
        image_volumes: &'a [String],
        store: &'a VolumeStore,
        root: &'a Path,
        map: &'a IdMap,
        from: &'a dyn Fn(&str) -> Result<Vec<MountPoint>, String>,
    ) -> MountInputs<'a> {
        MountInputs {
            opts,
            image_volumes,
            volumes: store,
            data_root: root,
            id_map: map,
            volumes_from: from,
        }
    }

    #[test]
    fn requests_image_volumes_and_precedence() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let store = VolumeStore::open(&root)?;
        let src = dir.path().join("src");
        let opts = CreateOptions {
            binds: vec![format!("{}:/data:ro", src.display()), "named:/named".into()],
            tmpfs: [("/run".to_string(), "size=1m".to_string())].into(),
            volumes: vec!["/anon".into()],
            ..CreateOptions::default()
        };
        let image_volumes = vec!["/data".to_string(), "/cache".to_string()];
        let map = IdMap::identity();
        let none = |_: &str| -> Result<Vec<MountPoint>, String> { Ok(Vec::new()) };
        let r = resolve(&inputs(&opts, &image_volumes, &store, &root, &map, &none))?;
        // -v created the missing source.
        assert!(src.is_dir());
        let dests: Vec<&str> = r.points.iter().map(|p| p.destination.as_str()).collect();
        assert_eq!(dests.len(), 5, "{dests:?}");
        let data = r
            .points
            .iter()
            .find(|p| p.destination == "/data")
            .ok_or("no /data")?;
        assert_eq!((data.typ, data.rw), (MountType::Bind, false));
        assert_eq!(data.propagation, "rprivate");
        let named = r
            .points
            .iter()
            .find(|p| p.name == "named")
            .ok_or("no named")?;
        assert_eq!(named.mode, "z");
        assert!(named.copy_data);
        // /anon and /cache are anonymous volumes: three volumes made.
        assert_eq!(r.created.len(), 3);
        assert_eq!(store.list()?.iter().filter(|v| v.is_anonymous()).count(), 2);
        let specs = runtime_mounts(&r.points, &store)?;
        assert_eq!(specs.len(), 5);
        Ok(())
    }

    #[test]
    fn errors_name_what_is_wrong_and_undo_made_volumes() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("root");
        let store = VolumeStore::open(&root)?;
        let map = IdMap::identity();
        let none = |_: &str| -> Result<Vec<MountPoint>, String> { Ok(Vec::new()) };
        let missing = CreateOptions {
            binds: vec!["v1:/v1".into()],
            mounts: vec![MountRequest {
                typ: MountType::Bind,
                source: "/nonexistent-hutch".into(),
                target: "/x".into(),
                ..MountRequest::default()
            }],
            ..CreateOptions::default()
        };
        let err = resolve(&inputs(&missing, &[], &store, &root, &map, &none))
            .err()
            .ok_or("resolved")?;
        assert!(
            err.contains("bind source path does not exist: /nonexistent-hutch"),
            "{err}"
        );
        assert!(store.list()?.is_empty(), "v1 was left behind");
        let dup = CreateOptions {
            binds: vec!["/tmp:/x".into()],
            tmpfs: [("/x/".to_string(), String::new())].into(),
            ..CreateOptions::default()
        };
        let err = resolve(&inputs(&dup, &[], &store, &root, &map, &none))
            .err()
            .ok_or("resolved")?;
        assert_eq!(err, "Duplicate mount point: /x");
        let engine = CreateOptions {
            binds: vec![format!("{}:/x", root.join("containers").display())],
            ..CreateOptions::default()
        };
        let err = resolve(&inputs(&engine, &[], &store, &root, &map, &none))
            .err()
            .ok_or("resolved")?;
        assert!(err.contains("data root"), "{err}");
        Ok(())
    }
}
