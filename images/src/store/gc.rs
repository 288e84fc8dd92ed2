//! Garbage collection: removes blobs and layers no image record refers to,
//! and leftovers in `ingest/`.

use std::collections::HashSet;

use super::{Store, StoreError};
use crate::digest::Digest;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: Vec<Digest>,
    pub layers_removed: Vec<Digest>,
    /// Bytes of blob content freed (layer trees are not counted).
    pub bytes_freed: u64,
}

impl Store {
    /// Collects garbage, waiting for operations in flight to finish.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let _content = self.locks.content_exclusive()?;
        self.gc_locked()
    }

    /// Collects garbage only if no operation is in flight now; `None` if
    /// it had to skip (the next collection will catch up).
    pub fn try_gc(&self) -> Result<Option<GcReport>, StoreError> {
        match self.locks.try_content_exclusive()? {
            Some(_content) => self.gc_locked().map(Some),
            None => Ok(None),
        }
    }

    fn gc_locked(&self) -> Result<GcReport, StoreError> {
        let mut keep_blobs = HashSet::new();
        let mut keep_layers = HashSet::new();
        {
            let _meta = self.locks.meta_shared()?;
            for record in self.records.all()? {
                keep_blobs.extend(record.blobs().cloned());
                keep_layers.extend(record.layers.iter().map(|l| l.chain_id.clone()));
            }
        }
        let mut report = GcReport::default();
        for digest in self.blobs.list()? {
            if !keep_blobs.contains(&digest) {
                report.bytes_freed += self.blobs.size(&digest).unwrap_or(0);
                self.blobs.remove(&digest)?;
                report.blobs_removed.push(digest);
            }
        }
        for chain_id in self.layers.list()? {
            if !keep_layers.contains(&chain_id) {
                self.layers.remove(&chain_id)?;
                report.layers_removed.push(chain_id);
            }
        }
        self.clean_ingest()?;
        if !report.blobs_removed.is_empty() || !report.layers_removed.is_empty() {
            tracing::info!(
                blobs = report.blobs_removed.len(),
                layers = report.layers_removed.len(),
                bytes = report.bytes_freed,
                "garbage collected unreferenced image content"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ImageRecord, LayerMeta, LayerRef};

    #[test]
    fn gc_keeps_referenced_content_and_removes_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let (config, _) = store
            .blobs
            .put(&mut &b"{}"[..], None, None)
            .expect("config blob");
        let (layer_blob, size) = store
            .blobs
            .put(&mut &b"layer"[..], None, None)
            .expect("layer blob");
        let (orphan, _) = store
            .blobs
            .put(&mut &b"orphan"[..], None, None)
            .expect("orphan blob");
        let mut chains = Vec::new();
        for name in [b"kept".as_slice(), b"dropped".as_slice()] {
            let diff_id = Digest::of(name);
            let prepared = store.layers.prepare().expect("prepare layer");
            std::fs::write(prepared.diff_dir().join("f"), name).expect("write file");
            let meta = LayerMeta {
                chain_id: diff_id.clone(),
                diff_id,
                size: 1,
                highest_uid: 0,
                highest_gid: 0,
                uses_overflow_id: false,
                source_blob: None,
            };
            store.layers.commit(prepared, &meta).expect("commit layer");
            chains.push(meta.chain_id);
        }
        store
            .records
            .put(&ImageRecord {
                id: config.clone(),
                manifests: vec![],
                layers: vec![LayerRef {
                    blob: layer_blob.clone(),
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                    blob_size: size,
                    diff_id: chains[0].clone(),
                    chain_id: chains[0].clone(),
                }],
                created: None,
                labels: Default::default(),
                history: vec![],
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: None,
                size: 1,
                stored_at: chrono::Utc::now(),
                intermediate: false,
            })
            .expect("record");

        let report = store.gc().expect("gc");
        assert_eq!(report.blobs_removed, vec![orphan.clone()]);
        assert_eq!(report.layers_removed, vec![chains[1].clone()]);
        assert!(store.blobs.contains(&config) && store.blobs.contains(&layer_blob));
        assert!(!store.blobs.contains(&orphan));
        assert!(store.layers.contains(&chains[0]));
        assert!(store.layers.diff_path(&chains[0]).join("f").is_file());
        assert!(!store.layers.contains(&chains[1]));
        assert!(!store.layers.diff_path(&chains[1]).exists());
    }
}
