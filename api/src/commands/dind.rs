//! `hutch dind`: the daemon as the docker:dind image's entrypoint starts
//! dockerd, so a CI service that ran `docker:dind` privileged runs hutch
//! unprivileged with the same variables and paths. With
//! `DOCKER_TLS_CERTDIR` set (GitLab's documented `/certs`) it keeps the
//! TLS material there (see [`super::dind_certs`]) and serves mutual TLS on
//! `tcp://0.0.0.0:2376`; set empty, plain HTTP on 2375. Either way also on
//! `unix:///var/run/docker.sock`. Hosts given with `-H` or daemon.json's
//! `hosts` replace those, as the entrypoint leaves dockerd's own flags be.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{DaemonArgs, GlobalOptions};

/// The unix socket docker:dind serves, where the docker CLI looks first.
const SOCKET: &str = "unix:///var/run/docker.sock";

pub fn run(global: &mut GlobalOptions, args: &mut DaemonArgs) -> anyhow::Result<ExitCode> {
    let certdir = std::env::var_os("DOCKER_TLS_CERTDIR").filter(|d| !d.is_empty());
    if let Some(dir) = &certdir {
        let dir = Path::new(dir);
        let sans = super::dind_certs::server_sans(std::env::var("DOCKER_TLS_SAN").ok().as_deref())?;
        let server = super::dind_certs::ensure(dir, &sans)?;
        tracing::info!(
            dir = %dir.display(),
            client = %dir.join("client").display(),
            "TLS certificates ready: clients use DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<dir>/client"
        );
        if args.tlscacert.is_none() && args.tlscert.is_none() && args.tlskey.is_none() {
            args.tlsverify = true;
            args.tlscacert = Some(server.ca);
            args.tlscert = Some(server.cert);
            args.tlskey = Some(server.key);
        }
    }
    if global.hosts.is_empty() {
        let port = if certdir.is_some() { 2376 } else { 2375 };
        global.hosts = vec![SOCKET.to_string(), format!("tcp://0.0.0.0:{port}")];
    }
    super::daemon::run(global, args)
}
