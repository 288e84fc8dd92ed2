//! `RUN --mount=...` specifications: cache, secret, bind, tmpfs and ssh mounts with
//! their options, validated as BuildKit validates them
//! (`instructions/commands_runmount.go`). Option values may use build variables;
//! they are expanded when the RUN executes, so a spec is kept as fields and turned
//! into a typed [`Mount`] by [`MountSpec::resolve`].

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => Self::Bind,
            "cache" => Self::Cache,
            "tmpfs" => Self::Tmpfs,
            "secret" => Self::Secret,
            "ssh" => Self::Ssh,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::Cache => "cache",
            Self::Tmpfs => "tmpfs",
            Self::Secret => "secret",
            Self::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

impl Sharing {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Private => "private",
            Self::Locked => "locked",
        }
    }
}

/// A resolved mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// A stage name or image reference to take the source from (bind, cache).
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub readonly: bool,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// Cache id or secret/ssh id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    /// Secret/ssh: fail when not provided.
    pub required: bool,
    /// Secret: expose it as this environment variable.
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A `--mount` value as written, split into `key[=value]` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub raw: String,
    fields: Vec<(String, Option<String>)>,
}

impl MountSpec {
    /// Splits the value (CSV, `"..."` quoting a field) and checks what can be checked
    /// before expansion: `from` cannot use variables.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut fields = Vec::new();
        for field in csv_fields(raw).map_err(|e| format!("failed to parse csv mounts: {e}"))? {
            let (k, v) = match field.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_string())),
                None => (field.to_ascii_lowercase(), None),
            };
            if k == "from" {
                if let Some(v) = &v {
                    if v.find('$').is_some_and(|i| i != v.len() - 1) {
                        return Err(
                            "'from' doesn't support variable expansion, define alias stage instead"
                                .to_string(),
                        );
                    }
                }
            }
            fields.push((k, v));
        }
        Ok(Self {
            raw: raw.to_string(),
            fields,
        })
    }

    /// The `from=` value, which never needs expansion.
    pub fn from(&self) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == "from")
            .and_then(|(_, v)| v.as_deref())
    }

    /// Builds the typed mount, expanding each value with `expand`.
    pub fn resolve(
        &self,
        expand: &mut dyn FnMut(&str) -> Result<String, String>,
    ) -> Result<Mount, String> {
        let mut m = Mount {
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            size: None,
            id: None,
            sharing: None,
            required: false,
            env: None,
            mode: None,
            uid: None,
            gid: None,
        };
        let mut ro_auto = true;
        for (key, value) in &self.fields {
            let Some(value) = value else {
                match key.as_str() {
                    "readonly" | "ro" => {
                        m.readonly = true;
                        ro_auto = false;
                    }
                    "readwrite" | "rw" => {
                        m.readonly = false;
                        ro_auto = false;
                    }
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true
                    }
                    "required" => {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            m.kind.as_str()
                        ))
                    }
                    _ => return Err(format!("invalid field '{key}' must be a key=value pair")),
                }
                continue;
            };
            let value = expand(value)?;
            let parse_bool = |v: &str| -> Result<bool, String> {
                match v.to_ascii_lowercase().as_str() {
                    "1" | "t" | "true" => Ok(true),
                    "0" | "f" | "false" => Ok(false),
                    _ => Err(format!("invalid value for {key}: {v}")),
                }
            };
            match key.as_str() {
                "type" => {
                    m.kind = MountType::parse(&value)
                        .ok_or_else(|| format!("unsupported mount type {value:?}"))?
                }
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => {
                    m.readonly = parse_bool(&value)?;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = !parse_bool(&value)?;
                    ro_auto = false;
                }
                "required" => {
                    if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                        return Err(format!(
                            "unexpected key 'required' for mount type '{}'",
                            m.kind.as_str()
                        ));
                    }
                    m.required = parse_bool(&value)?;
                }
                "size" => {
                    if m.kind != MountType::Tmpfs {
                        return Err(format!(
                            "unexpected key 'size' for mount type '{}'",
                            m.kind.as_str()
                        ));
                    }
                    m.size = Some(
                        ram_in_bytes(&value)
                            .ok_or_else(|| format!("invalid value for size: {value}"))?,
                    );
                }
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => Sharing::Shared,
                        "private" => Sharing::Private,
                        "locked" => Sharing::Locked,
                        _ => return Err(format!("unsupported sharing value {value:?}")),
                    })
                }
                "mode" => {
                    m.mode = Some(
                        u32::from_str_radix(&value, 8)
                            .map_err(|_| format!("invalid value {value} for mode"))?,
                    )
                }
                "uid" => {
                    m.uid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("invalid value {value} for uid"))?,
                    )
                }
                "gid" => {
                    m.gid = Some(
                        value
                            .parse()
                            .map_err(|_| format!("invalid value {value} for gid"))?,
                    )
                }
                "env" => m.env = Some(value),
                _ => return Err(format!("unexpected key '{key}' in '{key}={value}'")),
            }
        }
        let file_info_allowed = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info_allowed {
            for (name, set) in [
                ("mode", m.mode.is_some()),
                ("uid", m.uid.is_some()),
                ("gid", m.gid.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{name} not allowed for {:?} type mounts",
                        m.kind.as_str()
                    ));
                }
            }
        }
        if ro_auto {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err("secret mount should not have a from".to_string());
            }
            if m.sharing.is_some() {
                return Err("secret mount should not define sharing".to_string());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err("invalid secret mount. one of source, target required".to_string());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("both source and id can't be set".to_string());
            }
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(format!(
                "invalid cache sharing set for {} mount",
                m.kind.as_str()
            ));
        }
        Ok(m)
    }
}

impl fmt::Display for Mount {
    /// A canonical `key=value,...` form (for dumps and cache keys).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "type={}", self.kind.as_str())?;
        let opt = |f: &mut fmt::Formatter<'_>, k: &str, v: &Option<String>| match v {
            Some(v) => write!(f, ",{k}={v}"),
            None => Ok(()),
        };
        opt(f, "from", &self.from)?;
        opt(f, "source", &self.source)?;
        opt(f, "target", &self.target)?;
        opt(f, "id", &self.id)?;
        opt(f, "env", &self.env)?;
        if let Some(s) = self.sharing {
            write!(f, ",sharing={}", s.as_str())?;
        }
        if let Some(s) = self.size {
            write!(f, ",size={s}")?;
        }
        if let Some(m) = self.mode {
            write!(f, ",mode={m:o}")?;
        }
        if let Some(u) = self.uid {
            write!(f, ",uid={u}")?;
        }
        if let Some(g) = self.gid {
            write!(f, ",gid={g}")?;
        }
        if self.required {
            write!(f, ",required")?;
        }
        write!(f, ",{}", if self.readonly { "ro" } else { "rw" })
    }
}

/// One CSV record: fields split on `,`; a field starting with `"` runs to the
/// closing quote, `""` inside it being one quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".to_string()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous or missing \" in quoted-field".to_string()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in non-quoted-field".to_string()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Sizes as docker's `units.RAMInBytes`: `512`, `64k`, `1.5g`, `10MiB`, 1024-based.
fn ram_in_bytes(s: &str) -> Option<u64> {
    let num_len = s
        .char_indices()
        .take_while(|(_, c)| c.is_ascii_digit() || *c == '.')
        .count();
    let (num, unit) = s.split_at(num_len);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(s: &str) -> Result<Mount, String> {
        MountSpec::parse(s)?.resolve(&mut |v| Ok(v.to_string()))
    }

    #[test]
    fn cache_mount_with_options() {
        let m = resolve("type=cache,target=/root/.cache,id=go,sharing=locked,uid=1000,mode=0750")
            .expect("valid");
        assert_eq!(
            m.to_string(),
            "type=cache,target=/root/.cache,id=go,sharing=locked,mode=750,uid=1000,rw"
        );
    }

    #[test]
    fn defaults_and_errors() {
        assert!(resolve("target=/x").expect("bind").readonly);
        assert!(
            !resolve("type=tmpfs,target=/t,size=64m")
                .expect("tmpfs")
                .readonly
        );
        assert_eq!(
            resolve("type=tmpfs,target=/t,size=64m").expect("t").size,
            Some(64 << 20)
        );
        assert!(resolve("type=secret").is_err());
        assert!(resolve("type=bind,uid=1").is_err());
        assert!(resolve("type=cache,target=/x,bogus=1").is_err());
        assert!(resolve("type=nfs").is_err());
        assert!(MountSpec::parse("from=$STAGE").is_err());
        assert_eq!(
            csv_fields(r#"type=secret,"target=/a,b",id=x"#).expect("csv"),
            ["type=secret", "target=/a,b", "id=x"]
        );
    }
}
