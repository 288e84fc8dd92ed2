//! docker-py, the Python Docker SDK from PyPI, against `hutch daemon` inside
//! a simulated pod: version negotiation, image load, list, get, tag,
//! remove, history, df, info and prune.
//!
//! Needs the docker-py venv `tests/install-deps` makes, and the `hutch` and
//! `podsim` binaries (`tests/run` does both).

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

#[test]
fn docker_py_images() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let out = daemon
        .venv_python()
        .arg(client_script("docker_py_images.py"))
        .arg(&image.docker_archive)
        .arg(&image.reference)
        .arg(&image.config_digest)
        .output()
        .context("running docker-py in the pod (did tests/install-deps make the venv?)")?;
    let text = ok(&out, "docker_py_images.py")?;
    let seen: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))?;
    let id = image.config_digest.as_str();
    let reference = image.reference.as_str();
    ensure!(seen["api_version"] == "1.50", "{seen}");
    ensure!(seen["platform"] == "hutch", "{seen}");
    ensure!(seen["loaded"] == serde_json::json!([reference]), "{seen}");
    ensure!(seen["listed"] == serde_json::json!([reference]), "{seen}");
    ensure!(seen["cmd"].is_array(), "{seen}");
    ensure!(
        seen["tags_after_tag"] == serde_json::json!([reference, "py/tagged:t1"]),
        "{seen}"
    );
    ensure!(seen["history_top"] == id, "{seen}");
    ensure!(seen["filtered"] == serde_json::json!([id]), "{seen}");
    ensure!(
        seen["tags_after_remove"] == serde_json::json!([reference]),
        "{seen}"
    );
    ensure!(
        seen["missing"]
            .as_str()
            .is_some_and(|m| m.contains("No such image")),
        "{seen}"
    );
    ensure!(
        seen["df_layers_size"].as_i64().is_some_and(|n| n > 0),
        "{seen}"
    );
    ensure!(seen["info_images"] == 1, "{seen}");
    ensure!(
        seen["pruned"].to_string().contains(id),
        "prune did not delete the image: {seen}"
    );
    ensure!(seen["after_prune"] == serde_json::json!([]), "{seen}");
    drop(daemon);
    pod.stop()
}
