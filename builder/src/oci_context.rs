//! `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`: an image in an
//! OCI image layout stands in for the image `NAME` (the other half of `-o
//! type=oci,tar=false`: build one image to a directory, build the next on
//! it, no registry between). The layout is a [`CacheStore`]: `hutch build`
//! opens the directory, buildx serves it on its session (store
//! `oci:STORE`, the name buildx gives it). The image (from an index: the
//! one for the build's platform) is copied into a layout of our own under
//! the build's scratch directory, every blob checked against its digest
//! as it comes, and loaded from there as `docker load` loads a layout, so
//! the stand-in is an image of the store, by ID.

use std::path::Path;

use hutch_images::oci::{self, Descriptor, Index, Manifest, Platform};
use hutch_images::{Digest, ImageStore};

use crate::exec::cache_store::{self, CacheStore};

/// `PATH_OR_STORE[:TAG][@DIGEST]`, what follows `oci-layout://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayoutRef {
    pub store: String,
    pub tag: String,
    pub digest: Option<Digest>,
}

impl OciLayoutRef {
    pub fn parse(value: &str) -> Result<OciLayoutRef, String> {
        let (rest, digest) = match value.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| format!("invalid oci-layout digest {d}: {e}"))?,
                ),
            ),
            None => (value, None),
        };
        let (store, tag) = match rest.split_once(':') {
            Some((s, t)) => (s, t),
            None => (rest, "latest"),
        };
        if store.is_empty() || tag.is_empty() {
            return Err(format!("invalid oci-layout reference {value:?}"));
        }
        Ok(OciLayoutRef {
            store: store.to_owned(),
            tag: tag.to_owned(),
            digest,
        })
    }
}

/// Copies the image `layout` names (for `platform`, the machine's when
/// `None`) out of `store` into `images`, through a layout written under
/// `tmp`; returns its ID.
pub fn import(
    store: &dyn CacheStore,
    layout: &OciLayoutRef,
    platform: Option<&crate::Platform>,
    images: &ImageStore,
    tmp: &Path,
) -> Result<Digest, String> {
    let platform = match platform {
        Some(p) => Platform {
            os: p.os.clone(),
            architecture: p.arch.clone(),
            variant: p.variant.clone(),
        },
        None => oci::host_platform(),
    };
    let platform = &platform;
    let root = match &layout.digest {
        Some(d) => d.clone(),
        None => store
            .tagged(&layout.tag)?
            .ok_or_else(|| format!("its index.json names no {:?}", layout.tag))?,
    };
    let bytes = cache_store::read_verified(store, &root, oci::MAX_MANIFEST_SIZE)?;
    let (manifest_desc, bytes) = match serde_json::from_slice::<Index>(&bytes) {
        Ok(index) if !index.manifests.is_empty() => {
            let chosen = choose(&index.manifests, platform)
                .ok_or_else(|| format!("its index has no image for {}", platform_text(platform)))?;
            let bytes = cache_store::read_verified(store, &chosen.digest, oci::MAX_MANIFEST_SIZE)?;
            (chosen.clone(), bytes)
        }
        _ => {
            let desc = Descriptor {
                media_type: oci::MEDIA_OCI_MANIFEST.to_owned(),
                digest: root,
                size: bytes.len() as u64,
                annotations: Default::default(),
                platform: None,
            };
            (desc, bytes)
        }
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid image manifest: {e}"))?;
    let dir = tmp.join("oci-layout");
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    let write = |name: &str, data: &[u8]| {
        std::fs::write(dir.join(name), data).map_err(|e| format!("writing {name}: {e}"))
    };
    write(
        &format!("blobs/sha256/{}", manifest_desc.digest.hex()),
        &bytes,
    )?;
    let config = cache_store::read_verified(store, &manifest.config.digest, oci::MAX_CONFIG_SIZE)?;
    write(
        &format!("blobs/sha256/{}", manifest.config.digest.hex()),
        &config,
    )?;
    for layer in &manifest.layers {
        let path = blobs.join(layer.digest.hex());
        let mut file =
            std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        cache_store::copy_verified(store, layer, &mut file)?;
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(oci::MEDIA_OCI_INDEX.to_owned()),
        manifests: vec![Descriptor {
            platform: None,
            annotations: Default::default(),
            ..manifest_desc
        }],
        annotations: Default::default(),
    };
    write(
        "index.json",
        &serde_json::to_vec(&index).map_err(|e| e.to_string())?,
    )?;
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let loaded = images.load_dir(&dir).map_err(|e| e.to_string())?;
    loaded
        .into_iter()
        .next()
        .map(|l| l.id)
        .ok_or_else(|| "the layout held no image".to_owned())
}

/// The index entry for `platform`, or the only entry.
fn choose<'a>(manifests: &'a [Descriptor], platform: &Platform) -> Option<&'a Descriptor> {
    let fits = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && (platform.variant.is_none() || p.variant == platform.variant)
        })
    };
    manifests
        .iter()
        .find(fits)
        .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
}

fn platform_text(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_as_buildx_writes_them() {
        let d = Digest::of(b"x");
        assert_eq!(
            OciLayoutRef::parse(&format!("abc123:v2@{d}")),
            Ok(OciLayoutRef {
                store: "abc123".into(),
                tag: "v2".into(),
                digest: Some(d.clone())
            })
        );
        assert_eq!(
            OciLayoutRef::parse("/srv/layout").map(|r| (r.store, r.tag, r.digest)),
            Ok(("/srv/layout".into(), "latest".into(), None))
        );
        assert!(OciLayoutRef::parse("x@sha256:nothex").is_err());
        assert!(OciLayoutRef::parse(":tag").is_err());
    }
}
