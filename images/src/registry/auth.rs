//! Registry credentials, found as Docker finds them: an explicit
//! [`AuthConfig`] from the API (the `X-Registry-Auth` header) wins;
//! otherwise `config.json` (`$DOCKER_CONFIG` or `~/.docker`): a credential
//! helper for the registry (`credHelpers`), the default store
//! (`credsStore`), or the inline `auths` entry.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The key Docker files Docker Hub credentials under.
const HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";
/// The username a credential helper returns with an identity token.
const TOKEN_USERNAME: &str = "<token>";
/// config.json larger than this is not a config file.
const MAX_CONFIG: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("credential helper docker-credential-{helper} failed: {reason}")]
    Helper { helper: String, reason: String },
    #[error("invalid registry auth: {0}")]
    Header(String),
}

/// Docker's `AuthConfig`: what a client sends with a pull or push.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// base64 of `username:password`, as config.json stores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(
        default,
        rename = "serveraddress",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_address: Option<String>,
    /// An OAuth2 refresh token, exchanged for an access token at the
    /// registry's token endpoint.
    #[serde(
        default,
        rename = "identitytoken",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity_token: Option<String>,
    /// A bearer token sent to the registry as it is.
    #[serde(
        default,
        rename = "registrytoken",
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_token: Option<String>,
}

impl AuthConfig {
    pub fn basic(username: &str, password: &str) -> AuthConfig {
        AuthConfig {
            username: Some(username.to_owned()),
            password: Some(password.to_owned()),
            ..AuthConfig::default()
        }
    }

    /// Decodes an `X-Registry-Auth` header: base64url (padded or not) JSON.
    pub fn from_header(value: &str) -> Result<AuthConfig, AuthError> {
        let value = value.trim();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(value))
            .map_err(|e| AuthError::Header(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| AuthError::Header(e.to_string()))
    }

    /// What this config says to present to the registry.
    pub fn credential(&self) -> Result<Credential, AuthError> {
        if let Some(token) = self.registry_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Credential::RegistryToken(token.clone()));
        }
        if let Some(token) = self.identity_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Credential::IdentityToken(token.clone()));
        }
        let (user, pass) = match (&self.username, &self.password, &self.auth) {
            (Some(u), Some(p), _) if !u.is_empty() => (u.clone(), p.clone()),
            (_, _, Some(auth)) if !auth.is_empty() => decode_auth(auth)?,
            _ => return Ok(Credential::Anonymous),
        };
        Ok(Credential::Basic {
            username: user,
            password: pass,
        })
    }
}

/// The credential for `registry`: the explicit one when it holds any,
/// else what the user's Docker config says.
pub fn resolve_credential(
    explicit: Option<&AuthConfig>,
    registry: &str,
) -> Result<Credential, AuthError> {
    if let Some(auth) = explicit {
        let credential = auth.credential()?;
        if credential != Credential::Anonymous {
            return Ok(credential);
        }
    }
    DockerConfig::load_default()?.credential_for(registry)
}

fn decode_auth(auth: &str) -> Result<(String, String), AuthError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| AuthError::Header(format!("\"auth\" is not base64: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| AuthError::Header("\"auth\" is not UTF-8".to_owned()))?;
    let (user, pass) = text
        .split_once(':')
        .ok_or_else(|| AuthError::Header("\"auth\" is not username:password".to_owned()))?;
    Ok((user.to_owned(), pass.to_owned()))
}

/// What to present to one registry.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Credential {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// OAuth2 refresh token (Docker's `identitytoken`).
    IdentityToken(String),
    /// Bearer token used as is (Docker's `registrytoken`).
    RegistryToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets, not even in debug logs.
        match self {
            Credential::Anonymous => write!(f, "Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
            Credential::RegistryToken(_) => write!(f, "RegistryToken(<redacted>)"),
        }
    }
}

/// The parts of Docker's config.json that hold credentials.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DockerConfig {
    #[serde(default)]
    pub auths: BTreeMap<String, AuthConfig>,
    #[serde(default, rename = "credsStore")]
    pub creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
    /// Where to find `docker-credential-*` helpers; `None` searches `PATH`.
    #[serde(skip)]
    pub helper_dir: Option<PathBuf>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; an absent
    /// file is an empty config.
    pub fn load_default() -> Result<DockerConfig, AuthError> {
        let dir = match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
                Some(home) => PathBuf::from(home).join(".docker"),
                None => return Ok(DockerConfig::default()),
            },
        };
        DockerConfig::load(&dir.join("config.json"))
    }

    pub fn load(path: &Path) -> Result<DockerConfig, AuthError> {
        let bytes = match crate::store::read_limited(path, MAX_CONFIG) {
            Ok(bytes) => bytes,
            Err(crate::store::StoreError::Io { cause, .. })
                if matches!(
                    cause.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                // Docker, too, goes on anonymously without a readable config.
                tracing::debug!(path = %path.display(), %cause, "no docker config");
                return Ok(DockerConfig::default());
            }
            Err(e) => {
                return Err(AuthError::Config {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| AuthError::Config {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The credential for `registry` (a host\[:port\], `docker.io` for Hub).
    pub fn credential_for(&self, registry: &str) -> Result<Credential, AuthError> {
        let key = config_key(registry);
        let helper = self
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_key(k) == normalize_key(&key))
            .map(|(_, h)| h.clone())
            .or_else(|| self.creds_store.clone())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            if let Some(cred) = run_helper(self.helper_dir.as_deref(), &helper, &key)? {
                return Ok(cred);
            }
        }
        match self
            .auths
            .iter()
            .find(|(k, _)| normalize_key(k) == normalize_key(&key))
        {
            Some((_, auth)) => auth.credential(),
            None => Ok(Credential::Anonymous),
        }
    }
}

/// The key Docker uses in config.json and with helpers for a registry.
fn config_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => HUB_CONFIG_KEY.to_owned(),
        other => other.to_owned(),
    }
}

/// Keys may be written `https://host/v1/`, `http://host` or `host`.
fn normalize_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin, as
/// Docker does. `None` when the helper has no credentials for it.
fn run_helper(
    dir: Option<&Path>,
    helper: &str,
    server: &str,
) -> Result<Option<Credential>, AuthError> {
    let name = format!("docker-credential-{helper}");
    let program = match dir {
        Some(dir) => dir.join(&name),
        None => PathBuf::from(&name),
    };
    let fail = |reason: String| AuthError::Helper {
        helper: helper.to_owned(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {name}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let output = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_owned()
            + String::from_utf8_lossy(&output.stderr).trim();
        // The helpers' protocol: this message means "nothing stored".
        if message.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("{}: {message}", output.status)));
    }
    let reply: HelperReply = serde_json::from_slice(&output.stdout)
        .map_err(|e| fail(format!("unreadable reply: {e}")))?;
    if reply.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if reply.username == TOKEN_USERNAME {
        Credential::IdentityToken(reply.secret)
    } else {
        Credential::Basic {
            username: reply.username,
            password: reply.secret,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn header_decodes_padded_and_unpadded() {
        let json = r#"{"username":"u","password":"p?>","serveraddress":"r.example"}"#;
        for engine in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let auth = AuthConfig::from_header(&engine.encode(json)).expect("decodes");
            assert_eq!(
                auth.credential().expect("credential"),
                Credential::Basic {
                    username: "u".into(),
                    password: "p?>".into()
                }
            );
        }
        let token = AuthConfig::from_header(
            &base64::engine::general_purpose::URL_SAFE.encode(r#"{"identitytoken":"t"}"#),
        )
        .expect("decodes");
        assert_eq!(
            token.credential().expect("credential"),
            Credential::IdentityToken("t".into())
        );
        assert!(AuthConfig::from_header("!!!").is_err());
    }

    #[test]
    fn config_json_auths_and_keys() {
        let config: DockerConfig = serde_json::from_str(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},
                "http://127.0.0.1:5000":{"auth":"dTpwOnE="},
                "tok.example":{"identitytoken":"refresh"}}}"#,
        )
        .expect("parse");
        let basic = |u: &str, p: &str| Credential::Basic {
            username: u.into(),
            password: p.into(),
        };
        assert_eq!(
            config.credential_for("docker.io").expect("hub"),
            basic("hub", "secret")
        );
        assert_eq!(
            config.credential_for("127.0.0.1:5000").expect("local"),
            basic("u", "p:q")
        );
        assert_eq!(
            config.credential_for("tok.example").expect("token"),
            Credential::IdentityToken("refresh".into())
        );
        assert_eq!(
            config.credential_for("other.example").expect("none"),
            Credential::Anonymous
        );
    }

    #[test]
    fn credential_helpers_are_run_as_docker_runs_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let helper = dir.path().join("docker-credential-hutchunit");
        // Echoes the server it was asked about, so the test sees the key.
        std::fs::write(
            &helper,
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\n\
             case \"$server\" in\n\
             reg.example) echo '{\"ServerURL\":\"reg.example\",\"Username\":\"me\",\"Secret\":\"pw\"}';;\n\
             https://index.docker.io/v1/) echo '{\"Username\":\"<token>\",\"Secret\":\"idt\"}';;\n\
             *) echo 'credentials not found in native keychain'; exit 1;;\n\
             esac\n",
        )
        .expect("write helper");
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut config: DockerConfig = serde_json::from_str(
            r#"{"credsStore":"hutchunit","auths":{"x.example":{"auth":"eDp5"}}}"#,
        )
        .expect("parse");
        config.helper_dir = Some(dir.path().to_owned());
        assert_eq!(
            config.credential_for("reg.example").expect("helper"),
            Credential::Basic {
                username: "me".into(),
                password: "pw".into()
            }
        );
        assert_eq!(
            config.credential_for("docker.io").expect("helper token"),
            Credential::IdentityToken("idt".into())
        );
        // Not in the helper: the inline entry still counts.
        assert_eq!(
            config.credential_for("x.example").expect("fallback"),
            Credential::Basic {
                username: "x".into(),
                password: "y".into()
            }
        );
    }
}
