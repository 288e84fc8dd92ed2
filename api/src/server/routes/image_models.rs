//! Docker-shaped image bodies, built from the image store's types. Each
//! constructor fills every field Docker always sends, since clients index
//! into them without checking (`attrs['Config']['Cmd']`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use bollard_stubs::models::{
    BuildCache, BuildCacheTypeEnum, DriverData, HistoryResponseItem, ImageInspect,
    ImageInspectMetadata, ImageInspectRootFs, ImageSummary, SystemDataUsageResponse,
};
use chrono::{DateTime, SecondsFormat, Utc};
use hutch_images::{Digest, ImageDetails, ImageError, ImageStore, ListFilters};
use serde::Serialize;

use super::super::version::ApiVersion;

/// Go's zero time, which Docker prints for times it does not know.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Go's `time.RFC3339Nano`: nanoseconds without trailing zeros.
pub fn go_time(t: &DateTime<Utc>) -> String {
    let full = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let trimmed = full.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// How many images there are, for `/info`.
pub struct ImageCounts {
    pub images: usize,
}

impl ImageCounts {
    pub fn of(store: &ImageStore) -> Result<ImageCounts, ImageError> {
        Ok(ImageCounts {
            images: store.list(&ListFilters::default())?.len(),
        })
    }
}

/// An image in `/images/json`. Below API 1.44 Docker still sent
/// `VirtualSize` and `<none>` placeholders for untagged images.
pub fn summary(
    s: &hutch_images::ImageSummary,
    version: ApiVersion,
    shared_size: Option<u64>,
) -> ImageSummary {
    let legacy = version < ApiVersion(1, 44);
    let mut repo_tags: Vec<String> = s.repo_tags.iter().map(|r| r.familiar()).collect();
    let mut repo_digests: Vec<String> = s.repo_digests.iter().map(|r| r.familiar()).collect();
    if legacy && repo_tags.is_empty() {
        repo_tags.push("<none>:<none>".into());
    }
    if legacy && repo_digests.is_empty() {
        repo_digests.push("<none>@<none>".into());
    }
    ImageSummary {
        id: s.id.to_string(),
        parent_id: String::new(),
        repo_tags,
        repo_digests,
        created: s.created.map_or(0, |c| c.timestamp()),
        size: s.size as i64,
        shared_size: shared_size.map_or(-1, |v| v as i64),
        virtual_size: legacy.then_some(s.size as i64),
        labels: s.labels.clone().into_iter().collect(),
        containers: -1,
        manifests: None,
        descriptor: None,
    }
}

/// Layer sizes across the store: what `/system/df` and `shared-size` need.
///
/// Build steps kept for the cache (intermediate images nobody named) are
/// not images to a user: `docker images` hides them, as BuildKit's cache
/// is no image either. Their layers count as build cache, not as image
/// layers, and they do not make an image's layers "shared".
pub struct LayerUsage {
    /// Image ID → its layers' chain IDs, for the images a user sees.
    images: Vec<(Digest, Vec<Digest>)>,
    /// The build cache's steps.
    steps: Vec<Step>,
    sizes: HashMap<Digest, u64>,
    /// How many of `images` use each layer.
    users: HashMap<Digest, usize>,
}

/// A build step kept for the cache.
struct Step {
    id: Digest,
    chain: Vec<Digest>,
    stored_at: DateTime<Utc>,
    created_by: String,
}

impl LayerUsage {
    pub fn of(store: &ImageStore) -> Result<LayerUsage, ImageError> {
        let content = store.content();
        let _meta = content.locks.meta_shared()?;
        let index = content.records.index()?;
        let mut usage = LayerUsage {
            images: Vec::new(),
            steps: Vec::new(),
            sizes: HashMap::new(),
            users: HashMap::new(),
        };
        for record in content.records.all()? {
            let mut chain: Vec<Digest> = Vec::new();
            for layer in &record.layers {
                if !usage.sizes.contains_key(&layer.chain_id) {
                    let size = content.layers.meta(&layer.chain_id).map_or(0, |m| m.size);
                    usage.sizes.insert(layer.chain_id.clone(), size);
                }
                if !chain.contains(&layer.chain_id) {
                    chain.push(layer.chain_id.clone());
                }
            }
            // The same rule as the image list's (and build prune's).
            if record.intermediate && index.names_of(&record.id).is_empty() {
                usage.steps.push(Step {
                    id: record.id.clone(),
                    chain,
                    stored_at: record.stored_at,
                    created_by: record
                        .history
                        .last()
                        .and_then(|h| h.created_by.clone())
                        .unwrap_or_default(),
                });
                continue;
            }
            for chain_id in &chain {
                *usage.users.entry(chain_id.clone()).or_default() += 1;
            }
            usage.images.push((record.id.clone(), chain));
        }
        Ok(usage)
    }

    /// Bytes of the layers the user's images use (Docker's `LayersSize`).
    pub fn images_total(&self) -> u64 {
        self.users.keys().filter_map(|c| self.sizes.get(c)).sum()
    }

    /// The build cache's steps as Docker's `BuildCache` records, oldest
    /// chain first. Each layer is counted once, by the first step whose
    /// chain has it; bytes an image also uses are not the cache's to free,
    /// so a step whose own layer is an image's shows it as `Shared` (the
    /// CLI leaves shared records out of the cache's size, as BuildKit's).
    /// Each step counts its making as one use; the caller adds the
    /// builder's record of hits and last use.
    pub fn build_cache_steps(&self) -> Vec<BuildCache> {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by_key(|s| (s.chain.len(), s.stored_at));
        let mut counted: HashSet<&Digest> = HashSet::new();
        let size_of = |c: &Digest| self.sizes.get(c).copied().unwrap_or(0);
        steps
            .into_iter()
            .map(|step| {
                let new: Vec<&Digest> = step.chain.iter().filter(|c| counted.insert(*c)).collect();
                let own: u64 = new
                    .iter()
                    .filter(|c| !self.users.contains_key(**c))
                    .map(|c| size_of(c))
                    .sum();
                let top_is_an_images = step
                    .chain
                    .last()
                    .filter(|top| new.contains(top) && self.users.contains_key(*top));
                let (size, shared) = match top_is_an_images {
                    Some(top) if own == 0 => (size_of(top), true),
                    _ => (own, false),
                };
                BuildCache {
                    id: Some(step.id.hex().to_string()),
                    typ: Some(BuildCacheTypeEnum::REGULAR),
                    description: Some(step.created_by.clone()),
                    in_use: Some(false),
                    shared: Some(shared),
                    size: Some(size as i64),
                    created_at: Some(step.stored_at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
                    usage_count: Some(1),
                    ..BuildCache::default()
                }
            })
            .collect()
    }

    /// Bytes of all distinct layers, the build cache's too (what a prune
    /// frees is the difference before and after).
    pub fn total(&self) -> u64 {
        self.sizes.values().sum()
    }

    /// Bytes of the image's layers that other images use too.
    pub fn shared_size(&self, id: &Digest) -> u64 {
        self.images
            .iter()
            .find(|(i, _)| i == id)
            .map_or(0, |(_, chain)| {
                chain
                    .iter()
                    .filter(|c| self.users.get(*c).copied().unwrap_or(0) > 1)
                    .map(|c| self.sizes.get(c).copied().unwrap_or(0))
                    .sum()
            })
    }
}

/// `/system/df`'s images (with their shared sizes) and the build cache's
/// steps; the caller adds containers, volumes and the builder's other
/// caches (the lists are empty, not absent: the CLI counts them).
pub fn disk_usage(store: &ImageStore) -> Result<SystemDataUsageResponse, ImageError> {
    let usage = LayerUsage::of(store)?;
    let images = store
        .list(&ListFilters::default())?
        .iter()
        .map(|s| {
            let mut summary = summary(s, ApiVersion::LATEST, Some(usage.shared_size(&s.id)));
            summary.containers = 0;
            summary
        })
        .collect();
    Ok(SystemDataUsageResponse {
        layers_size: Some(usage.images_total() as i64),
        images: Some(images),
        containers: Some(Vec::new()),
        volumes: Some(Vec::new()),
        build_cache: Some(usage.build_cache_steps()),
    })
}

/// `/images/{name}/json`: bollard's `ImageInspect` with a `Config` that
/// always has the keys Docker's legacy config carries.
#[derive(Debug, Serialize)]
pub struct InspectBody {
    #[serde(flatten)]
    inspect: ImageInspect,
    #[serde(rename = "Config")]
    config: serde_json::Value,
}

/// `layers` are the image's layer directories, bottom first.
pub fn inspect(details: &ImageDetails, layers: &[PathBuf], version: ApiVersion) -> InspectBody {
    let s = &details.summary;
    let record = &details.record;
    let text = |key: &str| {
        details.config[key]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let mut data = HashMap::new();
    if let Some((top, lower)) = layers.split_last() {
        data.insert("UpperDir".to_owned(), top.display().to_string());
        if !lower.is_empty() {
            let lower: Vec<String> = lower
                .iter()
                .rev()
                .map(|p| p.display().to_string())
                .collect();
            data.insert("LowerDir".to_owned(), lower.join(":"));
        }
    }
    let inspect = ImageInspect {
        id: Some(s.id.to_string()),
        descriptor: None,
        manifests: None,
        repo_tags: Some(s.repo_tags.iter().map(|r| r.familiar()).collect()),
        repo_digests: Some(s.repo_digests.iter().map(|r| r.familiar()).collect()),
        parent: Some(String::new()),
        comment: Some(text("comment")),
        created: s.created.as_ref().map(go_time),
        docker_version: Some(text("docker_version")),
        author: Some(text("author")),
        config: None,
        architecture: Some(record.architecture.clone()),
        variant: record.variant.clone(),
        os: Some(record.os.clone()),
        os_version: details.config["os.version"].as_str().map(str::to_owned),
        size: Some(s.size as i64),
        virtual_size: (version < ApiVersion(1, 44)).then_some(s.size as i64),
        graph_driver: Some(DriverData {
            name: "overlay".into(),
            data,
        }),
        root_fs: Some(ImageInspectRootFs {
            typ: "layers".into(),
            layers: Some(
                record
                    .layers
                    .iter()
                    .map(|l| l.diff_id.to_string())
                    .collect(),
            ),
        }),
        metadata: Some(ImageInspectMetadata {
            last_tag_time: Some(ZERO_TIME.into()),
        }),
    };
    InspectBody {
        inspect,
        config: full_config(&details.config["config"]),
    }
}

/// The image's run config over the keys Docker always sends.
fn full_config(stored: &serde_json::Value) -> serde_json::Value {
    let mut config = serde_json::json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null, "WorkingDir": "",
        "Entrypoint": null, "OnBuild": null, "Labels": null,
    });
    if let (Some(base), Some(own)) = (config.as_object_mut(), stored.as_object()) {
        for (k, v) in own {
            base.insert(k.clone(), v.clone());
        }
    }
    config
}

/// `/images/{name}/history`, newest first. Entries that made a layer get
/// that layer's size; only the newest carries the ID and tags, as Docker's.
pub fn history(store: &ImageStore, name: &str) -> Result<Vec<HistoryResponseItem>, ImageError> {
    let details = store.inspect(name)?;
    let record = &details.record;
    let content = store.content();
    let layer_size = |i: usize| {
        record
            .layers
            .get(i)
            .and_then(|l| content.layers.meta(&l.chain_id).ok())
            .map_or(0, |m| m.size as i64)
    };
    let mut items = Vec::new();
    let mut layer = 0;
    if record.history.is_empty() {
        for i in 0..record.layers.len() {
            items.push(HistoryResponseItem {
                id: "<missing>".into(),
                created: details.summary.created.map_or(0, |c| c.timestamp()),
                created_by: String::new(),
                tags: Vec::new(),
                size: layer_size(i),
                comment: String::new(),
            });
        }
    }
    for entry in &record.history {
        let size = if entry.empty_layer {
            0
        } else {
            layer += 1;
            layer_size(layer - 1)
        };
        items.push(HistoryResponseItem {
            id: "<missing>".into(),
            created: entry
                .created
                .as_deref()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                .map_or(0, |c| c.timestamp()),
            created_by: entry.created_by.clone().unwrap_or_default(),
            tags: Vec::new(),
            size,
            comment: entry.comment.clone().unwrap_or_default(),
        });
    }
    items.reverse();
    if let Some(newest) = items.first_mut() {
        newest.id = details.summary.id.to_string();
        newest.tags = details
            .summary
            .repo_tags
            .iter()
            .map(|r| r.familiar())
            .collect();
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times() {
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.120Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(go_time(&t), "2024-01-02T03:04:05.12Z");
        let t = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(go_time(&t), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn config_keeps_docker_keys() {
        let c = full_config(&serde_json::json!({"Cmd": ["sh"], "Env": ["A=1"]}));
        assert_eq!(c["Cmd"], serde_json::json!(["sh"]));
        assert_eq!(c["Entrypoint"], serde_json::Value::Null);
        assert_eq!(c["WorkingDir"], "");
        assert!(c.as_object().is_some_and(|o| o.contains_key("Labels")));
    }
}
