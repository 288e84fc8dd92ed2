//! `hutch daemon`: prepare the data root and serve the API.

use std::process::ExitCode;

use std::sync::Arc;

use anyhow::{bail, Context};
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::containers::{Engine, EngineEvent, EngineOptions};

use crate::cli::{DaemonArgs, GlobalOptions};
use crate::defaults;
use crate::server::{self, EventBus, ListenAddr, TlsOptions};

pub fn run(global: &GlobalOptions, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let data_root = global.data_root.clone().unwrap_or_else(defaults::data_root);
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating data root {}", data_root.display()))?;
    // The doctor describes the pod as the pod is: it starts before we leave
    // the pod's namespaces.
    let doctor = server::DoctorProcess::spawn(&data_root);
    // Before any thread starts (the async runtime's, the engine's): the
    // namespace can only be entered by a single-threaded process.
    let ns = bootstrap::enter(&BootstrapOptions::default())?;
    let addrs = if global.hosts.is_empty() {
        vec![ListenAddr::Unix(defaults::socket_path())]
    } else {
        global
            .hosts
            .iter()
            .map(|h| ListenAddr::parse(h))
            .collect::<Result<Vec<_>, _>>()?
    };
    let images = super::images::open_store_at(&data_root)?;
    let events = Arc::new(EventBus::default());
    let sink = events.clone();
    let engine = Engine::open(EngineOptions {
        data_root: data_root.clone(),
        exe: std::env::current_exe().context("locating the hutch binary")?,
        proc_mode: ns.proc_mode,
        warnings: ns.warnings,
        private_layers_on_tmpfs: args.private_layers_tmpfs,
        on_event: Some(Arc::new(move |e: &EngineEvent| sink.publish_container(e))),
    })
    .context("opening the container engine")?;
    let config = server::Config {
        addrs,
        socket_group: args.group.clone(),
        tls: tls_options(args)?,
        data_root,
        images,
        engine,
        events,
        doctor,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}

/// dockerd's TLS flags: `--tlsverify` implies `--tls`; both need a
/// certificate and key, and verification needs the clients' CA.
fn tls_options(args: &DaemonArgs) -> anyhow::Result<Option<TlsOptions>> {
    if !args.tls && !args.tlsverify {
        if args.tlscacert.is_some() || args.tlscert.is_some() || args.tlskey.is_some() {
            bail!("--tlscacert, --tlscert and --tlskey take effect only with --tls or --tlsverify");
        }
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (&args.tlscert, &args.tlskey) else {
        bail!("--tls and --tlsverify need --tlscert and --tlskey");
    };
    if args.tlsverify && args.tlscacert.is_none() {
        bail!("--tlsverify needs --tlscacert: the CA that signs client certificates");
    }
    Ok(Some(TlsOptions {
        verify: args.tlsverify,
        ca: args.tlscacert.clone(),
        cert: cert.clone(),
        key: key.clone(),
    }))
}
