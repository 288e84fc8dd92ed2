//! `RUN --mount=type=ssh`: a real ssh-agent in the pod holding a fresh key,
//! `hutch build --ssh` (a local socket) and `docker buildx build --ssh`
//! (the agent forwarded through the client's session), and `ssh-add -l`
//! run in the RUN against the mounted socket, which must list the key.
//! The agent socket never reaches a layer; a required agent that is not
//! given fails the build; an optional one is skipped.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use std::process::{Child, Command, Output};

use anyhow::{ensure, Context, Result};
use hutch_tests::build_context::{hutch, load_busybox, set_mode, BuildContext as Ctx};
use hutch_tests::daemon::{printed as text, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};

const AGENT_DIR: &str = "/tmp/hutch-ssh-test";
const AGENT: &str = "/tmp/hutch-ssh-test/agent.sock";

/// An ssh-agent in the pod with one fresh key; killed when dropped.
struct Agent {
    child: Child,
    /// `SHA256:...` of the key it holds.
    fingerprint: String,
}

impl Agent {
    fn start(pod: &Pod) -> Result<Agent> {
        let sh = |script: &str| -> Result<Output> {
            let out = pod
                .exec("/bin/sh")
                .args(["-c", script])
                .env("SSH_AUTH_SOCK", AGENT)
                .output()?;
            ensure!(out.status.success(), "{script}: {}", text(&out));
            Ok(out)
        };
        sh(&format!(
            "rm -rf {AGENT_DIR} && mkdir -p {AGENT_DIR} && \
             ssh-keygen -q -t ed25519 -N '' -C hutch-test -f {AGENT_DIR}/key"
        ))?;
        let child = pod
            .exec("/usr/bin/ssh-agent")
            .args(["-D", "-a", AGENT])
            .stdout(std::process::Stdio::null())
            .spawn()
            .context("starting ssh-agent")?;
        let mut agent = Agent {
            child,
            fingerprint: String::new(),
        };
        sh(&format!(
            "for i in $(seq 100); do [ -S {AGENT} ] && break; sleep 0.05; done; \
             ssh-add -q {AGENT_DIR}/key"
        ))?;
        let listed = sh(&format!("ssh-keygen -lf {AGENT_DIR}/key.pub"))?;
        agent.fingerprint = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .nth(1)
            .context("no fingerprint")?
            .to_owned();
        Ok(agent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A context holding `ssh-add` and the libraries it loads under `t/` (the
/// busybox image has no ssh client), plus `dockerfile`.
fn context_with_ssh_add(dockerfile: &str) -> Result<Ctx> {
    let ctx = Ctx::new(&[("Dockerfile", dockerfile)])?;
    let dir = ctx.path().join("t");
    std::fs::create_dir_all(&dir)?;
    set_mode(&dir, 0o755)?;
    let ldd = Command::new("ldd").arg("/usr/bin/ssh-add").output()?;
    ensure!(ldd.status.success(), "ldd: {}", text(&ldd));
    let mut files = vec![("ssh-add".to_owned(), "/usr/bin/ssh-add".to_owned())];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [name, "=>", path, ..] if path.starts_with('/') => {
                files.push(((*name).to_owned(), (*path).to_owned()))
            }
            [path, ..] if path.starts_with('/') => files.push(("ld.so".into(), (*path).to_owned())),
            _ => {}
        }
    }
    ensure!(
        files.iter().any(|(n, _)| n == "ld.so"),
        "no loader in ldd's output"
    );
    for (name, path) in files {
        let to = dir.join(&name);
        std::fs::copy(&path, &to).with_context(|| format!("copying {path}"))?;
        set_mode(&to, 0o755)?;
    }
    Ok(ctx)
}

/// `ssh-add -l` from the context's copy, against `$SSH_AUTH_SOCK`.
const SSH_ADD_L: &str = "/t/ld.so --library-path /t /t/ssh-add -l";

fn dockerfile(base: &str) -> String {
    format!(
        "FROM {base}\n\
         RUN --mount=type=ssh --mount=type=bind,target=/t,source=t \
         {SSH_ADD_L} > /listed && echo \"sock=$SSH_AUTH_SOCK\" >> /listed\n\
         RUN --mount=type=ssh,id=second,target=/agent,uid=1000,mode=0640 \
         ls -ln /agent > /perm && echo \"sock=$SSH_AUTH_SOCK\" >> /perm\n\
         RUN --mount=type=ssh,id=absent true\n\
         RUN cat /listed /perm && ! test -e /run/buildkit && ! test -e /agent \
         && echo no-sockets-left\n"
    )
}

fn check_log(log: &str, agent: &Agent) -> Result<()> {
    ensure!(
        log.contains(&agent.fingerprint) && log.contains("hutch-test (ED25519)"),
        "the RUN did not list the agent's key {}:\n{log}",
        agent.fingerprint
    );
    ensure!(
        log.contains("sock=/run/buildkit/ssh_agent.0"),
        "SSH_AUTH_SOCK:\n{log}"
    );
    ensure!(log.contains("sock=/agent"), "SSH_AUTH_SOCK:\n{log}");
    ensure!(
        log.lines()
            .any(|l| l.contains("srw-r----- ") && l.contains(" 1000 ")),
        "the second socket is not a 0640 socket owned by uid 1000:\n{log}"
    );
    ensure!(
        log.contains("no-sockets-left"),
        "a mount point was left in a layer:\n{log}"
    );
    Ok(())
}

/// Runs `build` (a build command, without its options) on the test
/// Dockerfile with the agent as `default` and `second`, and checks what
/// the RUNs saw.
fn build_with_agents(mut build: Command, base: &str, agent: &Agent) -> Result<()> {
    let ctx = context_with_ssh_add(&dockerfile(base))?;
    let second = format!("second={AGENT}");
    let out = build
        .args(["--progress=plain", "--no-cache", "--ssh", "default"])
        .args(["--ssh", &second, &ctx.arg()])
        .env("SSH_AUTH_SOCK", AGENT)
        .output()?;
    let log = text(&out);
    ensure!(out.status.success(), "{log}");
    check_log(&log, agent)
}

#[test]
fn hutch_build_ssh_forwards_a_local_agent() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let base = load_busybox(&pod)?;
    let agent = Agent::start(&pod)?;
    let mut build = pod.exec(hutch_tests::podsim::hutch_bin());
    build.arg("build");
    build_with_agents(build, &base, &agent)?;

    // Bad input: a required agent not given, a key file instead of an
    // agent, no agent at all.
    let required = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN --mount=type=ssh,id=deploy,required=true true\n"),
    )])?;
    let out = hutch(&pod, &["build", &required.arg()])?;
    ensure!(
        !out.status.success() && text(&out).contains("no SSH key \"deploy\""),
        "{}",
        text(&out)
    );
    let key = format!("default={AGENT_DIR}/key");
    let out = hutch(&pod, &["build", "--ssh", &key, &required.arg()])?;
    ensure!(
        !out.status.success() && text(&out).contains("not a socket"),
        "{}",
        text(&out)
    );
    let out = pod
        .exec(hutch_tests::podsim::hutch_bin())
        .args(["build", "--ssh", "default", &required.arg()])
        .env_remove("SSH_AUTH_SOCK")
        .output()?;
    ensure!(
        !out.status.success() && text(&out).contains("SSH_AUTH_SOCK"),
        "{}",
        text(&out)
    );
    drop(agent);
    pod.stop()
}

#[test]
fn buildx_ssh_forwards_the_clients_agent() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let base = load_busybox(&pod)?;
    let agent = Agent::start(&pod)?;
    let mut build = daemon.docker_buildx()?;
    build.arg("build");
    build_with_agents(build, &base, &agent)?;

    // Without --ssh the client serves no agent: a required one fails.
    let required = Ctx::new(&[(
        "Dockerfile",
        &format!("FROM {base}\nRUN --mount=type=ssh,required=true true\n"),
    )])?;
    let out = daemon
        .docker_buildx()?
        .args(["build", &required.arg()])
        .output()?;
    ensure!(
        !out.status.success() && text(&out).contains("no SSH key"),
        "{}",
        text(&out)
    );
    drop(agent);
    daemon.stop()?;
    pod.stop()
}
