//! API versions: what we advertise, what we accept, and the `/v{version}`
//! path prefix every route may carry.

/// The newest API version served: what docker CLI 28.x asks for, so it
/// never downgrades.
pub const API_VERSION: &str = "1.50";
/// The oldest API version accepted (moby's minimum).
pub const MIN_API_VERSION: &str = "1.24";

const MAX: ApiVersion = ApiVersion(1, 50);
const MIN: ApiVersion = ApiVersion(1, 24);

/// A request's API version; unversioned requests get the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub const LATEST: ApiVersion = MAX;

    fn parse(v: &str) -> Option<ApiVersion> {
        let (major, minor) = v.split_once('.')?;
        Some(ApiVersion(major.parse().ok()?, minor.parse().ok()?))
    }
}

/// Splits `/v1.50/containers/json` into `(1.50, "/containers/json")`,
/// refusing versions outside what we serve with moby's messages.
pub fn split_version(path: &str) -> Result<(ApiVersion, &str), String> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok((ApiVersion::LATEST, path));
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        // Not a version prefix (e.g. `/volumes`): an ordinary path.
        return Ok((ApiVersion::LATEST, path));
    }
    let Some(requested) = ApiVersion::parse(version) else {
        return Err(format!("invalid API version {version:?}"));
    };
    if requested > MAX {
        return Err(format!(
            "client version {version} is too new. Maximum supported API version is {API_VERSION}"
        ));
    }
    if requested < MIN {
        return Err(format!(
            "client version {version} is too old. Minimum supported API version is \
             {MIN_API_VERSION}, please upgrade your client to a newer version"
        ));
    }
    Ok((requested, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefix() {
        assert_eq!(split_version("/_ping"), Ok((ApiVersion::LATEST, "/_ping")));
        assert_eq!(
            split_version("/v1.44/containers/json"),
            Ok((ApiVersion(1, 44), "/containers/json"))
        );
        assert_eq!(
            split_version("/volumes"),
            Ok((ApiVersion::LATEST, "/volumes"))
        );
        assert_eq!(
            split_version("/v1.51/_ping"),
            Err("client version 1.51 is too new. Maximum supported API version is 1.50".into())
        );
        assert!(split_version("/v1.12/_ping")
            .err()
            .is_some_and(|m| m.contains("too old")));
        assert!(split_version("/v1/_ping").is_err());
    }
}
