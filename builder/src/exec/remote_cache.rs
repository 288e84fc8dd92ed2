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
//!
//! `--cache-to type=inline` (or the build arg `BUILDKIT_INLINE_CACHE=1`)
//! puts the same records in the built image's own config instead, under
//! [`INLINE_KEY`], with each layer named by its index among the image's
//! layers: the image is its own cache, and `--cache-from IMAGE` reads it
//! from the registry or from the local store. Only the final image's own
//! steps can be described so (BuildKit's inline cache is `mode=min` too).

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
pub enum CacheImport {
    /// A cache manifest, or an image with an inline cache, in the local
    /// store or a registry.
    Registry(String),
    /// A local cache (`type=local`): its directory, the tag `index.json`
    /// names it by, and its manifest when the client looked the tag up
    /// itself (buildx does, and sends `digest=`).
    Local {
        src: String,
        tag: String,
        digest: Option<Digest>,
    },
}

impl std::fmt::Display for CacheImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheImport::Registry(r) => f.write_str(r),
            CacheImport::Local { src, .. } => write!(f, "local:{src}"),
        }
    }
}

/// `mode=` of `--cache-to`: `min` exports the steps of the final image
/// (its stage and the stages it is built FROM), `max` every step built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    #[default]
    Min,
    Max,
}

/// Where `--cache-to` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheDest {
    /// A cache manifest of its own at this reference.
    Registry(String),
    /// The built image's config.
    Inline,
    /// A cache manifest in the OCI layout at `dest`, named `tag` in its
    /// `index.json`.
    Local { dest: String, tag: String },
}

impl std::fmt::Display for CacheDest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheDest::Registry(r) => f.write_str(r),
            CacheDest::Inline => f.write_str("the image (inline)"),
            CacheDest::Local { dest, .. } => write!(f, "local:{dest}"),
        }
    }
}

/// One `--cache-to` destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub dest: CacheDest,
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
    let r = attrs
        .get("ref")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("{flag} type=registry needs ref=REGISTRY/REPO:TAG"))?;
    hutch_images::Reference::parse(r).map_err(|e| format!("{flag} ref={r}: {e}"))?;
    Ok(r.clone())
}

/// `dest=`/`src=` of a local cache, and its `tag=` (`latest`).
fn local_dir(
    attrs: &BTreeMap<String, String>,
    flag: &str,
    key: &str,
) -> Result<(String, String), String> {
    let dir = attrs
        .get(key)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| format!("{flag} type=local needs {key}=DIR"))?;
    let tag = attrs
        .get("tag")
        .filter(|t| !t.is_empty())
        .cloned()
        .unwrap_or_else(|| "latest".to_owned());
    Ok((dir.clone(), tag))
}

fn unsupported_type(flag: &str, kind: &str) -> String {
    format!(
        "{flag} type={kind} is not supported by hutch ({})",
        if flag == "--cache-to" {
            "type=registry, type=local or type=inline"
        } else {
            "type=registry, type=local, or an image with an inline cache"
        }
    )
}

/// Refuses the first attribute that is neither `known` nor ignored.
fn only(attrs: &BTreeMap<String, String>, flag: &str, known: &[&str]) -> Result<(), String> {
    match attrs
        .keys()
        .find(|k| !IGNORED.contains(&k.as_str()) && !known.contains(&k.as_str()))
    {
        Some(k) => Err(format!("{flag}: unknown option {k:?}")),
        None => Ok(()),
    }
}

/// Options buildx accepts that change nothing here.
const IGNORED: &[&str] = &[
    "type",
    "oci-mediatypes",
    "image-manifest",
    "compression",
    "compression-level",
    "force-compression",
];

/// `--cache-from REF`, `type=registry,ref=REF` or
/// `type=local,src=DIR[,tag=T][,digest=D]`.
pub fn parse_cache_from(spec: &str) -> Result<CacheImport, String> {
    let attrs = attributes(spec)?;
    let flag = "--cache-from";
    match attrs.get("type").map(String::as_str) {
        Some("registry") | None => {
            only(&attrs, flag, &["ref"])?;
            Ok(CacheImport::Registry(registry_ref(&attrs, flag)?))
        }
        Some("local") => {
            only(&attrs, flag, &["src", "tag", "digest"])?;
            let (src, tag) = local_dir(&attrs, flag, "src")?;
            let digest = attrs
                .get("digest")
                .filter(|d| !d.is_empty())
                .map(|d| {
                    d.parse::<Digest>()
                        .map_err(|e| format!("{flag} digest={d}: {e}"))
                })
                .transpose()?;
            Ok(CacheImport::Local { src, tag, digest })
        }
        Some(other) => Err(unsupported_type(flag, other)),
    }
}

/// `--cache-to type=registry,ref=REF`, `type=local,dest=DIR[,tag=T]`
/// (each `[,mode=min|max][,ignore-error=true]`) or `type=inline`.
pub fn parse_cache_to(spec: &str) -> Result<CacheExport, String> {
    let attrs = attributes(spec)?;
    let flag = "--cache-to";
    let common = ["mode", "ignore-error"];
    let dest = match attrs.get("type").map(String::as_str) {
        Some("inline") => {
            only(&attrs, flag, &common)?;
            CacheDest::Inline
        }
        Some("registry") | None => {
            only(&attrs, flag, &["ref", "mode", "ignore-error"])?;
            CacheDest::Registry(registry_ref(&attrs, flag)?)
        }
        Some("local") => {
            only(&attrs, flag, &["dest", "tag", "mode", "ignore-error"])?;
            let (dest, tag) = local_dir(&attrs, flag, "dest")?;
            CacheDest::Local { dest, tag }
        }
        Some(other) => return Err(unsupported_type(flag, other)),
    };
    let inline = dest == CacheDest::Inline;
    let mode = match attrs.get("mode").map(String::as_str) {
        None | Some("min") => CacheMode::Min,
        Some("max") if inline => {
            return Err(
                "--cache-to type=inline: mode=max is not possible (the image can only \
                 describe its own steps; use type=registry or type=local for mode=max)"
                    .into(),
            )
        }
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
    Ok(CacheExport {
        dest,
        mode,
        ignore_error,
    })
}

/// The build arg that asks for an inline cache, as BuildKit reads it.
pub const INLINE_BUILD_ARG: &str = "BUILDKIT_INLINE_CACHE";

/// Whether a `BUILDKIT_INLINE_CACHE` value is true (Go's `ParseBool`).
pub fn truthy(value: &str) -> bool {
    matches!(value.trim(), "1" | "t" | "T" | "true" | "TRUE" | "True")
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

/// Where an image config carries hutch's inline cache.
pub const INLINE_KEY: &str = "hutch.buildcache.v1";
/// Where BuildKit puts its own (keyed by BuildKit's cache keys, which
/// hutch does not compute, so hutch cannot read it).
pub const BUILDKIT_INLINE_KEY: &str = "moby.buildkit.cache.v0";

/// Config fields that say how an image was built rather than what it is:
/// an image built FROM it does not inherit them (BuildKit drops them too,
/// as fields its image type does not have).
pub const BUILD_METADATA_KEYS: &[&str] = &[
    INLINE_KEY,
    BUILDKIT_INLINE_KEY,
    "moby.buildkit.buildinfo.v1",
];

/// The inline cache document: [`Record`]s whose layer is an index among
/// the layers of the image that carries it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InlineDocument {
    pub version: u32,
    pub records: BTreeMap<String, InlineRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InlineRecord {
    pub image: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    pub config: String,
    /// The index of the layer the step added, among the image's layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
}

/// What an image config says about an inline cache.
#[derive(Debug)]
pub enum InlineCache {
    /// Hutch's: the records, their layers resolved to the image's.
    Records(BTreeMap<String, Record>),
    /// BuildKit's only.
    BuildKit,
    /// None at all.
    Absent,
}

impl InlineDocument {
    pub fn new() -> InlineDocument {
        InlineDocument {
            version: VERSION,
            records: BTreeMap::new(),
        }
    }

    /// The inline cache in `config`, an image config whose layers are
    /// `layers` (in order). Records that cannot be right (a config of
    /// another digest, a layer index past the image's layers) are dropped.
    pub fn read(config: &serde_json::Value, layers: &[LayerRecord]) -> Result<InlineCache, String> {
        let Some(value) = config.get(INLINE_KEY) else {
            return Ok(if config.get(BUILDKIT_INLINE_KEY).is_some() {
                InlineCache::BuildKit
            } else {
                InlineCache::Absent
            });
        };
        let doc =
            InlineDocument::deserialize(value).map_err(|e| format!("invalid inline cache: {e}"))?;
        if doc.version != VERSION {
            return Err(format!(
                "inline cache version {} is not supported (hutch reads {VERSION})",
                doc.version
            ));
        }
        let mut out = BTreeMap::new();
        for (key, r) in doc.records {
            if Digest::of(r.config.as_bytes()) != r.image {
                continue;
            }
            let layer = match r.layer {
                None => None,
                Some(i) => match layers.get(i) {
                    Some(l) => Some(l.clone()),
                    None => continue,
                },
            };
            let record = Record {
                image: r.image,
                parent: r.parent,
                config: r.config,
                layer,
            };
            out.insert(key, record);
        }
        Ok(InlineCache::Records(out))
    }
}

/// A cache found at the start of a build: in a registry, inline in a
/// local image, or in a local cache's store.
#[derive(Debug, Clone)]
pub struct Imported {
    pub reference: String,
    pub records: BTreeMap<String, Record>,
    pub source: ImportSource,
}

/// Where an imported cache's layers come from.
#[derive(Clone)]
pub enum ImportSource {
    /// The image store: a local image's inline cache.
    Store,
    /// The registry session the cache was fetched on.
    Registry(std::sync::Arc<hutch_images::registry::build_cache::CacheSource>),
    /// A local cache's content store.
    Local(std::sync::Arc<dyn super::cache_store::CacheStore>),
}

impl std::fmt::Debug for ImportSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportSource::Store => f.write_str("Store"),
            ImportSource::Registry(s) => write!(f, "Registry({s:?})"),
            ImportSource::Local(s) => write!(f, "Local({})", s.name()),
        }
    }
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
            parse_cache_from("reg:5000/app:cache"),
            Ok(CacheImport::Registry("reg:5000/app:cache".to_string()))
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=reg:5000/app:cache"),
            Ok(CacheImport::Registry("reg:5000/app:cache".to_string()))
        );
        let digest = Digest::of(b"m");
        assert_eq!(
            parse_cache_from(&format!("type=local,src=/c,digest={digest}")),
            Ok(CacheImport::Local {
                src: "/c".into(),
                tag: "latest".into(),
                digest: Some(digest)
            })
        );
        assert_eq!(
            parse_cache_to("type=local,dest=/c,tag=v2,mode=max").map(|c| (c.dest, c.mode)),
            Ok((
                CacheDest::Local {
                    dest: "/c".into(),
                    tag: "v2".into()
                },
                CacheMode::Max
            ))
        );
        assert!(parse_cache_to("type=local")
            .expect_err("refused")
            .contains("dest="));
        assert!(parse_cache_from("type=local,src=/c,digest=nope").is_err());
        assert!(parse_cache_to("type=local,dest=/c,ref=x").is_err());
        let to = parse_cache_to("type=registry,ref=reg:5000/app:c,mode=max").expect("parses");
        assert_eq!(to.dest, CacheDest::Registry("reg:5000/app:c".into()));
        assert_eq!(to.mode, CacheMode::Max);
        assert!(!to.ignore_error);
        let to = parse_cache_to("type=registry,ref=reg:5000/app:c").expect("parses");
        assert_eq!(to.mode, CacheMode::Min);
        assert_eq!(
            parse_cache_to("type=inline").map(|c| c.dest),
            Ok(CacheDest::Inline)
        );
        assert!(parse_cache_to("type=inline,mode=max")
            .expect_err("refused")
            .contains("mode=max"));
        assert!(parse_cache_from("type=inline")
            .expect_err("refused")
            .contains("type=registry"));
        assert!(parse_cache_to("type=gha")
            .expect_err("refused")
            .contains("type=gha"));
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
    fn inline_records_resolve_layers_by_index_and_drop_what_cannot_be_right() {
        let layer = |n: u8| LayerRecord {
            digest: Digest::of(&[n]),
            size: 10,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            diff_id: Digest::of(&[n, n]),
        };
        let rec = |config: &str, layer: Option<usize>| InlineRecord {
            image: Digest::of(config.as_bytes()),
            parent: None,
            config: config.into(),
            layer,
        };
        let mut doc = InlineDocument::new();
        doc.records.insert("env".into(), rec("{\"a\":1}", None));
        doc.records.insert("run".into(), rec("{\"a\":2}", Some(1)));
        doc.records.insert("past".into(), rec("{\"a\":3}", Some(2)));
        let mut forged = rec("{\"a\":4}", None);
        forged.config = "{\"a\":5}".into();
        doc.records.insert("forged".into(), forged);
        let config = serde_json::json!({
            "rootfs": {"type": "layers"},
            INLINE_KEY: serde_json::to_value(&doc).expect("encodes"),
        });
        let InlineCache::Records(records) =
            InlineDocument::read(&config, &[layer(0), layer(1)]).expect("reads")
        else {
            panic!("no records");
        };
        assert_eq!(records.keys().collect::<Vec<_>>(), ["env", "run"]);
        assert_eq!(records["run"].layer, Some(layer(1)));
        assert_eq!(records["env"].layer, None);

        let buildkit = serde_json::json!({BUILDKIT_INLINE_KEY: "e30="});
        assert!(matches!(
            InlineDocument::read(&buildkit, &[]),
            Ok(InlineCache::BuildKit)
        ));
        assert!(matches!(
            InlineDocument::read(&serde_json::json!({}), &[]),
            Ok(InlineCache::Absent)
        ));
        let garbled = serde_json::json!({INLINE_KEY: {"version": 1, "records": 7}});
        assert!(InlineDocument::read(&garbled, &[]).is_err());
        let future = serde_json::json!({INLINE_KEY: {"version": 9, "records": {}}});
        assert!(InlineDocument::read(&future, &[])
            .expect_err("refused")
            .contains("version 9"));
        assert!(truthy("1") && truthy("true") && !truthy("0") && !truthy("yes"));
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
