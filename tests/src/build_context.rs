//! Build contexts for the builder's tests: directories the pod can read
//! (under the target dir, since the pod has its own /tmp), world-readable.

use std::path::Path;

use anyhow::{Context, Result};

/// A temporary build context, removed when dropped.
pub struct BuildContext {
    dir: tempfile::TempDir,
}

impl BuildContext {
    /// A context holding `files` (path inside the context, content).
    pub fn new(files: &[(&str, &str)]) -> Result<BuildContext> {
        let base = crate::workspace::target_dir().join("build-contexts");
        std::fs::create_dir_all(&base)?;
        let dir = tempfile::Builder::new().prefix("ctx-").tempdir_in(&base)?;
        set_mode(dir.path(), 0o755)?;
        let ctx = BuildContext { dir };
        for (name, text) in files {
            ctx.write(name, text)?;
        }
        Ok(ctx)
    }

    /// Writes (or replaces) a file, creating its parent directories.
    pub fn write(&self, name: &str, text: &str) -> Result<()> {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
            set_mode(parent, 0o755)?;
        }
        std::fs::write(&path, text)?;
        set_mode(&path, 0o644)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The context directory as a command-line argument.
    pub fn arg(&self) -> String {
        self.dir.path().display().to_string()
    }
}

/// chmod, with the path in the error.
pub fn set_mode(p: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

/// `hutch ARGS` in the pod, with stdin from /dev/null, its output kept.
pub fn hutch(pod: &crate::podsim::Pod, args: &[&str]) -> Result<std::process::Output> {
    pod.exec(crate::podsim::hutch_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("running hutch in the pod")
}

/// Loads the busybox test image into the pod's default data root and
/// returns its reference.
pub fn load_busybox(pod: &crate::podsim::Pod) -> Result<String> {
    let image = crate::testimages::busybox()?;
    let out = hutch(
        pod,
        &["load", "-i", &image.docker_archive.display().to_string()],
    )?;
    anyhow::ensure!(
        out.status.success(),
        "load: {}",
        crate::daemon::printed(&out)
    );
    Ok(image.reference.clone())
}
