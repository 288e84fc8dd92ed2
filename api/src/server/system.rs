//! System endpoints: `/_ping` and `/version`.

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, PRAGMA};
use hyper::{Response, StatusCode};

use super::response::{self, Body};
use super::Daemon;

/// The newest API version served: what docker CLI 28.x asks for.
pub const API_VERSION: &str = "1.50";
/// The oldest API version accepted.
pub const MIN_API_VERSION: &str = "1.24";

/// Go's name for this machine's architecture (Docker reports `amd64`, not `x86_64`).
pub fn platform_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

pub fn ping(head: bool) -> Response<Body> {
    let mut resp = if head {
        let mut r = response::text(StatusCode::OK, "");
        r.headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        r
    } else {
        response::text(StatusCode::OK, "OK")
    };
    let h = resp.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

pub fn version(_daemon: &Daemon) -> Response<Body> {
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = env!("CARGO_PKG_VERSION");
    let body = serde_json::json!({
        "Platform": { "Name": "hutch" },
        "Components": [{
            "Name": "Engine",
            "Version": version,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": platform_arch(),
                "KernelVersion": kernel,
            }
        }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("HUTCH_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": platform_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    });
    response::json(StatusCode::OK, &body)
}
