//! `GET /distribution/{name}/json`: the descriptor a name resolves to in
//! its registry and the platforms it offers, read without pulling — the
//! index's platforms, or for a single manifest its config's.

use futures_util::stream::StreamExt;

use super::auth::Credential;
use super::client::{Access, Session};
use super::config::RegistrySettings;
use super::pull::PullError;
use crate::digest::Digest;
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest, Platform};
use crate::reference::Reference;

/// What a registry says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributionInfo {
    /// The manifest or index the name resolves to.
    pub descriptor: Descriptor,
    pub platforms: Vec<Platform>,
}

pub async fn inspect(
    settings: &RegistrySettings,
    credential: &Credential,
    reference: &Reference,
) -> Result<DistributionInfo, PullError> {
    let endpoints = settings.endpoints(reference.domain());
    let mut last_err = None;
    for (n, endpoint) in endpoints.iter().enumerate() {
        let session = Session::open(endpoint, reference, credential, Access::Pull).await?;
        match inspect_at(&session, reference).await {
            // As a pull does (registry errors only).
            Err(PullError::Registry(e))
                if n + 1 < endpoints.len() && endpoint.gives_way(e.is_tls_only_server()) =>
            {
                last_err = Some(PullError::Registry(e));
            }
            other => return other,
        }
    }
    Err(last_err.unwrap_or_else(|| PullError::Internal("no registry endpoint".into())))
}

async fn inspect_at(
    session: &Session,
    reference: &Reference,
) -> Result<DistributionInfo, PullError> {
    let top = session
        .manifest(reference.tag(), reference.digest())
        .await?;
    let malformed = |what: &str, e: serde_json::Error| PullError::Malformed {
        reference: reference.to_string(),
        what: what.into(),
        reason: e.to_string(),
    };
    let platforms = if oci::is_index(&top.media_type) {
        let index: Index =
            serde_json::from_slice(&top.bytes).map_err(|e| malformed("the index", e))?;
        index
            .manifests
            .into_iter()
            .filter_map(|d| d.platform)
            .collect()
    } else {
        let manifest: Manifest =
            serde_json::from_slice(&top.bytes).map_err(|e| malformed("the manifest", e))?;
        let bytes = read_config(session, reference, &manifest.config).await?;
        let config: ImageConfig =
            serde_json::from_slice(&bytes).map_err(|e| malformed("the image config", e))?;
        vec![Platform {
            architecture: config.architecture,
            os: config.os,
            variant: config.variant,
        }]
    };
    Ok(DistributionInfo {
        descriptor: Descriptor {
            media_type: top.media_type,
            size: top.bytes.len() as u64,
            digest: top.digest,
            annotations: Default::default(),
            platform: None,
        },
        platforms,
    })
}

/// The config blob, at most `MAX_CONFIG_SIZE`, checked against its digest.
async fn read_config(
    session: &Session,
    reference: &Reference,
    desc: &Descriptor,
) -> Result<Vec<u8>, PullError> {
    let unsupported = |reason: String| PullError::Unsupported {
        reference: reference.to_string(),
        reason,
    };
    if desc.size > oci::MAX_CONFIG_SIZE {
        return Err(unsupported(format!(
            "the image config is {} bytes, more than {}",
            desc.size,
            oci::MAX_CONFIG_SIZE
        )));
    }
    let mut blob = session.blob(desc).await?;
    let mut bytes = Vec::new();
    while let Some(chunk) = blob.stream.next().await {
        let chunk = chunk.map_err(|e| unsupported(format!("reading the image config: {e}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > desc.size {
            return Err(unsupported(
                "the image config is larger than its descriptor says".into(),
            ));
        }
    }
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(unsupported(format!(
            "the image config has digest {actual}, not {}",
            desc.digest
        )));
    }
    Ok(bytes)
}
