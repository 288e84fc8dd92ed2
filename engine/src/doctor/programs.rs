//! Programs the daemon runs for some features, looked up on its PATH: a
//! missing one disables only those features, so it is not a hard
//! requirement, but the image the daemon runs in should bring it.

use std::process::{Command, Stdio};

use super::report::{Check, Status};

/// `tools.git`: git build contexts (`docker build URL`, `POST
/// /build?remote=`, `--build-context NAME=URL`) and ADD of a git
/// repository clone with the git program, as BuildKit and moby do.
pub fn check_git() -> Check {
    let title = "git";
    let version = Command::new("git")
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match version {
        Ok(out) if out.status.success() => Check::new(
            "tools.git",
            title,
            Status::Ok,
            String::from_utf8_lossy(&out.stdout).trim(),
        ),
        Ok(out) => Check::new(
            "tools.git",
            title,
            Status::Missing,
            format!("git --version failed ({})", out.status),
        ),
        Err(e) => Check::new(
            "tools.git",
            title,
            Status::Missing,
            format!("git is not on the PATH ({e})"),
        ),
    }
    .blocks(
        "builds from git repositories: git contexts (docker build URL, --build-context \
         NAME=URL) and ADD of a git repository",
    )
    .fix("the daemon's image: install git (Debian: apt-get install git)")
}
