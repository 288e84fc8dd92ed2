//! A session with one registry endpoint for one repository, on
//! `oci-client`. We use only its streaming calls (`pull_blob_stream`,
//! `push_blob_stream`, ...), never `pull()`, which buffers whole layers in
//! memory; manifests are fetched with a size bound of our own.
//!
//! What oci-client lacks is done here: its TLS settings and protocol are
//! per client, not per registry, so a session owns a client built for its
//! endpoint alone (scheme and CA certificates); and it has no OAuth2
//! refresh-token flow, so an identity token is exchanged for an access
//! token here and handed to oci-client as a bearer token.

use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;
use serde::Deserialize;

use super::auth::Credential;
use super::config::{Endpoint, Scheme};
use super::roots;
use crate::digest::Digest;
use crate::oci;
use crate::reference::Reference;

const USER_AGENT: &str = concat!("hutch/", env!("CARGO_PKG_VERSION"));
/// The most of a tag list page read (a page of 10,000 tags is ~300 KB).
const MAX_TAG_PAGE_SIZE: u64 = 4 << 20;
/// The most tag list pages followed.
const MAX_TAG_PAGES: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{what} at {endpoint}: {cause}")]
    Request {
        what: String,
        endpoint: String,
        cause: String,
    },
    #[error("{endpoint}: cannot get a token for the identity token: {reason}")]
    Token { endpoint: String, reason: String },
    #[error(
        "the manifest of {reference} is more than the {max} byte limit ({size} bytes \
         or more); the registry is broken or hostile"
    )]
    ManifestTooLarge {
        reference: String,
        size: u64,
        max: u64,
    },
    #[error(
        "{reference}: unsupported manifest media type {media_type:?} (hutch pulls Docker \
         schema2 and OCI images and indexes)"
    )]
    UnsupportedManifest {
        reference: String,
        media_type: String,
    },
    #[error("{reference}: the registry sent manifest {actual}, not the requested {expected}")]
    ManifestDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
}

/// An error with its causes, on one line: reqwest's (and oci-client's)
/// own message leaves out the interesting part, e.g. the TLS failure or
/// "Connection refused".
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A fetched manifest or index, not yet parsed.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub digest: Digest,
    pub media_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// One endpoint, one repository.
pub struct Session {
    client: oci_client::Client,
    auth: RegistryAuth,
    endpoint: Endpoint,
    reference: Reference,
    push_auth: tokio::sync::OnceCell<()>,
    /// The bearer token for pulls (None: basic or no auth), and the HTTP
    /// client for manifests, which are fetched here (see `manifest_body`).
    pull_token: tokio::sync::OnceCell<Option<String>>,
    http: std::sync::OnceLock<reqwest::Client>,
}

impl RegistryError {
    /// Whether a plain-HTTP request reached a server that speaks only TLS
    /// (Go's and nginx's answers to that), so HTTPS is worth a try.
    pub fn is_tls_only_server(&self) -> bool {
        match self {
            RegistryError::Request { cause, .. } => {
                cause.contains("HTTP request to an HTTPS server")
                    || cause.contains("plain HTTP request was sent to HTTPS port")
            }
            _ => false,
        }
    }
}

impl Session {
    /// Connects to `endpoint` for `reference`'s repository. Credentials are
    /// presented lazily by oci-client, on the first request that needs them.
    pub async fn open(
        endpoint: &Endpoint,
        reference: &Reference,
        credential: &Credential,
        access: Access,
    ) -> Result<Session, RegistryError> {
        let config = ClientConfig {
            protocol: match endpoint.scheme {
                Scheme::Http => ClientProtocol::Http,
                Scheme::Https => ClientProtocol::Https,
            },
            // The system's roots, read once (see `roots`), and the
            // endpoint's own CAs on top.
            tls_certs_only: roots::oci_client_roots(),
            extra_root_certificates: endpoint
                .ca_pem
                .iter()
                .map(|pem| Certificate {
                    encoding: CertificateEncoding::Pem,
                    data: pem.clone(),
                })
                .collect(),
            // Index selection is ours (platform variants, Docker's rules).
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| RegistryError::Request {
            what: "setting up the HTTP client".into(),
            endpoint: endpoint.host.clone(),
            cause: describe(&e),
        })?;
        let auth = match credential {
            Credential::Anonymous => RegistryAuth::Anonymous,
            Credential::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credential::RegistryToken(token) => RegistryAuth::Bearer(token.clone()),
            Credential::IdentityToken(token) => RegistryAuth::Bearer(
                exchange_identity_token(endpoint, reference.path(), token, access).await?,
            ),
        };
        Ok(Session {
            client,
            auth,
            endpoint: endpoint.clone(),
            reference: reference.clone(),
            push_auth: tokio::sync::OnceCell::new(),
            pull_token: tokio::sync::OnceCell::new(),
            http: std::sync::OnceLock::new(),
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn oci_ref(&self, tag: Option<&str>, digest: Option<&Digest>) -> oci_client::Reference {
        let domain = self.reference.domain().to_owned();
        let path = self.reference.path().to_owned();
        let mut r = match (tag, digest) {
            (_, Some(d)) => oci_client::Reference::with_digest(domain, path, d.to_string()),
            (Some(t), None) => oci_client::Reference::with_tag(domain, path, t.to_owned()),
            (None, None) => oci_client::Reference::with_tag(domain, path, "latest".into()),
        };
        if self.endpoint.mirror || self.endpoint.host != self.reference.domain() {
            r.set_mirror_registry(self.endpoint.host.clone());
        }
        r
    }

    fn failed(&self, what: impl Into<String>, err: &OciDistributionError) -> RegistryError {
        RegistryError::Request {
            what: what.into(),
            endpoint: self.endpoint.host.clone(),
            cause: describe(err),
        }
    }

    /// Fetches the manifest (or index) a tag or digest names. A manifest
    /// fetched by digest must have that digest; any manifest must be one of
    /// the media types we understand and at most `MAX_MANIFEST_SIZE`.
    pub async fn manifest(
        &self,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<FetchedManifest, RegistryError> {
        let reference = self.oci_ref(tag, digest);
        let shown = format!(
            "{}{}",
            self.reference.name(),
            match (tag, digest) {
                (_, Some(d)) => format!("@{d}"),
                (Some(t), None) => format!(":{t}"),
                (None, None) => String::new(),
            }
        );
        let accepted = [
            oci::MEDIA_DOCKER_MANIFEST,
            oci::MEDIA_DOCKER_LIST,
            oci::MEDIA_OCI_MANIFEST,
            oci::MEDIA_OCI_INDEX,
        ];
        let bytes = self.manifest_body(&reference, &accepted, &shown).await?;
        let actual = Digest::of(&bytes);
        if let Some(expected) = digest {
            if *expected != actual {
                return Err(RegistryError::ManifestDigest {
                    reference: shown,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let media_type = media_type_of(&bytes);
        if !oci::is_manifest(&media_type) && !oci::is_index(&media_type) {
            return Err(RegistryError::UnsupportedManifest {
                reference: shown,
                media_type,
            });
        }
        Ok(FetchedManifest {
            bytes,
            digest: actual,
            media_type,
        })
    }

    /// GETs a manifest and reads at most `MAX_MANIFEST_SIZE` of it.
    /// oci-client's `pull_manifest_raw` reads any body whole before we
    /// could look at its size, so a hostile registry could make us hold
    /// gigabytes; here the read stops at the limit.
    async fn manifest_body(
        &self,
        reference: &oci_client::Reference,
        accepted: &[&str],
        shown: &str,
    ) -> Result<Bytes, RegistryError> {
        let target = match reference.digest() {
            Some(digest) => digest.to_owned(),
            None => reference.tag().unwrap_or("latest").to_owned(),
        };
        let url = format!(
            "{}/v2/{}/manifests/{target}",
            base_url(&self.endpoint),
            reference.repository()
        );
        let what = format!("fetching the manifest of {shown}");
        let (body, _) = self
            .get_bounded(&url, accepted, &what, oci::MAX_MANIFEST_SIZE)
            .await
            .map_err(|e| match e {
                Bounded::TooLarge(size) => RegistryError::ManifestTooLarge {
                    reference: shown.to_owned(),
                    size,
                    max: oci::MAX_MANIFEST_SIZE,
                },
                Bounded::Failed(e) => e,
            })?;
        Ok(body)
    }

    /// Every tag of the repository (`GET /v2/<name>/tags/list`), in the
    /// registry's order, following its `Link: <...>; rel="next"` pages as
    /// Docker's `pull --all-tags` does. Each page is read up to
    /// `MAX_TAG_PAGE_SIZE` and at most `MAX_TAG_PAGES` are followed, so a
    /// registry that pages forever or sends an endless list is an error,
    /// not a daemon out of memory.
    pub async fn tags(&self) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct TagPage {
            // null for a repository without tags (distribution sends that).
            tags: Option<Vec<String>>,
        }
        let base = base_url(&self.endpoint);
        let repository = self.oci_ref(None, None).repository().to_owned();
        let what = format!("listing the tags of {}", self.reference.name());
        let fail = |cause: String| RegistryError::Request {
            what: what.clone(),
            endpoint: self.endpoint.host.clone(),
            cause,
        };
        let mut url = format!("{base}/v2/{repository}/tags/list");
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let (body, headers) = self
                .get_bounded(&url, &["application/json"], &what, MAX_TAG_PAGE_SIZE)
                .await
                .map_err(|e| match e {
                    Bounded::TooLarge(size) => fail(format!(
                        "a page of the tag list is over {MAX_TAG_PAGE_SIZE} bytes ({size})"
                    )),
                    Bounded::Failed(e) => e,
                })?;
            let page: TagPage = serde_json::from_slice(&body)
                .map_err(|e| fail(format!("the tag list is not valid JSON: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            match next_page(&headers) {
                Some(next) if next.starts_with('/') => url = format!("{base}{next}"),
                Some(next) if next.starts_with(&format!("{base}/")) => url = next,
                Some(next) => {
                    return Err(fail(format!(
                        "the next page of the tag list is elsewhere ({next})"
                    )))
                }
                None => return Ok(tags),
            }
        }
        Err(fail(format!(
            "the tag list goes on for more than {MAX_TAG_PAGES} pages"
        )))
    }

    /// GETs `url` with the pull's authentication and reads at most `limit`
    /// bytes of the answer. Authentication is oci-client's (`Client::auth`,
    /// which also caches the token for the blob requests that follow).
    async fn get_bounded(
        &self,
        url: &str,
        accepted: &[&str],
        what: &str,
        limit: u64,
    ) -> Result<(Bytes, reqwest::header::HeaderMap), Bounded> {
        let fail = |cause: String| {
            Bounded::Failed(RegistryError::Request {
                what: what.to_owned(),
                endpoint: self.endpoint.host.clone(),
                cause,
            })
        };
        let token = self.pull_token(what).await.map_err(Bounded::Failed)?;
        let http = match self.http.get() {
            Some(http) => http,
            None => {
                let built = http_client(&self.endpoint).map_err(fail)?;
                self.http.get_or_init(|| built)
            }
        };
        let mut request = http
            .get(url)
            .header(reqwest::header::ACCEPT, accepted.join(", "));
        request = match (token, &self.auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, RegistryAuth::Basic(user, password)) => request.basic_auth(user, Some(password)),
            _ => request,
        };
        let mut response = request.send().await.map_err(|e| fail(describe(&e)))?;
        if let Some(length) = response.content_length() {
            if length > limit {
                return Err(Bounded::TooLarge(length));
            }
        }
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(describe(&e)))? {
            let size = (body.len() + chunk.len()) as u64;
            if size > limit {
                return Err(Bounded::TooLarge(size));
            }
            body.extend_from_slice(&chunk);
        }
        let status = response.status();
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", registry_message(&body))));
        }
        Ok((body.freeze(), response.headers().clone()))
    }

    /// Streams a blob. The stream is not trusted: the caller verifies
    /// digest and size as it stores it.
    ///
    /// Asked as the range `bytes=0-` (the whole blob): oci-client hashes a
    /// whole-blob answer (200) once more as it streams, on the async thread,
    /// but leaves a range answer (206) to the caller, who hashes it anyway
    /// (the blob store's writer). A registry that ignores ranges answers 200
    /// and is simply hashed twice.
    pub async fn blob(&self, desc: &oci::Descriptor) -> Result<BlobStream, RegistryError> {
        let reference = self.oci_ref(None, None);
        let layer = oci_client::manifest::OciDescriptor {
            media_type: desc.media_type.clone(),
            digest: desc.digest.to_string(),
            size: desc.size as i64,
            ..Default::default()
        };
        let sized = match self
            .client
            .pull_blob_stream_partial(&reference, &layer, 0, None)
            .await
            .map_err(|e| self.failed(format!("fetching blob {}", desc.digest), &e))?
        {
            BlobResponse::Full(sized) | BlobResponse::Partial(sized) => sized,
        };
        Ok(BlobStream {
            content_length: sized.content_length,
            stream: sized.stream,
        })
    }

    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        self.ensure_push_auth().await?;
        self.client
            .blob_exists(&self.oci_ref(None, None), &digest.to_string())
            .await
            .map_err(|e| self.failed(format!("checking for blob {digest}"), &e))
    }

    /// Asks the registry to link a blob from another repository of its own
    /// into ours. `Ok(false)` when it will not (it answers 202 and expects
    /// an upload, or refuses): the caller uploads instead.
    pub async fn mount(&self, digest: &Digest, from_path: &str) -> Result<bool, RegistryError> {
        self.ensure_push_auth().await?;
        let source = oci_client::Reference::with_tag(
            self.reference.domain().to_owned(),
            from_path.to_owned(),
            "latest".into(),
        );
        match self
            .client
            .mount_blob(&self.oci_ref(None, None), &source, &digest.to_string())
            .await
        {
            Ok(()) => Ok(true),
            Err(OciDistributionError::SpecViolationError(reason)) => {
                // 202 Accepted: the registry started an ordinary upload.
                tracing::debug!(%digest, from = from_path, %reason, "blob mount not done");
                Ok(false)
            }
            Err(e) => {
                tracing::debug!(%digest, from = from_path, error = %describe(&e), "blob mount refused");
                Ok(false)
            }
        }
    }

    /// Uploads a blob in chunks (oci-client sends PATCHes of up to 4 MiB).
    pub async fn push_blob<S>(
        &self,
        digest: &Digest,
        size: u64,
        stream: S,
    ) -> Result<(), RegistryError>
    where
        S: Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static,
    {
        self.ensure_push_auth().await?;
        self.client
            .push_blob_stream(
                &self.oci_ref(None, None),
                stream,
                &digest.to_string(),
                Some(size),
            )
            .await
            .map(|_| ())
            .map_err(|e| self.failed(format!("uploading blob {digest}"), &e))
    }

    pub async fn push_manifest(
        &self,
        tag: Option<&str>,
        digest: &Digest,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<(), RegistryError> {
        self.ensure_push_auth().await?;
        let reference = match tag {
            Some(t) => self.oci_ref(Some(t), None),
            None => self.oci_ref(None, Some(digest)),
        };
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|e| {
            RegistryError::Request {
                what: "pushing the manifest".into(),
                endpoint: self.endpoint.host.clone(),
                cause: e.to_string(),
            }
        })?;
        self.client
            .push_manifest_raw(&reference, bytes, content_type)
            .await
            .map(|_| ())
            .map_err(|e| self.failed("pushing the manifest", &e))
    }

    /// Presents the credentials for pulling before a call that does not
    /// (a blob fetched on a fresh session: only manifest fetches
    /// authenticate by themselves).
    pub async fn authenticate_pull(&self) -> Result<(), RegistryError> {
        self.pull_token("authenticating for pull").await.map(|_| ())
    }

    /// The session's pull credentials, presented once: the bearer token
    /// (None for basic or no auth), which oci-client's token cache also
    /// keeps for its blob requests. `what` names the failed step.
    async fn pull_token(&self, what: &str) -> Result<&Option<String>, RegistryError> {
        self.pull_token
            .get_or_try_init(|| async {
                self.client
                    .auth(
                        &self.oci_ref(None, None),
                        &self.auth,
                        RegistryOperation::Pull,
                    )
                    .await
                    .map_err(|e| self.failed(what, &e))
            })
            .await
    }

    /// oci-client asks for a push-scoped token only through `auth`; calls
    /// such as `blob_exists` would otherwise go out with a pull token.
    async fn ensure_push_auth(&self) -> Result<(), RegistryError> {
        self.push_auth
            .get_or_try_init(|| async {
                self.client
                    .auth(
                        &self.oci_ref(None, None),
                        &self.auth,
                        RegistryOperation::Push,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| self.failed("authenticating for push", &e))
            })
            .await
            .map(|_| ())
    }
}

/// A blob body as it arrives.
pub struct BlobStream {
    pub content_length: Option<u64>,
    pub stream: futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
}

/// The media type a manifest declares; one without `mediaType` (allowed in
/// OCI) is told apart by its shape.
fn media_type_of(bytes: &[u8]) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
        schema_version: Option<u32>,
    }
    match serde_json::from_slice::<Shape>(bytes) {
        Ok(Shape {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Shape {
            schema_version: Some(2),
            manifests: Some(_),
            ..
        }) => oci::MEDIA_OCI_INDEX.to_owned(),
        Ok(Shape {
            schema_version: Some(2),
            config: Some(_),
            ..
        }) => oci::MEDIA_OCI_MANIFEST.to_owned(),
        Ok(Shape {
            schema_version: Some(v),
            ..
        }) => format!("schema version {v}"),
        _ => "(not a JSON manifest)".to_owned(),
    }
}

/// Docker's OAuth2 flow for identity tokens: read the bearer challenge from
/// `/v2/`, then POST the refresh token to the realm for an access token
/// scoped to this repository.
async fn exchange_identity_token(
    endpoint: &Endpoint,
    path: &str,
    refresh_token: &str,
    access: Access,
) -> Result<String, RegistryError> {
    let fail = |reason: String| RegistryError::Token {
        endpoint: endpoint.host.clone(),
        reason,
    };
    let http = http_client(endpoint).map_err(fail)?;
    let base = base_url(endpoint);
    let ping = http
        .get(format!("{base}/v2/"))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let challenge = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_bearer_challenge)
        .ok_or_else(|| fail("the registry does not ask for bearer tokens".into()))?;
    let scope = match access {
        Access::Pull => format!("repository:{path}:pull"),
        Access::Push => format!("repository:{path}:pull,push"),
    };
    let mut form = vec![
        ("grant_type", "refresh_token".to_owned()),
        ("refresh_token", refresh_token.to_owned()),
        ("client_id", "hutch".to_owned()),
        ("scope", scope),
    ];
    if let Some(service) = challenge.service {
        form.push(("service", service));
    }
    let reply = http
        .post(&challenge.realm)
        .form(&form)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = reply.status();
    let body = reply.bytes().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)])
        )));
    }
    #[derive(Deserialize)]
    struct TokenReply {
        access_token: Option<String>,
        token: Option<String>,
    }
    let parsed: TokenReply = serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
    parsed
        .access_token
        .or(parsed.token)
        .ok_or_else(|| fail("the reply has no access_token".into()))
}

/// What a registry's error answer says: the messages of its JSON
/// `errors` (or their codes), else the start of the body as text.
fn registry_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<Errors>(body) {
        let texts: Vec<String> = parsed
            .errors
            .into_iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code
                } else {
                    e.message
                }
            })
            .filter(|t| !t.is_empty())
            .collect();
        if !texts.is_empty() {
            return texts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.trim().to_owned()
}

/// Why a bounded GET failed.
enum Bounded {
    /// The answer was longer than the limit (its size so far, or as
    /// announced).
    TooLarge(u64),
    Failed(RegistryError),
}

/// The target of a `Link: <URL>; rel="next"` header (RFC 8288, as the
/// distribution API pages tag lists), if there is one.
fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let next = params.split(';').any(|param| {
                let param = param.trim().replace(' ', "");
                param == "rel=\"next\"" || param == "rel=next"
            });
            next.then(|| target.to_owned())
        })
}

/// A plain HTTP client for the registry calls oci-client does not make
/// (manifests, token exchange, login), trusting the system's roots and the
/// endpoint's extra CAs.
pub(crate) fn http_client(endpoint: &Endpoint) -> Result<reqwest::Client, String> {
    http_client_with_timeouts(endpoint, Duration::from_secs(30), Duration::from_secs(120))
}

/// As [`http_client`], with the caller's connect and whole-request limits.
pub(crate) fn http_client_with_timeouts(
    endpoint: &Endpoint,
    connect: Duration,
    total: Duration,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect)
        .timeout(total)
        .tls_certs_only(roots::reqwest_roots());
    for pem in &endpoint.ca_pem {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| e.to_string())?;
        builder = builder.tls_certs_merge([cert]);
    }
    builder.build().map_err(|e| e.to_string())
}

/// `scheme://host` of an endpoint; Docker Hub's API lives on its own host.
pub(crate) fn base_url(endpoint: &Endpoint) -> String {
    let scheme = match endpoint.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let host = if endpoint.host == "docker.io" {
        "registry-1.docker.io"
    } else {
        endpoint.host.as_str()
    };
    format!("{scheme}://{host}")
}

pub(crate) struct BearerChallenge {
    pub(crate) realm: String,
    pub(crate) service: Option<String>,
    /// The scope the registry asks a token for (`registry:catalog:*`).
    pub(crate) scope: Option<String>,
}

/// `Bearer realm="https://auth.example/token",service="registry.example"`.
pub(crate) fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let params = header
        .trim()
        .strip_prefix("Bearer ")
        .or_else(|| header.trim().strip_prefix("bearer "))?;
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            "scope" => scope = Some(value.to_owned()),
            _ => {}
        }
        rest = tail.trim_start_matches([',', ' ']);
    }
    Some(BearerChallenge {
        realm: realm?,
        service,
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_answers_read_as_their_messages() {
        assert_eq!(
            registry_message(
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"},{"code":"DENIED"}]}"#
            ),
            "manifest unknown; DENIED"
        );
        assert_eq!(
            registry_message(b"Client sent an HTTP request to an HTTPS server.\n"),
            "Client sent an HTTP request to an HTTPS server."
        );
        assert_eq!(registry_message(&[b'x'; 1000]).len(), 300);
    }

    #[test]
    fn tag_list_pages_link_to_the_next() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(next_page(&headers), None);
        headers.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_static(
                "</v2/a/b/tags/list?last=v2&n=2>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_page(&headers).as_deref(),
            Some("/v2/a/b/tags/list?last=v2&n=2")
        );
        headers.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_static(
                "<https://r/docs>; rel=\"help\", <https://r/v2/x/tags/list?last=b>; rel=next",
            ),
        );
        assert_eq!(
            next_page(&headers).as_deref(),
            Some("https://r/v2/x/tags/list?last=b")
        );
        headers.insert(
            reqwest::header::LINK,
            reqwest::header::HeaderValue::from_static("<https://r/docs>; rel=\"help\""),
        );
        assert_eq!(next_page(&headers), None);
    }

    #[test]
    fn bearer_challenges_parse() {
        let c = parse_bearer_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .expect("challenge");
        assert_eq!(c.realm, "https://auth.docker.io/token");
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/busybox:pull"));
        assert!(parse_bearer_challenge(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn only_tls_answers_justify_trying_https() {
        let err = |cause: &str| RegistryError::Request {
            what: "fetching".into(),
            endpoint: "127.0.0.1:5000".into(),
            cause: cause.into(),
        };
        assert!(
            err("code: 400, message: Client sent an HTTP request to an HTTPS server.")
                .is_tls_only_server()
        );
        assert!(!err("OCI API error: manifest unknown").is_tls_only_server());
        assert!(!err("Not authorized: url http://127.0.0.1:5000/v2/").is_tls_only_server());
    }

    #[test]
    fn media_types_by_field_or_shape() {
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"mediaType":"application/x-foo"}"#),
            "application/x-foo"
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"manifests":[]}"#),
            oci::MEDIA_OCI_INDEX
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"config":{},"layers":[]}"#),
            oci::MEDIA_OCI_MANIFEST
        );
        assert_eq!(media_type_of(br#"{"schemaVersion":1}"#), "schema version 1");
        assert_eq!(media_type_of(b"<html>"), "(not a JSON manifest)");
    }
}
