//! `GET /containers/{id}/attach/ws` with docker-py's `attach_socket(...,
//! ws=True)` (and the `websocket-client` package under it) against `hutch
//! daemon` inside a simulated pod: echo through `cat` in binary and text
//! messages, raw stdout and stderr, a client that vanishes mid-stream, the
//! server's Close at exit, StdinOnce, `logs=1` replay, API < 1.28 text
//! messages, and the 404/400 errors. docker-py derives a ws:// URL from its
//! base URL, so the daemon also listens on TCP inside the pod.
//!
//! Needs the venv `tests/install-deps` makes and the `hutch` and `podsim`
//! binaries (`tests/run` does both).

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;
use serde_json::json;

/// Loopback of the pod's own network namespace.
const TCP_HOST: &str = "tcp://127.0.0.1:2375";

#[test]
fn docker_py_attach_over_websocket() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start_with(&pod, &["-H", TCP_HOST])?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let out = daemon
        .venv_python()
        .env("DOCKER_HOST", TCP_HOST)
        .arg(client_script("docker_py_attach_ws.py"))
        .arg(&image.reference)
        .output()
        .context("running docker-py in the pod (did tests/install-deps make the venv?)")?;
    let text = ok(&out, "docker_py_attach_ws.py")?;
    let seen: serde_json::Value =
        serde_json::from_str(text.trim()).with_context(|| format!("not JSON: {text}"))?;

    // Raw payloads (no 8-byte header) in binary messages (opcode 2).
    ensure!(seen["echo_binary"] == "binary-in\n", "{seen}");
    ensure!(seen["echo_opcodes"] == json!([2]), "{seen}");
    ensure!(seen["echo_text"] == "text-in\n", "{seen}");
    ensure!(seen["after_drop_status"] == "running", "{seen}");
    ensure!(seen["after_drop_echo"] == "again\n", "{seen}");
    ensure!(seen["after_close_status"] == "running", "{seen}");
    ensure!(seen["ticker_first"] == "tick\n", "{seen}");
    ensure!(seen["ticker_after_drop"] == "running", "{seen}");
    ensure!(seen["ticker_again"] == "tick\n", "{seen}");
    ensure!(seen["both_streams"] == json!(["err:x", "out:x"]), "{seen}");
    ensure!(seen["stderr_only"] == "err:y\n", "{seen}");
    ensure!(seen["exit_output"] == "bye:z\n", "{seen}");
    ensure!(seen["exit_close_code"] == 1000, "{seen}");
    ensure!(seen["exit_wait"] == 0, "{seen}");
    ensure!(seen["stdin_once_echo"] == "last\n", "{seen}");
    ensure!(seen["stdin_once_wait"] == 0, "{seen}");
    ensure!(seen["logs_replay"] == "first\nsecond\n", "{seen}");
    ensure!(seen["logs_close_code"] == 1000, "{seen}");
    ensure!(seen["logs_stdout_only"] == "first\n", "{seen}");
    ensure!(seen["logs_then_stream"] == "before\nafter\n", "{seen}");
    // API 1.27: text messages (opcode 1), all streams whatever the query.
    ensure!(seen["old_echo"] == "old\n", "{seen}");
    ensure!(seen["old_opcodes"] == json!([1]), "{seen}");
    ensure!(seen["missing"] == 404, "{seen}");
    ensure!(seen["plain_status"] == 400, "{seen}");
    ensure!(
        seen["plain_message"]
            .as_str()
            .is_some_and(|m| m.contains("WebSocket upgrade")),
        "{seen}"
    );
    ensure!(seen["ping"] == true, "{seen}");
    ensure!(seen["final_status"] == "running", "{seen}");
    ensure!(daemon.stop()?.success(), "daemon exit");
    pod.stop()
}
