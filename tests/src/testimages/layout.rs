//! Writes an image recipe as an OCI image layout: gzip-compressed layers,
//! the image config, the manifest and `index.json`, every blob stored under
//! `blobs/sha256/<hex>`.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::entry::LayerEntry;
use super::tarball::write_tar;
use super::LayerInfo;

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The `created` time of the config and every history entry; fixed so the
/// config digest is stable.
const CREATED: &str = "2023-11-14T22:13:20Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an image is made of.
pub struct Recipe {
    /// The tag recorded in `index.json` as `org.opencontainers.image.ref.name`.
    pub tag: String,
    pub layers: Vec<RecipeLayer>,
    pub cmd: Option<Vec<String>>,
    /// VOLUME destinations (the config's `Volumes`).
    pub volumes: Vec<String>,
}

pub struct RecipeLayer {
    /// The history entry's `created_by`.
    pub created_by: String,
    pub entries: Vec<LayerEntry>,
}

/// The digests of a written layout.
pub struct LayoutDigests {
    pub manifest_digest: String,
    pub config_digest: String,
    pub layers: Vec<LayerInfo>,
}

/// Writes `recipe` as an OCI image layout into the existing directory `dir`.
pub fn write_oci_layout(dir: &Path, recipe: &Recipe) -> anyhow::Result<LayoutDigests> {
    let (digests, manifest_size) = write_image(dir, recipe, "amd64")?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [{
            "mediaType": MEDIA_TYPE_MANIFEST,
            "digest": digests.manifest_digest,
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": recipe.tag },
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(digests)
}

/// Writes a multi-platform image as an OCI layout: each recipe as a
/// `linux/<arch>` image, an image index listing them with their platforms,
/// and `index.json` naming that index `tag`. Returns each image's digests
/// (in order) and the index's digest.
pub fn write_multi_platform_layout(
    dir: &Path,
    tag: &str,
    images: &[(&Recipe, &str)],
) -> anyhow::Result<(Vec<LayoutDigests>, String)> {
    let mut entries = Vec::new();
    let mut all = Vec::new();
    for (recipe, arch) in images {
        let (digests, size) = write_image(dir, recipe, arch)?;
        entries.push(json!({
            "mediaType": MEDIA_TYPE_MANIFEST,
            "digest": digests.manifest_digest,
            "size": size,
            "platform": { "os": "linux", "architecture": arch },
        }));
        all.push(digests);
    }
    let inner = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": entries,
    }))?;
    let index_digest = write_blob(&dir.join("blobs/sha256"), &inner)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_INDEX,
        "manifests": [{
            "mediaType": MEDIA_TYPE_INDEX,
            "digest": index_digest,
            "size": inner.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok((all, index_digest))
}

/// Writes the blobs of one image for `linux/<arch>`; returns its digests and
/// the manifest's size.
fn write_image(dir: &Path, recipe: &Recipe, arch: &str) -> anyhow::Result<(LayoutDigests, usize)> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;

    let mut layers = Vec::new();
    for layer in &recipe.layers {
        let tar =
            write_tar(&layer.entries).with_context(|| format!("layer {:?}", layer.created_by))?;
        let gz = gzip(&tar)?;
        let digest = write_blob(&blobs, &gz)?;
        layers.push(LayerInfo {
            digest,
            diff_id: sha256_digest(&tar),
            size: gz.len() as u64,
        });
    }

    let history: Vec<_> = recipe
        .layers
        .iter()
        .map(|layer| json!({ "created": CREATED, "created_by": layer.created_by }))
        .collect();
    let mut container_config = json!({ "Env": [PATH_ENV] });
    if let Some(cmd) = &recipe.cmd {
        container_config["Cmd"] = json!(cmd);
    }
    if !recipe.volumes.is_empty() {
        let volumes: serde_json::Map<String, serde_json::Value> = recipe
            .volumes
            .iter()
            .map(|v| (v.clone(), json!({})))
            .collect();
        container_config["Volumes"] = serde_json::Value::Object(volumes);
    }
    let config = json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": container_config,
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
        "history": history,
    });
    let config_bytes = serde_json::to_vec(&config)?;
    let config_digest = write_blob(&blobs, &config_bytes)?;

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_CONFIG,
            "digest": config_digest,
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": MEDIA_TYPE_LAYER_GZIP,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let manifest_digest = write_blob(&blobs, &manifest_bytes)?;
    Ok((
        LayoutDigests {
            manifest_digest,
            config_digest,
            layers,
        },
        manifest_bytes.len(),
    ))
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Gzip with a zero mtime and no file name, so equal input gives equal output.
fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    encoder.write_all(data)?;
    Ok(encoder.finish()?)
}

fn write_blob(blobs: &Path, data: &[u8]) -> anyhow::Result<String> {
    let digest = sha256_digest(data);
    let hex = digest.trim_start_matches("sha256:");
    fs::write(blobs.join(hex), data).with_context(|| format!("writing blob {digest}"))?;
    Ok(digest)
}
