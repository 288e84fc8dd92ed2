//! `hutch build`: a Dockerfile build with no daemon. It enters the engine
//! namespace as the daemon does, runs the builder's executor on the image
//! store under the data root (whose locks keep it consistent with a daemon
//! using the same root), and then tags, exports (`--output`) or pushes.
//! SIGINT/SIGTERM cancel the build: the RUN container is killed and every
//! temp directory, mount and unfinished layer goes before the exit (130 for
//! SIGINT, as shells expect).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use anyhow::Context;
use hutch_builder::exec::remote_cache;
use hutch_builder::exec::{BuildError, BuildOptions, BuildTmp, Executor, OutputSink, Progress};
use hutch_builder::remote_context::RemoteContext;
use hutch_builder::BuildArgs as DockerfileArgs;
use hutch_engine::bootstrap::{self, BootstrapOptions};
use hutch_engine::containers::config::Ulimit;
use hutch_engine::runtime::Runtime;
use hutch_images::{Digest, NoProgress, RegistryRequest};

use super::build_progress;
use crate::cli::{BuildArgs, GlobalOptions};

/// Step lines on stderr, as Docker's builder prints them.
struct Lines;

impl Progress for Lines {
    fn step(&self, index: usize, total: usize, text: &str) {
        eprintln!("Step {index}/{total} : {text}");
    }
    fn cached(&self) {
        eprintln!(" ---> Using cache");
    }
    fn running(&self, id: &str) {
        eprintln!(" ---> Running in {id}");
    }
    fn done(&self, id: &Digest) {
        eprintln!(" ---> {}", id.short());
    }
    fn output(&self) -> OutputSink {
        Arc::new(|bytes: &[u8]| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
        })
    }
    fn message(&self, text: &str) {
        eprintln!("{text}");
    }
    fn warnings(&self, warnings: &[hutch_builder::Warning]) {
        eprint!("{}", build_progress::warnings_summary(warnings));
    }
}

/// `--secret id=ID,src=PATH` (also `source=`, and `env=VAR` for a variable).
pub fn parse_secret(spec: &str, tmp: &std::path::Path) -> anyhow::Result<(String, PathBuf)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for part in spec.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", "file" | "env")) => {}
            _ => anyhow::bail!("invalid --secret {spec:?}: use id=ID,src=PATH or id=ID,env=VAR"),
        }
    }
    let id = id
        .or_else(|| env.clone())
        .ok_or_else(|| anyhow::anyhow!("--secret {spec:?} needs an id"))?;
    let path = match (src, env) {
        (Some(p), _) => {
            anyhow::ensure!(p.is_file(), "secret {id}: {} is not a file", p.display());
            p
        }
        (None, Some(var)) => {
            let value = std::env::var(&var)
                .with_context(|| format!("secret {id}: environment variable {var} is not set"))?;
            let file = tmp.join(format!("secret-{}", std::process::id()));
            std::fs::write(&file, value).context("writing the secret")?;
            file
        }
        (None, None) => anyhow::bail!("--secret {spec:?} needs src=PATH or env=VAR"),
    };
    Ok((id, path))
}

pub fn run(global: &GlobalOptions, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let data_root = global
        .data_root
        .clone()
        .unwrap_or_else(crate::defaults::data_root);
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating {}", data_root.display()))?;
    let ns_options = BootstrapOptions::default();
    if let Some((uid, gid)) = bootstrap::host_root_ids(&ns_options)? {
        nix::unistd::chown(
            &data_root,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .with_context(|| format!("giving {} to the engine's root", data_root.display()))?;
    }
    let mode = if args.quiet {
        build_progress::Mode::Quiet
    } else {
        build_progress::Mode::parse(&args.progress)?
    };
    // `--platform A,B`: one build per platform, as through buildx (the
    // first is the options' platform).
    let platforms = match args.platform.as_deref() {
        Some(v) => hutch_builder::Platform::parse_targets(v).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let platform = platforms.first().cloned();
    let ns = bootstrap::enter(&ns_options)?;
    // Quiet prints the image ID only (`hutch doctor` shows these).
    if mode != build_progress::Mode::Quiet {
        for w in &ns.warnings {
            eprintln!("WARNING: {w}");
        }
    }
    let store = super::images::open_store_at(&data_root)?;
    let mut build_args = DockerfileArgs::new();
    for a in &args.build_arg {
        build_args.add_cli(a, |k| std::env::var(k).ok());
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let built_flag = Arc::new(AtomicBool::new(false));
    let signalled = cancel_on_signals(cancel.clone(), built_flag.clone())?;
    // Secrets from the environment are written to a locked temp entry,
    // removed as soon as the build is over.
    let scratch = BuildTmp::create(&data_root, "secrets").with_context(|| {
        format!(
            "creating a directory in {}/builder/tmp",
            data_root.display()
        )
    })?;
    // A git or http(s) URL for the context: fetched into a scratch entry
    // of its own, and `-f` read inside it, as for docker build's remote
    // contexts.
    let mut remote_scratch = None;
    let remote = args
        .context
        .to_str()
        .and_then(RemoteContext::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let (context, dockerfile) = match remote {
        Some(remote) => {
            let scratch = remote_scratch.insert(
                BuildTmp::create(&data_root, "context")
                    .context("creating a directory for the remote context")?,
            );
            let dir = remote
                .fetch(scratch.path(), &data_root)
                .map_err(|e| anyhow::anyhow!("the remote context {}: {e}", remote.url()))?;
            let file = args.file.as_ref().map(|f| dir.join(f));
            (dir, file)
        }
        None => (args.context.clone(), args.file.clone()),
    };
    let mut secrets = HashMap::new();
    for s in &args.secret {
        let (id, path) = parse_secret(s, scratch.path())?;
        secrets.insert(id, path);
    }
    let labels = args
        .label
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    let cache_from = args
        .cache_from
        .iter()
        .map(|c| remote_cache::parse_cache_from(c).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cache_to = args
        .cache_to
        .iter()
        .map(|c| remote_cache::parse_cache_to(c).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let output = args
        .output
        .as_deref()
        .map(super::build_output::BuildOutput::parse)
        .transpose()?;
    if platforms.len() > 1 && output.as_ref().is_some_and(|o| !o.takes_several()) {
        anyhow::bail!(
            "--output type=docker holds one image per name, not several platforms: use \
             type=oci, type=local or type=tar, or --push"
        );
    }
    let opts = BuildOptions {
        context,
        dockerfile,
        tags: args.tag.clone(),
        build_args,
        target: args.target.clone(),
        labels,
        no_cache: args.no_cache,
        pull: args.pull,
        secrets,
        secret_source: None,
        ssh_source: ssh_agents(&args.ssh)?,
        cache_merge: false,
        cache_stores: Some(std::sync::Arc::new(
            hutch_builder::exec::cache_store::LocalDirs,
        )),
        named_contexts: named_contexts(
            &args.build_context,
            &scratch.path().join("contexts"),
            &store,
            &data_root,
            platform.as_ref(),
        )?,
        extra_hosts: args.add_host.clone(),
        shm_size: args
            .shm_size
            .as_deref()
            .map(|s| {
                hutch_engine::containers::config::parse_size(s)
                    .map_err(|e| anyhow::anyhow!("--shm-size: {e}"))
            })
            .transpose()?,
        ulimits: args
            .ulimit
            .iter()
            .map(|u| Ulimit::parse(u).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?,
        source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|v| v.trim().parse().ok()),
        registry_auths: Default::default(),
        network_none: false,
        platform,
        cache_from,
        cache_to,
        // The context is the user's own directory: a rebuild finds it again.
        // A clone's fresh paths never match again.
        remember_context_hashes: remote_scratch.is_none(),
        ignore_patterns: None,
    };
    let registry = RegistryRequest {
        settings: hutch_images::registry::RegistrySettings::from_env(),
        auth: None,
    };
    let executor = Executor {
        store: store.clone(),
        data_root: data_root.clone(),
        runtime: Runtime::from_current_exe().context("locating the hutch binary")?,
        proc_mode: ns.proc_mode,
        registry: registry.clone(),
        cancel,
    };
    let result = if platforms.len() < 2 {
        build_one(&executor, &opts, mode).map(|b| vec![b])
    } else {
        build_each(&executor, &opts, &platforms, mode)
    };
    drop(scratch);
    built_flag.store(true, Ordering::SeqCst);
    let sig = signalled.load(Ordering::SeqCst);
    let mut built = match result {
        Ok(b) if sig == 0 => b,
        Ok(_) => return Ok(ExitCode::from(signal_status(sig))),
        Err(e) if sig == 0 => {
            // The tty view has shown the error with the step's output.
            if mode != build_progress::Mode::Tty {
                eprintln!("ERROR: {e}");
            }
            return Ok(ExitCode::from(1));
        }
        Err(BuildError::Cancelled) => {
            eprintln!("ERROR: {}", BuildError::Cancelled);
            return Ok(ExitCode::from(signal_status(sig)));
        }
        // Something the signal broke on its way (a terminal's Ctrl-C
        // reaches every process of the group): still a cancellation.
        Err(e) => {
            eprintln!("ERROR: {} ({e})", BuildError::Cancelled);
            return Ok(ExitCode::from(signal_status(sig)));
        }
    };
    // Several platforms: the names are this machine's platform's image
    // (or the first), with the others recorded beside it, so a push sends
    // them all as one index.
    let ids: Vec<Digest> = built.iter().map(|b| b.id.clone()).collect();
    let primary = if built.len() > 1 {
        hutch_builder::Platform::primary(&platforms)
    } else {
        0
    };
    let built = built.swap_remove(primary);
    if ids.len() > 1 {
        for n in &built.names {
            store.tag_platforms(&built.id, &n.to_string(), &ids)?;
        }
    }
    if mode == build_progress::Mode::Plain {
        eprintln!("Successfully built {}", built.id.short());
        for n in &built.names {
            eprintln!("Successfully tagged {}", n.familiar());
        }
    }
    if let Some(file) = &args.iidfile {
        std::fs::write(file, built.id.to_string())
            .with_context(|| format!("writing {}", file.display()))?;
    }
    if let Some(output) = &output {
        let tmp = data_root.join("builder/tmp");
        let ids: Vec<String> = ids.iter().map(Digest::to_string).collect();
        output.write(&store, &ids, &built.names, &tmp)?;
    }
    if args.push {
        anyhow::ensure!(!built.names.is_empty(), "--push needs a name (-t)");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        for n in &built.names {
            let pushed =
                rt.block_on(store.push(&n.to_string(), &registry, Arc::new(NoProgress)))?;
            if mode != build_progress::Mode::Quiet {
                eprintln!("Pushed {} ({})", n.familiar(), pushed.digest);
            }
        }
    }
    if !output.as_ref().is_some_and(|o| o.to_stdout()) {
        println!("{}", built.id);
    }
    Ok(ExitCode::SUCCESS)
}

/// One build, its progress shown as `mode` says.
fn build_one(
    executor: &Executor,
    opts: &BuildOptions,
    mode: build_progress::Mode,
) -> Result<hutch_builder::exec::Built, BuildError> {
    match mode {
        build_progress::Mode::Tty => {
            let tty = build_progress::Tty::new();
            let built = executor.build(opts, &tty);
            tty.finish(built.as_ref());
            built
        }
        build_progress::Mode::Plain => executor.build(opts, &Lines),
        build_progress::Mode::Quiet => executor.build(opts, &build_progress::Quiet),
    }
}

/// One build per platform, one after the other (the stages they share,
/// `FROM --platform=$BUILDPLATFORM`, are cache hits the second time), into
/// one build cache; stops at the first that fails.
fn build_each(
    executor: &Executor,
    opts: &BuildOptions,
    platforms: &[hutch_builder::Platform],
    mode: build_progress::Mode,
) -> Result<Vec<hutch_builder::exec::Built>, BuildError> {
    let mut built = Vec::with_capacity(platforms.len());
    for platform in platforms {
        let mut one = opts.clone();
        one.platform = Some(platform.clone());
        one.cache_merge = !built.is_empty();
        if mode != build_progress::Mode::Quiet {
            eprintln!("=> building for {platform}");
        }
        built.push(build_one(executor, &one, mode)?);
    }
    Ok(built)
}

/// Shells' status for death by signal `sig`.
fn signal_status(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(1)
}

/// SIGINT/SIGTERM set `cancel` (the build then stops and cleans up);
/// returns where the signal's number is recorded. Once `built` is set (the
/// build is over: tagging, export or push), a signal exits at once.
/// Further signals while the build unwinds are ignored: one Ctrl-C arrives
/// twice anyway (from the terminal and forwarded by the engine namespace's
/// supervisor). Handlers, not a blocked mask, so the processes the build
/// starts get default signal dispositions.
fn cancel_on_signals(
    cancel: Arc<AtomicBool>,
    built: Arc<AtomicBool>,
) -> anyhow::Result<Arc<AtomicI32>> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("starting the signal runtime")?;
    // Registered now, before the build starts, so no signal is missed.
    let (mut int, mut term) = {
        let _entered = rt.enter();
        (
            signal(SignalKind::interrupt()).context("handling SIGINT")?,
            signal(SignalKind::terminate()).context("handling SIGTERM")?,
        )
    };
    let got = Arc::new(AtomicI32::new(0));
    let recorded = got.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    let sig = tokio::select! {
                        _ = int.recv() => libc::SIGINT,
                        _ = term.recv() => libc::SIGTERM,
                    };
                    if built.load(Ordering::SeqCst) {
                        std::process::exit(i32::from(signal_status(sig)));
                    }
                    if recorded
                        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        eprintln!("Cancelling the build...");
                        cancel.store(true, Ordering::SeqCst);
                    }
                }
            })
        })
        .context("starting the signal thread")?;
    Ok(got)
}

/// `--ssh` specs as agents (`None` without any).
fn ssh_agents(
    specs: &[String],
) -> anyhow::Result<Option<std::sync::Arc<dyn hutch_builder::exec::SshSource>>> {
    if specs.is_empty() {
        return Ok(None);
    }
    let sock = std::env::var("SSH_AUTH_SOCK").ok();
    let agents = hutch_builder::exec::ssh_agent::LocalAgents::parse(specs, sock.as_deref())
        .map_err(anyhow::Error::msg)?;
    Ok(Some(std::sync::Arc::new(agents)))
}

/// `--build-context NAME=DIR|docker-image://REF`.
fn named_contexts(
    specs: &[String],
    scratch: &std::path::Path,
    images: &hutch_images::ImageStore,
    data_root: &std::path::Path,
    platform: Option<&hutch_builder::Platform>,
) -> anyhow::Result<std::collections::BTreeMap<String, hutch_builder::NamedContext>> {
    let mut out = std::collections::BTreeMap::new();
    for spec in specs {
        let (name, value) = spec
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--build-context {spec}: expected NAME=VALUE"))?;
        let context = match hutch_builder::NamedContext::parse(value)
            .map_err(|e| anyhow::anyhow!("--build-context {name}: {e}"))?
        {
            hutch_builder::NamedContext::Dir(dir) => {
                let dir = std::path::absolute(&dir)?;
                anyhow::ensure!(
                    dir.is_dir(),
                    "--build-context {name}: {} is not a directory",
                    dir.display()
                );
                hutch_builder::NamedContext::Dir(dir)
            }
            hutch_builder::NamedContext::OciLayout(layout) => {
                use hutch_builder::exec::cache_store::CacheStores;
                let store = hutch_builder::exec::cache_store::LocalDirs
                    .open(&layout.store)
                    .map_err(anyhow::Error::msg)?;
                let tmp = scratch.join(format!("named-{}", out.len()));
                let id = hutch_builder::oci_context::import(
                    store.as_ref(),
                    &layout,
                    platform,
                    images,
                    &tmp,
                )
                .map_err(|e| anyhow::anyhow!("--build-context {name}: {e}"))?;
                hutch_builder::NamedContext::Image(id.to_string())
            }
            hutch_builder::NamedContext::Remote(remote) => {
                let into = scratch.join(format!("named-{}", out.len()));
                let dir = remote.fetch_named(&into, data_root).map_err(|e| {
                    anyhow::anyhow!("--build-context {name} ({}): {e}", remote.url())
                })?;
                hutch_builder::NamedContext::Dir(dir)
            }
            image => image,
        };
        out.insert(name.to_owned(), context);
    }
    Ok(out)
}
