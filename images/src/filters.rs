//! `images --filter` parsing and matching: reference (glob), dangling,
//! label, before and since, as the docker CLI accepts them.

use crate::reference::Reference;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("bad format of filter {0:?}: expected key=value")]
    Format(String),
    #[error("invalid filter {0:?}: valid filters are reference, dangling, label, before, since")]
    UnknownKey(String),
    #[error("invalid value {0:?} for the dangling filter: use true or false")]
    Dangling(String),
}

/// Filters for listing images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilters {
    /// Glob patterns on `name` or `name:tag` (familiar form); any may match.
    pub reference: Vec<String>,
    pub dangling: Option<bool>,
    /// `key` or `key=value`; all must match.
    pub labels: Vec<(String, Option<String>)>,
    /// Only images created before / since these images.
    pub before: Option<String>,
    pub since: Option<String>,
}

impl ListFilters {
    /// Parses `key=value` filter arguments.
    pub fn parse(args: &[String]) -> Result<ListFilters, FilterError> {
        let mut out = ListFilters::default();
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| FilterError::Format(arg.clone()))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "reference" => out.reference.push(value.to_owned()),
                "dangling" => {
                    out.dangling = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(FilterError::Dangling(value.to_owned())),
                    })
                }
                "label" => out.labels.push(match value.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (value.to_owned(), None),
                }),
                "before" => out.before = Some(value.to_owned()),
                "since" => out.since = Some(value.to_owned()),
                other => return Err(FilterError::UnknownKey(other.to_owned())),
            }
        }
        Ok(out)
    }
}

/// Whether a tag matches a reference pattern. Docker matches the pattern
/// against the familiar name and against `name:tag`; `*` does not cross
/// `/`.
pub fn reference_matches(pattern: &str, tag: &Reference) -> bool {
    let name = tag.familiar_name();
    let full = match tag.tag() {
        Some(t) => format!("{name}:{t}"),
        None => name.clone(),
    };
    glob(pattern.as_bytes(), name.as_bytes()) || glob(pattern.as_bytes(), full.as_bytes())
}

/// `path.Match`-style globbing with `*` and `?` (neither matches `/`).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob(&pattern[1..], text)
                || (!text.is_empty() && text[0] != b'/' && glob(pattern, &text[1..]))
        }
        (Some(b'?'), Some(&c)) if c != b'/' => glob(&pattern[1..], &text[1..]),
        (Some(&p), Some(&c)) if p == c && p != b'?' => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing() {
        assert!(glob(b"busy*", b"busybox"));
        assert!(glob(b"*", b"busybox"));
        assert!(!glob(b"*", b"user/app"));
        assert!(glob(b"*/*", b"user/app"));
        assert!(glob(b"b?sybox", b"busybox"));
        assert!(!glob(b"busybox", b"busybox2"));
    }

    #[test]
    fn reference_patterns() {
        let r = Reference::parse("busybox:1.36").expect("valid");
        assert!(reference_matches("busybox", &r));
        assert!(reference_matches("busybox:1.*", &r));
        assert!(reference_matches("busy*", &r));
        assert!(!reference_matches("busybox:latest", &r));
        let r = Reference::parse("localhost:5000/a/b:t").expect("valid");
        assert!(reference_matches("localhost:5000/a/*", &r));
    }

    #[test]
    fn parses_filters() {
        let f = ListFilters::parse(&[
            "dangling=true".into(),
            "label=a=b".into(),
            "label=c".into(),
            "reference=busy*".into(),
            "before=x".into(),
        ])
        .expect("valid filters");
        assert_eq!(f.dangling, Some(true));
        assert_eq!(
            f.labels,
            vec![("a".into(), Some("b".into())), ("c".into(), None)]
        );
        assert_eq!(f.reference, vec!["busy*".to_string()]);
        assert_eq!(f.before.as_deref(), Some("x"));
        assert_eq!(
            ListFilters::parse(&["x".into()]),
            Err(FilterError::Format("x".into()))
        );
        assert!(matches!(
            ListFilters::parse(&["color=red".into()]),
            Err(FilterError::UnknownKey(_))
        ));
        assert!(matches!(
            ListFilters::parse(&["dangling=maybe".into()]),
            Err(FilterError::Dangling(_))
        ));
    }
}
