//! A stage's image as the build goes: the image config (Docker's JSON, kept
//! as a document so fields we do not model survive), its layers, and its ID
//! once stored.

use std::path::PathBuf;

use hutch_images::store::LayerRef;
use hutch_images::{BuiltLayer, Digest, ImageStore, NewLayer, Reference};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct ImageState {
    pub id: Option<Digest>,
    pub config: Value,
    pub layers: Vec<LayerRef>,
}

impl ImageState {
    /// Its layers, as the first layers of an image built on it.
    pub fn stored_layers(&self) -> Vec<BuiltLayer> {
        self.layers
            .iter()
            .map(|l| BuiltLayer::Stored {
                blob: l.blob.clone(),
                media_type: l.media_type.clone(),
            })
            .collect()
    }

    pub fn scratch(os: &str, arch: &str, variant: Option<&str>) -> ImageState {
        let mut config = json!({
            "architecture": arch,
            "os": os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        ImageState {
            id: None,
            config,
            layers: Vec::new(),
        }
    }

    /// Stores this image (plus `new` on top) under `names`; returns its ID.
    /// `intermediate` keeps it out of `images` unless tagged.
    pub fn store(
        &self,
        store: &ImageStore,
        new: Option<NewLayer>,
        names: Vec<Reference>,
        intermediate: bool,
    ) -> Result<Digest, super::BuildError> {
        let mut layers = self.stored_layers();
        layers.extend(new.map(BuiltLayer::New));
        let bytes = serde_json::to_vec(&self.config)
            .map_err(|e| super::BuildError::Invalid(format!("encoding the image config: {e}")))?;
        Ok(store.add_built(&bytes, layers, names, intermediate)?)
    }

    /// A stored image.
    pub fn load(store: &ImageStore, name: &str) -> Result<ImageState, hutch_images::ImageError> {
        let d = store.inspect(name)?;
        Ok(ImageState {
            id: Some(d.summary.id.clone()),
            config: d.config,
            layers: d.record.layers,
        })
    }

    /// Drops what says how the image was built (build caches, build
    /// info): an image built FROM it does not inherit them.
    pub fn drop_build_metadata(&mut self) {
        if let Some(config) = self.config.as_object_mut() {
            for key in super::remote_cache::BUILD_METADATA_KEYS {
                config.remove(*key);
            }
        }
    }

    /// The platform the config names (`None` when it names none).
    pub fn platform(&self) -> Option<crate::Platform> {
        crate::Platform::of_config(&self.config)
    }

    /// The `config` object (Env, Cmd, ...), created when missing.
    pub fn run_config(&mut self) -> &mut Map<String, Value> {
        if !self.config.get("config").is_some_and(Value::is_object) {
            self.config["config"] = json!({});
        }
        match self.config.get_mut("config") {
            Some(Value::Object(m)) => m,
            _ => unreachable!("set to an object above"),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.config.get("config").and_then(|c| c.get(key))
    }

    pub fn strings(&self, key: &str) -> Vec<String> {
        self.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key).and_then(Value::as_str).map(str::to_string)
    }

    /// Layer directories, topmost first (overlay's lowerdir order).
    pub fn lower_dirs(&self, store: &ImageStore) -> Vec<PathBuf> {
        self.layers
            .iter()
            .rev()
            .map(|l| store.content().layers.diff_path(&l.chain_id))
            .collect()
    }

    /// Records a step in the history, and its layer's diff ID if it made one.
    pub fn push_history(&mut self, created: &str, created_by: &str, layer: Option<&Digest>) {
        let mut h = json!({
            "created": created,
            "created_by": created_by,
            "comment": "buildkit.dockerfile.v0",
        });
        match layer {
            Some(diff_id) => {
                if !self.config["rootfs"]["diff_ids"].is_array() {
                    self.config["rootfs"] = json!({"type": "layers", "diff_ids": []});
                }
                if let Some(a) = self.config["rootfs"]["diff_ids"].as_array_mut() {
                    a.push(json!(diff_id.to_string()));
                }
            }
            None => h["empty_layer"] = json!(true),
        }
        if !self.config["history"].is_array() {
            self.config["history"] = json!([]);
        }
        if let Some(a) = self.config["history"].as_array_mut() {
            a.push(h);
        }
        self.config["created"] = json!(created);
    }
}
