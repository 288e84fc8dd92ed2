//! Converts an OCI layout into a docker-archive tar (what `docker save`
//! writes) with Debian's skopeo.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};

/// Writes `oci_dir:tag` as the docker-archive `dest` tagged `reference`.
pub fn write_docker_archive(
    oci_dir: &Path,
    tag: &str,
    dest: &Path,
    reference: &str,
) -> anyhow::Result<()> {
    let output = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", oci_dir.display()))
        .arg(format!("docker-archive:{}:{reference}", dest.display()))
        .output()
        .context("running skopeo (Debian package skopeo)")?;
    if !output.status.success() {
        bail!(
            "skopeo copy to docker-archive failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
