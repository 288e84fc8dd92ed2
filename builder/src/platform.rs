//! Platforms (`linux/amd64`, `linux/arm/v7`) as containerd's `platforms` package
//! parses and normalises them, for `--platform` and the automatic platform ARGs.

use std::fmt;

use hutch_engine::runtime::binfmt::Binfmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os[/arch[/variant]]` or a bare architecture, normalising aliases
    /// (`x86_64` → `amd64`, `aarch64` → `arm64`, `armhf` → `arm/v7`).
    pub fn parse(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || format!("{s:?}: unknown operating system or architecture: invalid argument");
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(bad());
        }
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let (os, arch, variant) = match lower.as_slice() {
            [one] if is_os(one) => (one.clone(), host_arch().0.to_string(), host_arch().1),
            [one] => ("linux".to_string(), one.clone(), None),
            [os, arch] => (os.clone(), arch.clone(), None),
            [os, arch, variant] => (os.clone(), arch.clone(), Some(variant.clone())),
            _ => return Err(bad()),
        };
        if !is_os(&os) {
            return Err(bad());
        }
        Ok(normalize(os, arch, variant))
    }

    /// `--platform A,B` of a build through buildx or `hutch build`: each
    /// platform once, in the order given (none for an empty value).
    pub fn parse_targets(s: &str) -> Result<Vec<Platform>, String> {
        let mut platforms: Vec<Platform> = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p = Platform::parse(p)?;
            if !platforms.contains(&p) {
                platforms.push(p);
            }
        }
        Ok(platforms)
    }

    /// Which of a build's `platforms` gives its names their image: this
    /// machine's, else the first.
    pub fn primary(platforms: &[Platform]) -> usize {
        let host = Platform::host();
        platforms.iter().position(|p| *p == host).unwrap_or(0)
    }

    /// `--platform` of the classic API's build: one platform (a list would
    /// need an index, which the classic builder does not make).
    pub fn parse_target(s: &str) -> Result<Platform, String> {
        let list: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        match list.as_slice() {
            [one] => Platform::parse(one),
            [] => Err("--platform: empty value".to_string()),
            _ => Err(format!(
                "--platform {s}: building for several platforms at once (an image index) is \
                 not supported by hutch; build each platform separately"
            )),
        }
    }

    /// An image config's `os`/`architecture`/`variant` (normalised).
    pub fn of_config(config: &serde_json::Value) -> Option<Platform> {
        let field = |k: &str| {
            config
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let os = field("os")?.to_ascii_lowercase();
        let arch = field("architecture")?.to_ascii_lowercase();
        let variant = field("variant").map(str::to_ascii_lowercase);
        Some(normalize(os, arch, variant))
    }

    /// Whether an image of platform `have` serves `self` (a platform without
    /// a variant takes any variant, as containerd's matcher does for arm64).
    pub fn accepts(&self, have: &Platform) -> bool {
        self.os == have.os
            && self.arch == have.arch
            && (self.variant.is_none() || have.variant.is_none() || self.variant == have.variant)
    }

    /// Whether this machine runs binaries of this platform natively; a RUN
    /// for another architecture runs under its emulator (see
    /// `hutch_engine::emulation`).
    pub fn runs_here(&self) -> bool {
        self.os == Platform::host().os && hutch_engine::emulation::runs_natively(&self.arch)
    }

    /// The emulator that runs this platform's binaries here: none when they
    /// run natively, else QEMU's for the architecture; `Err` says what is
    /// missing.
    pub fn emulator(&self) -> Result<Option<Binfmt>, String> {
        if self.runs_here() {
            return Ok(None);
        }
        if self.os != Platform::host().os {
            return Err(format!("no emulation for {}", self.os));
        }
        hutch_engine::emulation::find(&self.arch)
            .map(Some)
            .ok_or_else(|| hutch_engine::emulation::missing(&self.arch))
    }

    /// The machine hutch runs on (the default build and target platform).
    pub fn host() -> Platform {
        let (arch, variant) = host_arch();
        Platform {
            os: "linux".to_string(),
            arch: arch.to_string(),
            variant,
        }
    }
}

fn is_os(s: &str) -> bool {
    matches!(
        s,
        "linux"
            | "windows"
            | "darwin"
            | "freebsd"
            | "netbsd"
            | "openbsd"
            | "solaris"
            | "illumos"
            | "android"
            | "ios"
            | "aix"
            | "plan9"
            | "js"
            | "wasip1"
    )
}

fn host_arch() -> (&'static str, Option<String>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7".to_string())),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    }
}

fn normalize(os: String, arch: String, variant: Option<String>) -> Platform {
    let (arch, variant) = match (arch.as_str(), variant.as_deref()) {
        ("i386", _) => ("386".to_string(), None),
        ("x86_64" | "x86-64" | "amd64", v) => (
            "amd64".to_string(),
            v.filter(|v| *v != "v1").map(str::to_string),
        ),
        ("aarch64" | "arm64", v) => (
            "arm64".to_string(),
            v.filter(|v| !matches!(*v, "8" | "v8")).map(str::to_string),
        ),
        ("armhf", _) => ("arm".to_string(), Some("v7".to_string())),
        ("armel", _) => ("arm".to_string(), Some("v6".to_string())),
        ("arm", None) => ("arm".to_string(), Some("v7".to_string())),
        ("arm", Some(v)) => {
            let v = if v.starts_with('v') {
                v.to_string()
            } else {
                format!("v{v}")
            };
            ("arm".to_string(), Some(v))
        }
        (a, v) => (a.to_string(), v.map(str::to_string)),
    };
    Platform { os, arch, variant }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_targets_each_once_in_order() -> Result<(), String> {
        let list = Platform::parse_targets("linux/arm64, linux/amd64,linux/arm64/v8,")?;
        let shown: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["linux/arm64", "linux/amd64"]);
        assert_eq!(
            Platform::primary(&list),
            if cfg!(target_arch = "x86_64") { 1 } else { 0 }
        );
        assert!(Platform::parse_targets("")
            .map(|l| l.is_empty())
            .unwrap_or(false));
        assert!(Platform::parse_targets("linux/amd64,beos/x").is_err());
        Ok(())
    }

    #[test]
    fn parse_and_normalise() {
        let p = |s: &str| Platform::parse(s).map(|p| p.to_string());
        assert_eq!(p("linux/amd64").as_deref(), Ok("linux/amd64"));
        assert_eq!(p("linux/aarch64").as_deref(), Ok("linux/arm64"));
        assert_eq!(p("linux/arm64/v8").as_deref(), Ok("linux/arm64"));
        assert_eq!(p("linux/arm").as_deref(), Ok("linux/arm/v7"));
        assert_eq!(p("linux/arm/6").as_deref(), Ok("linux/arm/v6"));
        assert_eq!(p("arm64").as_deref(), Ok("linux/arm64"));
        assert!(Platform::parse("linux//x").is_err());
        assert!(Platform::parse("beos/amd64").is_err());
    }

    #[test]
    fn targets_configs_and_hosts() {
        assert_eq!(
            Platform::parse_target("linux/arm64").map(|p| p.to_string()),
            Ok("linux/arm64".to_string())
        );
        let list = Platform::parse_target("linux/amd64,linux/arm64");
        assert!(list.is_err_and(|e| e.contains("several platforms")));
        let cfg = serde_json::json!({"os": "linux", "architecture": "aarch64", "variant": "v8"});
        let have = Platform::of_config(&cfg);
        assert_eq!(
            have.as_ref().map(|p| p.to_string()).as_deref(),
            Some("linux/arm64")
        );
        let arm64 = Platform::parse("linux/arm64").map_err(|e| e.to_string());
        assert!(arm64.is_ok_and(|a| have.is_some_and(|h| a.accepts(&h))));
        assert!(Platform::host().runs_here());
        let other = if Platform::host().arch == "s390x" {
            "linux/amd64"
        } else {
            "linux/s390x"
        };
        assert!(Platform::parse(other).is_ok_and(|p| !p.runs_here()));
        assert!(Platform::parse("windows/amd64").is_ok_and(|p| !p.runs_here()));
    }
}
