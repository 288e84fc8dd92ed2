//! `hutch daemon --config-file`: dockerd's daemon.json inside the pod
//! simulator, checked with the docker CLI: registry mirrors serve
//! `docker pull busybox` (the pod cannot reach Docker Hub), insecure
//! registries and ignored dockerd options show in `docker info`, and bad
//! files stop the daemon with dockerd's messages.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does).

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages;

/// Writes `text` as a config file the pod's root can read; returns its
/// path inside the pod.
fn config_file(pod: &Pod, name: &str, text: &str) -> Result<String> {
    let host = pod.data_dir_host().join(name);
    std::fs::write(&host, text).with_context(|| format!("writing {}", host.display()))?;
    Ok(pod.data_root().join(name).display().to_string())
}

#[test]
fn a_dockerd_config_file_sets_mirrors_and_insecure_registries() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, RegistryVariant::Plain)?;
    // The mirror holds Docker Hub's name for it.
    registry.push(&pod, &image, "library/busybox:latest")?;
    let path = config_file(
        &pod,
        "daemon.json",
        &format!(
            r#"{{
  "registry-mirrors": ["{}"],
  "insecure-registries": ["reg.internal:5000", "10.0.0.0/8"],
  "log-level": "warn",
  "storage-driver": "overlay2"
}}"#,
            registry.url()
        ),
    )?;
    let daemon = Daemon::start_with(&pod, &["--config-file", &path])?;

    let info = daemon.docker_ok(&["info"])?;
    ensure!(
        info.contains("Registry Mirrors:") && info.contains(&registry.url()),
        "mirrors in docker info: {info}"
    );
    ensure!(
        info.contains("Insecure Registries:")
            && info.contains("reg.internal:5000")
            && info.contains("10.0.0.0/8")
            && info.contains("127.0.0.0/8"),
        "insecure registries in docker info: {info}"
    );
    let warnings = daemon.docker_ok(&["info", "--format", "{{json .Warnings}}"])?;
    ensure!(
        warnings.contains("storage-driver") && warnings.contains("ignored"),
        "warnings: {warnings}"
    );

    // No Docker Hub here: the pull can only come from the mirror.
    let pulled = daemon.docker_ok(&["pull", "busybox"])?;
    ensure!(
        pulled.contains("Downloaded newer image for busybox:latest"),
        "pull through the mirror: {pulled}"
    );
    let id = daemon.docker_ok(&["image", "inspect", "--format", "{{.Id}}", "busybox"])?;
    ensure!(id.trim() == image.config_digest, "pulled {id}");
    ensure!(daemon.stop()?.success(), "daemon stop");
    pod.stop()
}

#[test]
fn bad_config_files_stop_the_daemon_with_dockerds_messages() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let refused = |name: &str, text: &str, extra: &[&str]| -> Result<String> {
        let path = config_file(&pod, name, text)?;
        let mut args = vec!["--config-file", path.as_str()];
        args.extend_from_slice(extra);
        match Daemon::start_with(&pod, &args) {
            Ok(daemon) => {
                let _ = daemon.stop();
                anyhow::bail!("the daemon started with {name}: {text}")
            }
            Err(e) => Ok(format!("{e:#}")),
        }
    };
    let unknown = refused("unknown.json", r#"{"data-roots": "/x"}"#, &[])?;
    ensure!(
        unknown
            .contains("the following directives don't match any configuration option: data-roots"),
        "{unknown}"
    );
    let twice = refused(
        "twice.json",
        r#"{"registry-mirrors": ["https://a.example"]}"#,
        &["--registry-mirror", "https://b.example"],
    )?;
    ensure!(
        twice.contains("specified both as a flag and in the configuration file")
            && twice.contains("registry-mirrors"),
        "{twice}"
    );
    let broken = refused("broken.json", r#"{"debug": tru"#, &[])?;
    ensure!(
        broken.contains("unable to configure the daemon with file") && broken.contains("JSON"),
        "{broken}"
    );
    let missing = match Daemon::start_with(&pod, &["--config-file", "/nonexistent/daemon.json"]) {
        Ok(daemon) => {
            let _ = daemon.stop();
            anyhow::bail!("the daemon started with a missing config file")
        }
        Err(e) => format!("{e:#}"),
    };
    ensure!(
        missing.contains("unable to configure the daemon with file /nonexistent/daemon.json"),
        "{missing}"
    );
    pod.stop()
}
