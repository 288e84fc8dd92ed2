//! Docker image references: parsing, validation and normalisation.
//!
//! The grammar is the one the docker CLI and distribution use:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := host [ ":" port ]        host: DNS name, IPv4 or [IPv6]
//! path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! ```
//!
//! Normalisation follows Docker: a first component that is not a domain
//! (no `.` or `:` and not `localhost`) means Docker Hub, `index.docker.io` is
//! `docker.io`, and a single-component Hub name gets `library/`. The full
//! form is stored; the familiar (short) form is for display.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: the reference is empty")]
    Empty,
    #[error(
        "invalid repository name ({0}): cannot specify 64-byte hexadecimal strings; \
         refer to an image by ID as sha256:<hex>"
    )]
    HexName(String),
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error(
        "invalid reference format: {reference:?} has an invalid repository path component \
         {component:?} (use lowercase letters, digits and single separators . _ __ -)"
    )]
    PathComponent {
        reference: String,
        component: String,
    },
    #[error("invalid reference format: {reference:?} has an invalid registry host {domain:?}")]
    Domain { reference: String, domain: String },
    #[error(
        "invalid reference format: {reference:?} has an invalid tag {tag:?} (a tag is up to \
         128 characters of letters, digits, _ . - and must not start with . or -)"
    )]
    Tag { reference: String, tag: String },
    #[error("invalid reference format: {reference:?} has an invalid digest: {cause}")]
    Digest {
        reference: String,
        cause: DigestError,
    },
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    NameTooLong(String),
}

/// A normalised image reference: `domain/path[:tag][@digest]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`, adding the `latest` tag when it has
    /// neither tag nor digest (what `docker pull busybox` means).
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_normalized(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Parses and normalises `s` without adding a default tag (for filters
    /// that name a whole repository).
    pub fn parse_normalized(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::HexName(s.to_owned()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest
                    .parse::<Digest>()
                    .map_err(|cause| ReferenceError::Digest {
                        reference: s.to_owned(),
                        cause,
                    })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag; earlier ones are ports.
        let (name, tag) = match rest.rfind(':') {
            Some(colon) if !rest[colon..].contains('/') => {
                (&rest[..colon], Some(rest[colon + 1..].to_owned()))
            }
            _ => (rest, None),
        };
        if let Some(tag) = &tag {
            if !is_valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference: s.to_owned(),
                    tag: tag.clone(),
                });
            }
        }
        let (domain, path) = split_domain(name);
        if let Some(domain) = &domain {
            if !is_valid_domain(domain) {
                return Err(ReferenceError::Domain {
                    reference: s.to_owned(),
                    domain: domain.clone(),
                });
            }
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path.to_owned()));
        }
        for component in path.split('/') {
            if !is_valid_path_component(component) {
                return Err(ReferenceError::PathComponent {
                    reference: s.to_owned(),
                    component: component.to_owned(),
                });
            }
        }
        let mut domain = domain.unwrap_or_else(|| DEFAULT_DOMAIN.to_owned());
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN.to_owned();
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_REPO_PREFIX}{path}")
        } else {
            path.to_owned()
        };
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(format!("{domain}/{path}")));
        }
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name, e.g. `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it, e.g. `busybox`,
    /// `user/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference in familiar form, e.g. `busybox:latest`.
    pub fn familiar(&self) -> String {
        self.render(self.familiar_name())
    }

    /// The same repository with `tag` and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !is_valid_tag(tag) {
            return Err(ReferenceError::Tag {
                reference: self.name(),
                tag: tag.to_owned(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.repository()
        })
    }

    /// The same repository with `digest` and no tag (a repo digest).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            tag: None,
            ..self.repository()
        }
    }

    /// The repository alone, without tag or digest.
    pub fn repository(&self) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: None,
        }
    }

    fn render(&self, name: String) -> String {
        let mut out = name;
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(&digest.to_string());
        }
        out
    }
}

/// Splits off the domain the way Docker does: only a first component that
/// looks like a host (has `.` or `:`, is `localhost`, or has uppercase
/// letters, which repository paths never have) is a domain.
fn split_domain(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first.to_owned()), rest)
        }
        _ => (None, name),
    }
}

fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

fn is_valid_path_component(component: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    // Alternating runs: alnum+ (separator alnum+)*
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let sep_start = i;
        while i < bytes.len() && matches!(bytes[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &component[sep_start..i];
        let sep_ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !sep_ok {
            return false;
        }
    }
}

fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // [IPv6]:port
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after.strip_prefix(':') {
            Some(port) => ("", Some(port)),
            None if after.is_empty() => ("", None),
            None => return false,
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if domain.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    /// The full form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(self.name()))
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        Reference::parse(s)
            .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
            .to_string()
    }

    #[test]
    fn normalises_docker_hub_names() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1"),
            ("user/sub/app", "docker.io/user/sub/app:latest"),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "input {input:?}");
        }
    }

    #[test]
    fn keeps_other_registries() {
        let cases = [
            ("localhost:5000/a/b:t", "localhost:5000/a/b:t"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("quay.io/org/app:1.0", "quay.io/org/app:1.0"),
            ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
            ("[::1]:5000/app:x", "[::1]:5000/app:x"),
            (
                "Registry.Example.com/app",
                "Registry.Example.com/app:latest",
            ),
            (
                "my-registry.local:443/a/b/c",
                "my-registry.local:443/a/b/c:latest",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "input {input:?}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("busybox@sha256:{HEX}")).expect("digest ref");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.hex()), Some(HEX));
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/busybox@sha256:{HEX}")
        );
        assert_eq!(r.familiar(), format!("busybox@sha256:{HEX}"));

        let r = Reference::parse(&format!("localhost:5000/a:t@sha256:{HEX}")).expect("both");
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "a");
        assert!(r.digest().is_some());
        assert_eq!(r.familiar(), format!("localhost:5000/a:t@sha256:{HEX}"));
    }

    #[test]
    fn familiar_forms() {
        let cases = [
            ("busybox", "busybox:latest", "busybox"),
            ("docker.io/library/busybox:1", "busybox:1", "busybox"),
            ("user/app", "user/app:latest", "user/app"),
            ("docker.io/library/a/b", "library/a/b:latest", "library/a/b"),
            (
                "localhost:5000/x",
                "localhost:5000/x:latest",
                "localhost:5000/x",
            ),
        ];
        for (input, familiar, name) in cases {
            let r = Reference::parse(input).expect("valid");
            assert_eq!(r.familiar(), familiar, "input {input:?}");
            assert_eq!(r.familiar_name(), name, "input {input:?}");
        }
    }

    #[test]
    fn parse_normalized_adds_no_tag() {
        let r = Reference::parse_normalized("busybox").expect("valid");
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
    }

    #[test]
    fn separators_in_path_components() {
        for ok in [
            "a.b", "a_b", "a__b", "a-b", "a---b", "a.b-c_d", "0", "a1/b2",
        ] {
            assert!(Reference::parse(ok).is_ok(), "{ok:?} should be valid");
        }
        for bad in [
            "a..b", "a___b", "-a", "a-", "a_", ".a", "a/", "/a", "a//b", "a._b",
        ] {
            assert!(
                matches!(
                    Reference::parse(bad),
                    Err(ReferenceError::PathComponent { .. })
                ),
                "{bad:?} should be rejected as a bad path component"
            );
        }
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse(HEX),
            Err(ReferenceError::HexName(_))
        ));
        assert!(matches!(
            Reference::parse("Busybox"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("docker.io/User/app"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("busybox:"),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            Reference::parse("busybox:-x"),
            Err(ReferenceError::Tag { .. })
        ));
        let long_tag = format!("busybox:{}", "a".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(Reference::parse(&format!("busybox:{}", "a".repeat(128))).is_ok());
        assert!(matches!(
            Reference::parse("busybox@sha256:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("busybox@md5:abc"),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            Reference::parse("bad_host.com:5000/app"),
            Err(ReferenceError::Domain { .. })
        ));
        assert!(matches!(
            Reference::parse("host:port/app"),
            Err(ReferenceError::Domain { .. })
        ));
        assert!(matches!(
            Reference::parse("[::1/app"),
            Err(ReferenceError::Domain { .. })
        ));
        let long = format!("x/{}", "a".repeat(260));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::NameTooLong(_))
        ));
        let msg = Reference::parse("Busybox")
            .expect_err("uppercase")
            .to_string();
        assert!(msg.contains("must be lowercase"), "{msg}");
    }

    #[test]
    fn with_tag_and_digest() {
        let r = Reference::parse("busybox:1").expect("valid");
        assert_eq!(
            r.with_tag("2").expect("valid tag").to_string(),
            "docker.io/library/busybox:2"
        );
        assert!(r.with_tag("..").is_err());
        let d = Digest::of(b"m");
        assert_eq!(
            r.with_digest(d.clone()).to_string(),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(r.repository().to_string(), "docker.io/library/busybox");
    }
}
