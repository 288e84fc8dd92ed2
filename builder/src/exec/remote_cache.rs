//! The build cache in a registry (`--cache-to` / `--cache-from
//! type=registry,ref=...`), so builds on other machines share it.
//!
//! What is exported is one OCI manifest at the ref: its layers are the
//! steps' layer blobs (gzipped), its config a document of our own media
//! type mapping each step's cache key (the same key the local cache uses)
//! to what the step made: the image config of its result (kept as the exact
//! bytes, so a replay stores the very same image ID) and its layer, if any.
//! A hit replays the step: the layer blob is pulled (verified by digest and
//! diff ID like any pull) and the result image is stored from the parent's
//! layers, the layer and the recorded config, without running anything.
//! The format is hutch's own, not BuildKit's.

use std::collections::BTreeMap;

use hutch_images::Digest;
use serde::{Deserialize, Serialize};

/// The media type of the cache manifest's config document.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.hutch.buildcache.config.v1+json";
/// Largest cache document accepted from a registry.
pub const MAX_DOCUMENT_SIZE: u64 = 64 << 20;
const VERSION: u32 = 1;

/// One `--cache-from` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheImport {
    pub reference: String,
}

/// `mode=` of `--cache-to`: `min` exports the steps of the final image
/// (its stage and the stages it is built FROM), `max` every step built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    #[default]
    Min,
    Max,
}

/// One `--cache-to` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub reference: String,
    pub mode: CacheMode,
    /// `ignore-error=true`: a failed export is a warning.
    pub ignore_error: bool,
}

/// `key=value,...` of buildx's cache options; a bare word is `ref=`.
fn attributes(spec: &str) -> Result<BTreeMap<String, String>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty cache option".into());
    }
    let mut out = BTreeMap::new();
    if !spec.contains('=') {
        out.insert("type".into(), "registry".into());
        out.insert("ref".into(), spec.into());
        return Ok(out);
    }
    for part in spec.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("invalid cache option {part:?} (expected key=value)"))?;
        out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    out.entry("type".into())
        .or_insert_with(|| "registry".into());
    Ok(out)
}

fn registry_ref(attrs: &BTreeMap<String, String>, flag: &str) -> Result<String, String> {
    match attrs.get("type").map(String::as_str) {
        Some("registry") => {}
        Some("inline") => {
            return Err(format!(
                "{flag} type=inline is not supported by hutch: use \
                 type=registry,ref=REGISTRY/REPO:TAG (a separate cache manifest)"
            ))
        }
        Some(other) => {
            return Err(format!(
                "{flag} type={other} is not supported by hutch (only type=registry)"
            ))
        }
        None => {}
    }
    let r = attrs
        .get("ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("{flag} type=registry needs ref=REGISTRY/REPO:TAG"))?;
    hutch_images::Reference::parse(r).map_err(|e| format!("{flag} ref={r}: {e}"))?;
    Ok(r.clone())
}

/// Options buildx accepts that change nothing here.
const IGNORED: &[&str] = &[
    "type",
    "ref",
    "oci-mediatypes",
    "image-manifest",
    "compression",
    "compression-level",
    "force-compression",
];

/// `--cache-from REF` or `--cache-from type=registry,ref=REF`.
pub fn parse_cache_from(spec: &str) -> Result<CacheImport, String> {
    let attrs = attributes(spec)?;
    let reference = registry_ref(&attrs, "--cache-from")?;
    if let Some(k) = attrs.keys().find(|k| !IGNORED.contains(&k.as_str())) {
        return Err(format!("--cache-from: unknown option {k:?}"));
    }
    Ok(CacheImport { reference })
}

/// `--cache-to type=registry,ref=REF[,mode=min|max][,ignore-error=true]`.
pub fn parse_cache_to(spec: &str) -> Result<CacheExport, String> {
    let attrs = attributes(spec)?;
    let reference = registry_ref(&attrs, "--cache-to")?;
    let mode = match attrs.get("mode").map(String::as_str) {
        None | Some("min") => CacheMode::Min,
        Some("max") => CacheMode::Max,
        Some(other) => return Err(format!("--cache-to: invalid mode {other:?} (min or max)")),
    };
    let ignore_error = match attrs.get("ignore-error").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "--cache-to: invalid ignore-error {other:?} (true or false)"
            ))
        }
    };
    if let Some(k) = attrs
        .keys()
        .find(|k| !IGNORED.contains(&k.as_str()) && !matches!(k.as_str(), "mode" | "ignore-error"))
    {
        return Err(format!("--cache-to: unknown option {k:?}"));
    }
    Ok(CacheExport {
        reference,
        mode,
        ignore_error,
    })
}

/// The config document of a cache manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Document {
    pub version: u32,
    /// Cache key → what the step made.
    pub records: BTreeMap<String, Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The step's result image ID: the digest of `config`.
    pub image: Digest,
    /// The parent image's ID (absent: `FROM scratch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// The result's image config, byte for byte (the step's config and
    /// history change is the difference from the parent's).
    pub config: String,
    /// The layer the step added (none for config-only steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<LayerRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    /// The blob in the manifest's layers (gzipped tar).
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    #[serde(rename = "diffID")]
    pub diff_id: Digest,
}

impl Document {
    pub fn new() -> Document {
        Document {
            version: VERSION,
            records: BTreeMap::new(),
        }
    }

    /// Reads a fetched document; records whose config does not have the
    /// recorded digest are dropped (they could never give the right image).
    pub fn parse(bytes: &[u8]) -> Result<Document, String> {
        let mut doc: Document =
            serde_json::from_slice(bytes).map_err(|e| format!("invalid cache document: {e}"))?;
        if doc.version != VERSION {
            return Err(format!(
                "cache document version {} is not supported (hutch reads {VERSION})",
                doc.version
            ));
        }
        doc.records
            .retain(|_, r| Digest::of(r.config.as_bytes()) == r.image);
        Ok(doc)
    }
}

/// A cache fetched from a registry at the start of a build.
#[derive(Debug, Clone)]
pub struct Imported {
    pub reference: String,
    pub records: BTreeMap<String, Record>,
    /// Where its layers are fetched from (the session it was fetched on).
    pub source: std::sync::Arc<hutch_images::registry::build_cache::CacheSource>,
}

/// A step this build made or found in a cache: what an export writes.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub key: String,
    pub parent: Option<Digest>,
    pub image: Digest,
}

/// The steps to export: all of them (`max`), or those the final image
/// descends from (`min`), found by walking parents back from it.
pub fn select(steps: &[StepResult], final_image: &Digest, mode: CacheMode) -> Vec<StepResult> {
    if mode == CacheMode::Max {
        return steps.to_vec();
    }
    let mut out = Vec::new();
    let mut current = Some(final_image.clone());
    while let Some(id) = current.take() {
        let made: Vec<&StepResult> = steps.iter().filter(|s| s.image == id).collect();
        for s in &made {
            out.push((*s).clone());
        }
        // Every step that made this image has the same parent (the key
        // binds the parent), so any one leads on.
        current = made.first().and_then(|s| s.parent.clone());
        if out.len() > steps.len() {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_options_parse_as_buildx_spells_them() {
        assert_eq!(
            parse_cache_from("reg:5000/app:cache").map(|c| c.reference),
            Ok("reg:5000/app:cache".to_string())
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=reg:5000/app:cache").map(|c| c.reference),
            Ok("reg:5000/app:cache".to_string())
        );
        let to = parse_cache_to("type=registry,ref=reg:5000/app:c,mode=max").expect("parses");
        assert_eq!(to.mode, CacheMode::Max);
        assert!(!to.ignore_error);
        let to = parse_cache_to("type=registry,ref=reg:5000/app:c").expect("parses");
        assert_eq!(to.mode, CacheMode::Min);
        assert!(parse_cache_to("type=inline")
            .expect_err("refused")
            .contains("not supported"));
        assert!(parse_cache_to("type=local,dest=/x")
            .expect_err("refused")
            .contains("type=local"));
        assert!(parse_cache_to("type=registry")
            .expect_err("refused")
            .contains("ref="));
        assert!(parse_cache_to("type=registry,ref=r/a:c,mode=all")
            .expect_err("refused")
            .contains("mode"));
        assert!(parse_cache_from("type=registry,ref=r/a:c,bogus=1")
            .expect_err("refused")
            .contains("bogus"));
        assert!(parse_cache_from("type=registry,ref=UPPER/Case").is_err());
    }

    #[test]
    fn min_follows_the_final_image_back() {
        let d = |n: u8| Digest::of(&[n]);
        let step = |k: &str, p: Option<u8>, i: u8| StepResult {
            key: k.into(),
            parent: p.map(d),
            image: d(i),
        };
        // Stage A: base(1) → 2 → 3; stage B: base(1) → 4 → 5 (final).
        let steps = vec![
            step("a1", Some(1), 2),
            step("a2", Some(2), 3),
            step("b1", Some(1), 4),
            step("b2", Some(4), 5),
        ];
        let keys = |v: Vec<StepResult>| v.into_iter().map(|s| s.key).collect::<Vec<_>>();
        assert_eq!(keys(select(&steps, &d(5), CacheMode::Min)), ["b2", "b1"]);
        assert_eq!(keys(select(&steps, &d(5), CacheMode::Max)).len(), 4);
    }

    #[test]
    fn records_with_a_config_of_another_digest_are_dropped() {
        let good = Record {
            image: Digest::of(b"{}"),
            parent: None,
            config: "{}".into(),
            layer: None,
        };
        let bad = Record {
            config: "{\"x\":1}".into(),
            ..good.clone()
        };
        let mut doc = Document::new();
        doc.records.insert("good".into(), good);
        doc.records.insert("bad".into(), bad);
        let bytes = serde_json::to_vec(&doc).expect("encodes");
        let back = Document::parse(&bytes).expect("parses");
        assert_eq!(back.records.keys().collect::<Vec<_>>(), ["good"]);
        assert!(Document::parse(b"{\"version\":9,\"records\":{}}").is_err());
    }
}
