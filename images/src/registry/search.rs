//! `docker search` (`GET /images/search`): the registry a term names is
//! asked its v1 search API (`/v1/search?q=&n=`), as Docker does; a registry
//! without one (the distribution v2 registry, most private ones) is asked
//! its v2 catalog instead, as Podman does: `/v2/_catalog`, page by page
//! (`n`/`last`, the `Link` header), filtered by the term. Credentials come
//! as for a pull (the API's `X-Registry-Auth`, else the Docker config); the
//! catalog is authenticated through whichever scheme the registry asks for
//! (Basic, or a Bearer token for `registry:catalog:*`).

use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, LINK, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{resolve_credential, AuthConfig, AuthError, Credential};
use super::client::{base_url, describe, http_client_with_timeouts, parse_bearer_challenge};
use super::config::{Endpoint, RegistrySettings, HUB_DOMAIN};

/// Docker's default and largest `limit`.
pub const DEFAULT_LIMIT: i64 = 25;
pub const MAX_LIMIT: i64 = 100;
/// Repositories asked for per catalog page.
const CATALOG_PAGE: usize = 100;
/// Catalog pages read at most (10,000 repositories): a registry whose
/// `Link` never ends cannot keep a search going.
const MAX_PAGES: usize = 100;
/// A catalog answer larger than this is not one.
const MAX_BODY: usize = 4 << 20;
/// Limits for each request: an unreachable registry fails within these,
/// well inside clients' own timeouts (docker-py's is 60 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Docker Hub's v1 search lives.
const HUB_SEARCH: &str = "https://index.docker.io";

/// One result, in Docker's JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResult {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub star_count: u64,
    #[serde(default)]
    pub is_official: bool,
    #[serde(default)]
    pub is_automated: bool,
}

/// Docker's search filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilters {
    pub is_official: Option<bool>,
    /// Deprecated in Docker: `true` matches nothing, results say `false`.
    pub is_automated: Option<bool>,
    /// At least this many stars.
    pub stars: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("invalid repository name: repository name ({0}) should not have a scheme")]
    Scheme(String),
    #[error("limit {0} is outside the range of [1, 100]")]
    Limit(i64),
    #[error("unauthorized: {registry}: {reason}; log in with `docker login {registry}`")]
    Unauthorized { registry: String, reason: String },
    #[error("couldn't search registry {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("couldn't search registry {registry}: {reason}")]
    Registry { registry: String, reason: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// The registry a search term names and the term within it, as moby's
/// `splitReposSearchTerm`: a first part with `.` or `:`, or `localhost`,
/// is a registry host; anything else searches Docker Hub.
pub fn split_term(term: &str) -> (String, String) {
    match term.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => {
            (host.to_owned(), rest.to_owned())
        }
        _ => (HUB_DOMAIN.to_owned(), term.to_owned()),
    }
}

/// Searches the registry `term` names. `limit` 0 is Docker's default (25).
pub async fn search(
    settings: &RegistrySettings,
    auth: Option<&AuthConfig>,
    term: &str,
    limit: i64,
    filters: &SearchFilters,
) -> Result<Vec<SearchResult>, SearchError> {
    if term.contains("://") {
        return Err(SearchError::Scheme(term.to_owned()));
    }
    // As moby: `is-automated=true` matches nothing, before anything is asked.
    if filters.is_automated == Some(true) {
        return Ok(Vec::new());
    }
    let limit = if limit == 0 { DEFAULT_LIMIT } else { limit };
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(SearchError::Limit(limit));
    }
    let limit = usize::try_from(limit).unwrap_or(CATALOG_PAGE);
    let (index, mut remote) = split_term(term);
    if index == HUB_DOMAIN {
        // Hub stores `library/foo` as `foo`.
        remote = remote
            .strip_prefix("library/")
            .unwrap_or(&remote)
            .to_owned();
    }
    let credential = resolve_credential(auth, &index)?;
    let endpoints: Vec<Endpoint> = settings
        .endpoints(&index)
        .into_iter()
        .filter(|e| !e.mirror)
        .collect();
    let mut first_err = None;
    for endpoint in &endpoints {
        let searcher = Searcher::new(endpoint, &index, &credential)?;
        match searcher.run(&remote, limit).await {
            Ok(results) => return Ok(apply(results, filters, limit)),
            Err(err @ SearchError::Unauthorized { .. }) => return Err(err),
            Err(err) if endpoint.may_fall_back => {
                first_err.get_or_insert(err);
            }
            Err(err) => return Err(first_err.unwrap_or(err)),
        }
    }
    Err(first_err.unwrap_or_else(|| SearchError::Unreachable {
        registry: index,
        reason: "no endpoint to try".to_owned(),
    }))
}

/// Docker's filters on the results, `is_automated` forced false.
fn apply(results: Vec<SearchResult>, filters: &SearchFilters, limit: usize) -> Vec<SearchResult> {
    results
        .into_iter()
        .filter(|r| filters.is_official.is_none_or(|o| r.is_official == o))
        .filter(|r| filters.stars.is_none_or(|s| r.star_count >= s))
        .map(|r| SearchResult {
            is_automated: false,
            ..r
        })
        .take(limit)
        .collect()
}

/// One endpoint's search.
struct Searcher<'a> {
    http: reqwest::Client,
    endpoint: &'a Endpoint,
    /// The registry as the term named it (the results' name prefix).
    index: &'a str,
    credential: &'a Credential,
}

impl<'a> Searcher<'a> {
    fn new(
        endpoint: &'a Endpoint,
        index: &'a str,
        credential: &'a Credential,
    ) -> Result<Searcher<'a>, SearchError> {
        let http = http_client_with_timeouts(endpoint, CONNECT_TIMEOUT, REQUEST_TIMEOUT).map_err(
            |reason| SearchError::Unreachable {
                registry: index.to_owned(),
                reason,
            },
        )?;
        Ok(Searcher {
            http,
            endpoint,
            index,
            credential,
        })
    }

    fn unreachable(&self, err: &reqwest::Error) -> SearchError {
        SearchError::Unreachable {
            registry: self.index.to_owned(),
            reason: describe(err),
        }
    }

    fn registry_error(&self, reason: String) -> SearchError {
        SearchError::Registry {
            registry: self.index.to_owned(),
            reason,
        }
    }

    async fn run(&self, remote: &str, limit: usize) -> Result<Vec<SearchResult>, SearchError> {
        let hub = self.index == HUB_DOMAIN;
        // Podman skips the v1 API for an empty term (the whole catalog).
        if hub || !remote.is_empty() {
            match self.v1(remote, limit).await? {
                V1::Results(results) => return Ok(results),
                V1::Absent(status) if hub => {
                    return Err(self.registry_error(format!("Unexpected status code {status}")))
                }
                V1::Absent(status) => {
                    tracing::debug!(registry = self.index, %status, "no v1 search API: reading the v2 catalog");
                }
            }
        }
        self.catalog(remote, limit).await
    }

    /// `/v1/search`; `Absent` when the registry has no such API (any answer
    /// but 200 with JSON results).
    async fn v1(&self, remote: &str, limit: usize) -> Result<V1, SearchError> {
        let base = if self.index == HUB_DOMAIN {
            HUB_SEARCH.to_owned()
        } else {
            base_url(self.endpoint)
        };
        let mut request = self
            .http
            .get(format!("{base}/v1/search"))
            .query(&[("q", remote), ("n", &limit.to_string())]);
        if let Credential::Basic { username, password } = self.credential {
            request = request.basic_auth(username, Some(password));
        }
        let reply = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = reply.status();
        if status != StatusCode::OK {
            return Ok(V1::Absent(status));
        }
        #[derive(Deserialize)]
        struct V1Results {
            results: Vec<SearchResult>,
        }
        let body = read_body(reply).await.map_err(|e| self.unreachable(&e))?;
        Ok(match serde_json::from_slice::<V1Results>(&body) {
            Ok(parsed) => V1::Results(parsed.results),
            Err(_) => V1::Absent(status),
        })
    }

    /// The v2 catalog, filtered by `remote` (a substring, case-insensitive),
    /// an exact match first, at most `limit` names.
    async fn catalog(&self, remote: &str, limit: usize) -> Result<Vec<SearchResult>, SearchError> {
        let base = base_url(self.endpoint);
        let wanted = remote.to_ascii_lowercase();
        let mut path = format!("/v2/_catalog?n={CATALOG_PAGE}");
        let mut authorization: Option<String> = None;
        let mut found: Vec<SearchResult> = Vec::new();
        for _ in 0..MAX_PAGES {
            let url = format!("{base}{path}");
            let mut reply = self.get(&url, authorization.as_deref()).await?;
            if reply.status() == StatusCode::UNAUTHORIZED && authorization.is_none() {
                let answer = self.answer_challenge(reply.headers()).await?;
                reply = self.get(&url, Some(&answer)).await?;
                authorization = Some(answer);
            }
            let status = reply.status();
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(SearchError::Unauthorized {
                    registry: self.index.to_owned(),
                    reason: format!("the registry refused to list its repositories ({status})"),
                });
            }
            let next = next_page(reply.headers());
            let body = read_body(reply).await.map_err(|e| self.unreachable(&e))?;
            if status != StatusCode::OK {
                return Err(self.registry_error(format!(
                    "{url} answered {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
                )));
            }
            #[derive(Deserialize)]
            struct Catalog {
                #[serde(default)]
                repositories: Vec<String>,
            }
            let page: Catalog = serde_json::from_slice(&body)
                .map_err(|e| self.registry_error(format!("{url} did not answer a catalog: {e}")))?;
            for repo in page.repositories {
                if found.len() == limit {
                    break;
                }
                let lower = repo.to_ascii_lowercase();
                if !lower.contains(&wanted) {
                    continue;
                }
                let result = SearchResult {
                    name: format!("{}/{repo}", self.index),
                    description: String::new(),
                    star_count: 0,
                    is_official: false,
                    is_automated: false,
                };
                // A full match leads, as in Podman.
                if lower == wanted {
                    found.insert(0, result);
                } else {
                    found.push(result);
                }
            }
            match next {
                Some(next) if found.len() < limit && next != path => path = next,
                _ => break,
            }
        }
        Ok(found)
    }

    async fn get(
        &self,
        url: &str,
        authorization: Option<&str>,
    ) -> Result<reqwest::Response, SearchError> {
        let mut request = self.http.get(url);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.send().await.map_err(|e| self.unreachable(&e))
    }

    /// The `Authorization` value a 401's challenge asks for.
    async fn answer_challenge(&self, headers: &HeaderMap) -> Result<String, SearchError> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let refused = |reason: &str| SearchError::Unauthorized {
            registry: self.index.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(bearer) = parse_bearer_challenge(&challenge) {
            if let Credential::RegistryToken(token) = self.credential {
                return Ok(format!("Bearer {token}"));
            }
            let scope = bearer
                .scope
                .unwrap_or_else(|| "registry:catalog:*".to_owned());
            let token = self.token(&bearer.realm, bearer.service, scope).await?;
            return Ok(format!("Bearer {token}"));
        }
        match self.credential {
            Credential::Basic { username, password } => {
                use base64::Engine as _;
                let pair = format!("{username}:{password}");
                Ok(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            Credential::Anonymous => Err(refused("authentication required")),
            _ => Err(refused(
                "the registry asks for a password, and the stored credential is a token",
            )),
        }
    }

    /// A token from the registry's token service: GET with Basic
    /// credentials (or none), or the OAuth2 refresh-token POST for an
    /// identity token.
    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: String,
    ) -> Result<String, SearchError> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let request = match self.credential {
            Credential::IdentityToken(refresh) => {
                let mut form = query.clone();
                form.push(("grant_type", "refresh_token".to_owned()));
                form.push(("refresh_token", refresh.clone()));
                form.push(("client_id", "hutch".to_owned()));
                self.http.post(realm).form(&form)
            }
            Credential::Basic { username, password } => {
                query.push(("account", username.clone()));
                self.http
                    .get(realm)
                    .query(&query)
                    .basic_auth(username, Some(password))
            }
            _ => self.http.get(realm).query(&query),
        };
        let reply = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = reply.status();
        let body = read_body(reply).await.map_err(|e| self.unreachable(&e))?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(SearchError::Unauthorized {
                registry: self.index.to_owned(),
                reason: format!("the token service refused the credentials ({status})"),
            });
        }
        if !status.is_success() {
            return Err(self.registry_error(format!("the token service answered {status}")));
        }
        #[derive(Deserialize)]
        struct TokenReply {
            access_token: Option<String>,
            token: Option<String>,
        }
        let parsed: TokenReply = serde_json::from_slice(&body)
            .map_err(|e| self.registry_error(format!("the token service's answer: {e}")))?;
        parsed
            .access_token
            .or(parsed.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.registry_error("the token service sent no token".to_owned()))
    }
}

enum V1 {
    Results(Vec<SearchResult>),
    Absent(StatusCode),
}

/// A body of at most `MAX_BODY` bytes (the rest is not read).
async fn read_body(mut reply: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = reply.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            body.truncate(MAX_BODY);
            break;
        }
    }
    Ok(body)
}

/// The next catalog page a `Link: </v2/_catalog?last=x&n=100>; rel="next"`
/// header names, as a path on the same registry (an absolute URL's host is
/// dropped: a search stays on the registry it asked).
fn next_page(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    let target = link.split(';').next()?.trim();
    let target = target.strip_prefix('<')?.strip_suffix('>')?;
    let path = match target.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => target,
    };
    path.starts_with("/v2/_catalog").then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn terms_name_their_registry() {
        assert_eq!(
            split_term("busybox"),
            ("docker.io".into(), "busybox".into())
        );
        assert_eq!(
            split_term("library/busybox"),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            split_term("localhost:5000/bus"),
            ("localhost:5000".into(), "bus".into())
        );
        assert_eq!(
            split_term("localhost/team/app"),
            ("localhost".into(), "team/app".into())
        );
        assert_eq!(
            split_term("registry.example/x"),
            ("registry.example".into(), "x".into())
        );
        assert_eq!(
            split_term("user/repo"),
            ("docker.io".into(), "user/repo".into())
        );
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = HeaderMap::new();
        assert_eq!(next_page(&h), None);
        h.insert(
            LINK,
            HeaderValue::from_static(r#"</v2/_catalog?last=b&n=100>; rel="next""#),
        );
        assert_eq!(next_page(&h).as_deref(), Some("/v2/_catalog?last=b&n=100"));
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<https://other.example/v2/_catalog?last=c>; rel="next""#),
        );
        assert_eq!(next_page(&h).as_deref(), Some("/v2/_catalog?last=c"));
        h.insert(
            LINK,
            HeaderValue::from_static(r#"</elsewhere>; rel="next""#),
        );
        assert_eq!(next_page(&h), None);
    }

    #[test]
    fn filters_as_docker_applies_them() {
        let r = |name: &str, stars: u64, official: bool| SearchResult {
            name: name.into(),
            description: String::new(),
            star_count: stars,
            is_official: official,
            is_automated: true,
        };
        let all = vec![r("a", 0, false), r("b", 5, true), r("c", 2, false)];
        let stars = SearchFilters {
            stars: Some(2),
            ..Default::default()
        };
        let names = |v: Vec<SearchResult>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(apply(all.clone(), &stars, 25)), ["b", "c"]);
        let official = SearchFilters {
            is_official: Some(true),
            ..Default::default()
        };
        assert_eq!(names(apply(all.clone(), &official, 25)), ["b"]);
        assert_eq!(
            names(apply(all.clone(), &SearchFilters::default(), 2)),
            ["a", "b"]
        );
        assert!(apply(all, &SearchFilters::default(), 25)
            .iter()
            .all(|r| !r.is_automated));
    }

    #[tokio::test]
    async fn bad_limits_and_schemes_are_refused_before_any_request() {
        let settings = RegistrySettings::default();
        let none = SearchFilters::default();
        for limit in [-1, 101] {
            let err = search(&settings, None, "localhost:1/x", limit, &none)
                .await
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                err,
                Some(format!("limit {limit} is outside the range of [1, 100]"))
            );
        }
        let err = search(&settings, None, "https://example.org/x", 0, &none)
            .await
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("should not have a scheme")));
        let automated = SearchFilters {
            is_automated: Some(true),
            ..Default::default()
        };
        let found = search(&settings, None, "localhost:1/x", 0, &automated).await;
        assert!(found.is_ok_and(|v| v.is_empty()));
    }
    /// A registry with a Bearer token service and a two-page catalog, as
    /// distribution with token auth serves it (the registry fixture of the
    /// integration tests speaks only Basic): one request per connection.
    async fn token_registry(listener: tokio::net::TcpListener) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let auth = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("authorization:")
                        .then(|| l[14..].trim().to_owned())
                })
                .unwrap_or_default();
            let basic = format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:p")
            );
            let (status, extra, body) = if path.starts_with("/v1/") {
                ("404 Not Found", String::new(), "{}".to_owned())
            } else if path.starts_with("/token?") {
                if auth == basic && path.contains("scope=registry%3Acatalog%3A") {
                    ("200 OK", String::new(), r#"{"token":"T"}"#.to_owned())
                } else {
                    ("401 Unauthorized", String::new(), "{}".to_owned())
                }
            } else if auth != "Bearer T" {
                let challenge = format!(
                    "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"registry:catalog:*\"\r\n"
                );
                ("401 Unauthorized", challenge, "{}".to_owned())
            } else if path.contains("last=") {
                (
                    "200 OK",
                    String::new(),
                    r#"{"repositories":["c/busybox-2","d/other"]}"#.to_owned(),
                )
            } else {
                (
                    "200 OK",
                    "Link: </v2/_catalog?last=b%2Fbusybox&n=100>; rel=\"next\"\r\n".to_owned(),
                    r#"{"repositories":["a/one","b/busybox"]}"#.to_owned(),
                )
            };
            let reply = format!(
                "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
            let _ = conn.shutdown().await;
        }
    }

    #[tokio::test]
    async fn catalog_behind_a_token_service_is_searched_page_by_page() {
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = tokio::spawn(token_registry(listener));
        let settings = RegistrySettings::default();
        let none = SearchFilters::default();
        let term = format!("127.0.0.1:{port}/busybox");
        let good = AuthConfig::basic("u", "p");
        let found = search(&settings, Some(&good), &term, 0, &none).await;
        let names: Vec<String> = found
            .map(|v| v.into_iter().map(|r| r.name).collect())
            .unwrap_or_else(|e| vec![e.to_string()]);
        assert_eq!(
            names,
            [
                format!("127.0.0.1:{port}/b/busybox"),
                format!("127.0.0.1:{port}/c/busybox-2")
            ]
        );
        // The limit stops before the second page.
        let one = search(&settings, Some(&good), &term, 1, &none).await;
        assert_eq!(one.map(|v| v.len()).ok(), Some(1));
        let bad = AuthConfig::basic("u", "wrong");
        let refused = search(&settings, Some(&bad), &term, 0, &none).await;
        assert!(
            matches!(refused, Err(SearchError::Unauthorized { .. })),
            "{refused:?}"
        );
        server.abort();
    }
}
