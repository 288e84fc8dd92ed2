//! The offline test images: valid OCI layouts and docker-archives that
//! skopeo reads, deterministic digests, and torture layers that really
//! contain each feature they promise, in the tar encodings they promise.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::process::Command;

use anyhow::{bail, ensure, Context};
use flate2::read::GzDecoder;
use hutch_tests::testimages::{
    self, capability_net_raw_ep, sha256_digest, ExpectedEntry, ExpectedKind, TestImage,
    LONG_NAME_LEN, LONG_PATH_LEN, SPARSE_SIZE,
};
use serde_json::Value;
use tar::EntryType;

#[test]
fn busybox_is_a_valid_image_in_both_formats() -> anyhow::Result<()> {
    let image = testimages::busybox()?;
    verify_layout(&image)?;
    verify_skopeo_reads_both_formats(&image)?;

    let config = read_json(&image, &image.config_digest)?;
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(config["history"].as_array().map(Vec::len), Some(1));

    let layer = read_layer(&image, 0)?;
    let busybox = layer.get("bin/busybox").context("bin/busybox")?;
    assert_eq!(busybox.kind, EntryType::Regular);
    assert_eq!(busybox.mode, 0o755);
    let host_busybox = fs::read("/bin/busybox").or_else(|_| fs::read("/usr/bin/busybox"))?;
    assert_eq!(
        busybox.sha256.as_deref(),
        Some(sha256_digest(&host_busybox).as_str())
    );

    let applets = Command::new("/bin/busybox").arg("--list").output()?;
    let applets = String::from_utf8(applets.stdout)?;
    let mut count = 0;
    for applet in applets.lines().filter(|a| *a != "busybox") {
        let link = layer
            .get(&format!("bin/{applet}"))
            .with_context(|| format!("applet {applet}"))?;
        assert_eq!(link.kind, EntryType::Symlink, "bin/{applet}");
        assert_eq!(link.link.as_deref(), Some("busybox"), "bin/{applet}");
        count += 1;
    }
    assert!(count > 100, "only {count} applets");

    let passwd = String::from_utf8(layer.get("etc/passwd").context("passwd")?.data.clone())?;
    assert!(
        passwd.lines().any(|l| l.starts_with("root:x:0:0:")),
        "{passwd}"
    );
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nobody:x:65534:65534:")),
        "{passwd}"
    );
    let group = String::from_utf8(layer.get("etc/group").context("group")?.data.clone())?;
    assert!(group.lines().any(|l| l.starts_with("root:x:0:")), "{group}");
    assert!(
        group.lines().any(|l| l.starts_with("nogroup:x:65534:")),
        "{group}"
    );
    for (dir, mode) in [
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var", 0o755),
        ("home", 0o755),
        ("etc", 0o755),
    ] {
        let entry = layer.get(dir).with_context(|| format!("/{dir}"))?;
        assert_eq!(
            (entry.kind, entry.mode),
            (EntryType::Directory, mode),
            "/{dir}"
        );
    }
    Ok(())
}

#[test]
fn torture_is_a_valid_image_in_both_formats() -> anyhow::Result<()> {
    let image = testimages::torture()?;
    verify_layout(&image)?;
    verify_skopeo_reads_both_formats(&image)?;
    assert_eq!(image.layers.len(), 3);
    let config = read_json(&image, &image.config_digest)?;
    assert_eq!(config["history"].as_array().map(Vec::len), Some(3));
    Ok(())
}

#[test]
fn layers_and_digests_are_reproducible() -> anyhow::Result<()> {
    for cached in [testimages::busybox()?, testimages::torture()?] {
        let first = tempfile::tempdir()?;
        let second = tempfile::tempdir()?;
        let a = testimages::build_layout_uncached(&cached.name, first.path())?;
        let b = testimages::build_layout_uncached(&cached.name, second.path())?;
        for fresh in [&a, &b] {
            assert_eq!(
                fresh.manifest_digest, cached.manifest_digest,
                "{}",
                cached.name
            );
            assert_eq!(fresh.config_digest, cached.config_digest, "{}", cached.name);
            assert_eq!(fresh.layers, cached.layers, "{}", cached.name);
        }
    }
    Ok(())
}

#[test]
fn torture_layers_contain_every_feature() -> anyhow::Result<()> {
    let image = testimages::torture()?;
    let layers: Vec<Layer> = (0..image.layers.len())
        .map(|i| read_layer(&image, i))
        .collect::<Result<_, _>>()?;
    let base = &layers[0];

    let owners: Vec<(u64, u64)> = base.entries.iter().map(|e| (e.uid, e.gid)).collect();
    assert!(
        owners.contains(&(1000, 1000)),
        "no entry owned by 1000:1000"
    );
    assert!(
        owners.contains(&(65534, 65534)),
        "no entry owned by 65534:65534"
    );

    let mode_of = |path: &str| base.get(path).map(|e| e.mode);
    assert_eq!(mode_of("modes/setuid"), Some(0o4755));
    assert_eq!(mode_of("modes/setgid"), Some(0o2755));
    assert_eq!(mode_of("modes/sticky"), Some(0o1777));

    let ping = base.get("xattrs/ping").context("xattrs/ping")?;
    // vfs_cap_data revision 2, effective flag, permitted = 1 << CAP_NET_RAW (13).
    let cap_net_raw_ep = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(capability_net_raw_ep(), cap_net_raw_ep);
    assert_eq!(
        ping.pax
            .get("SCHILY.xattr.security.capability")
            .map(Vec::as_slice),
        Some(&cap_net_raw_ep[..])
    );
    let user = base.get("xattrs/user").context("xattrs/user")?;
    assert_eq!(
        user.pax.get("SCHILY.xattr.user.torture").map(Vec::as_slice),
        Some(&b"hello"[..])
    );

    let hardlink = base.get("links/b/hardlink").context("links/b/hardlink")?;
    assert_eq!(hardlink.kind, EntryType::Link);
    assert_eq!(hardlink.link.as_deref(), Some("links/a/original"));
    let symlink_targets: Vec<&str> = base
        .entries
        .iter()
        .filter(|e| e.kind == EntryType::Symlink)
        .filter_map(|e| e.link.as_deref())
        .collect();
    assert!(
        symlink_targets.iter().any(|t| t.starts_with('/')),
        "no absolute symlink"
    );
    assert!(
        symlink_targets.iter().any(|t| t.starts_with("..")),
        "no relative symlink"
    );

    let sparse = base
        .entries
        .iter()
        .find(|e| e.kind == EntryType::GNUSparse)
        .context("no GNU sparse entry")?;
    assert_eq!(sparse.path, "sparse/big");
    assert_eq!(sparse.real_size, Some(SPARSE_SIZE));
    assert!(
        sparse.stored_size < 64 * 1024,
        "sparse entry stores {} bytes",
        sparse.stored_size
    );

    let long_name = base
        .entries
        .iter()
        .find(|e| e.path.rsplit('/').next().map(str::len) == Some(LONG_NAME_LEN))
        .context("no 255-byte file name")?;
    assert_eq!(long_name.kind, EntryType::Regular);
    let long_link = base
        .get("names/z-hardlink-to-long-name")
        .context("link to the long name")?;
    assert_eq!(long_link.link.as_deref(), Some(long_name.path.as_str()));
    let long_path = base
        .entries
        .iter()
        .find(|e| e.path.len() == LONG_PATH_LEN)
        .context("no 200-byte path")?;
    assert!(
        long_path.ustar_prefix,
        "the 200-byte path is not split into ustar prefix and name"
    );

    let whiteouts: Vec<&str> = layers[1].entries.iter().map(|e| e.path.as_str()).collect();
    assert!(whiteouts.contains(&".wh.doomed"), "{whiteouts:?}");
    assert!(base
        .get("doomed")
        .is_some_and(|e| e.kind == EntryType::Directory));
    assert!(base
        .get("replaced")
        .is_some_and(|e| e.kind == EntryType::Regular));
    assert!(layers[1]
        .get("replaced")
        .is_some_and(|e| e.kind == EntryType::Directory));
    assert!(
        layers[2].get("opaque/.wh..wh..opq").is_some(),
        "no opaque marker in layer 3"
    );
    assert!(
        base.get("opaque/old").is_some(),
        "layer 1 puts nothing under the opaque dir"
    );
    Ok(())
}

/// Replays the real tar streams with OCI whiteout semantics, independently
/// of the recipe, and compares with what `torture_expected` promises.
#[test]
fn torture_expected_matches_the_layers() -> anyhow::Result<()> {
    let image = testimages::torture()?;
    let mut tree: BTreeMap<String, TarEntry> = BTreeMap::new();
    let mut hidden = Vec::new();
    for index in 0..image.layers.len() {
        let layer = read_layer(&image, index)?;
        for entry in &layer.entries {
            let (dir, name) = split(&entry.path);
            let doomed: Vec<String> = if name == ".wh..wh..opq" {
                tree.keys().filter(|p| is_under(p, dir)).cloned().collect()
            } else if let Some(target) = name.strip_prefix(".wh.") {
                let target = if dir.is_empty() {
                    target.to_owned()
                } else {
                    format!("{dir}/{target}")
                };
                tree.keys()
                    .filter(|p| **p == target || is_under(p, &target))
                    .cloned()
                    .collect()
            } else {
                continue;
            };
            for path in doomed {
                tree.remove(&path);
                hidden.push(path);
            }
        }
        for entry in layer
            .entries
            .iter()
            .filter(|e| !split(&e.path).1.starts_with(".wh."))
        {
            if entry.kind != EntryType::Directory {
                let below: Vec<String> = tree
                    .keys()
                    .filter(|p| is_under(p, &entry.path))
                    .cloned()
                    .collect();
                for path in below {
                    tree.remove(&path);
                    hidden.push(path);
                }
            }
            let resolved = match (&entry.kind, &entry.link) {
                (EntryType::Link, Some(target)) => {
                    let original = tree
                        .get(target)
                        .with_context(|| format!("link target {target}"))?;
                    TarEntry {
                        path: entry.path.clone(),
                        link: Some(target.clone()),
                        ..original.clone()
                    }
                }
                _ => entry.clone(),
            };
            tree.insert(entry.path.clone(), resolved);
        }
    }

    let expected = testimages::torture_expected();
    let expected_paths: Vec<&str> = expected.iter().map(|e| e.path.as_str()).collect();
    let replayed_paths: Vec<&str> = tree.keys().map(String::as_str).collect();
    assert_eq!(expected_paths, replayed_paths);
    for want in &expected {
        let got = &tree[&want.path];
        compare(want, got).with_context(|| format!("entry {}", want.path))?;
    }

    let absent = testimages::torture_absent();
    for path in [
        "doomed",
        "doomed/sub/deeper",
        "gone-file",
        "links/dangling",
        "opaque/old",
        "opaque/olddir/x",
        "dir-to-file/child",
    ] {
        assert!(
            absent.iter().any(|a| a == path),
            "{path} should be listed as absent: {absent:?}"
        );
        assert!(!tree.contains_key(path), "{path} survived the replay");
    }
    for path in &absent {
        assert!(
            hidden.contains(path),
            "{path} is listed as absent but no layer deletes it"
        );
    }
    let by_path: BTreeMap<&str, &ExpectedEntry> =
        expected.iter().map(|e| (e.path.as_str(), e)).collect();
    assert_eq!(
        by_path.get("replaced").map(|e| e.kind),
        Some(ExpectedKind::Dir)
    );
    assert_eq!(
        by_path.get("dir-to-file").map(|e| e.kind),
        Some(ExpectedKind::File)
    );
    assert_eq!(
        by_path.get("opaque").map(|e| (e.mode, e.uid)),
        Some((0o750, 1000))
    );
    assert_eq!(by_path.get("opaque/kept-name").map(|e| e.layer), Some(2));
    assert_eq!(
        by_path.get("owners/user1000").map(|e| (e.uid, e.layer)),
        Some((65534, 1))
    );
    Ok(())
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Whether `path` lies strictly below directory `dir` ("" is the root).
fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn compare(want: &ExpectedEntry, got: &TarEntry) -> anyhow::Result<()> {
    let kind = match got.kind {
        EntryType::Directory => ExpectedKind::Dir,
        EntryType::Symlink => ExpectedKind::Symlink,
        EntryType::Regular | EntryType::GNUSparse | EntryType::Link => ExpectedKind::File,
        other => bail!("unexpected tar entry type {other:?}"),
    };
    ensure!(want.kind == kind, "kind {:?} != {kind:?}", want.kind);
    ensure!(
        (u64::from(want.uid), u64::from(want.gid)) == (got.uid, got.gid),
        "owner"
    );
    ensure!(
        want.mode == got.mode,
        "mode {:o} != {:o}",
        want.mode,
        got.mode
    );
    ensure!(
        want.mtime == got.mtime,
        "mtime {} != {}",
        want.mtime,
        got.mtime
    );
    let xattrs: BTreeMap<String, Vec<u8>> = got
        .pax
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("SCHILY.xattr.")?.to_owned(), v.clone())))
        .collect();
    ensure!(
        want.xattrs == xattrs,
        "xattrs {:?} != {xattrs:?}",
        want.xattrs
    );
    match got.kind {
        EntryType::Symlink => ensure!(want.link_target == got.link, "symlink target"),
        EntryType::GNUSparse => {
            ensure!(Some(want.size) == got.real_size, "sparse size");
            let stored: usize = want.sparse_extents.iter().map(|(_, d)| d.len()).sum();
            ensure!(stored as u64 == got.stored_size, "sparse data size");
        }
        EntryType::Regular => {
            ensure!(want.size == got.stored_size, "size");
            ensure!(want.content_sha256 == got.sha256, "content");
        }
        _ => {}
    }
    if got.link.is_some() && got.kind != EntryType::Symlink {
        ensure!(want.hardlink_to == got.link, "hard link target");
    }
    Ok(())
}

/// One entry of a layer tar as the `tar` crate reads it.
#[derive(Clone, Debug)]
struct TarEntry {
    path: String,
    kind: EntryType,
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: u64,
    link: Option<String>,
    pax: BTreeMap<String, Vec<u8>>,
    stored_size: u64,
    real_size: Option<u64>,
    sha256: Option<String>,
    data: Vec<u8>,
    ustar_prefix: bool,
}

struct Layer {
    entries: Vec<TarEntry>,
}

impl Layer {
    fn get(&self, path: &str) -> Option<&TarEntry> {
        self.entries.iter().find(|e| e.path == path)
    }
}

fn read_layer(image: &TestImage, index: usize) -> anyhow::Result<Layer> {
    let blob = fs::read(image.blob_path(&image.layers[index].digest))?;
    let mut archive = tar::Archive::new(GzDecoder::new(blob.as_slice()));
    let mut entries = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let path = String::from_utf8(entry.path_bytes().into_owned())?;
        let path = path.trim_end_matches('/').to_owned();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let mut pax = BTreeMap::new();
        if let Some(extensions) = entry.pax_extensions()? {
            for extension in extensions {
                let extension = extension?;
                pax.insert(
                    extension.key()?.to_owned(),
                    extension.value_bytes().to_vec(),
                );
            }
        }
        let kind = header.entry_type();
        let (data, sha256) = if kind == EntryType::Regular {
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            let sha = sha256_digest(&data);
            (data, Some(sha))
        } else {
            (Vec::new(), None)
        };
        let real_size = match header.as_gnu() {
            Some(gnu) if kind == EntryType::GNUSparse => Some(gnu.real_size()?),
            _ => None,
        };
        entries.push(TarEntry {
            path,
            kind,
            uid: header.uid()?,
            gid: header.gid()?,
            mode: header.mode()? & 0o7777,
            mtime: header.mtime()?,
            link,
            pax,
            stored_size: header.entry_size()?,
            real_size,
            sha256,
            data,
            ustar_prefix: header.as_ustar().is_some_and(|u| u.prefix[0] != 0),
        });
    }
    Ok(Layer { entries })
}

fn read_json(image: &TestImage, digest: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_slice(&fs::read(image.blob_path(digest))?)?)
}

/// Checks the OCI layout: index → manifest → config and layers, every blob
/// named by the sha256 of its content, diff_ids matching the uncompressed
/// layers, and the `TestImage` digests matching the files.
fn verify_layout(image: &TestImage) -> anyhow::Result<()> {
    let layout: Value = serde_json::from_slice(&fs::read(image.oci_layout.join("oci-layout"))?)?;
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");

    for blob in fs::read_dir(image.oci_layout.join("blobs/sha256"))? {
        let blob = blob?;
        let name = blob
            .file_name()
            .into_string()
            .map_err(|n| anyhow::anyhow!("blob name {n:?}"))?;
        assert_eq!(
            sha256_digest(&fs::read(blob.path())?),
            format!("sha256:{name}"),
            "blob {name}"
        );
    }

    let index: Value = serde_json::from_slice(&fs::read(image.oci_layout.join("index.json"))?)?;
    let manifests = index["manifests"].as_array().context("index.manifests")?;
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], image.manifest_digest.as_str());
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        testimages::TAG
    );

    let manifest = read_json(image, &image.manifest_digest)?;
    assert_eq!(manifest["mediaType"], testimages::MEDIA_TYPE_MANIFEST);
    assert_eq!(manifest["config"]["digest"], image.config_digest.as_str());
    let layers = manifest["layers"].as_array().context("manifest.layers")?;
    assert_eq!(layers.len(), image.layers.len());

    let config = read_json(image, &image.config_digest)?;
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    let env = config["config"]["Env"].as_array().context("config.Env")?;
    assert!(
        env.iter()
            .any(|e| e.as_str().is_some_and(|e| e.starts_with("PATH=/"))),
        "{env:?}"
    );
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .context("rootfs.diff_ids")?;
    assert_eq!(diff_ids.len(), image.layers.len());

    for ((descriptor, info), diff_id) in layers.iter().zip(&image.layers).zip(diff_ids) {
        assert_eq!(descriptor["mediaType"], testimages::MEDIA_TYPE_LAYER_GZIP);
        assert_eq!(descriptor["digest"], info.digest.as_str());
        assert_eq!(descriptor["size"], info.size);
        let blob = fs::read(image.blob_path(&info.digest))?;
        assert_eq!(blob.len() as u64, info.size);
        // Reproducible gzip: the header's MTIME field (bytes 4..8) is zero.
        assert_eq!(&blob[..2], b"\x1f\x8b");
        assert_eq!(&blob[4..8], &[0, 0, 0, 0]);
        let mut tar = Vec::new();
        GzDecoder::new(blob.as_slice()).read_to_end(&mut tar)?;
        assert_eq!(sha256_digest(&tar), info.diff_id);
        assert_eq!(diff_id, info.diff_id.as_str());
    }
    Ok(())
}

/// skopeo reads the OCI layout (and returns our exact manifest bytes) and
/// the docker-archive (whose layers are the uncompressed diff_ids).
fn verify_skopeo_reads_both_formats(image: &TestImage) -> anyhow::Result<()> {
    let raw = skopeo(&["inspect", "--raw", &image.oci_ref()])?;
    assert_eq!(sha256_digest(&raw), image.manifest_digest);

    let archive = format!("docker-archive:{}", image.docker_archive.display());
    let inspect: Value = serde_json::from_slice(&skopeo(&["inspect", &archive])?)?;
    let diff_ids: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    assert_eq!(inspect["Layers"], serde_json::json!(diff_ids));
    let config: Value = serde_json::from_slice(&skopeo(&["inspect", "--config", &archive])?)?;
    assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    Ok(())
}

fn skopeo(args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .context("running skopeo")?;
    ensure!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output.stdout)
}
