//! `hutch load` / `save` / `images` end to end, run as pod root inside the
//! pod simulator: the torture image unpacks to exactly the expected tree,
//! save → load keeps every digest, and malicious or broken archives end in
//! a clear error or a contained result with nothing outside the data root
//! changed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{ensure, Context};
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::testimages::{self, ExpectedKind};
use sha2::{Digest, Sha256};

fn hutch(pod: &Pod, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = pod.exec(hutch_bin());
    cmd.arg("--data-root").arg(pod.data_root()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().context("running hutch in the pod")
}

fn ok(out: &Output) -> anyhow::Result<String> {
    ensure!(
        out.status.success(),
        "hutch failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The layer dirs of the only image in the pod's store, bottom first, by
/// reading the store's records from the host.
fn layer_dirs(pod: &Pod) -> anyhow::Result<Vec<PathBuf>> {
    let images = pod.data_dir_host().join("images");
    let mut records = fs::read_dir(&images)?.collect::<Result<Vec<_>, _>>()?;
    ensure!(records.len() == 1, "expected one image record");
    let record: serde_json::Value = serde_json::from_slice(&fs::read(records.remove(0).path())?)?;
    let mut out = Vec::new();
    for layer in record["layers"].as_array().context("layers")? {
        let chain = layer["chain_id"].as_str().context("chain_id")?;
        out.push(
            pod.data_dir_host()
                .join("layers")
                .join(chain.trim_start_matches("sha256:"))
                .join("diff"),
        );
    }
    Ok(out)
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let path = entry.path();
        out.push((rel.clone(), path.clone()));
        if entry.file_type()?.is_dir() {
            walk(&path, &rel, out)?;
        }
    }
    Ok(())
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Merges the layer dirs as overlayfs would (whiteouts are 0:0 char
/// devices, opaque dirs carry user.overlay.opaque=y).
fn merge(layers: &[PathBuf]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut merged: BTreeMap<String, PathBuf> = BTreeMap::new();
    let drop_subtree = |merged: &mut BTreeMap<String, PathBuf>, path: &str| {
        let prefix = format!("{path}/");
        merged.retain(|k, _| k != path && !k.starts_with(&prefix));
    };
    for layer in layers {
        let mut entries = Vec::new();
        walk(layer, "", &mut entries)?;
        for (rel, path) in entries {
            let meta = fs::symlink_metadata(&path)?;
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                drop_subtree(&mut merged, &rel);
                continue;
            }
            if meta.is_dir() {
                if xattr(&path, "user.overlay.opaque").as_deref() == Some(b"y") {
                    let prefix = format!("{rel}/");
                    merged.retain(|k, _| !k.starts_with(&prefix));
                }
            } else {
                drop_subtree(&mut merged, &rel);
            }
            merged.insert(rel, path);
        }
    }
    Ok(merged)
}

#[test]
fn torture_image_unpacks_to_the_expected_tree() -> anyhow::Result<()> {
    let image = testimages::torture()?;
    let pod = Pod::start(&PodSpec::new())?;
    let archive = image.docker_archive.to_string_lossy().into_owned();
    let out = ok(&hutch(&pod, &["load", "-i", &archive], &[])?)?;
    ensure!(
        out.contains("Loaded image: hutch-test/torture:latest"),
        "load output: {out}"
    );
    let listed = ok(&hutch(&pod, &["images"], &[])?)?;
    ensure!(
        listed.contains("hutch-test/torture") && listed.contains(&image.config_digest[7..19]),
        "images output: {listed}"
    );

    let base = pod.base();
    let merged = merge(&layer_dirs(&pod)?)?;
    let expected = testimages::torture_expected();
    for want in &expected {
        let path = merged
            .get(&want.path)
            .with_context(|| format!("{} is missing", want.path))?;
        let meta = fs::symlink_metadata(path)?;
        let kind = if meta.is_dir() {
            ExpectedKind::Dir
        } else if meta.file_type().is_symlink() {
            ExpectedKind::Symlink
        } else {
            ExpectedKind::File
        };
        ensure!(kind == want.kind, "{}: kind {kind:?}", want.path);
        ensure!(
            (meta.uid() - base, meta.gid() - base) == (want.uid, want.gid),
            "{}: owner {}:{} (host), want {}:{} + {base}",
            want.path,
            meta.uid(),
            meta.gid(),
            want.uid,
            want.gid
        );
        if kind != ExpectedKind::Symlink {
            ensure!(
                meta.permissions().mode() & 0o7777 == want.mode,
                "{}: mode {:o}, want {:o}",
                want.path,
                meta.permissions().mode() & 0o7777,
                want.mode
            );
        }
        ensure!(
            meta.mtime() as u64 == want.mtime,
            "{}: mtime {}, want {}",
            want.path,
            meta.mtime(),
            want.mtime
        );
        if let Some(target) = &want.link_target {
            ensure!(
                fs::read_link(path)?.to_string_lossy() == *target,
                "{}: link target",
                want.path
            );
        }
        if kind == ExpectedKind::File {
            ensure!(meta.size() == want.size, "{}: size", want.path);
            if let Some(sum) = &want.content_sha256 {
                ensure!(sha256(&fs::read(path)?) == *sum, "{}: content", want.path);
            }
            if !want.sparse_extents.is_empty() {
                ensure!(
                    meta.blocks() * 512 < meta.size() / 2,
                    "{}: not sparse ({} blocks)",
                    want.path,
                    meta.blocks()
                );
                let data = fs::read(path)?;
                for (offset, bytes) in &want.sparse_extents {
                    let at = *offset as usize;
                    ensure!(
                        data[at..at + bytes.len()] == bytes[..],
                        "{}: extent at {offset}",
                        want.path
                    );
                }
            }
        }
        if let Some(other) = &want.hardlink_to {
            let other_meta = fs::symlink_metadata(&merged[other])?;
            ensure!(
                other_meta.ino() == meta.ino(),
                "{}: not a hard link of {other}",
                want.path
            );
        }
        for (name, value) in &want.xattrs {
            let got = xattr(path, name).with_context(|| format!("{}: xattr {name}", want.path))?;
            if name == "security.capability" {
                // Written in the pod's user namespace, the kernel stores a
                // v3 capability whose root ID is the pod's BASE.
                ensure!(got[4..12] == value[4..12], "{}: capability sets", want.path);
                ensure!(
                    got.len() == 24 && u32::from_le_bytes(got[20..24].try_into()?) == base,
                    "{}: capability root id",
                    want.path
                );
            } else {
                ensure!(got == *value, "{}: xattr {name}", want.path);
            }
        }
    }
    for absent in testimages::torture_absent() {
        ensure!(
            !merged.contains_key(&absent),
            "{absent} should have been removed by an upper layer"
        );
    }
    ensure!(
        merged.len() == expected.len(),
        "unexpected extra entries: {:?}",
        merged
            .keys()
            .filter(|k| !expected.iter().any(|e| e.path == **k))
            .collect::<Vec<_>>()
    );
    pod.stop()
}

#[test]
fn save_then_load_keeps_every_digest() -> anyhow::Result<()> {
    let image = testimages::torture()?;
    let pod = Pod::start(&PodSpec::new())?;
    let layout = image.oci_layout.to_string_lossy().into_owned();
    let out = ok(&hutch(&pod, &["load", "-i", &layout], &[])?)?;
    ensure!(out.contains(&image.config_digest), "load output: {out}");
    ok(&hutch(
        &pod,
        &["tag", &image.config_digest[7..19], "saved/torture:v1"],
        &[],
    )?)?;
    let saved = pod.data_root().join("saved.tar");
    let saved_str = saved.to_string_lossy().into_owned();
    ok(&hutch(
        &pod,
        &["save", "-o", &saved_str, "saved/torture:v1"],
        &[],
    )?)?;

    // The saved archive carries the original manifest, config and layers.
    let host_tar = pod.data_dir_host().join("saved.tar");
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(&host_tar)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data)?;
        files.insert(path, data);
    }
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"])?;
    ensure!(index["manifests"][0]["digest"] == image.manifest_digest.as_str());
    ensure!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"]
            == "docker.io/saved/torture:v1"
    );
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"])?;
    ensure!(manifest[0]["RepoTags"][0] == "saved/torture:v1");
    for digest in std::iter::once(&image.manifest_digest)
        .chain(std::iter::once(&image.config_digest))
        .chain(image.layers.iter().map(|l| &l.digest))
    {
        let path = format!("blobs/sha256/{}", &digest[7..]);
        ensure!(sha256(&files[&path]) == *digest, "{path} content");
    }

    // Loading it into a fresh store gives the same image ID.
    let second = pod.data_root().join("second");
    let second_str = second.to_string_lossy().into_owned();
    let out = pod
        .exec(hutch_bin())
        .args(["--data-root", &second_str, "load", "-i", &saved_str])
        .output()?;
    ensure!(ok(&out)?.contains("Loaded image: saved/torture:v1"));
    let out = pod
        .exec(hutch_bin())
        .args(["--data-root", &second_str, "images", "-q", "--no-trunc"])
        .output()?;
    ensure!(
        ok(&out)?.trim() == image.config_digest,
        "round-trip image ID"
    );

    // rmi by name untags and deletes; gc leaves no layers or blobs behind.
    let out = ok(&hutch(&pod, &["rmi", "saved/torture:v1"], &[])?)?;
    ensure!(out.contains("Untagged: saved/torture:v1") && out.contains("Deleted: sha256:"));
    ensure!(ok(&hutch(&pod, &["images", "-q"], &[])?)?.trim().is_empty());
    ensure!(fs::read_dir(pod.data_dir_host().join("layers"))?.count() == 0);
    ensure!(fs::read_dir(pod.data_dir_host().join("blobs/sha256"))?.count() == 0);
    pod.stop()
}

// ---- malicious and broken archives ----

/// A tar entry with raw header fields, bypassing the tar crate's checks.
struct RawEntry<'a> {
    path: &'a [u8],
    kind: tar::EntryType,
    link: &'a [u8],
    data: &'a [u8],
    dev: Option<(u32, u32)>,
}

fn entry<'a>(path: &'a str, kind: tar::EntryType, link: &'a str, data: &'a [u8]) -> RawEntry<'a> {
    RawEntry {
        path: path.as_bytes(),
        kind,
        link: link.as_bytes(),
        data,
        dev: None,
    }
}

fn layer_tar(entries: &[RawEntry<'_>]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let name = &mut h.as_old_mut().name;
        ensure!(e.path.len() < name.len(), "test path too long");
        name[..e.path.len()].copy_from_slice(e.path);
        let link = &mut h.as_old_mut().linkname;
        link[..e.link.len()].copy_from_slice(e.link);
        h.set_entry_type(e.kind);
        h.set_mode(if e.kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(e.data.len() as u64);
        if let Some((major, minor)) = e.dev {
            h.set_device_major(major)?;
            h.set_device_minor(minor)?;
        }
        h.set_cksum();
        builder.append(&h, e.data)?;
    }
    Ok(builder.into_inner()?)
}

fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data)?;
    Ok(enc.finish()?)
}

/// A legacy docker-archive of one image: `layers` are (blob, uncompressed
/// tar) pairs; the config's diff IDs come from the uncompressed tars.
fn docker_archive(layers: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let diff_ids: Vec<String> = layers.iter().map(|(_, tar)| sha256(tar)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let mut paths = Vec::new();
    let mut builder = tar::Builder::new(Vec::new());
    let add = |builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, path, data)
    };
    for (i, (blob, _)) in layers.iter().enumerate() {
        let path = format!("layer{i}/layer.tar");
        add(&mut builder, &path, blob)?;
        paths.push(path);
    }
    add(&mut builder, "config.json", &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": "config.json", "RepoTags": ["evil:latest"], "Layers": paths}
    ]))?;
    add(&mut builder, "manifest.json", &manifest)?;
    Ok(builder.into_inner()?)
}

/// A directory outside the data root that the pod can write to, so a
/// breakout would be visible; checked unchanged after every case.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> anyhow::Result<Canary> {
        let dir = tempfile::Builder::new()
            .prefix("hutch-canary-")
            .tempdir_in(hutch_tests::workspace::target_dir())?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777))?;
        fs::write(dir.path().join("canary"), b"untouched")?;
        fs::set_permissions(dir.path().join("canary"), fs::Permissions::from_mode(0o666))?;
        Ok(Canary { dir })
    }

    fn path(&self) -> String {
        self.dir.path().to_string_lossy().into_owned()
    }

    fn check(&self) -> anyhow::Result<()> {
        let names: Vec<String> = fs::read_dir(self.dir.path())?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        ensure!(names == ["canary"], "canary dir changed: {names:?}");
        ensure!(fs::read(self.dir.path().join("canary"))? == b"untouched");
        Ok(())
    }
}

/// Loads `archive` in the pod; returns (success, stderr).
fn load_bytes(pod: &Pod, archive: &[u8], env: &[(&str, &str)]) -> anyhow::Result<(bool, String)> {
    let host = pod.data_dir_host().join("input.tar");
    fs::write(&host, archive)?;
    fs::set_permissions(&host, fs::Permissions::from_mode(0o644))?;
    let input = pod.data_root().join("input.tar");
    let out = hutch(pod, &["load", "-i", &input.to_string_lossy()], env)?;
    fs::remove_file(&host)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// After a rejected load, the store holds nothing from it.
fn store_is_empty(pod: &Pod) -> anyhow::Result<()> {
    for dir in ["images", "layers", "blobs/sha256", "ingest"] {
        let path = pod.data_dir_host().join(dir);
        let count = fs::read_dir(&path).map(|d| d.count()).unwrap_or(0);
        ensure!(count == 0, "{dir} is not empty after a rejected load");
    }
    Ok(())
}

fn only_layer(pod: &Pod) -> anyhow::Result<PathBuf> {
    let dirs = layer_dirs(pod)?;
    dirs.last().cloned().context("no layer")
}

#[test]
fn malicious_layers_are_rejected_or_contained() -> anyhow::Result<()> {
    use tar::EntryType::{Char, Directory, Link, Regular, Symlink};
    let canary = Canary::new()?;
    let pod = Pod::start(&PodSpec::new())?;
    let plain = |entries: &[RawEntry<'_>]| -> anyhow::Result<Vec<u8>> {
        let tar = layer_tar(entries)?;
        docker_archive(&[(tar.clone(), tar)])
    };
    let reset = |pod: &Pod| -> anyhow::Result<()> {
        let _ = hutch(pod, &["rmi", "-f", "evil:latest"], &[])?;
        store_is_empty(pod)
    };

    // `..` above the root: rejected, nothing stored.
    let escape = format!("../../../../../../..{}/canary", canary.path());
    let (ok_, err) = load_bytes(&pod, &plain(&[entry(&escape, Regular, "", b"pwned")])?, &[])?;
    ensure!(!ok_ && err.contains("outside the layer"), "dotdot: {err}");
    store_is_empty(&pod)?;
    canary.check()?;

    // Absolute path: lands inside the layer.
    let abs = format!("{}/canary", canary.path());
    let (ok_, err) = load_bytes(&pod, &plain(&[entry(&abs, Regular, "", b"pwned")])?, &[])?;
    ensure!(ok_, "absolute path: {err}");
    ensure!(fs::read(only_layer(&pod)?.join(abs.trim_start_matches('/')))? == b"pwned");
    canary.check()?;
    reset(&pod)?;

    // An absolute symlink to a host dir, then a write through it: resolved
    // inside the layer, where that dir does not exist, so a clear error.
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[
            entry("evil", Symlink, &canary.path(), b""),
            entry("evil/pwned", Regular, "", b"pwned"),
        ])?,
        &[],
    )?;
    ensure!(
        !ok_ && err.contains("evil/pwned"),
        "absolute symlink: {err}"
    );
    store_is_empty(&pod)?;
    canary.check()?;

    // An absolute symlink to a dir the layer has: the write lands in the
    // layer's copy, never in the host's /etc.
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[
            entry("etc", Directory, "", b""),
            entry("evil", Symlink, "/etc", b""),
            entry("evil/hutch-pwned", Regular, "", b"pwned"),
        ])?,
        &[],
    )?;
    ensure!(ok_, "absolute symlink into the layer: {err}");
    ensure!(fs::read(only_layer(&pod)?.join("etc/hutch-pwned"))? == b"pwned");
    ensure!(
        !Path::new("/etc/hutch-pwned").exists(),
        "wrote to the host's /etc"
    );
    reset(&pod)?;

    // A relative symlinked parent climbing out: `..` stops at the layer root.
    let up = format!("../../../../../../../..{}", canary.path());
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[
            entry("sub", Symlink, &up, b""),
            entry("sub/pwned", Regular, "", b"pwned"),
        ])?,
        &[],
    )?;
    ensure!(!ok_ && err.contains("sub/pwned"), "symlinked parent: {err}");
    store_is_empty(&pod)?;
    canary.check()?;
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[
            entry("inner", Directory, "", b""),
            entry("sub", Symlink, "../../../inner", b""),
            entry("sub/pwned", Regular, "", b"pwned"),
        ])?,
        &[],
    )?;
    ensure!(ok_, "symlinked parent into the layer: {err}");
    ensure!(fs::read(only_layer(&pod)?.join("inner/pwned"))? == b"pwned");
    reset(&pod)?;

    // Hardlink to the host's /etc/shadow: there is no such file in the layer.
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[entry("shadow", Link, "/etc/shadow", b"")])?,
        &[],
    )?;
    ensure!(!ok_ && err.contains("hardlink"), "hardlink: {err}");
    store_is_empty(&pod)?;

    // Symlink loop: a clear error.
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[
            entry("a", Symlink, "b", b""),
            entry("b", Symlink, "a", b""),
            entry("a/x", Regular, "", b"x"),
        ])?,
        &[],
    )?;
    ensure!(!ok_ && err.contains("a/x"), "symlink loop: {err}");
    store_is_empty(&pod)?;

    // A file replaced by a directory in the next layer.
    let lower = layer_tar(&[entry("x", Regular, "", b"file")])?;
    let upper = layer_tar(&[
        entry("x", Directory, "", b""),
        entry("x/y", Regular, "", b"y"),
    ])?;
    let (ok_, err) = load_bytes(
        &pod,
        &docker_archive(&[(lower.clone(), lower), (upper.clone(), upper)])?,
        &[],
    )?;
    ensure!(ok_, "file to dir: {err}");
    let dirs = layer_dirs(&pod)?;
    ensure!(dirs[0].join("x").is_file() && dirs[1].join("x/y").is_file());
    reset(&pod)?;

    // A device node: skipped, the rest unpacked.
    let mut null = entry("dev-null", Char, "", b"");
    null.dev = Some((1, 3));
    let (ok_, err) = load_bytes(
        &pod,
        &plain(&[null, entry("kept", Regular, "", b"k")])?,
        &[],
    )?;
    ensure!(ok_, "device node: {err}");
    let layer = only_layer(&pod)?;
    ensure!(!layer.join("dev-null").exists() && layer.join("kept").is_file());
    reset(&pod)?;

    // A decompression bomb: stopped at the configured size.
    let zeros = vec![0u8; 96 << 20];
    let bomb_tar = layer_tar(&[entry("zeros", Regular, "", &zeros)])?;
    let (ok_, err) = load_bytes(
        &pod,
        &docker_archive(&[(gzip(&bomb_tar)?, bomb_tar)])?,
        &[("HUTCH_LAYER_MAX_SIZE", &(32u64 << 20).to_string())],
    )?;
    ensure!(!ok_ && err.contains("decompression bomb"), "bomb: {err}");
    store_is_empty(&pod)?;

    // A truncated gzip stream.
    let data: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let tar = layer_tar(&[entry("data", Regular, "", &data)])?;
    let gz = gzip(&tar)?;
    let (ok_, err) = load_bytes(
        &pod,
        &docker_archive(&[(gz[..gz.len() / 2].to_vec(), tar)])?,
        &[],
    )?;
    ensure!(
        !ok_ && err.contains("corrupt or truncated"),
        "truncated: {err}"
    );
    store_is_empty(&pod)?;

    // A blob whose content does not match its digest name.
    let tar = layer_tar(&[entry("f", Regular, "", b"f")])?;
    let wrong = format!("blobs/sha256/{}", &sha256(b"something else")[7..]);
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(tar.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append_data(&mut h, &wrong, &tar[..])?;
    let (ok_, err) = load_bytes(&pod, &builder.into_inner()?, &[])?;
    ensure!(
        !ok_ && err.contains("does not match"),
        "digest mismatch: {err}"
    );
    store_is_empty(&pod)?;

    canary.check()?;
    pod.stop()
}
