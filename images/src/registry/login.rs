//! `docker login` as the daemon does it: check credentials against a
//! registry's `/v2/` endpoint, answering through whichever scheme it asks
//! for (none, Basic, or a Bearer token service), so that a wrong password
//! is reported at login rather than at the first pull.

use super::auth::{AuthConfig, AuthError, Credential};
use super::client::{base_url, http_client, parse_bearer_challenge};
use super::config::{Endpoint, RegistrySettings, HUB_DOMAIN};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The registry refused the credentials (the API answers 401).
    #[error("{0}")]
    Unauthorized(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("login to {registry}: {reason}")]
    Unreachable { registry: String, reason: String },
}

/// The registry host a login's `serveraddress` names: Docker Hub's
/// historical spellings become `docker.io`; a scheme and path are dropped.
pub fn login_domain(server: &str) -> String {
    let trimmed = server.trim();
    if trimmed.is_empty() {
        return HUB_DOMAIN.to_owned();
    }
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" | "registry.hub.docker.com" => {
            HUB_DOMAIN.to_owned()
        }
        other => other.to_owned(),
    }
}

/// Checks `auth` against `server`. On success the registry accepted the
/// credentials (or asks for none).
pub async fn login(
    settings: &RegistrySettings,
    server: &str,
    auth: &AuthConfig,
) -> Result<(), LoginError> {
    let domain = login_domain(server);
    let credential = auth.credential()?;
    let mut last = None;
    for endpoint in settings.endpoints(&domain) {
        if endpoint.mirror {
            continue;
        }
        match try_endpoint(&endpoint, &credential).await {
            Ok(()) => return Ok(()),
            Err(err @ LoginError::Unauthorized(_)) => return Err(err),
            Err(err) if endpoint.may_fall_back => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| LoginError::Unreachable {
        registry: domain,
        reason: "no endpoint to try".to_owned(),
    }))
}

async fn try_endpoint(endpoint: &Endpoint, credential: &Credential) -> Result<(), LoginError> {
    let unreachable = |reason: String| LoginError::Unreachable {
        registry: endpoint.host.clone(),
        reason,
    };
    let http = http_client(endpoint).map_err(unreachable)?;
    let ping_url = format!("{}/v2/", base_url(endpoint));
    let ping = http
        .get(&ping_url)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if ping.status().is_success() {
        return Ok(());
    }
    if ping.status() != reqwest::StatusCode::UNAUTHORIZED {
        return Err(unreachable(format!(
            "{ping_url} answered {}",
            ping.status()
        )));
    }
    let (user, pass) = match credential {
        Credential::Basic { username, password } => (username.clone(), password.clone()),
        // A token from an earlier login: the registry judges it on use.
        Credential::RegistryToken(_) | Credential::IdentityToken(_) => return Ok(()),
        Credential::Anonymous => {
            return Err(LoginError::Unauthorized(format!(
                "login attempt to {ping_url} failed with status: 401 Unauthorized (no credentials)"
            )))
        }
    };
    let challenge = ping
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (url, query) = match parse_bearer_challenge(&challenge) {
        Some(bearer) => {
            let mut query = vec![("account", user.clone())];
            if let Some(service) = bearer.service {
                query.push(("service", service));
            }
            (bearer.realm, query)
        }
        None => (ping_url.clone(), Vec::new()),
    };
    let reply = http
        .get(&url)
        .query(&query)
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = reply.status();
    if status.is_success() {
        return Ok(());
    }
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(LoginError::Unauthorized(format!(
            "login attempt to {url} failed with status: {status}"
        )));
    }
    Err(unreachable(format!("{url} answered {status}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_name_their_registry() {
        assert_eq!(login_domain(""), "docker.io");
        assert_eq!(login_domain("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(login_domain("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(login_domain("http://localhost:5000/v2/"), "localhost:5000");
    }
}
