//! Query parameters, read as moby reads them: booleans the way Go's
//! `httputils.BoolValue` does (docker-py sends `True`/`False`, the Go client
//! `1`/`0`), and `filters` in both JSON shapes clients send.

use std::collections::{BTreeMap, BTreeSet};

use super::error::ApiError;

/// The decoded query string, in order; repeated keys keep every value.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key`, treating an empty value as absent.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// Every value of `key` (`names=a&names=b`).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// moby's `BoolValue`: anything but empty, `0`, `no`, `false` and `none`
    /// (any case) is true; an absent key is false.
    pub fn bool(&self, key: &str) -> bool {
        self.get(key).is_some_and(truthy)
    }

    /// The `filters` parameter (empty when absent).
    pub fn filters(&self) -> Result<Filters, ApiError> {
        match self.non_empty("filters") {
            None => Ok(Filters::default()),
            Some(raw) => Filters::from_json(raw),
        }
    }
}

fn truthy(value: &str) -> bool {
    let v = value.trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

/// `filters` as moby's `filters.Args`: key → set of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    map: BTreeMap<String, BTreeSet<String>>,
}

impl Filters {
    /// Accepts `{"k":{"v":true}}` (Go clients) and `{"k":["v"]}` (docker-py,
    /// old clients). In the map form moby keeps a value whatever its bool.
    pub fn from_json(raw: &str) -> Result<Filters, ApiError> {
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("invalid filter: expected a JSON object"))?;
        let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, values) in object {
            let set = map.entry(key.clone()).or_default();
            match values {
                serde_json::Value::Object(m) => set.extend(m.keys().cloned()),
                serde_json::Value::Array(list) => {
                    for v in list {
                        let s = v.as_str().ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "invalid filter: values of {key:?} must be strings"
                            ))
                        })?;
                        set.insert(s.to_owned());
                    }
                }
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter: {key:?} must map to an object or a list"
                    )))
                }
            }
        }
        Ok(Filters { map })
    }

    /// Refuses keys the endpoint does not know, with moby's message.
    pub fn allow_only(&self, keys: &[&str]) -> Result<(), ApiError> {
        match self.map.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
            None => Ok(()),
        }
    }

    pub fn values(&self, key: &str) -> impl Iterator<Item = &str> {
        self.map.get(key).into_iter().flatten().map(String::as_str)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|s| !s.is_empty())
    }

    /// The single value of a key that takes one (`dangling`, `until`).
    pub fn single(&self, key: &str) -> Result<Option<&str>, ApiError> {
        let mut values = self.values(key);
        let first = values.next();
        if values.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "filter {key:?} takes one value"
            )));
        }
        Ok(first)
    }

    /// A boolean filter (`dangling=true`), strict as moby's `GetBoolOrDefault`.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.single(key)? {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(ApiError::bad_request(format!(
                    "invalid filter '{key}={v}': use true or false"
                ))),
            },
        }
    }

    /// `key=value` strings, the form the image store's filters parse.
    pub fn pairs(&self) -> Vec<String> {
        self.map
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
            .collect()
    }
}

/// A `since`/`until` value as moby's `timetypes.GetTimestamp` accepts it:
/// unix seconds with an optional fraction (what the Go client sends), an
/// RFC 3339 time, or a Go duration like `10m` meaning that long ago.
pub fn timestamp(value: &str, now: i64) -> Result<i64, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid timestamp {value:?}"));
    if let Some((secs, frac)) = value.split_once('.').or(Some((value, ""))) {
        if let Ok(secs) = secs.parse::<i64>() {
            if frac.is_empty() || frac.bytes().all(|b| b.is_ascii_digit()) {
                let digits = &frac[..frac.len().min(9)];
                let nanos = if digits.is_empty() {
                    0
                } else {
                    digits.parse::<i64>().map_err(|_| bad())? * 10_i64.pow(9 - digits.len() as u32)
                };
                return Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
            }
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    let (number, unit) = value.split_at(
        value
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(bad)?,
    );
    let n: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        _ => return Err(bad()),
    };
    Ok(now - (n * scale) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let now = 2_000_000_000_000_000_000;
        assert_eq!(timestamp("1700000000", now), Ok(1_700_000_000_000_000_000));
        assert_eq!(
            timestamp("1700000000.5", now),
            Ok(1_700_000_000_500_000_000)
        );
        assert_eq!(
            timestamp("1700000000.000000001", now),
            Ok(1_700_000_000_000_000_001)
        );
        assert_eq!(
            timestamp("2023-11-14T22:13:20Z", now),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(timestamp("10m", now), Ok(now - 600_000_000_000));
        assert!(timestamp("yesterday", now).is_err());
    }

    #[test]
    fn booleans_as_moby_reads_them() {
        let q = Query::parse(Some("a=1&b=True&c=False&d=0&e=&f=yes&g=none"));
        assert!(q.bool("a"));
        assert!(q.bool("b"));
        assert!(!q.bool("c"));
        assert!(!q.bool("d"));
        assert!(!q.bool("e"));
        assert!(q.bool("f"));
        assert!(!q.bool("g"));
        assert!(!q.bool("missing"));
    }

    #[test]
    fn repeated_keys_and_escapes() {
        let q = Query::parse(Some("names=a%2Fb%3A1&names=c&x=%7B%7D"));
        assert_eq!(q.all("names"), vec!["a/b:1", "c"]);
        assert_eq!(q.get("x"), Some("{}"));
    }

    #[test]
    fn filters_in_both_shapes() {
        let go = Filters::from_json(r#"{"label":{"a=b":true},"dangling":{"true":true}}"#)
            .expect("map form");
        let py = Filters::from_json(r#"{"label":["a=b"],"dangling":["true"]}"#).expect("list");
        assert_eq!(go, py);
        assert_eq!(go.values("label").collect::<Vec<_>>(), vec!["a=b"]);
        assert_eq!(go.bool("dangling"), Ok(Some(true)));
        assert!(go.allow_only(&["label"]).is_err());
        assert!(go.allow_only(&["label", "dangling"]).is_ok());
        assert!(Filters::from_json("{nope").is_err());
        assert!(Filters::from_json(r#"{"a":3}"#).is_err());
        assert_eq!(go.pairs(), vec!["dangling=true", "label=a=b"]);
    }
}
