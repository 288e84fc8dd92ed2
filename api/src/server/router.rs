//! Routing: strip and check the `/v{version}` prefix, then dispatch on
//! method and path. Every route is served both unversioned and versioned.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};

use super::response::{self, Body};
use super::{system, Daemon};

pub async fn route(daemon: &Daemon, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let mut resp = match split_version(&path) {
        Err(message) => response::error(StatusCode::BAD_REQUEST, &message),
        Ok((_version, rest)) => dispatch(daemon, req.method(), rest).await,
    };
    response::add_common_headers(&mut resp);
    resp
}

async fn dispatch(daemon: &Daemon, method: &Method, path: &str) -> Response<Body> {
    match (method, path) {
        (&Method::GET, "/_ping") => system::ping(false),
        (&Method::HEAD, "/_ping") => system::ping(true),
        (&Method::GET, "/version") => system::version(daemon),
        _ => response::error(StatusCode::NOT_FOUND, "page not found"),
    }
}

/// Split `/v1.50/containers/json` into `(Some("1.50"), "/containers/json")`,
/// refusing versions outside what we serve with moby's message.
fn split_version(path: &str) -> Result<(Option<&str>, &str), String> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        // Not a version prefix (e.g. `/volumes`): an ordinary path.
        return Ok((None, path));
    }
    let Some(requested) = parse_version(version) else {
        return Err(format!("invalid API version {version:?}"));
    };
    if requested > parse_version(system::API_VERSION).unwrap_or((0, 0)) {
        return Err(format!(
            "client version {version} is too new. Maximum supported API version is {}",
            system::API_VERSION
        ));
    }
    if requested < parse_version(system::MIN_API_VERSION).unwrap_or((0, 0)) {
        return Err(format!(
            "client version {version} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            system::MIN_API_VERSION
        ));
    }
    Ok((Some(version), tail))
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix() {
        assert_eq!(split_version("/_ping"), Ok((None, "/_ping")));
        assert_eq!(
            split_version("/v1.50/containers/json"),
            Ok((Some("1.50"), "/containers/json"))
        );
        assert_eq!(split_version("/volumes"), Ok((None, "/volumes")));
        assert!(split_version("/v1.99/_ping")
            .err()
            .is_some_and(|m| m.contains("too new")));
        assert!(split_version("/v1.12/_ping")
            .err()
            .is_some_and(|m| m.contains("too old")));
    }
}
