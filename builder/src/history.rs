//! History `created_by` text as `docker build` (BuildKit) writes it into the image
//! config, e.g. `RUN |2 A=1 B=2 /bin/sh -c make # buildkit` and
//! `COPY --chown=app src /dst # buildkit`. Instructions without a layer carry no
//! `# buildkit` suffix, as in BuildKit.

use std::time::Duration;

use crate::dockerfile::{Add, ArgDecl, Copy, HealthConfig, Healthcheck, KeyValue};

const SUFFIX: &str = " # buildkit";

/// RUN: the argv that ran (shell prepended for shell form) with the declared build
/// args in front as `|N k=v ...` (BuildKit's `runCommandString`).
pub fn run(argv: &[String], declared_args: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if !declared_args.is_empty() {
        parts.push(format!("|{}", declared_args.len()));
        parts.extend(declared_args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    format!("RUN {}{SUFFIX}", parts.join(" "))
}

fn copy_like(
    name: &str,
    parents: bool,
    chown: &Option<String>,
    chmod: &Option<String>,
    sources: &crate::dockerfile::Sources,
) -> String {
    let mut s = String::from(name);
    if parents {
        s.push_str(" --parents");
    }
    if let Some(c) = chown {
        s.push_str(&format!(" --chown={c}"));
    }
    if let Some(c) = chmod {
        s.push_str(&format!(" --chmod={c}"));
    }
    for p in &sources.paths {
        s.push(' ');
        s.push_str(p);
    }
    for h in &sources.inline {
        s.push_str(&format!(" <<{}", h.name));
    }
    s.push(' ');
    s.push_str(&sources.dest);
    s.push_str(SUFFIX);
    s
}

/// COPY after expansion.
pub fn copy(c: &Copy) -> String {
    copy_like("COPY", c.parents, &c.chown, &c.chmod, &c.sources)
}

/// ADD after expansion.
pub fn add(a: &Add) -> String {
    copy_like("ADD", false, &a.chown, &a.chmod, &a.sources)
}

pub fn env(kvs: &[KeyValue]) -> String {
    kvs.iter().fold("ENV".to_string(), |s, kv| {
        format!("{s} {}={}", kv.key, kv.value)
    })
}

pub fn label(kvs: &[KeyValue]) -> String {
    kvs.iter().fold("LABEL".to_string(), |s, kv| {
        format!("{s} {}={}", kv.key, kv.value)
    })
}

/// ARG with the values the build resolved.
pub fn arg(decls: &[ArgDecl]) -> String {
    decls
        .iter()
        .fold("ARG".to_string(), |s, d| match &d.default {
            Some(v) => format!("{s} {}={v}", d.key),
            None => format!("{s} {}", d.key),
        })
}

/// `CMD ["/bin/sh" "-c" "x"]` (Go's `%q` of a string slice).
pub fn cmd(argv: &[String]) -> String {
    format!("CMD {}", go_quoted_list(argv))
}

pub fn entrypoint(argv: &[String]) -> String {
    format!("ENTRYPOINT {}", go_quoted_list(argv))
}

/// `WORKDIR /app` (BuildKit gives it a layer when it creates the directory).
pub fn workdir(path: &str) -> String {
    format!("WORKDIR {path}{SUFFIX}")
}

pub fn user(user: &str) -> String {
    format!("USER {user}")
}

/// `EXPOSE [80/tcp 53/udp]`.
pub fn expose(ports: &[String]) -> String {
    format!("EXPOSE [{}]", ports.join(" "))
}

pub fn volume(vols: &[String]) -> String {
    format!("VOLUME [{}]", vols.join(" "))
}

pub fn stopsignal(sig: &str) -> String {
    format!("STOPSIGNAL {sig}")
}

pub fn shell(argv: &[String]) -> String {
    format!("SHELL [{}]", argv.join(" "))
}

pub fn maintainer(name: &str) -> String {
    format!("MAINTAINER {name}")
}

/// `HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:30s ...}` (Go's `%+v`).
pub fn healthcheck(h: &Healthcheck) -> String {
    let cfg = match h {
        Healthcheck::None => HealthConfig {
            test: vec!["NONE".to_string()],
            ..Default::default()
        },
        Healthcheck::Cmd(c) => c.clone(),
    };
    let d = |d: Option<Duration>| go_duration(d.unwrap_or_default());
    format!(
        "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        cfg.test.join(" "),
        d(cfg.interval),
        d(cfg.timeout),
        d(cfg.start_period),
        d(cfg.start_interval),
        cfg.retries.unwrap_or(0)
    )
}

fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `250ms`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, div) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(nanos, div));
    }
    let total_secs = nanos / 1_000_000_000;
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn trim_fraction(n: u128, div: u128) -> String {
    let whole = n / div;
    let frac = n % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_with_and_without_args() {
        let argv = [
            "/bin/sh".to_string(),
            "-c".to_string(),
            "make all".to_string(),
        ];
        assert_eq!(run(&argv, &[]), "RUN /bin/sh -c make all # buildkit");
        let args = [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string()),
        ];
        assert_eq!(
            run(&argv, &args),
            "RUN |2 A=1 B=2 /bin/sh -c make all # buildkit"
        );
    }

    #[test]
    fn go_formats() {
        assert_eq!(
            cmd(&["/bin/sh".into(), "-c".into(), "x y".into()]),
            r#"CMD ["/bin/sh" "-c" "x y"]"#
        );
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        let h = Healthcheck::Cmd(HealthConfig {
            test: vec!["CMD-SHELL".into(), "curl -f x".into()],
            interval: Some(Duration::from_secs(30)),
            retries: Some(3),
            ..Default::default()
        });
        assert_eq!(
            healthcheck(&h),
            "HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"
        );
    }
}
