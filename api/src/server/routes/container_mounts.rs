//! The mount fields of Docker's create body (`HostConfig.Binds`, `Mounts`,
//! `Tmpfs`, `VolumesFrom`, `Config.Volumes`) as the engine's create
//! options, and the `Mounts` shape of inspect and list. Docker's parsing
//! rules for `-v` strings live in the engine (`hutch_engine::volumes`).

use bollard_stubs::models::{
    ContainerCreateBody, HostConfig, Mount, MountBindOptionsPropagationEnum,
    MountPoint as WireMountPoint, MountPointTypeEnum, MountTypeEnum,
};
use hutch_engine::containers::config::CreateOptions;
use hutch_engine::volumes::{BindRecursive, MountPoint, MountRequest, MountType};

use super::super::error::ApiError;

/// Create options holding only the body's mounts (the rest default).
pub fn options(body: &ContainerCreateBody, host: &HostConfig) -> Result<CreateOptions, ApiError> {
    let mut opts = CreateOptions::default();
    if let Some(driver) = host.volume_driver.as_deref() {
        if !driver.is_empty() && driver != "local" {
            return Err(ApiError::bad_request(format!(
                "volume driver {driver:?} is not available: hutch has the local driver only"
            )));
        }
    }
    opts.binds = host.binds.clone().unwrap_or_default();
    opts.mounts = host
        .mounts
        .iter()
        .flatten()
        .map(mount_request)
        .collect::<Result<_, _>>()?;
    opts.tmpfs = host.tmpfs.clone().unwrap_or_default().into_iter().collect();
    // `--shm-size`: the runtime's /dev/shm is 64 MiB; a tmpfs of the asked
    // size goes over it (a `--tmpfs /dev/shm` of the user's wins).
    if let Some(size) = host.shm_size.filter(|s| *s > 0) {
        opts.tmpfs
            .entry(SHM.to_string())
            .or_insert_with(|| format!("size={size},mode=1777,nosuid,nodev,noexec"));
    }
    opts.volumes_from = host.volumes_from.clone().unwrap_or_default();
    let mut volumes: Vec<String> = body.volumes.clone().unwrap_or_default();
    volumes.sort();
    opts.volumes = volumes;
    Ok(opts)
}

/// Where `--shm-size` applies.
pub const SHM: &str = "/dev/shm";

/// `HostConfig.ShmSize` as inspect shows it: the size of a `/dev/shm`
/// tmpfs the container was given, else the runtime's 64 MiB.
pub fn shm_size(tmpfs: &std::collections::BTreeMap<String, String>) -> i64 {
    tmpfs
        .get(SHM)
        .and_then(|o| {
            o.split(',')
                .find_map(|w| w.strip_prefix("size="))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(64 << 20)
}

/// One `HostConfig.Mounts` entry (`--mount`).
fn mount_request(m: &Mount) -> Result<MountRequest, ApiError> {
    let typ = match m.typ {
        Some(MountTypeEnum::BIND) => MountType::Bind,
        Some(MountTypeEnum::VOLUME) => MountType::Volume,
        Some(MountTypeEnum::TMPFS) => MountType::Tmpfs,
        None | Some(MountTypeEnum::EMPTY) => {
            return Err(ApiError::bad_request(
                "invalid mount config for type \"\": mount type unknown",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid mount config for type \"{other}\": mounts of type {other} are not \
                 supported by hutch (bind, volume and tmpfs are)"
            )))
        }
    };
    let mut req = MountRequest {
        typ,
        source: m.source.clone().unwrap_or_default(),
        target: m.target.clone().unwrap_or_default(),
        read_only: m.read_only.unwrap_or(false),
        ..MountRequest::default()
    };
    if let Some(b) = &m.bind_options {
        if typ != MountType::Bind {
            return Err(ApiError::bad_request(format!(
                "invalid mount config for type \"{}\": BindOptions must not be specified",
                typ.as_str()
            )));
        }
        req.propagation = match b.propagation {
            None | Some(MountBindOptionsPropagationEnum::EMPTY) => String::new(),
            Some(p) => p.to_string(),
        };
        req.create_source = b.create_mountpoint.unwrap_or(false);
        req.bind_recursive = if b.non_recursive == Some(true) {
            BindRecursive::Disabled
        } else if b.read_only_non_recursive == Some(true) {
            BindRecursive::Writable
        } else if b.read_only_force_recursive == Some(true) {
            BindRecursive::Readonly
        } else {
            BindRecursive::Enabled
        };
        if req.bind_recursive == BindRecursive::Readonly && !req.read_only {
            return Err(ApiError::bad_request(
                "invalid mount config for type \"bind\": option 'ReadOnlyForceRecursive' \
                 requires 'ReadOnly' to be true",
            ));
        }
    }
    if let Some(v) = &m.volume_options {
        if typ != MountType::Volume {
            return Err(ApiError::bad_request(format!(
                "invalid mount config for type \"{}\": VolumeOptions must not be specified",
                typ.as_str()
            )));
        }
        req.subpath = v.subpath.clone().unwrap_or_default();
        req.no_copy = v.no_copy.unwrap_or(false);
        req.labels = v.labels.clone().unwrap_or_default().into_iter().collect();
        if let Some(d) = &v.driver_config {
            req.driver = d.name.clone().unwrap_or_default();
            req.driver_options = d.options.clone().unwrap_or_default().into_iter().collect();
        }
    }
    if let Some(t) = &m.tmpfs_options {
        if typ != MountType::Tmpfs {
            return Err(ApiError::bad_request(format!(
                "invalid mount config for type \"{}\": TmpfsOptions must not be specified",
                typ.as_str()
            )));
        }
        req.tmpfs_size = t.size_bytes.unwrap_or(0);
        req.tmpfs_mode = t.mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(0);
        let words: Vec<String> = t.options.iter().flatten().map(|kv| kv.join("=")).collect();
        req.mode = words.join(",");
    }
    Ok(req)
}

/// Docker's `Mounts` of inspect and the list; a `--tmpfs` is not among
/// them, as in Docker. Binds carry no `Name` or `Driver`.
pub fn mount_points(points: &[MountPoint]) -> Vec<WireMountPoint> {
    points
        .iter()
        .filter(|p| p.listed)
        .map(|p| WireMountPoint {
            typ: Some(match p.typ {
                MountType::Bind => MountPointTypeEnum::BIND,
                MountType::Volume => MountPointTypeEnum::VOLUME,
                MountType::Tmpfs => MountPointTypeEnum::TMPFS,
            }),
            name: (p.typ == MountType::Volume).then(|| p.name.clone()),
            source: Some(p.source.clone()),
            destination: Some(p.destination.clone()),
            driver: (p.typ == MountType::Volume).then(|| p.driver.clone()),
            mode: Some(p.mode.clone()),
            rw: Some(p.rw),
            propagation: Some(p.propagation.clone()),
        })
        .collect()
}

/// Inspect's `HostConfig.Mounts`: the `--mount` requests as given.
pub fn host_mounts(requests: &[MountRequest]) -> Option<Vec<Mount>> {
    if requests.is_empty() {
        return None;
    }
    Some(
        requests
            .iter()
            .map(|r| Mount {
                typ: Some(match r.typ {
                    MountType::Bind => MountTypeEnum::BIND,
                    MountType::Volume => MountTypeEnum::VOLUME,
                    MountType::Tmpfs => MountTypeEnum::TMPFS,
                }),
                source: Some(r.source.clone()),
                target: Some(r.target.clone()),
                read_only: r.read_only.then_some(true),
                ..Mount::default()
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> Result<CreateOptions, ApiError> {
        let body: ContainerCreateBody =
            serde_json::from_value(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let host = body.host_config.clone().unwrap_or_default();
        options(&body, &host)
    }

    #[test]
    fn the_clis_mount_fields() -> Result<(), ApiError> {
        let opts = parse(serde_json::json!({
            "Image": "b", "Volumes": {"/anon": {}},
            "HostConfig": {
                "Binds": ["/src:/dst:ro"], "Tmpfs": {"/run": "size=1m"},
                "VolumesFrom": ["other:ro"],
                "Mounts": [
                    {"Type": "bind", "Source": "/s", "Target": "/t", "ReadOnly": true,
                     "BindOptions": {"Propagation": "rslave", "NonRecursive": true}},
                    {"Type": "volume", "Source": "v", "Target": "/v",
                     "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"},
                                       "DriverConfig": {"Name": "local", "Options": {"type": "tmpfs"}}}},
                    {"Type": "tmpfs", "Target": "/tm",
                     "TmpfsOptions": {"SizeBytes": 1024, "Mode": 448, "Options": [["exec"]]}}
                ]
            }
        }))?;
        assert_eq!(opts.binds, vec!["/src:/dst:ro"]);
        assert_eq!(opts.volumes, vec!["/anon"]);
        assert_eq!(opts.volumes_from, vec!["other:ro"]);
        assert_eq!(opts.tmpfs.get("/run").map(String::as_str), Some("size=1m"));
        let [b, v, t] = opts.mounts.as_slice() else {
            return Err(ApiError::bad_request("three mounts expected"));
        };
        assert_eq!(b.propagation, "rslave");
        assert_eq!(b.bind_recursive, BindRecursive::Disabled);
        assert!(v.no_copy && v.driver_options.contains_key("type"));
        assert_eq!(
            (t.tmpfs_size, t.tmpfs_mode, t.mode.as_str()),
            (1024, 0o700, "exec")
        );
        Ok(())
    }

    #[test]
    fn wrong_options_for_the_type_are_refused() {
        let bad = parse(serde_json::json!({"Image": "b", "HostConfig": {"Mounts": [
            {"Type": "tmpfs", "Target": "/t", "BindOptions": {"NonRecursive": true}}]}}));
        assert!(bad.is_err_and(|e| e.message.contains("BindOptions must not be specified")));
        let image = parse(serde_json::json!({"Image": "b", "HostConfig": {"Mounts": [
            {"Type": "image", "Source": "x", "Target": "/t"}]}}));
        assert!(image.is_err());
    }
}
