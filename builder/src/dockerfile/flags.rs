//! Instruction flags (`--from=x`, `--link`, `--exclude=a --exclude=b`) checked
//! against what each instruction accepts, as BuildKit's `BFlags` does.

use std::collections::BTreeMap;

use super::words::RawFlag;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--flag`, `--flag=true|false`.
    Bool,
    /// `--flag=value`, once.
    String,
    /// `--flag=value`, repeatable.
    Strings,
}

/// The flags an instruction was given, after validation.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
}

/// A flag error and the byte offset of the offending flag in the instruction text.
pub(crate) struct FlagError {
    pub offset: usize,
    pub message: String,
}

impl Flags {
    /// Validates `raw` against `allowed` (name, kind).
    pub fn parse(raw: &[RawFlag], allowed: &[(&'static str, Kind)]) -> Result<Flags, FlagError> {
        let mut flags = Flags::default();
        for flag in raw {
            let err = |message: String| FlagError {
                offset: flag.offset,
                message,
            };
            let Some(body) = flag.text.strip_prefix("--") else {
                return Err(err(format!("arg should start with -- : {}", flag.text)));
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let shown = format!("--{name}");
            let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                return Err(err(format!("unknown flag: {shown}")));
            };
            let slot = flags.values.entry(key).or_default();
            if !slot.is_empty() && kind != Kind::Strings {
                return Err(err(format!("duplicate flag specified: {shown}")));
            }
            match kind {
                Kind::Bool => {
                    if value == Some("") {
                        return Err(err(format!("missing a value on flag: {shown}")));
                    }
                    let v = match value.map(str::to_ascii_lowercase).as_deref() {
                        None | Some("true") => "true",
                        Some("false") => "false",
                        Some(_) => {
                            return Err(err(format!(
                                "expecting boolean value for flag {shown}, not: {}",
                                value.unwrap_or_default()
                            )))
                        }
                    };
                    slot.push(v.to_string());
                }
                Kind::String | Kind::Strings => match value {
                    None => return Err(err(format!("missing a value on flag: {shown}"))),
                    Some(v) => slot.push(v.to_string()),
                },
            }
        }
        Ok(flags)
    }

    pub fn used(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn bool(&self, name: &str) -> bool {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .is_some_and(|v| v == "true")
    }

    /// `Some(true/false)` when given, `None` when not.
    pub fn opt_bool(&self, name: &str) -> Option<bool> {
        self.used(name).then(|| self.bool(name))
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last()).cloned()
    }

    pub fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}
