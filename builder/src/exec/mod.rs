//! The executor: builds the stages of a [`crate::BuildPlan`] into images in
//! the image store. Config instructions change the image config and history;
//! RUN runs in a container of the engine's runtime and its layer is read from
//! the overlay upper directory; COPY/ADD write their layer directly. Every
//! step's result is stored as an intermediate image, which is what the build
//! cache points at.

mod buildtmp;
mod cache;
mod cache_io;
pub mod cache_store;
pub mod commit;
mod config;
mod copy;
mod fswalk;
mod hashcache;
pub(crate) mod httpcache;
mod image;
mod inflight;
mod mounts;
pub(crate) mod remote;
pub mod remote_cache;
pub mod rootfs;
mod run;
pub mod ssh_agent;
mod tarball;
mod upperdiff;
mod view;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hutch_engine::runtime::{NetworkMode, ProcMode, Runtime};
use hutch_images::store::LayerRef;
use hutch_images::{Digest, ImageError, ImageStore, Reference, RegistryRequest};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::args::BuildArgs;
use crate::chmod::Chmod;
use crate::dockerfile::{Command, Healthcheck, Instruction, Network};
use crate::dockerignore::{walk_context, DockerIgnore};
use crate::error::ParseError;
use crate::evaluate::StageState;
use crate::history;
use crate::stages::{plan, Source};
pub use buildtmp::BuildTmp;

/// The builder's caches under the data root, besides the step images in
/// the image store: where the builder keeps them, and what the daemon's
/// `/system/df` reports and `/build/prune` removes.
pub mod cache_dirs {
    /// Step cache keys → step image IDs ([`super::Cache`]).
    pub const STEP_KEYS: &str = "builder/cache";
    /// RUN `--mount=type=cache` directories, one per cache ID.
    pub const MOUNTS: &str = "builder/cache-mounts";
    /// `ADD <url>` downloads.
    pub const HTTP: &str = "builder/http-cache";
    /// Step layers gzipped for cache export and push.
    pub const GZIPPED: &str = "builder/gzipped";
    /// Context files' hashes by their stat ([`super::hashcache`]); a file.
    pub const FILE_HASHES: &str = "builder/hashcache";
}
use cache::Key;
pub use cache::{Cache, Use as CacheUse};
pub use image::ImageState;
use tarball::{Body, Entry};

/// Where RUN output goes.
pub type OutputSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// What a build reports as it goes (the CLI prints it, the API streams it as
/// Docker's legacy builder lines).
pub trait Progress: Send + Sync {
    /// `Step 3/7 : RUN make`.
    fn step(&self, index: usize, total: usize, text: &str);
    fn cached(&self);
    /// A RUN container starts (`---> Running in <id>`).
    fn running(&self, id: &str);
    /// The step's image.
    fn done(&self, id: &Digest);
    fn output(&self) -> OutputSink;
    fn message(&self, text: &str);
    /// Which stage a step belongs to, for renderers that show steps per
    /// stage as BuildKit does (`[builder 2/4] RUN make`). Called just before
    /// `step`, on the thread that then runs the step and reports on it.
    fn begin(&self, _step: &StepInfo) {}
    /// The step begun last on this thread failed (or was cancelled).
    fn failed(&self, _error: &BuildError) {}
    /// Where the pull of a base image on this thread reports its layers.
    fn pull_progress(&self) -> Arc<dyn hutch_images::ProgressSink> {
        Arc::new(hutch_images::NoProgress)
    }
    /// Work after the steps begins on this thread (`exporting cache to
    /// registry`); its messages follow. BuildKit's renderers give it a
    /// vertex of its own; the classic output has nothing to show for it.
    fn phase(&self, _name: &str) {}
    /// Lint warnings (BuildKit's checks): the Dockerfile's own once before
    /// the first step, then `UndefinedVar`s as steps expand their words;
    /// buildx lists them after the build.
    fn warnings(&self, _warnings: &[crate::Warning]) {}
}

/// A step as [`Progress::begin`] sees it.
#[derive(Debug, Clone)]
pub struct StepInfo {
    /// The stage's name, `stage-N` for an unnamed one, empty when the
    /// Dockerfile has a single stage (BuildKit prints `[2/4]` then).
    pub stage: String,
    /// 1-based within the stage (FROM is 1).
    pub index: usize,
    /// Steps in the stage (FROM included).
    pub count: usize,
    pub text: String,
}

impl StepInfo {
    /// BuildKit's name for the step: `[builder 2/4] RUN make`, or
    /// `[2/4] RUN make` in a single-stage Dockerfile.
    pub fn label(&self) -> String {
        if self.stage.is_empty() {
            format!("[{}/{}] {}", self.index, self.count, self.text)
        } else {
            format!(
                "[{} {}/{}] {}",
                self.stage, self.index, self.count, self.text
            )
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    Run(String),
    #[error("The command '{command}' returned a non-zero code: {code}\n{output}")]
    RunFailed {
        command: String,
        code: i32,
        output: String,
    },
    #[error("{0}")]
    Copy(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the build was cancelled")]
    Cancelled,
}

impl BuildError {
    pub fn io(what: &str, source: std::io::Error) -> BuildError {
        BuildError::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// One build's inputs.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub context: PathBuf,
    /// The Dockerfile's path (`None`: `CONTEXT/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    pub tags: Vec<String>,
    pub build_args: BuildArgs,
    pub target: Option<String>,
    pub labels: Vec<(String, String)>,
    pub no_cache: bool,
    pub pull: bool,
    /// `--secret id=..,src=..`: id → file.
    pub secrets: HashMap<String, PathBuf>,
    /// Where secrets not in `secrets` are asked for (a BuildKit client's
    /// session: its secrets are known only by the ids the RUNs ask for).
    pub secret_source: Option<Arc<dyn SecretSource>>,
    /// Where `RUN --mount=type=ssh` agents come from (`--ssh`).
    pub ssh_source: Option<Arc<dyn SshSource>>,
    /// `SOURCE_DATE_EPOCH` (else taken from the build args).
    pub source_date_epoch: Option<i64>,
    /// Credentials for base-image pulls by registry (the API's
    /// `X-Registry-Config`: keys as config.json's `auths`).
    pub registry_auths: BTreeMap<String, hutch_images::registry::AuthConfig>,
    /// `--add-host NAME:IP` (IP may be `host-gateway`: the pod).
    pub extra_hosts: Vec<String>,
    /// `--shm-size` of every RUN's /dev/shm, in bytes (64 MiB when
    /// `None`, the runtime's).
    pub shm_size: Option<u64>,
    /// `--ulimit`s of every RUN.
    pub ulimits: Vec<hutch_engine::containers::config::Ulimit>,
    /// The API's `networkmode=none`: RUNs without `--network` get no network.
    pub network_none: bool,
    /// `--platform`: the target platform (the machine's when `None`).
    pub platform: Option<crate::Platform>,
    /// `--build-context NAME=...`: what stands in for the image `NAME`.
    pub named_contexts: BTreeMap<String, crate::NamedContext>,
    /// `--cache-from`: registry caches consulted on a local cache miss.
    pub cache_from: Vec<remote_cache::CacheImport>,
    /// `--cache-to`: registry caches written after the build.
    pub cache_to: Vec<remote_cache::CacheExport>,
    /// Where `type=local` caches' directories are: on this machine
    /// (`hutch build`) or the client's (buildx); `None` refuses them.
    pub cache_stores: Option<Arc<dyn cache_store::CacheStores>>,
    /// Add this build's records to the cache already at each `--cache-to`
    /// (registry or local) instead of replacing it: the second and later
    /// builds of a build for several platforms, whose caches are one.
    pub cache_merge: bool,
    /// Whether the context's file hashes are worth remembering by their
    /// stat (`builder/hashcache`): yes for a directory that outlives the
    /// build (`hutch build DIR`); no for a context unpacked from an API
    /// upload, whose fresh paths and inodes never match again (each build
    /// would only add entries for the next to read and rewrite).
    pub remember_context_hashes: bool,
    /// The context's ignore patterns when the client applied them already
    /// (BuildKit's session sends the context filtered): nothing is filtered
    /// again, but a COPY of an ignored file is warned about by them
    /// (`CopyIgnoredFile`). `None`: the context's own `.dockerignore`.
    pub ignore_patterns: Option<Vec<String>>,
}

impl BuildOptions {
    /// `--cache-to type=inline` or the build arg `BUILDKIT_INLINE_CACHE=1`.
    pub fn inline_cache(&self) -> bool {
        self.cache_to
            .iter()
            .any(|c| c.dest == remote_cache::CacheDest::Inline)
            || self
                .build_args
                .get(remote_cache::INLINE_BUILD_ARG)
                .is_some_and(remote_cache::truthy)
    }

    /// Whether any `--cache-to` writes a cache manifest (to a registry or
    /// a local cache), whose layers are gzipped on the runtime.
    fn manifest_cache_to(&self) -> bool {
        self.cache_to
            .iter()
            .any(|c| c.dest != remote_cache::CacheDest::Inline)
    }
}

/// A source of build secrets by id, asked when a RUN mounts one.
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// A file holding the secret `id` (readable by the builder only), or
    /// `None` when the source has no such secret.
    fn secret_file(&self, id: &str) -> Result<Option<PathBuf>, String>;
}

/// A source of SSH agents by id, for `RUN --mount=type=ssh`.
pub trait SshSource: Send + Sync + std::fmt::Debug {
    /// Serves agent `id` on a new socket in `dir` until the source is
    /// dropped, or `None` when the source has no such agent.
    fn agent_socket(&self, id: &str, dir: &Path) -> Result<Option<PathBuf>, String>;
}

/// What a build made.
#[derive(Debug, Clone)]
pub struct Built {
    pub id: Digest,
    pub names: Vec<Reference>,
}

/// The machinery a build runs on.
pub struct Executor {
    pub store: ImageStore,
    pub data_root: PathBuf,
    pub runtime: Runtime,
    pub proc_mode: ProcMode,
    pub registry: RegistryRequest,
    pub cancel: Arc<AtomicBool>,
}

struct Ctx<'a> {
    opts: &'a BuildOptions,
    progress: &'a dyn Progress,
    included: BTreeMap<String, PathBuf>,
    /// What the context ignores, for `CopyIgnoredFile` (none when the
    /// Dockerfile skips the check).
    ignored: Option<DockerIgnore>,
    /// `# check=error=true`: a warning found while building fails it.
    lint_errors: bool,
    cache: Cache,
    /// When the options say the context's hashes are worth remembering.
    hashes: Option<hashcache::HashCache>,
    tmp: PathBuf,
    epoch: Option<i64>,
    /// Step numbers for `Step N/M` (stages of a wave share them).
    step: AtomicUsize,
    total: AtomicUsize,
    /// The registry caches imported (`--cache-from`), in order.
    remote: Vec<remote_cache::Imported>,
    /// Every step's result, made or found, for `--cache-to`.
    steps: Mutex<Vec<remote_cache::StepResult>>,
    /// Runs registry transfers of the remote cache (`None` without one).
    rt: Option<tokio::runtime::Runtime>,
    /// Every RUN's `/etc/hosts` and `/etc/resolv.conf`.
    etc: run::EtcFiles,
    /// Every RUN's resource limits (`--ulimit`).
    rlimits: Vec<hutch_engine::runtime::spec::Rlimit>,
}

impl Ctx<'_> {
    fn record_step(&self, key: String, parent: Option<Digest>, image: &Digest) {
        if self.opts.cache_to.is_empty() && !self.opts.inline_cache() {
            return;
        }
        if let Ok(mut steps) = self.steps.lock() {
            steps.push(remote_cache::StepResult {
                key,
                parent,
                image: image.clone(),
            });
        }
    }
}

impl Executor {
    pub fn build(&self, opts: &BuildOptions, progress: &dyn Progress) -> Result<Built, BuildError> {
        let dockerfile = opts
            .dockerfile
            .clone()
            .unwrap_or_else(|| opts.context.join("Dockerfile"));
        let bytes = std::fs::read(&dockerfile).map_err(|e| {
            BuildError::io(
                &format!("reading the Dockerfile {}", dockerfile.display()),
                e,
            )
        })?;
        let name = dockerfile
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "Dockerfile".into());
        let df = crate::parse(&name, &bytes)?;
        if !df.warnings.is_empty() {
            progress.warnings(&df.warnings);
        }
        if let Some(msg) = df.check_failure() {
            return Err(BuildError::Invalid(msg));
        }
        let mut plan = plan(
            &df,
            opts.target.as_deref(),
            &opts.build_args,
            opts.platform.as_ref(),
        )?;
        plan.use_named_contexts(&opts.named_contexts)
            .map_err(BuildError::Invalid)?;
        let ignore = DockerIgnore::load(&opts.context, Some(&dockerfile))
            .map_err(|e| BuildError::io("reading .dockerignore", e))?;
        let included = walk_context(&opts.context, &ignore)
            .map_err(|e| BuildError::io("reading the build context", e))?
            .into_iter()
            .map(|e| (e.path, e.full_path))
            .collect();
        let skips = |rule| df.directives.check.as_ref().is_some_and(|c| c.skips(rule));
        let ignored = match &opts.ignore_patterns {
            _ if skips("CopyIgnoredFile") => None,
            Some(patterns) => DockerIgnore::parse(&patterns.join("\n")).ok(),
            None => Some(ignore),
        };
        // Asked of the kernel only when an --add-host names it.
        let gateway = if opts.extra_hosts.iter().any(|h| h.contains("host-gateway")) {
            hutch_engine::network::host_gateway()
        } else {
            std::net::IpAddr::from([127, 0, 0, 1])
        };
        let extra_hosts = opts
            .extra_hosts
            .iter()
            .map(|h| {
                hutch_engine::network::files::parse_extra_host(h, gateway)
                    .map_err(BuildError::Invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rlimits = hutch_engine::containers::build::ulimits_as_rlimits(&opts.ulimits)
            .map_err(BuildError::Invalid)?;
        let epoch = opts.source_date_epoch.or_else(|| {
            opts.build_args
                .get("SOURCE_DATE_EPOCH")
                .and_then(|v| v.trim().parse().ok())
        });
        // Removed (mounts, RUN dirs, downloads) however the build ends.
        let scratch = BuildTmp::create(&self.data_root, "build")
            .map_err(|e| BuildError::io("creating the build's directory in builder/tmp", e))?;
        let tmp = scratch.path().to_path_buf();
        let total = plan
            .order
            .iter()
            .map(|&i| 1 + df.stages[i].instructions.len())
            .sum();
        let rt = if opts.cache_from.is_empty() && !opts.manifest_cache_to() {
            None
        } else {
            Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| BuildError::io("starting the cache transfer runtime", e))?,
            )
        };
        let remote = match &rt {
            Some(rt) if !opts.no_cache => self.import_caches(rt, opts, progress),
            _ => Vec::new(),
        };
        let ctx = Ctx {
            opts,
            progress,
            included,
            ignored,
            lint_errors: df.directives.check.as_ref().is_some_and(|c| c.error),
            cache: Cache::open(&self.data_root),
            hashes: opts
                .remember_context_hashes
                .then(|| hashcache::HashCache::open(&self.data_root)),
            tmp,
            epoch,
            step: AtomicUsize::new(0),
            total: AtomicUsize::new(total),
            remote,
            steps: Mutex::new(Vec::new()),
            rt,
            etc: run::EtcFiles::new(&extra_hosts),
            rlimits,
        };
        let mut results: Vec<Option<ImageState>> = vec![None; df.stages.len()];
        let built = self.build_waves(&ctx, &df, &plan, &mut results);
        if let Some(hashes) = &ctx.hashes {
            hashes.save();
        }
        built?;
        let mut img = results[plan.target]
            .take()
            .ok_or_else(|| BuildError::Invalid("the target stage was not built".into()))?;
        // The target stage's own last step: where `mode=min` walks back from.
        let results_id = img.id.clone();
        if !opts.labels.is_empty() {
            let labels = img
                .run_config()
                .entry("Labels")
                .or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            for (k, v) in &opts.labels {
                labels[k] = json!(v);
            }
        }
        if let (true, Some(last)) = (opts.inline_cache(), &results_id) {
            let cache = self.inline_cache(&ctx, last)?;
            if let Some(config) = img.config.as_object_mut() {
                config.insert(remote_cache::INLINE_KEY.into(), cache);
            }
        }
        let names = opts
            .tags
            .iter()
            .map(|t| Reference::parse(t).map_err(|e| BuildError::Invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let id = img.store(&self.store, None, names.clone(), false)?;
        if let (Some(rt), Some(last)) = (&ctx.rt, results_id) {
            self.export_caches(rt, &ctx, &last)?;
        }
        Ok(Built { id, names })
    }

    fn now(&self, ctx: &Ctx<'_>) -> (String, i64) {
        let secs = ctx.epoch.unwrap_or_else(|| chrono::Utc::now().timestamp());
        let t = match ctx.epoch {
            Some(e) => chrono::DateTime::from_timestamp(e, 0).unwrap_or_default(),
            None => chrono::Utc::now(),
        };
        (t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), secs)
    }

    /// Makes sure `name` is in the store for `platform` (pulling it if
    /// needed: a stored image of another platform does not do) and loads it.
    fn base_image(
        &self,
        ctx: &Ctx<'_>,
        name: &str,
        platform: &crate::Platform,
    ) -> Result<ImageState, BuildError> {
        let stored = ImageState::load(&self.store, name).ok();
        let stored_platform = stored.as_ref().and_then(ImageState::platform);
        let fits = |p: &Option<crate::Platform>| p.as_ref().is_none_or(|p| platform.accepts(p));
        // An image by ID (an oci-layout context) is not pulled, --pull or not.
        let by_id = name.starts_with("sha256:");
        if (!ctx.opts.pull || by_id) && fits(&stored_platform) {
            if let Some(img) = stored {
                return Ok(img);
            }
        }
        ctx.progress.message(&format!("Pulling {name}"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| BuildError::io("starting the pull runtime", e))?;
        let mut registry = self.registry.clone();
        if let Some(auth) = auth_for(&ctx.opts.registry_auths, name) {
            registry.auth = Some(auth);
        }
        let want = platform.to_string();
        // A cancelled build does not wait for the pull: its layers commit
        // one by one, so what is cut short leaves only complete layers
        // (and ingest leftovers the store's start-up cleanup removes).
        let pulled = rt.block_on(async {
            tokio::select! {
                r = self.store.pull(name, Some(&want), &registry, ctx.progress.pull_progress()) => Some(r),
                () = remote::cancelled(&self.cancel) => None,
            }
        });
        let Some(pulled) = pulled else {
            rt.shutdown_background();
            return Err(BuildError::Cancelled);
        };
        match pulled {
            // By ID: a stage pulling the same name for another platform
            // may move the name meanwhile.
            Ok(p) => Ok(ImageState::load(&self.store, &p.id.to_string())?),
            Err(e) => match stored {
                Some(img) if ctx.opts.pull && fits(&stored_platform) => Ok(img),
                Some(_) if !fits(&stored_platform) => Err(BuildError::Invalid(format!(
                    "failed to resolve source image {name}: the local image is for {}, \
                     not the wanted platform {want}, and the pull failed: {e}",
                    stored_platform.map(|p| p.to_string()).unwrap_or_default()
                ))),
                _ => Err(BuildError::Invalid(format!(
                    "failed to resolve source image {name}: {e}"
                ))),
            },
        }
    }

    /// Builds the needed stages in waves: each wave is every stage whose
    /// dependencies are built, run on threads of their own. The first error
    /// cancels the rest of its wave.
    fn build_waves(
        &self,
        ctx: &Ctx<'_>,
        df: &crate::Dockerfile,
        plan: &crate::BuildPlan,
        results: &mut [Option<ImageState>],
    ) -> Result<(), BuildError> {
        let mut pending: Vec<usize> = plan.order.clone();
        while !pending.is_empty() {
            let (ready, later): (Vec<usize>, Vec<usize>) = pending.iter().partition(|&&si| {
                plan.stages[si]
                    .deps
                    .iter()
                    .all(|d| results.get(d.stage).is_some_and(Option::is_some))
            });
            if ready.is_empty() {
                return Err(BuildError::Invalid(
                    "the stages depend on each other in a cycle".into(),
                ));
            }
            pending = later;
            let done: &[Option<ImageState>] = results;
            let outcomes: Vec<(usize, Result<ImageState, BuildError>)> = if ready.len() == 1 {
                ready
                    .iter()
                    .map(|&si| (si, self.build_stage(ctx, df, plan, si, done)))
                    .collect()
            } else {
                std::thread::scope(|scope| {
                    let handles: Vec<_> = ready
                        .iter()
                        .map(|&si| {
                            let h = scope.spawn(move || {
                                let r = self.build_stage(ctx, df, plan, si, done);
                                if r.is_err() {
                                    self.cancel.store(true, Ordering::SeqCst);
                                }
                                r
                            });
                            (si, h)
                        })
                        .collect();
                    handles
                        .into_iter()
                        .map(|(si, h)| {
                            let r = h.join().unwrap_or_else(|_| {
                                Err(BuildError::Invalid(format!("building stage {si} panicked")))
                            });
                            (si, r)
                        })
                        .collect()
                })
            };
            // The root cause, not the cancellation it caused in siblings.
            let mut first_err = None;
            for (si, r) in outcomes {
                match r {
                    Ok(img) => results[si] = Some(img),
                    Err(BuildError::Cancelled) if first_err.is_none() => {
                        first_err = Some(BuildError::Cancelled)
                    }
                    Err(BuildError::Cancelled) => {}
                    Err(e) => {
                        if matches!(first_err, None | Some(BuildError::Cancelled)) {
                            first_err = Some(e);
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
        }
        Ok(())
    }

    fn build_stage(
        &self,
        ctx: &Ctx<'_>,
        df: &crate::Dockerfile,
        plan: &crate::BuildPlan,
        si: usize,
        results: &[Option<ImageState>],
    ) -> Result<ImageState, BuildError> {
        let built = self.build_stage_steps(ctx, df, plan, si, results);
        if let Err(e) = &built {
            ctx.progress.failed(e);
        }
        built
    }

    fn build_stage_steps(
        &self,
        ctx: &Ctx<'_>,
        df: &crate::Dockerfile,
        plan: &crate::BuildPlan,
        si: usize,
        results: &[Option<ImageState>],
    ) -> Result<ImageState, BuildError> {
        let stage = &df.stages[si];
        let planned = &plan.stages[si];
        let label = match (&stage.name, df.stages.len()) {
            (_, 1) => String::new(),
            (Some(n), _) => n.clone(),
            (None, _) => format!("stage-{si}"),
        };
        let mut info = StepInfo {
            stage: label,
            index: 1,
            count: 1 + stage.instructions.len(),
            text: stage.from_instruction.original.clone(),
        };
        ctx.progress.begin(&info);
        let n = ctx.step.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.progress.step(
            n,
            ctx.total.load(Ordering::SeqCst),
            &stage.from_instruction.original,
        );
        let mut img = match &planned.base {
            Source::Scratch => {
                let p = &planned.platform;
                ImageState::scratch(&p.os, &p.arch, p.variant.as_deref())
            }
            Source::Stage(i) => results[*i]
                .clone()
                .ok_or_else(|| BuildError::Invalid(format!("stage {i} was not built")))?,
            Source::Image(name) => self.base_image(ctx, name, &planned.platform)?,
            Source::Local(dir) => {
                return Err(BuildError::Invalid(format!(
                    "FROM a directory build context ({}) is not supported by hutch",
                    dir.display()
                )))
            }
        };
        if let Some(id) = &img.id {
            ctx.progress.done(id);
        }
        img.drop_build_metadata();
        let mut env = img.strings("Env");
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!(
                "PATH={}",
                hutch_engine::runtime::spec::DEFAULT_PATH
            ));
            img.run_config().insert("Env".into(), json!(env));
        }
        let mut state = StageState::from_base_env(env.iter().map(String::as_str));
        if let Some(w) = img.string("WorkingDir").filter(|w| !w.is_empty()) {
            state.workdir = w;
        }
        if let Some(u) = img.string("User") {
            state.user = u;
        }
        let shell = img.strings("Shell");
        if !shell.is_empty() {
            state.shell = shell;
        }
        // ONBUILD triggers of the base run first, and are not inherited.
        let mut instructions: Vec<(Option<usize>, Instruction)> = Vec::new();
        let triggers = img.strings("OnBuild");
        if !triggers.is_empty() {
            let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
            let parsed = crate::parse("ONBUILD", text.as_bytes())?;
            if let Some(s) = parsed.stages.first() {
                instructions.extend(s.instructions.iter().cloned().map(|i| (None, i)));
            }
            img.run_config().remove("OnBuild");
            ctx.total.fetch_add(instructions.len(), Ordering::SeqCst);
            info.count += instructions.len();
        }
        instructions.extend(
            stage
                .instructions
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, ins)| (Some(i), ins)),
        );
        let mut cmd_set = false;
        for (idx, ins) in &instructions {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(BuildError::Cancelled);
            }
            info.index += 1;
            info.text = ins.original.clone();
            ctx.progress.begin(&info);
            let n = ctx.step.fetch_add(1, Ordering::SeqCst) + 1;
            ctx.progress
                .step(n, ctx.total.load(Ordering::SeqCst), &ins.original);
            let sources = idx
                .and_then(|i| planned.sources.get(i))
                .cloned()
                .unwrap_or_default();
            self.step(
                ctx,
                df,
                &mut img,
                &mut state,
                ins,
                &sources,
                results,
                &plan.global_args,
                &mut cmd_set,
            )?;
        }
        Ok(img)
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        ctx: &Ctx<'_>,
        df: &crate::Dockerfile,
        img: &mut ImageState,
        state: &mut StageState,
        ins: &Instruction,
        sources: &[Source],
        results: &[Option<ImageState>],
        global: &crate::EnvList,
        cmd_set: &mut bool,
    ) -> Result<(), BuildError> {
        let before = state.clone();
        let ex = state.step(&df.file, df.escape, ins, &ctx.opts.build_args, global)?;
        report_undefined(ctx.progress, df, ins, &before, &ex.undefined)?;
        let mut key = Key::new(img.id.as_ref());
        // The stage's platform: a scratch stage for arm64 and one for amd64
        // share no parent, but must not share steps either.
        let platform = img.platform().unwrap_or_else(crate::Platform::host);
        key.add(platform.to_string().as_bytes());
        key.add(format!("{:?}", ex.command).as_bytes());
        key.add(format!("{:?}", ex.mounts).as_bytes());
        let (created, now) = self.now(ctx);
        // Config-only steps.
        let text = config::apply(img, state, &before, &ex.command, cmd_set)?;
        if let Some(text) = text {
            return self.finish_step(ctx, img, key, &created, &text, None);
        }
        match &ex.command {
            Command::Workdir(_) => {
                img.run_config()
                    .insert("WorkingDir".into(), json!(state.workdir));
                let text = history::workdir(&state.workdir);
                let Some(_claim) = self.cached_or_claim(ctx, &key, img)? else {
                    return Ok(());
                };
                let lower = img.lower_dirs(&self.store);
                let rel = state.workdir.trim_start_matches('/').to_string();
                let layer = if rel.is_empty() || view::lookup(&lower, &rel).is_some() {
                    None
                } else {
                    let mut out = BTreeMap::new();
                    out.insert(rel.clone(), Entry::dir(&rel, 0o755, 0, 0, now));
                    let entries = with_parents(out, &lower, now);
                    Some(self.write_layer(entries, ctx.epoch)?)
                };
                self.finish_layer_step(ctx, img, key, &created, &text, layer)
            }
            Command::Run(run) => {
                let argv = before.argv(&run.cmd);
                let mut env = state.run_env(&ctx.opts.build_args).to_key_values();
                key.add(format!("{env:?}").as_bytes());
                let text = history::run(&argv, &state.declared_args());
                let Some(_claim) = self.cached_or_claim(ctx, &key, img)? else {
                    return Ok(());
                };
                let emulator = platform.emulator().map_err(|why| {
                    BuildError::Run(format!(
                        "RUN {}: cannot run {platform} binaries on this {} host ({why}): \
                         exec format error",
                        argv.join(" "),
                        crate::Platform::host(),
                    ))
                })?;
                let lower = img.lower_dirs(&self.store);
                let prepared = mounts::prepare(
                    &ex.mounts,
                    &mounts::MountInputs {
                        context: &ctx.opts.context,
                        data_root: &self.data_root,
                        tmp: &ctx.tmp,
                        secrets: &ctx.opts.secrets,
                        secret_source: ctx.opts.secret_source.as_deref(),
                        ssh_source: ctx.opts.ssh_source.as_deref(),
                        store: &self.store,
                        sources,
                        results,
                        workdir: &state.workdir,
                    },
                )?;
                let network = match run.network {
                    Network::None => NetworkMode::None,
                    // Until builds get their own network, the default is the
                    // engine's (the pod's) network, as a build in the pod would.
                    Network::Default if ctx.opts.network_none => NetworkMode::None,
                    Network::Default | Network::Host => NetworkMode::Host,
                };
                let mut skip: BTreeSet<String> = prepared.stubs.iter().cloned().collect();
                for s in [
                    "proc",
                    "sys",
                    "dev",
                    "etc/hosts",
                    "etc/hostname",
                    "etc/resolv.conf",
                ] {
                    skip.insert(s.to_string());
                }
                skip.retain(|p| view::lookup(&lower, p).is_none());
                for (k, v) in &prepared.env {
                    if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
                        env.push(format!("{k}={v}"));
                    }
                }
                let container_id = format!("{:x}", Sha256::digest(key_preview(&argv)));
                ctx.progress.running(&container_id[..12]);
                let epoch = ctx.epoch;
                let (outcome, layer) = run::run(
                    &self.runtime,
                    self.proc_mode,
                    &ctx.tmp,
                    run::RunRequest {
                        argv: argv.clone(),
                        env,
                        cwd: state.workdir.clone(),
                        user: state.user.clone(),
                        network,
                        mounts: prepared.mounts.clone(),
                        lower,
                        etc: ctx.etc.clone(),
                        rlimits: ctx.rlimits.clone(),
                        shm_size: ctx.opts.shm_size,
                        emulator,
                    },
                    &ctx.progress.output(),
                    &self.cancel,
                    |upper| {
                        mounts::remove_stubs(upper, &skip);
                        let entries = upperdiff::upper_entries(upper, &skip)
                            .map_err(|e| BuildError::io("reading the RUN's changes", e))?;
                        if entries.is_empty() {
                            return Ok(None);
                        }
                        let stats = upperdiff::tree_stats(&entries);
                        let mut layer = self.write_layer(entries, epoch)?;
                        layer.tree = self.adopt_upper(upper, stats);
                        Ok(Some(layer))
                    },
                )?;
                drop(prepared);
                if outcome.code != 0 {
                    let output = String::from_utf8_lossy(&outcome.tail).to_string();
                    return Err(BuildError::RunFailed {
                        command: argv.join(" "),
                        code: outcome.code,
                        output,
                    });
                }
                self.finish_layer_step(ctx, img, key, &created, &text, layer.flatten())
            }
            Command::Copy(c) => {
                let text = history::copy(c);
                self.copy_step(
                    ctx,
                    img,
                    state,
                    key,
                    CopyArgs {
                        sources: &c.sources,
                        from: c.from.clone(),
                        chown: c.chown.clone(),
                        chmod: c.chmod.clone(),
                        add: false,
                        excludes: &c.excludes,
                        parents: c.parents,
                        checksum: None,
                        unpack: None,
                        keep_git_dir: false,
                        at: format!("{}:{}", df.file, ins.span.start.line),
                        position: ins.span.start,
                    },
                    sources,
                    results,
                    &created,
                    now,
                    &text,
                )
            }
            Command::Add(a) => {
                let text = history::add(a);
                self.copy_step(
                    ctx,
                    img,
                    state,
                    key,
                    CopyArgs {
                        sources: &a.sources,
                        from: None,
                        chown: a.chown.clone(),
                        chmod: a.chmod.clone(),
                        add: true,
                        excludes: &a.excludes,
                        parents: false,
                        checksum: a.checksum.clone(),
                        unpack: a.unpack,
                        keep_git_dir: a.keep_git_dir.unwrap_or(false),
                        at: format!("{}:{}", df.file, ins.span.start.line),
                        position: ins.span.start,
                    },
                    sources,
                    results,
                    &created,
                    now,
                    &text,
                )
            }
            _ => Ok(()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_step(
        &self,
        ctx: &Ctx<'_>,
        img: &mut ImageState,
        state: &StageState,
        mut key: Key,
        args: CopyArgs<'_>,
        sources: &[Source],
        results: &[Option<ImageState>],
        created: &str,
        now: i64,
        text: &str,
    ) -> Result<(), BuildError> {
        let lower = img.lower_dirs(&self.store);
        let chown = args
            .chown
            .as_deref()
            .map(|c| resolve_chown(c, &lower))
            .transpose()?;
        let chmod = args
            .chmod
            .as_deref()
            .map(|c| Chmod::parse(c).map_err(BuildError::Invalid))
            .transpose()?;
        // ADD of a git repository: its checkout is the source, as `ADD
        // DIR/ dest` (`.` of it), cloned into the build's scratch.
        let git = remote::git_source(&args.sources.paths, args.add, &args.at)?;
        let mut _clone = None;
        let dot = [".".to_owned()];
        let paths: &[String] = if git.is_some() {
            &dot
        } else {
            &args.sources.paths
        };
        // The step's key before any copy: with --checksum (the content
        // is named in the instruction) or a git source the remote resolves
        // to a commit (the commit names the checkout, so a cache hit needs
        // no clone, as in BuildKit). Otherwise the copied content's hash
        // completes it below.
        let fetch = remote::Downloads::plan(paths, args.add, args.checksum.as_deref(), &args.at)?;
        let revision = git.as_ref().and_then(|g| g.remote_revision());
        let mut _claim = None;
        if fetch.key_complete() || revision.is_some() {
            if let Some(rev) = &revision {
                key.add(format!("git-revision:{rev}").as_bytes());
            }
            let Some(claim) = self.cached_or_claim(ctx, &key, img)? else {
                return Ok(());
            };
            _claim = Some(claim);
        }
        // Where the files come from: the context, a git checkout, or a
        // stage's / image's view.
        let mut _view = None;
        let (root, included, keep_owner) = match (&args.from, sources.first()) {
            _ if git.is_some() => {
                let (dir, root) =
                    remote::clone_git(git.as_ref(), &ctx.tmp, args.keep_git_dir, &args.at)?;
                _clone = Some(dir);
                (root, None, false)
            }
            // A directory named as a build context: its files as the
            // context's (owned by root unless --chown).
            (Some(_), Some(Source::Local(dir))) => (dir.clone(), None, false),
            (Some(_), Some(src)) => {
                let layers = match src {
                    Source::Stage(i) => results[*i]
                        .as_ref()
                        .ok_or_else(|| BuildError::Invalid(format!("stage {i} was not built")))?
                        .lower_dirs(&self.store),
                    Source::Image(name) => {
                        let platform = img.platform().unwrap_or_else(crate::Platform::host);
                        self.base_image(ctx, name, &platform)?
                            .lower_dirs(&self.store)
                    }
                    // (Local is the arm above.)
                    Source::Scratch | Source::Local(_) => Vec::new(),
                };
                let v = view::MergedView::mount(&layers, &ctx.tmp)
                    .map_err(|e| BuildError::io("COPY --from", e))?;
                let root = v.path().to_path_buf();
                _view = Some(v);
                (root, None, true)
            }
            _ => {
                warn_ignored(ctx, paths, args.add, args.position)?;
                (ctx.opts.context.clone(), Some(&ctx.included), false)
            }
        };
        // Context files' hashes are remembered by their stat; a view's
        // (a fresh overlay mount each build) would never match.
        let hashes = ctx.hashes.as_ref().filter(|_| included.is_some());
        let src = copy::SourceRoot {
            root: &root,
            included,
            keep_owner,
        };
        let exclude = crate::dockerignore::DockerIgnore::parse(&args.excludes.join("\n"))
            .map_err(|e| BuildError::Invalid(format!("--exclude: {e}")))?;
        let fetched = fetch.run(&ctx.tmp, &self.data_root, &self.cancel)?;
        let req = copy::CopyRequest {
            sources: paths,
            inline: &args.sources.inline,
            dest: &args.sources.dest,
            workdir: &state.workdir,
            chown,
            chmod,
            add: args.add,
            unpack: args.unpack,
            remote: fetched.files(),
            download_time: ctx.epoch.unwrap_or(now),
            now: ctx.epoch.unwrap_or(0),
            exclude: &exclude,
            parents: args.parents,
        };
        let entries = copy::copy_entries(&src, &req, &lower)?;
        if _claim.is_none() {
            key.add(&checksum(&entries, hashes)?);
            let Some(claim) = self.cached_or_claim(ctx, &key, img)? else {
                return Ok(());
            };
            _claim = Some(claim);
        }
        let layer = self.write_layer(entries, ctx.epoch)?;
        drop(fetched);
        self.finish_layer_step(ctx, img, key, created, text, Some(layer))
    }

    /// The step's cached result put in `img` (`Ok(None)`), or else the
    /// claim on running it, to hold until its result is cached: a build
    /// running the same step meanwhile is waited for, and its result taken
    /// (see `inflight`). Without a cache (`--no-cache`) nothing is claimed.
    fn cached_or_claim(
        &self,
        ctx: &Ctx<'_>,
        key: &Key,
        img: &mut ImageState,
    ) -> Result<Option<Option<inflight::Claim>>, BuildError> {
        if let Some(hit) = self.lookup_cache(ctx, key, img) {
            *img = hit;
            return Ok(None);
        }
        if ctx.opts.no_cache {
            return Ok(Some(None));
        }
        let claim = inflight::claim(&self.data_root, &clone_key(key), &self.cancel)?
            .ok_or(BuildError::Cancelled)?;
        // What a build that held the claim may have just stored (the
        // registry caches were asked already).
        if let Some(hit) = self.lookup_local(ctx, key, img) {
            *img = hit;
            return Ok(None);
        }
        Ok(Some(Some(claim)))
    }

    /// The step's result from the local cache, else from a registry cache
    /// (`--cache-from`). `parent` is the image before the step (its config
    /// may already hold the step's change; its ID and layers do not).
    fn lookup_cache(&self, ctx: &Ctx<'_>, key: &Key, parent: &ImageState) -> Option<ImageState> {
        if ctx.opts.no_cache {
            return None;
        }
        let k = clone_key(key);
        let img = match self.local_hit(ctx, &k) {
            Some(img) => img,
            None => self.remote_hit(ctx, &k, parent)?,
        };
        self.took_from_cache(ctx, k, parent, img)
    }

    /// [`Executor::lookup_cache`] in the local cache only.
    fn lookup_local(&self, ctx: &Ctx<'_>, key: &Key, parent: &ImageState) -> Option<ImageState> {
        let k = clone_key(key);
        let img = self.local_hit(ctx, &k)?;
        self.took_from_cache(ctx, k, parent, img)
    }

    fn local_hit(&self, ctx: &Ctx<'_>, k: &str) -> Option<ImageState> {
        let img = ctx
            .cache
            .get(k)
            .and_then(|id| ImageState::load(&self.store, &id.to_string()).ok())?;
        ctx.cache.used(k);
        Some(img)
    }

    /// Records and reports a step served from a cache.
    fn took_from_cache(
        &self,
        ctx: &Ctx<'_>,
        k: String,
        parent: &ImageState,
        img: ImageState,
    ) -> Option<ImageState> {
        let id = img.id.clone()?;
        ctx.record_step(k, parent.id.clone(), &id);
        ctx.progress.cached();
        ctx.progress.done(&id);
        Some(img)
    }

    fn write_layer(
        &self,
        entries: Vec<Entry>,
        epoch: Option<i64>,
    ) -> Result<hutch_images::NewLayer, BuildError> {
        let w = self.store.layer_writer()?;
        let w = tarball::write_tar(w, entries, epoch)
            .map_err(|e| BuildError::io("writing the layer", e))?;
        w.finish()
            .map_err(|e| BuildError::Image(ImageError::Store(e)))
    }

    /// Moves a RUN's upper directory (the command exited) into the layer
    /// store as its new layer's tree: one rename instead of unpacking the
    /// blob just written and deleting the upper dir. `None` when it cannot
    /// (e.g. another filesystem): the store then unpacks the blob.
    fn adopt_upper(
        &self,
        upper: &Path,
        stats: upperdiff::TreeStats,
    ) -> Option<hutch_images::built::BuiltTree> {
        use std::os::unix::fs::PermissionsExt;
        let prepared = match self.store.prepare_layer() {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(error = %e, "RUN layer: unpacking the blob instead");
                return None;
            }
        };
        let diff = prepared.diff_dir();
        // The tar has no entry for the root: it must look as the empty
        // directory an unpack starts from, whatever the RUN did to `/`.
        let moved = std::fs::metadata(&diff).and_then(|root| {
            use std::os::unix::fs::MetadataExt;
            upperdiff::make_layer_tree(upper)?;
            std::fs::rename(upper, &diff)?;
            std::os::unix::fs::lchown(&diff, Some(root.uid()), Some(root.gid()))?;
            std::fs::set_permissions(&diff, std::fs::Permissions::from_mode(0o755))
        });
        if let Err(e) = moved {
            tracing::info!(error = %e, "RUN layer: unpacking the blob instead");
            return None;
        }
        Some(hutch_images::built::BuiltTree {
            prepared,
            content_size: stats.content_size,
            highest_uid: stats.highest_uid,
            highest_gid: stats.highest_gid,
            uses_overflow_id: stats.uses_overflow_id,
        })
    }

    fn finish_step(
        &self,
        ctx: &Ctx<'_>,
        img: &mut ImageState,
        key: Key,
        created: &str,
        text: &str,
        _layer: Option<()>,
    ) -> Result<(), BuildError> {
        let Some(_claim) = self.cached_or_claim(ctx, &key, img)? else {
            return Ok(());
        };
        img.push_history(created, text, None);
        let id = img.store(&self.store, None, Vec::new(), true)?;
        let parent = img.id.replace(id.clone());
        let key = key.finish();
        ctx.cache.put(&key, &id);
        ctx.record_step(key, parent, &id);
        ctx.progress.done(&id);
        Ok(())
    }

    fn finish_layer_step(
        &self,
        ctx: &Ctx<'_>,
        img: &mut ImageState,
        key: Key,
        created: &str,
        text: &str,
        layer: Option<hutch_images::NewLayer>,
    ) -> Result<(), BuildError> {
        let new_ref = layer.as_ref().map(|l| LayerRef {
            blob: l.blob.digest.clone(),
            media_type: l.media_type().to_string(),
            blob_size: l.blob.size,
            diff_id: l.diff_id.clone(),
            chain_id: Digest::chain(img.layers.last().map(|l| &l.chain_id), &l.diff_id),
        });
        img.push_history(created, text, new_ref.as_ref().map(|l| &l.diff_id));
        let id = img.store(&self.store, layer, Vec::new(), true)?;
        if let Some(l) = new_ref {
            img.layers.push(l);
        }
        let parent = img.id.replace(id.clone());
        let key = key.finish();
        ctx.cache.put(&key, &id);
        ctx.record_step(key, parent, &id);
        ctx.progress.done(&id);
        Ok(())
    }
}

/// The credentials `X-Registry-Config` holds for the registry of `image`
/// (Docker Hub is filed under its legacy index URL).
fn auth_for(
    auths: &BTreeMap<String, hutch_images::registry::AuthConfig>,
    image: &str,
) -> Option<hutch_images::registry::AuthConfig> {
    if auths.is_empty() {
        return None;
    }
    let domain = Reference::parse(image).ok()?.domain().to_string();
    let hub = domain == "docker.io";
    auths
        .iter()
        .find(|(key, _)| {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            host == domain || (hub && matches!(host, "index.docker.io" | "registry-1.docker.io"))
        })
        .map(|(_, a)| a.clone())
}

struct CopyArgs<'a> {
    sources: &'a crate::dockerfile::Sources,
    from: Option<String>,
    chown: Option<String>,
    chmod: Option<String>,
    add: bool,
    /// `--exclude` patterns.
    excludes: &'a [String],
    /// `--parents` (COPY only).
    parents: bool,
    /// ADD `--checksum` of a URL source.
    checksum: Option<String>,
    /// ADD `--unpack`.
    unpack: Option<bool>,
    /// ADD `--keep-git-dir` of a git source.
    keep_git_dir: bool,
    /// `Dockerfile:LINE`, for errors about downloads.
    at: String,
    /// The instruction's place, for warnings.
    position: crate::Position,
}

/// BuildKit's `CopyIgnoredFile`: a COPY or ADD from the context names a
/// file its ignore patterns exclude (or under a directory they do).
fn warn_ignored(
    ctx: &Ctx<'_>,
    paths: &[String],
    add: bool,
    at: crate::Position,
) -> Result<(), BuildError> {
    let Some(ignored) = &ctx.ignored else {
        return Ok(());
    };
    let verb = if add { "Add" } else { "Copy" };
    let warnings: Vec<crate::Warning> = paths
        .iter()
        .filter(|p| !p.contains("://") && ignored.is_ignored(p))
        .map(|p| crate::Warning {
            rule: "CopyIgnoredFile",
            at,
            message: format!("Attempting to {verb} file {p:?} that is excluded by .dockerignore"),
        })
        .collect();
    if warnings.is_empty() {
        return Ok(());
    }
    ctx.progress.warnings(&warnings);
    lint_failure(ctx.lint_errors, "CopyIgnoredFile")
}

/// With `# check=error=true`, a warning the build itself finds fails it,
/// in BuildKit's words.
fn lint_failure(errors: bool, rule: &str) -> Result<(), BuildError> {
    if errors {
        return Err(BuildError::Invalid(format!(
            "lint violation found for rules: {rule}"
        )));
    }
    Ok(())
}

fn key_preview(argv: &[String]) -> Vec<u8> {
    let mut b = argv.join(" ").into_bytes();
    b.extend_from_slice(
        &chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or(0)
            .to_le_bytes(),
    );
    b
}

/// The cache key as text without consuming it (the key is finished once the
/// step is stored).
fn clone_key(key: &Key) -> String {
    key.clone().finish()
}

/// A COPY's checksum: every entry's path, type, mode, owner and content hash
/// (never its mtime).
fn checksum(
    entries: &[Entry],
    hashes: Option<&hashcache::HashCache>,
) -> Result<Vec<u8>, BuildError> {
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.path.as_bytes());
        h.update([0]);
        h.update(format!("{:o} {} {} ", e.mode, e.uid, e.gid).as_bytes());
        match &e.body {
            Body::Dir => h.update(b"d"),
            Body::File(p) => {
                h.update(b"f");
                let file_hash = match hashes {
                    Some(c) => c.file_hash(p),
                    None => hashcache::hash_file(p),
                }
                .map_err(|err| BuildError::io(&format!("reading {}", p.display()), err))?;
                h.update(file_hash);
            }
            Body::Bytes(b) => {
                h.update(b"b");
                h.update(b);
            }
            Body::Symlink(t) => h.update(format!("l{t}").as_bytes()),
            Body::Link(t) => h.update(format!("h{t}").as_bytes()),
            Body::Fifo => h.update(b"p"),
        }
        for (k, v) in &e.xattrs {
            h.update(k.as_bytes());
            h.update(v);
        }
        h.update([0xff]);
    }
    Ok(h.finalize().to_vec())
}

fn with_parents(mut out: BTreeMap<String, Entry>, lower: &[PathBuf], now: i64) -> Vec<Entry> {
    let paths: Vec<String> = out.keys().cloned().collect();
    for p in paths {
        let mut cur = Path::new(&p).parent();
        while let Some(dir) = cur {
            let d = dir.to_string_lossy().to_string();
            if d.is_empty() || out.contains_key(&d) || view::lookup(lower, &d).is_some() {
                break;
            }
            out.insert(d.clone(), Entry::dir(&d, 0o755, 0, 0, now));
            cur = dir.parent();
        }
    }
    out.into_values().collect()
}

/// `--chown=user[:group]` by number or by name in the image's passwd/group.
fn resolve_chown(spec: &str, lower: &[PathBuf]) -> Result<(u32, u32), BuildError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |file: &str| {
        view::lookup(lower, file)
            .and_then(|(p, _)| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => read("etc/passwd")
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == user)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .ok_or_else(|| {
                BuildError::Invalid(format!("unable to convert uid/gid chown string to host mapping: can't find uid for user {user}"))
            })?,
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("etc/group")
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    BuildError::Invalid(format!("unable to convert uid/gid chown string to host mapping: can't find gid for group {g}"))
                })?,
        },
    };
    Ok((uid, gid))
}

/// Docker's Healthcheck config object (durations in nanoseconds).
fn health_json(h: &Healthcheck) -> Value {
    match h {
        Healthcheck::None => json!({"Test": ["NONE"]}),
        Healthcheck::Cmd(c) => {
            let mut v = json!({"Test": c.test});
            let ns =
                |d: std::time::Duration| json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            if let Some(d) = c.interval {
                v["Interval"] = ns(d);
            }
            if let Some(d) = c.timeout {
                v["Timeout"] = ns(d);
            }
            if let Some(d) = c.start_period {
                v["StartPeriod"] = ns(d);
            }
            if let Some(d) = c.start_interval {
                v["StartInterval"] = ns(d);
            }
            if let Some(r) = c.retries {
                v["Retries"] = json!(r);
            }
            v
        }
    }
}

/// BuildKit's `UndefinedVar` warnings for what `ins` used but nothing set
/// (`before`: the environment it was expanded with), unless the Dockerfile
/// skips the check.
fn report_undefined(
    progress: &dyn Progress,
    df: &crate::Dockerfile,
    ins: &Instruction,
    before: &StageState,
    undefined: &[String],
) -> Result<(), BuildError> {
    let check = df.directives.check.as_ref();
    if undefined.is_empty() || check.is_some_and(|c| c.skips("UndefinedVar")) {
        return Ok(());
    }
    let defined: Vec<&str> = before.env.iter().map(|(k, _)| k).collect();
    let warnings: Vec<crate::Warning> = undefined
        .iter()
        .map(|name| crate::dockerfile::lint::undefined_var(name, ins.span.start, &defined))
        .collect();
    progress.warnings(&warnings);
    lint_failure(check.is_some_and(|c| c.error), "UndefinedVar")
}
