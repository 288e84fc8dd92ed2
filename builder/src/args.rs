//! Build arguments: `--build-arg` values, the automatic platform ARGs and the
//! predefined proxy ARGs, and the global (before the first FROM) ARG scope.

use std::collections::BTreeMap;

use crate::dockerfile::{Command, Dockerfile};
use crate::error::ParseError;
use crate::platform::Platform;
use crate::shell::{EnvList, Lexer};

/// `--build-arg NAME=value` values given to a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildArgs {
    values: BTreeMap<String, String>,
}

/// Proxy variables every build accepts without an ARG. They reach RUN's
/// environment but, unless declared, never the image history or the cache key.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl BuildArgs {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.values.insert(key.to_string(), value.to_string());
        self
    }

    /// Parses a `NAME=value` CLI argument. A bare `NAME` takes the value of the
    /// caller's environment variable, and is skipped when that is unset.
    pub fn add_cli(&mut self, arg: &str, lookup_env: impl Fn(&str) -> Option<String>) {
        match arg.split_once('=') {
            Some((k, v)) => {
                self.set(k, v);
            }
            None => {
                if let Some(v) = lookup_env(arg) {
                    self.set(arg, &v);
                }
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The proxy variables given, for RUN's environment.
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        PROXY_ARGS
            .iter()
            .filter_map(|k| self.get(k).map(|v| (k.to_string(), v.to_string())))
            .collect()
    }
}

/// The automatic platform ARGs (BUILDPLATFORM, TARGETARCH, ...) and TARGETSTAGE;
/// a `--build-arg` of the same name overrides each.
pub fn platform_args(
    build: &Platform,
    target: &Platform,
    target_stage: &str,
    overrides: &BuildArgs,
) -> EnvList {
    let variant = |p: &Platform| p.variant.clone().unwrap_or_default();
    let pairs = [
        ("BUILDPLATFORM", build.to_string()),
        ("BUILDOS", build.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", build.arch.clone()),
        ("BUILDVARIANT", variant(build)),
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", target.arch.clone()),
        ("TARGETVARIANT", variant(target)),
        (
            "TARGETSTAGE",
            if target_stage.is_empty() {
                "default".to_string()
            } else {
                target_stage.to_string()
            },
        ),
    ];
    let mut env = EnvList::new();
    for (k, v) in pairs {
        env.set(k, overrides.get(k).unwrap_or(&v));
    }
    env
}

/// The global ARG scope: platform ARGs, then the ARGs before the first FROM, each
/// taking its `--build-arg` value or its default expanded with the ARGs before it.
pub fn global_args(
    df: &Dockerfile,
    base: EnvList,
    build_args: &BuildArgs,
) -> Result<EnvList, ParseError> {
    let mut env = base;
    let lex = Lexer::new(df.escape);
    for ins in &df.meta_args {
        let Command::Arg(decls) = &ins.command else {
            continue;
        };
        for decl in decls {
            let value = match (build_args.get(&decl.key), &decl.default) {
                (Some(v), _) => Some(v.to_string()),
                (None, Some(default)) => Some(
                    lex.process_word(default, &env)
                        .map_err(|e| ParseError::new(&df.file, ins.span.start, e.to_string()))?
                        .value,
                ),
                (None, None) => None,
            };
            if let Some(v) = value {
                env.set(&decl.key, &v);
            }
        }
    }
    Ok(env)
}
