//! Offline test images, built from local parts and cached between runs.
//!
//! * [`busybox`]: Debian's static busybox with applet symlinks, passwd and
//!   group files: the smallest image that runs a shell.
//! * [`torture`]: three data layers full of what unpackers get wrong; the
//!   tree they must produce is [`torture_expected`].
//!
//! Each image is available as an OCI image layout and as a docker-archive
//! tar. Layers are gzip-compressed deterministically, so digests are the
//! same on every machine with the same busybox.

mod archive;
mod busybox;
mod cache;
mod entry;
mod expected;
mod layout;
mod tarball;
mod torture;
mod volumes;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use cache::{cache_root, RECIPE_VERSION};
pub use expected::{ExpectedEntry, ExpectedKind};
pub use layout::{
    sha256_digest, MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_MANIFEST,
};
pub use torture::{capability_net_raw_ep, LONG_NAME_LEN, LONG_PATH_LEN, SPARSE_SIZE};

use layout::Recipe;

/// One layer of a test image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// `sha256:` digest of the gzip-compressed blob.
    pub digest: String,
    /// `sha256:` digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
}

/// A built test image. The files are world-readable, so a pod's root can
/// read them at the same paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestImage {
    /// Short name: `busybox` or `torture`.
    pub name: String,
    /// The name the docker-archive is tagged with, e.g. `hutch-test/busybox:latest`.
    pub reference: String,
    /// OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`);
    /// its manifest is tagged `latest` (`org.opencontainers.image.ref.name`).
    pub oci_layout: PathBuf,
    /// docker-archive tar, as `docker save` writes it.
    pub docker_archive: PathBuf,
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerInfo>,
}

impl TestImage {
    /// Path of a blob of the OCI layout by its `sha256:` digest.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.oci_layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// The skopeo / containers-image transport name of the OCI layout.
    pub fn oci_ref(&self) -> String {
        format!("oci:{}:{TAG}", self.oci_layout.display())
    }
}

/// The tag of every test image.
pub const TAG: &str = "latest";

/// The busybox image, built on first use and cached.
pub fn busybox() -> anyhow::Result<TestImage> {
    let busybox = busybox::find_busybox()?;
    let recipe = busybox::recipe(&busybox)?;
    cached("busybox", &recipe)
}

/// The busybox image with a second layer of content under a VOLUME
/// (`/data`, owned by 1000:1000) and symlinks that point mount targets out
/// of the rootfs; built on first use and cached.
pub fn volumes() -> anyhow::Result<TestImage> {
    let recipe = volumes::recipe(&busybox::find_busybox()?)?;
    cached("volumes", &recipe)
}

/// The torture image, built on first use and cached.
pub fn torture() -> anyhow::Result<TestImage> {
    cached("torture", &torture::recipe())
}

/// A multi-platform image (an OCI index) of a linux/amd64 and a linux/arm64
/// image: [`multi_platform`] (busybox and a files-only arm64 image) or
/// [`busybox_multi_arch`] (busybox for each).
#[derive(Clone, Debug)]
pub struct MultiPlatformImage {
    /// OCI layout whose `latest` is the index (`skopeo copy --all` pushes it).
    pub oci_layout: PathBuf,
    pub index_digest: String,
    pub amd64: LayerInfo,
    pub arm64: LayerInfo,
    pub amd64_config: String,
    pub arm64_config: String,
}

/// The content of `/platform.txt` in the arm64 image of [`multi_platform`].
pub const ARM64_MARKER: &str = "arm64 image\n";

/// The multi-platform test image, built on first use and cached.
pub fn multi_platform() -> anyhow::Result<MultiPlatformImage> {
    let bb = busybox::recipe(&busybox::find_busybox()?)?;
    let arm = Recipe {
        tag: TAG.to_owned(),
        layers: vec![layout::RecipeLayer {
            created_by: "files only".to_owned(),
            entries: vec![
                entry::LayerEntry::dir("etc", 0o755),
                entry::LayerEntry::file("platform.txt", 0o644, ARM64_MARKER),
                entry::LayerEntry::file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"),
            ],
        }],
        cmd: None,
        volumes: Vec::new(),
    };
    cached_amd64_arm64("multi-platform", &bb, &arm)
}

/// Busybox for linux/amd64 and for linux/arm64 (Debian's arm64
/// busybox-static, which runs here under QEMU), as one OCI index; built on
/// first use and cached.
pub fn busybox_multi_arch() -> anyhow::Result<MultiPlatformImage> {
    let host = busybox::find_busybox()?;
    let amd64 = busybox::recipe(&host)?;
    let arm64 = busybox::recipe_listed_by(&busybox::find_arm64_busybox()?, &host)?;
    cached_amd64_arm64("busybox-multi-arch", &amd64, &arm64)
}

fn cached_amd64_arm64(
    name: &str,
    amd64: &Recipe,
    arm64: &Recipe,
) -> anyhow::Result<MultiPlatformImage> {
    let (bb, arm) = (amd64, arm64);
    let mut key = Vec::new();
    for layer in bb.layers.iter().chain(&arm.layers) {
        key.push(tarball::write_tar(&layer.entries)?);
    }
    let key: Vec<&[u8]> = key.iter().map(Vec::as_slice).collect();
    let dir = cache::cached_build(name, &key, |dir| {
        let oci = dir.join(OCI_DIR);
        let (images, index) =
            layout::write_multi_platform_layout(&oci, TAG, &[(bb, "amd64"), (arm, "arm64")])?;
        let first = |d: &layout::LayoutDigests| d.layers.first().cloned();
        let stored = serde_json::json!({
            "index": index,
            "amd64": first(&images[0]),
            "arm64": first(&images[1]),
            "amd64_config": images[0].config_digest,
            "arm64_config": images[1].config_digest,
        });
        fs::write(dir.join(METADATA_FILE), serde_json::to_vec_pretty(&stored)?)?;
        Ok(())
    })?;
    let metadata = dir.join(METADATA_FILE);
    let v: serde_json::Value = serde_json::from_slice(
        &fs::read(&metadata).with_context(|| format!("reading {}", metadata.display()))?,
    )?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let layer = |k: &str| -> anyhow::Result<LayerInfo> {
        serde_json::from_value(v[k].clone())
            .with_context(|| format!("{} in {}", k, metadata.display()))
    };
    Ok(MultiPlatformImage {
        oci_layout: dir.join(OCI_DIR),
        index_digest: text("index"),
        amd64: layer("amd64")?,
        arm64: layer("arm64")?,
        amd64_config: text("amd64_config"),
        arm64_config: text("arm64_config"),
    })
}

/// Files in the [`incompressible`] image, and the size of each.
pub const INCOMPRESSIBLE_FILES: usize = 64;
pub const INCOMPRESSIBLE_FILE_SIZE: usize = 16 * 1024;

/// One layer of [`INCOMPRESSIBLE_FILES`] small files of pseudo-random bytes:
/// its gzip blob is larger than any file in it (1 MiB against 16 KiB), for
/// tests that must fail writing the blob, not a file; built and cached.
pub fn incompressible() -> anyhow::Result<TestImage> {
    cached("incompressible", &incompressible_recipe())
}

fn incompressible_recipe() -> Recipe {
    // xorshift64: deterministic, and gzip finds nothing to compress.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut entries = vec![entry::LayerEntry::dir("noise", 0o755)];
    for i in 0..INCOMPRESSIBLE_FILES {
        let mut data = Vec::with_capacity(INCOMPRESSIBLE_FILE_SIZE);
        while data.len() < INCOMPRESSIBLE_FILE_SIZE {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        entries.push(entry::LayerEntry::file(
            format!("noise/{i:02}"),
            0o644,
            data,
        ));
    }
    Recipe {
        tag: TAG.to_owned(),
        layers: vec![layout::RecipeLayer {
            created_by: "noise".to_owned(),
            entries,
        }],
        cmd: None,
        volumes: Vec::new(),
    }
}

/// The tree that unpacking all torture layers must produce, sorted by path.
pub fn torture_expected() -> Vec<ExpectedEntry> {
    match replay_torture() {
        Ok(replayed) => replayed.tree.into_values().collect(),
        // The recipe is fixed code; `torture_expected_is_consistent` keeps it replayable.
        Err(err) => panic!("the torture recipe does not replay: {err:#}"),
    }
}

/// Paths that lower torture layers create and upper ones delete (whiteout,
/// opaque marker, replacement): none of them may exist after unpacking.
pub fn torture_absent() -> Vec<String> {
    match replay_torture() {
        Ok(replayed) => replayed.absent.into_iter().collect(),
        Err(err) => panic!("the torture recipe does not replay: {err:#}"),
    }
}

/// Builds an image into `dir` without the cache (for determinism checks):
/// `name` is `busybox` or `torture`; no docker-archive is written.
pub fn build_layout_uncached(name: &str, dir: &Path) -> anyhow::Result<TestImage> {
    let recipe = recipe_named(name)?;
    let oci = dir.join("oci");
    let digests = layout::write_oci_layout(&oci, &recipe)?;
    Ok(TestImage {
        name: name.to_owned(),
        reference: reference(name),
        oci_layout: oci,
        docker_archive: dir.join("docker-archive.tar"),
        manifest_digest: digests.manifest_digest,
        config_digest: digests.config_digest,
        layers: digests.layers,
    })
}

fn recipe_named(name: &str) -> anyhow::Result<Recipe> {
    match name {
        "busybox" => busybox::recipe(&busybox::find_busybox()?),
        "torture" => Ok(torture::recipe()),
        "incompressible" => Ok(incompressible_recipe()),
        other => anyhow::bail!("no test image named {other}"),
    }
}

fn replay_torture() -> anyhow::Result<expected::Replayed> {
    let recipe = torture::recipe();
    let layers: Vec<&[entry::LayerEntry]> =
        recipe.layers.iter().map(|l| l.entries.as_slice()).collect();
    expected::replay(&layers)
}

fn reference(name: &str) -> String {
    format!("hutch-test/{name}:{TAG}")
}

/// What `image.json` in a cache entry records.
#[derive(Serialize, Deserialize)]
struct Stored {
    manifest_digest: String,
    config_digest: String,
    layers: Vec<LayerInfo>,
}

const OCI_DIR: &str = "oci";
const ARCHIVE_FILE: &str = "docker-archive.tar";
const METADATA_FILE: &str = "image.json";

fn cached(name: &str, recipe: &Recipe) -> anyhow::Result<TestImage> {
    // Key on the uncompressed layers themselves: they include the busybox
    // binary, and any recipe change shows up in them.
    let mut tars = Vec::new();
    for layer in &recipe.layers {
        tars.push(tarball::write_tar(&layer.entries)?);
    }
    let cmd = format!("{:?}", recipe.cmd);
    let mut key: Vec<&[u8]> = tars.iter().map(Vec::as_slice).collect();
    key.push(cmd.as_bytes());
    // Only images with volumes add them to the key (older keys stay valid).
    let volumes = format!("{:?}", recipe.volumes);
    if !recipe.volumes.is_empty() {
        key.push(volumes.as_bytes());
    }

    let reference = reference(name);
    let dir = cache::cached_build(name, &key, |dir| {
        let oci = dir.join(OCI_DIR);
        let digests = layout::write_oci_layout(&oci, recipe)?;
        archive::write_docker_archive(&oci, &recipe.tag, &dir.join(ARCHIVE_FILE), &reference)?;
        let stored = Stored {
            manifest_digest: digests.manifest_digest,
            config_digest: digests.config_digest,
            layers: digests.layers,
        };
        fs::write(dir.join(METADATA_FILE), serde_json::to_vec_pretty(&stored)?)?;
        Ok(())
    })?;

    let metadata = dir.join(METADATA_FILE);
    let stored: Stored = serde_json::from_slice(
        &fs::read(&metadata).with_context(|| format!("reading {}", metadata.display()))?,
    )
    .with_context(|| format!("parsing {}", metadata.display()))?;
    Ok(TestImage {
        name: name.to_owned(),
        reference,
        oci_layout: dir.join(OCI_DIR),
        docker_archive: dir.join(ARCHIVE_FILE),
        manifest_digest: stored.manifest_digest,
        config_digest: stored.config_digest,
        layers: stored.layers,
    })
}
