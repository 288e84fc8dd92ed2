//! The builder's caches outside the image store, in one list that
//! `/system/df` reports and `/build/prune` removes, so what df shows is
//! what a prune frees. (The cache's steps are images: see
//! `image_models::LayerUsage`.)

use std::collections::HashMap;
use std::path::Path;

use bollard_stubs::models::{BuildCache, BuildCacheTypeEnum};
use chrono::{DateTime, SecondsFormat, Utc};
use hutch_builder::exec::{cache_dirs, Cache};
use hutch_images::Digest;

use hutch_engine::du::dir_size;

/// RUN `--mount=type=cache` directories: one record each.
pub const CACHE_MOUNTS: &str = cache_dirs::MOUNTS;

/// The builder's other caches: one record each, by its name in the
/// builder's directory.
pub const OTHER_CACHES: [(&str, &str); 4] = [
    (cache_dirs::STEP_KEYS, "the build steps' cache keys"),
    (
        cache_dirs::FILE_HASHES,
        "context file hashes of hutch build, by their stat",
    ),
    (cache_dirs::HTTP, "ADD <url> downloads"),
    (
        cache_dirs::GZIPPED,
        "step layers gzipped for cache export and push",
    ),
];

/// How each cached step has served builds: when last (or made), and how
/// many times it was made or hit (BuildKit counts its making as a use).
pub fn step_uses(data_root: &Path) -> HashMap<Digest, (DateTime<Utc>, u64)> {
    Cache::open(data_root)
        .uses()
        .into_iter()
        .map(|(id, u)| (id, (DateTime::<Utc>::from(u.last), u.hits + 1)))
        .collect()
}

/// The whole build cache as `/system/df` lists it: the cached `steps`
/// (`LayerUsage::build_cache_steps`), each in use when a container was
/// created from it and with the builder's record of its uses, then the
/// builder's directories.
pub fn records(
    mut steps: Vec<BuildCache>,
    container_images: &[String],
    data_root: &Path,
) -> Vec<BuildCache> {
    let uses = step_uses(data_root);
    for step in &mut steps {
        let id = step.id.as_deref().unwrap_or_default();
        // A container created from a cached step (by its ID) holds it.
        step.in_use = Some(
            container_images
                .iter()
                .any(|i| i.strip_prefix("sha256:") == Some(id)),
        );
        let used = format!("sha256:{id}").parse::<Digest>().ok();
        if let Some((last, count)) = used.and_then(|d| uses.get(&d)) {
            step.last_used_at = Some(last.to_rfc3339_opts(SecondsFormat::Nanos, true));
            step.usage_count = Some(*count as i64);
        }
    }
    steps.extend(dir_records(data_root));
    steps
}

/// Docker's `BuildCache` records for the cache mounts and the other
/// caches that hold anything.
pub fn dir_records(data_root: &Path) -> Vec<BuildCache> {
    let mut records = Vec::new();
    let mounts = data_root.join(CACHE_MOUNTS);
    for entry in std::fs::read_dir(&mounts).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        records.push(record(
            &entry.path(),
            name,
            BuildCacheTypeEnum::EXEC_CACHEMOUNT,
            "a RUN --mount=type=cache directory".into(),
        ));
    }
    for (dir, what) in OTHER_CACHES {
        let path = data_root.join(dir);
        if path.exists() {
            let id = dir.trim_start_matches("builder/").to_owned();
            records.push(record(&path, id, BuildCacheTypeEnum::INTERNAL, what.into()));
        }
    }
    records
}

/// One directory's record: its size, and its times from the directory
/// (created: its birth time; last used: its mtime, which a cache mount's
/// use sets). Uses are not counted.
fn record(path: &Path, id: String, typ: BuildCacheTypeEnum, description: String) -> BuildCache {
    let meta = std::fs::metadata(path).ok();
    let time = |t: Option<std::time::SystemTime>| {
        t.map(|t| DateTime::<Utc>::from(t).to_rfc3339_opts(SecondsFormat::Nanos, true))
    };
    let modified = time(meta.as_ref().and_then(|m| m.modified().ok()));
    let created = time(meta.as_ref().and_then(|m| m.created().ok())).or(modified.clone());
    BuildCache {
        id: Some(id),
        typ: Some(typ),
        description: Some(description),
        in_use: Some(false),
        shared: Some(false),
        size: Some(dir_size(path) as i64),
        created_at: created,
        last_used_at: modified,
        ..BuildCache::default()
    }
}
