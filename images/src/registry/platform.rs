//! Platforms as `--platform` names them, normalised the way Docker
//! (containerd's `platforms` package) does, and the choice of one manifest
//! from a manifest list or OCI index.

use crate::oci::{self, Descriptor, Platform};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os[/arch[/variant]], e.g. linux/arm64/v8")]
    Invalid(String),
}

/// Parses `--platform`: `os`, `arch`, `os/arch` or `os/arch/variant`, and
/// normalises it (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` →
/// `arm/v7`, ...). A single word that is an OS gets the machine's
/// architecture; any other single word is an architecture on Linux.
pub fn parse_platform(spec: &str) -> Result<Platform, PlatformError> {
    let lower = spec.trim().to_ascii_lowercase();
    let parts: Vec<&str> = lower.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
        return Err(PlatformError::Invalid(spec.to_owned()));
    }
    let host = oci::host_platform();
    let (os, arch, variant) = match parts.as_slice() {
        [one] if is_known_os(one) => {
            return Ok(normalize(Platform {
                os: (*one).to_owned(),
                ..host
            }))
        }
        [arch] => ("linux", *arch, None),
        [os, arch] => (*os, *arch, None),
        [os, arch, variant] => (*os, *arch, Some(*variant)),
        _ => return Err(PlatformError::Invalid(spec.to_owned())),
    };
    Ok(normalize(Platform {
        os: os.to_owned(),
        architecture: arch.to_owned(),
        variant: variant.map(str::to_owned),
    }))
}

fn is_known_os(word: &str) -> bool {
    matches!(
        word,
        "linux" | "windows" | "darwin" | "freebsd" | "netbsd" | "openbsd" | "solaris" | "illumos"
    )
}

/// containerd's `platforms.Normalize`: canonical architecture names and
/// the default variants (`arm` means v7; arm64's v8 is its only variant
/// and is dropped so that it matches entries without one).
pub fn normalize(p: Platform) -> Platform {
    let os = if p.os == "macos" {
        "darwin".into()
    } else {
        p.os
    };
    let (architecture, variant) = match (p.architecture.as_str(), p.variant.as_deref()) {
        ("i386", _) => ("386".to_owned(), None),
        ("x86_64" | "x86-64" | "amd64", v) => (
            "amd64".to_owned(),
            v.filter(|v| *v != "v1").map(str::to_owned),
        ),
        ("aarch64" | "arm64", Some("8" | "v8") | None) => ("arm64".to_owned(), None),
        ("aarch64" | "arm64", Some(v)) => ("arm64".to_owned(), Some(v.to_owned())),
        ("armhf", _) => ("arm".to_owned(), Some("v7".to_owned())),
        ("armel", _) => ("arm".to_owned(), Some("v6".to_owned())),
        ("arm", None | Some("7")) => ("arm".to_owned(), Some("v7".to_owned())),
        ("arm", Some(v @ ("5" | "6" | "8"))) => ("arm".to_owned(), Some(format!("v{v}"))),
        (arch, v) => (arch.to_owned(), v.map(str::to_owned)),
    };
    Platform {
        os,
        architecture,
        variant,
    }
}

/// How well an index entry suits `want`, `None` if it does not run there.
/// Higher is better: an exact variant beats a missing one, which beats an
/// older arm variant the machine can still run (v7 runs v6 and v5).
fn score(have: &Platform, want: &Platform) -> Option<u32> {
    let have = normalize(have.clone());
    if have.os != want.os || have.architecture != want.architecture {
        return None;
    }
    match (&have.variant, &want.variant) {
        (a, b) if a == b => Some(3),
        (None, _) | (_, None) => Some(2),
        (Some(a), Some(b)) if have.architecture == "arm" && arm_level(a) < arm_level(b) => Some(1),
        _ => None,
    }
}

fn arm_level(variant: &str) -> u32 {
    variant.trim_start_matches('v').parse().unwrap_or(0)
}

/// Picks the best entry of an index for `want`: entries without a platform
/// only count when they are the index's only entry (a single-image index).
pub fn select<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let want = normalize(want.clone());
    let mut best: Option<(u32, &Descriptor)> = None;
    for entry in entries {
        let s = match &entry.platform {
            Some(p) => score(p, &want),
            None if entries.len() == 1 => Some(0),
            None => None,
        };
        if let Some(s) = s {
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, entry));
            }
        }
    }
    best.map(|(_, e)| e)
}

/// `os/arch[/variant]`, for messages.
pub fn display(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    #[test]
    fn parses_and_normalises_like_docker() {
        assert_eq!(parse_platform("linux/amd64"), Ok(p("linux", "amd64", None)));
        assert_eq!(parse_platform("x86_64"), Ok(p("linux", "amd64", None)));
        assert_eq!(
            parse_platform("linux/aarch64"),
            Ok(p("linux", "arm64", None))
        );
        assert_eq!(
            parse_platform("linux/arm64/v8"),
            Ok(p("linux", "arm64", None))
        );
        assert_eq!(
            parse_platform("linux/arm"),
            Ok(p("linux", "arm", Some("v7")))
        );
        assert_eq!(
            parse_platform("linux/armhf"),
            Ok(p("linux", "arm", Some("v7")))
        );
        assert_eq!(
            parse_platform("Linux/ARM/6"),
            Ok(p("linux", "arm", Some("v6")))
        );
        assert_eq!(parse_platform("linux/i386"), Ok(p("linux", "386", None)));
        assert_eq!(
            parse_platform("linux").map(|p| p.os),
            Ok("linux".to_owned())
        );
        assert!(parse_platform("linux//v7").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }

    fn entry(n: u8, platform: Option<Platform>) -> Descriptor {
        Descriptor {
            media_type: oci::MEDIA_OCI_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            annotations: Default::default(),
            platform,
        }
    }

    #[test]
    fn selects_the_best_entry() {
        let entries = vec![
            entry(0, Some(p("linux", "arm", Some("v6")))),
            entry(1, Some(p("linux", "arm", Some("v7")))),
            entry(2, Some(p("linux", "arm64", Some("v8")))),
            entry(3, Some(p("linux", "amd64", None))),
            entry(4, Some(p("unknown", "unknown", None))),
        ];
        let pick = |want: Platform| select(&entries, &want).map(|d| d.digest.clone());
        assert_eq!(pick(p("linux", "amd64", None)), Some(Digest::of(&[3])));
        assert_eq!(pick(p("linux", "arm64", None)), Some(Digest::of(&[2])));
        assert_eq!(pick(p("linux", "arm", Some("v7"))), Some(Digest::of(&[1])));
        assert_eq!(pick(p("linux", "arm", Some("v6"))), Some(Digest::of(&[0])));
        assert_eq!(pick(p("linux", "s390x", None)), None);
        let older = vec![entry(0, Some(p("linux", "arm", Some("v5"))))];
        assert_eq!(
            select(&older, &p("linux", "arm", Some("v7"))).map(|d| d.digest.clone()),
            Some(Digest::of(&[0]))
        );
        let single = vec![entry(9, None)];
        assert!(select(&single, &p("linux", "amd64", None)).is_some());
    }
}
