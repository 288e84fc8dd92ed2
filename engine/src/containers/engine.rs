//! [`Engine`]: the typed container API the daemon calls. It keeps the
//! containers' records in memory (loaded from the store at open, when it
//! also re-adopts the supervisors of running containers), hands each start
//! to a spare supervisor, and follows every running container through an
//! event stream from its supervisor. All calls block; the daemon runs them
//! on blocking threads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hutch_images::ImageStore;
use nix::sys::signal::Signal;

use super::build::{self, ImageRunConfig, Inputs};
use super::client::{self, Output, Stream};
use super::config::{ContainerConfig, CreateOptions, RestartPolicy, RestartPolicyName, UsernsMode};
use super::ids;
use super::logread::{self, LogLine, LogsOptions, OpenedLog};
use super::names::{self, NameError, Names};
use super::networking;
use super::primes::Taken;
use super::private_layers::{LayersError, PrivateLayers};
use super::protocol::{self, Event, Kind, Reply, Request};
use super::spare::SparePool;
use super::state::{State, Status};
use super::store::{ContainerDir, Store};
use super::timefmt;
use crate::emulation::Emulation;
use crate::network::{ContainerNetworking, Mode as NetMode, NetworkSettings, Networks};
use crate::runtime::{image_ids, IdAllocator, IdMap, ProcMode, ProcessSpec};
use crate::volumes::VolumeStore;

mod cgroup_ops;
mod donor_ops;
mod link_ops;
mod prime_ops;
mod restore;
mod volume_ops;
pub use volume_ops::{VolumeUsage, VolumesPruned};

/// Docker's default detach keys: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("No such exec instance: {0}")]
    ExecNotFound(String),
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// A 409 (name in use, removing a running container, ...).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Already in the requested state (Docker's 304).
    #[error("container already in the requested state")]
    NotModified,
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("No such image: {0}")]
    Image(String),
    /// Docker's 404 text for a volume.
    #[error("get {0}: no such volume")]
    VolumeNotFound(String),
    /// The process could not be started; `code` is Docker's exit code.
    #[error("{message}")]
    Failed { code: i32, message: String },
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
}

impl From<NameError> for EngineError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Invalid(_) => EngineError::Invalid(e.to_string()),
            NameError::InUse { .. } => EngineError::Conflict(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, EngineError>;

/// What an [`EngineEvent`] is about (Docker's event `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventKind {
    #[default]
    Container,
    /// `connect`/`disconnect` of a container (attribute `container`) at
    /// its start and exit; the ID is the network's.
    Network,
}

/// An event for `/events`, as Docker names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    pub kind: EventKind,
    /// `create`, `start`, `die`, `stop`, `kill`, `destroy`, `rename`,
    /// `restart`, `attach`, `resize`, `exec_create`, `exec_start`,
    /// `exec_die`, `health_status: healthy`, ...
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
}

pub type EventSink = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

pub struct EngineOptions {
    pub data_root: PathBuf,
    /// The hutch binary (spawned as `__supervise`).
    pub exe: PathBuf,
    /// How containers get their /proc here ([`crate::bootstrap`]).
    pub proc_mode: ProcMode,
    /// Warnings each create reports (degraded mode).
    pub warnings: Vec<String>,
    pub on_event: Option<EventSink>,
    /// Mount a tmpfs in the engine's mount namespace for the layers of
    /// private-mode containers (which the kernel idmaps only there); without
    /// it private mode is refused.
    pub private_layers_on_tmpfs: bool,
    /// Bridge networks; without them every container runs as `none`.
    pub networks: Option<Arc<Networks>>,
    /// A delegated cgroup hierarchy: containers get their own cgroups.
    pub cgroups: Option<crate::cgroups::Cgroups>,
    /// Begin each created container's start right after its create (see
    /// [`super::primes`]): for a daemon, whose clients start what they
    /// create at once; not for a one-shot command that ends after it.
    pub prime_starts: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            data_root: PathBuf::from("/var/lib/hutch"),
            exe: PathBuf::from("hutch"),
            proc_mode: ProcMode::Fresh,
            warnings: Vec::new(),
            on_event: None,
            private_layers_on_tmpfs: false,
            networks: None,
            cgroups: None,
            prime_starts: false,
        }
    }
}

/// `docker wait --condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// What `create` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    pub warnings: Vec<String>,
    /// The image's platform (`linux/arm64`), when this machine does not run
    /// its architecture natively.
    pub foreign_platform: Option<String>,
}

/// What `inspect` and `list` give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDetails {
    pub config: ContainerConfig,
    pub state: State,
    pub log_path: PathBuf,
    pub rootfs_upper: PathBuf,
    /// The overlay work directory that goes with `rootfs_upper`.
    pub rootfs_work: PathBuf,
    /// Its endpoints and published ports, when networking is on.
    pub network: Option<NetworkSettings>,
}

/// One client to attach at a start ([`Engine::start_attached`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachSpec {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// Docker's ctrl-p,ctrl-q when `None`.
    pub detach_keys: Option<Vec<u8>>,
}

/// `docker exec` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub tty: bool,
    pub attach_stdin: bool,
    pub privileged: bool,
}

/// An exec instance (`/exec/{id}/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecDetails {
    pub id: String,
    pub container_id: String,
    pub options: ExecOptions,
    pub running: bool,
    /// `None` until it exited.
    pub exit_code: Option<i32>,
    pub pid: i32,
}

struct Record {
    config: ContainerConfig,
    state: State,
    /// An event stream from its supervisor is being followed.
    watched: bool,
    /// The cgroup's OOM-kill count before a run, with the run's `exits`
    /// count then (OOMKilled means a kill during that run).
    oom_base: Option<(u64, u64)>,
}

#[derive(Default)]
struct Table {
    containers: HashMap<String, Record>,
    names: Names,
    execs: HashMap<String, ExecDetails>,
    /// Engine ID ranges of private-mode containers, held from create to
    /// remove.
    ids: IdAllocator,
    /// The last exit codes of recently removed containers, for `wait
    /// removed` callers that see the record only once it is gone.
    removed_codes: std::collections::VecDeque<(String, i32)>,
}

/// Removed containers whose exit code `wait removed` can still tell.
const REMEMBER_REMOVED: usize = 256;

/// The exit code the container with the full ID `id` was removed with, if
/// it was removed recently.
fn removed_code(table: &Table, id: &str) -> Option<i32> {
    table
        .removed_codes
        .iter()
        .rev()
        .find(|(gone, _)| gone == id)
        .map(|(_, code)| *code)
}
/// How long `docker kill` (SIGKILL) waits for the container to be down.
const KILL_WAIT: Duration = Duration::from_secs(10);

struct Inner {
    store: Store,
    images: ImageStore,
    opts: EngineOptions,
    spares: SparePool,
    /// Starts begun at create (see [`super::primes`]).
    primes: super::primes::Primes,
    private_layers: PrivateLayers,
    volumes: VolumeStore,
    /// Held while a create attaches volumes and while volumes are removed,
    /// so a removal never takes a volume a create is about to use.
    volumes_lock: Mutex<()>,
    table: Mutex<Table>,
    changed: Condvar,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Removed containers' directories are deleted in the background:
        // finish before the process may end.
        self.store.flush();
    }
}

/// The container engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_root", &self.inner.opts.data_root)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the data root: loads every container and re-adopts the
    /// supervisors of those still running. Containers that ended while no
    /// daemon ran have their exit recorded by their supervisor already.
    pub fn open(opts: EngineOptions) -> Result<Engine> {
        let store = Store::open(&opts.data_root)?;
        let images =
            ImageStore::open(&opts.data_root).map_err(|e| EngineError::Io(io::Error::other(e)))?;
        let spares = SparePool::new(opts.exe.clone());
        let volumes = VolumeStore::open(&opts.data_root)?;
        let private_layers = PrivateLayers::open(&opts.data_root, opts.private_layers_on_tmpfs)?;
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                images,
                opts,
                spares,
                primes: Default::default(),
                private_layers,
                volumes,
                volumes_lock: Mutex::new(()),
                table: Mutex::new(Table::default()),
                changed: Condvar::new(),
            }),
        };
        engine.load()?;
        engine.prune_private_layers();
        engine.start_networking()?;
        engine.remove_ended_auto_removes();
        engine.inner.spares.refill();
        Ok(engine)
    }

    /// `--rm` containers whose process ended while no engine ran: removed
    /// now, as they would have been.
    fn remove_ended_auto_removes(&self) {
        let ended: Vec<String> = self
            .lock()
            .containers
            .iter()
            .filter(|(_, r)| {
                r.config.options.auto_remove
                    && !r.watched
                    && r.state.exits > 0
                    && !r.state.is_active()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            if let Err(e) = self.remove_with_volumes(&id, true, true) {
                tracing::warn!(%id, %e, "removing an --rm container that ended meanwhile");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Docker's `network connect`/`disconnect` events, one per network the
    /// container is on.
    fn emit_network(&self, action: &str, container_id: &str, settings: &NetworkSettings) {
        let Some(sink) = &self.inner.opts.on_event else {
            return;
        };
        for (name, ep) in &settings.networks {
            let attributes = BTreeMap::from([
                ("container".to_string(), container_id.to_string()),
                ("name".to_string(), name.clone()),
                ("type".to_string(), "bridge".to_string()),
            ]);
            sink(&EngineEvent {
                kind: EventKind::Network,
                action: action.to_string(),
                id: ep.network_id.clone(),
                attributes,
            });
        }
    }

    fn emit(&self, action: &str, id: &str, attrs: &[(&str, String)]) {
        if let Some(sink) = &self.inner.opts.on_event {
            let mut attributes: BTreeMap<String, String> = attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            if let Some(r) = self.lock().containers.get(id) {
                attributes.extend(event_attributes(&r.config));
            }
            sink(&EngineEvent {
                kind: EventKind::Container,
                action: action.to_string(),
                id: id.to_string(),
                attributes,
            });
        }
    }

    fn load(&self) -> Result<()> {
        for id in self.inner.store.ids()? {
            let dir = self.inner.store.dir(&id);
            let config = match dir.read_config() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%id, %e, "skipping a container with an unreadable config");
                    continue;
                }
            };
            let state = dir.read_state().unwrap_or_default();
            let id_map = dir.read_spec().ok().map(|s| s.id_map);
            let mut table = self.lock();
            table.names.reserve(&config.name, &id)?;
            if let Some(map) = id_map.as_ref().filter(|m| !m.is_identity()) {
                if let Err(e) = table.ids.reserve(map) {
                    tracing::warn!(%id, %e, "a private-mode container's ID range is taken twice");
                }
            }
            table.containers.insert(
                id.clone(),
                Record {
                    config,
                    state: state.clone(),
                    watched: false,
                    oom_base: None,
                },
            );
            drop(table);
            if state.supervisor_pid != 0 || state.is_active() {
                self.adopt(&id, &dir);
            }
        }
        Ok(())
    }

    /// Reconnects to a running container's supervisor, or records that it
    /// is gone.
    fn adopt(&self, id: &str, dir: &ContainerDir) {
        match client::open(&dir.sock(), &Request::Watch).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let r = client::reply(&mut s)?;
            s.set_read_timeout(None)?;
            Ok((s, r))
        }) {
            Ok((sock, Reply::Ok)) => {
                self.refresh(id);
                self.watch(id, sock);
            }
            other => {
                tracing::warn!(%id, ?other, "the container's supervisor is gone");
                let mut state = dir.read_state().unwrap_or_default();
                if state.is_active() {
                    // Its process may live on: end it, or a restart would
                    // run the container twice.
                    match super::orphan::end(state.pid, &state.started_at) {
                        Ok(super::orphan::Ended::Killed) => tracing::warn!(
                            %id,
                            pid = state.pid,
                            "ended the container's process left without its supervisor"
                        ),
                        Ok(super::orphan::Ended::NotThere) => {}
                        Err(e) => tracing::error!(
                            %id,
                            pid = state.pid,
                            %e,
                            "cannot end the container's process left without its supervisor"
                        ),
                    }
                    state.set_exited(
                        255,
                        "the container's supervisor is gone".into(),
                        timefmt::now(),
                    );
                }
                state.supervisor_pid = 0;
                let _ = dir.write_state(&state);
                self.refresh(id);
            }
        }
    }

    /// Re-reads a container's state.json into the table.
    fn refresh(&self, id: &str) {
        let state = self.inner.store.dir(id).read_state();
        let base = self.lock().containers.get(id).and_then(|r| r.oom_base);
        let state = state.map(|mut s| {
            let base = self.cgroup_state(id, &mut s, base);
            (s, base)
        });
        let mut table = self.lock();
        if let (Some(r), Ok((s, base))) = (table.containers.get_mut(id), state) {
            r.state = s;
            r.oom_base = base;
        }
        drop(table);
        self.inner.changed.notify_all();
    }

    /// Follows a supervisor's events on a thread until it exits.
    fn watch(&self, id: &str, mut sock: std::os::unix::net::UnixStream) {
        if let Some(r) = self.lock().containers.get_mut(id) {
            r.watched = true;
        }
        let engine = self.clone();
        let id = id.to_string();
        let spawned = std::thread::Builder::new()
            .name("watch".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                while let Ok(Some((Kind::Event, payload))) = protocol::read_frame(&mut sock) {
                    let Ok(event) = protocol::parse::<Event>(&payload) else {
                        continue;
                    };
                    engine.refresh(&id);
                    engine.on_event(&id, event);
                }
                if let Some(r) = engine.lock().containers.get_mut(&id) {
                    r.watched = false;
                }
                engine.refresh(&id);
                // The supervisor is gone: the process will not run again.
                if engine.auto_removes(&id) {
                    if let Err(e) = engine.remove_with_volumes(&id, true, true) {
                        tracing::warn!(%id, %e, "removing an --rm container");
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(%e, "starting a watcher thread");
        }
    }

    fn on_event(&self, id: &str, event: Event) {
        match event {
            Event::Start { .. } => self.emit("start", id, &[]),
            Event::Die { code } => {
                self.release_network_in_background(id);
                self.emit("die", id, &[("exitCode", code.to_string())])
            }
            Event::Restarting => self.emit("restart", id, &[]),
            Event::HealthStatus { status } => {
                self.emit(&format!("health_status: {status}"), id, &[])
            }
            Event::ExecDie { pid, code } => {
                let mut exec_id = String::new();
                {
                    let mut table = self.lock();
                    if let Some(e) = table
                        .execs
                        .values_mut()
                        .find(|e| e.container_id == id && e.pid == pid)
                    {
                        e.running = false;
                        e.exit_code.get_or_insert(code);
                        exec_id = e.id.clone();
                    }
                }
                self.inner.changed.notify_all();
                self.emit(
                    "exec_die",
                    id,
                    &[("execID", exec_id), ("exitCode", code.to_string())],
                );
            }
            Event::ExecStart { .. } | Event::Gone => {}
        }
    }

    /// How containers get their /proc here (builds run their RUN
    /// containers the same way).
    pub fn proc_mode(&self) -> ProcMode {
        self.inner.opts.proc_mode
    }

    /// The hutch binary the engine spawns.
    pub fn exe(&self) -> &std::path::Path {
        &self.inner.opts.exe
    }

    /// Resolves a full ID, name or unique ID prefix.
    pub fn resolve(&self, query: &str) -> Result<String> {
        let table = self.lock();
        names::resolve(query, &table.names, table.containers.keys()).map_err(|ambiguous| {
            if ambiguous {
                EngineError::Ambiguous(query.to_string())
            } else {
                EngineError::NotFound(query.to_string())
            }
        })
    }

    /// `docker create`.
    pub fn create(&self, mut opts: CreateOptions) -> Result<Created> {
        let details = self
            .inner
            .images
            .inspect(&opts.image)
            .map_err(|_| EngineError::Image(opts.image.clone()))?;
        let layers = self
            .inner
            .images
            .layer_dirs(&details.record)
            .map_err(|e| EngineError::Io(io::Error::other(e)))?;
        let image = ImageRunConfig::from_image_config(&details.config);
        Self::add_exposed_ports(&mut opts, &details.config);
        let emulation = Emulation::of_image(&details.config);
        // Before a private range is taken for nothing.
        let sharing = super::sharing::parse(&opts).map_err(EngineError::Invalid)?;
        let (layers, id_map) = match opts.userns_mode {
            UsernsMode::Identity => (layers, IdMap::identity()),
            UsernsMode::Private => self.private_range(&details, &layers)?,
        };
        let release = |engine: &Engine| {
            if !id_map.is_identity() {
                engine.lock().ids.release(&id_map);
            }
        };
        let id = ids::new_id().inspect_err(|_| release(self))?;
        let name = {
            let mut table = self.lock();
            match &opts.name {
                Some(n) => match table.names.reserve(n, &id) {
                    Ok(n) => n,
                    Err(e) => {
                        drop(table);
                        release(self);
                        return Err(e.into());
                    }
                },
                None => {
                    let base = ids::generated_name(&id);
                    let mut n = base.clone();
                    let mut i = 2;
                    while table.names.get(&n).is_some() {
                        n = format!("{base}{i}");
                        i += 1;
                    }
                    match table.names.reserve(&n, &id) {
                        Ok(n) => n,
                        Err(e) => {
                            drop(table);
                            release(self);
                            return Err(e.into());
                        }
                    }
                }
            }
        };
        let volumes_guard = self.lock_volumes();
        let mut made_volumes = Vec::new();
        let made = (|| {
            let dir = self.inner.store.create(&id)?;
            let (mut config, mut spec) = build::build(
                &opts,
                &Inputs {
                    id: &id,
                    name: &name,
                    image_id: &details.summary.id.to_string(),
                    image: &image,
                    layers: &layers,
                    dir: &dir,
                    proc_mode: self.inner.opts.proc_mode,
                    id_map: id_map.clone(),
                    lowers_shifted: !id_map.is_identity() && self.inner.private_layers.shifts(),
                    sharing: &sharing,
                },
            )
            .map_err(EngineError::Invalid)?;
            spec.emulator = emulation.emulator();
            self.attach_network(&config, &mut spec)?;
            self.make_cgroup(&id, &opts.limits, &mut spec)?;
            made_volumes = self.add_mounts(&opts, &mut config, &mut spec)?;
            dir.write_spec(&spec)?;
            dir.write_state(&State::default())?;
            // The config last: a directory without one is a half-made
            // container, removed at the next open.
            dir.write_config(&config)?;
            Ok::<_, EngineError>(config)
        })();
        let config = match made {
            Ok(c) => c,
            Err(e) => {
                self.lock().names.release(&name);
                release(self);
                let _ = self.inner.store.remove(&id);
                self.forget_network(&id);
                self.drop_volumes(&made_volumes);
                if let Some(cgroups) = self.cgroups() {
                    let _ = cgroups.container(&id).remove();
                }
                return Err(e);
            }
        };
        let primable = prime_ops::primable(&config.options);
        self.lock().containers.insert(
            id.clone(),
            Record {
                config,
                state: State::default(),
                watched: false,
                oom_base: None,
            },
        );
        drop(volumes_guard);
        self.emit("create", &id, &[]);
        if primable {
            self.prime_in_background(&id);
        }
        let mut warnings = self.inner.opts.warnings.clone();
        warnings.extend(self.unapplied_limits(&opts.limits));
        warnings.extend(emulation.warning());
        if self.inner.opts.proc_mode == ProcMode::BindEngine && !opts.sysctls.is_empty() {
            let names: Vec<&str> = opts.sysctls.keys().map(String::as_str).collect();
            warnings.push(format!(
                "sysctls are not applied: this pod's /proc/sys is read-only (procMount: \
                 Unmasked, or CAP_SYS_ADMIN for hutch, lets them be written): {}",
                names.join(", ")
            ));
        }
        Ok(Created {
            id,
            warnings,
            foreign_platform: emulation.foreign_platform().map(str::to_string),
        })
    }

    /// A private-mode container's ID range, sized from the image, and its
    /// layers (where [`PrivateLayers`] puts them; made at start).
    fn private_range(
        &self,
        details: &hutch_images::ImageDetails,
        layers: &[PathBuf],
    ) -> Result<(Vec<PathBuf>, IdMap)> {
        let topmost_first: Vec<PathBuf> = layers.iter().rev().cloned().collect();
        let request = image_ids::private_request_from_meta(
            details.highest_uid,
            details.highest_gid,
            details.uses_overflow_id,
            &topmost_first,
        )
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let map = self
            .lock()
            .ids
            .allocate(&request)
            .map_err(|e| EngineError::Conflict(e.to_string()))?;
        match self.inner.private_layers.paths(layers, &map) {
            Ok(copies) => Ok((copies, map)),
            Err(e) => {
                self.lock().ids.release(&map);
                Err(e.into())
            }
        }
    }

    /// Where this engine puts the layers of new private-mode containers.
    pub fn private_id_storage(&self) -> crate::doctor::PrivateIdStorage {
        if self.inner.private_layers.shifts() {
            crate::doctor::PrivateIdStorage::ShiftedCopy
        } else {
            crate::doctor::PrivateIdStorage::IdmappedTmpfsLayers
        }
    }

    /// Drops the shifted layer copies of private-mode containers whose
    /// source layer has left the image store (call after removing images).
    pub fn prune_private_layers(&self) {
        let layers = &self.inner.images.content().layers;
        let exists = |hex: &str| {
            hutch_images::Digest::from_hex(hex).is_ok_and(|chain| layers.contains(&chain))
        };
        self.inner.private_layers.prune(&exists);
    }

    /// Before a private-mode container starts: its layers, as shifted
    /// copies or on this engine's tmpfs (a restarted engine has a new,
    /// empty one).
    fn prepare_layers(&self, id: &str, dir: &ContainerDir) -> Result<()> {
        let spec = dir.read_spec()?;
        if spec.id_map.is_identity() {
            return Ok(());
        }
        let image_id = self
            .lock()
            .containers
            .get(id)
            .map(|r| r.config.image_id.clone())
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        let layers = self
            .inner
            .images
            .layer_chain(&image_id)
            .map_err(|e| EngineError::Io(io::Error::other(e)))?;
        self.inner
            .private_layers
            .ensure(&layers, &spec.id_map, spec.rootfs.lowers_shifted)
            .map_err(|e| match e {
                LayersError::NoTmpfs => EngineError::Invalid(e.to_string()),
                LayersError::Io(e) => e.into(),
            })
    }

    /// `docker start`.
    pub fn start(&self, query: &str) -> Result<()> {
        self.start_attached(query, &[]).map(drop)
    }

    /// `docker start` with clients attached from the first byte (`docker
    /// run` attaches before it starts): one stream per spec, in order.
    pub fn start_attached(&self, query: &str, attach: &[AttachSpec]) -> Result<Vec<Stream>> {
        let t0 = Instant::now();
        let id = self.resolve(query)?;
        {
            let table = self.lock();
            let r = table
                .containers
                .get(&id)
                .ok_or_else(|| EngineError::NotFound(id.clone()))?;
            if r.state.is_active() {
                return Err(EngineError::NotModified);
            }
            if r.watched {
                // The previous supervisor is finishing up; its state is final.
                drop(table);
                self.wait_unwatched(&id, Duration::from_secs(5));
            }
        }
        // The clients attached before the start (Docker publishes `attach`
        // when they do), so before the plug's `connect`.
        for _ in attach {
            self.emit("attach", &id, &[]);
        }
        let dir = self.inner.store.dir(&id);
        let primed = self.take_prime(&id);
        self.note_oom_base(&id);
        let t1 = Instant::now();
        let attachers = attach.len();
        let (mut spare, mut reply) = match primed {
            Some(Taken { mut spare, held }) => match send_run(&mut spare, &dir, attachers) {
                Ok(reply) => {
                    for publish in held {
                        publish();
                    }
                    (spare, reply)
                }
                Err(e) => {
                    // The primed supervisor is gone (killed, say): start
                    // afresh. Its plug goes first, its `connect` unpublished.
                    tracing::warn!(%id, %e, "a primed supervisor is gone: starting afresh");
                    drop(held);
                    self.release_network_quietly(&id);
                    self.run_on_fresh_spare(&id, &dir, attachers)
                        .map_err(|e| self.refused_start(&id, e))?
                }
            },
            None => self
                .run_on_fresh_spare(&id, &dir, attachers)
                .map_err(|e| self.refused_start(&id, e))?,
        };
        let t2 = Instant::now();
        let mut streams = Vec::with_capacity(attach.len());
        if !attach.is_empty() && reply == Reply::Ok {
            for spec in attach {
                streams.push(self.attach_to(&dir, spec)?);
            }
            reply = client::reply(&mut spare.sock)?;
        }
        let t3 = Instant::now();
        // This start is past its busy part: the next spare may be forked.
        self.inner.spares.refill();
        self.refresh(&id);
        tracing::debug!(
            %id,
            prepare_ms = (t1 - t0).as_secs_f64() * 1e3,
            run_ms = (t2 - t1).as_secs_f64() * 1e3,
            supervisor_ms = (t3 - t1).as_secs_f64() * 1e3,
            after_ms = t3.elapsed().as_secs_f64() * 1e3,
            "start phases"
        );
        match reply {
            Reply::Started { .. } => {
                self.watch(&id, spare.sock);
                self.emit("start", &id, &[]);
                Ok(streams)
            }
            Reply::Failed { code, message } => {
                self.release_network(&id);
                self.emit("die", &id, &[("exitCode", code.to_string())]);
                if self.auto_removes(&id) {
                    self.remove_in_background(&id);
                }
                Err(EngineError::Failed { code, message })
            }
            other => Err(EngineError::Io(io::Error::other(format!(
                "unexpected supervisor reply {other:?}"
            )))),
        }
    }

    /// A start refused before any process ran (a missing donor, a
    /// network gone): an `--rm` container goes, as Docker removes one
    /// whose start failed, or `docker run --rm` waits for it forever.
    fn refused_start(&self, id: &str, e: EngineError) -> EngineError {
        if self.auto_removes(id) {
            self.remove_in_background(id);
        }
        e
    }

    /// A start without a prime: what a prime would have done first, then
    /// the container handed to a spare; the spare and its first reply. A
    /// spare that died while it waited (killed, say) is replaced once.
    fn run_on_fresh_spare(
        &self,
        id: &str,
        dir: &ContainerDir,
        attachers: usize,
    ) -> Result<(super::spare::Spare, Reply)> {
        self.prepare_layers(id, dir)?;
        self.rejoin_network(id, dir)?;
        self.join_donor(id, dir)?;
        self.check_links_running(id)?;
        let mut spare = self.inner.spares.take()?;
        match send_run(&mut spare, dir, attachers) {
            Ok(reply) => Ok((spare, reply)),
            Err(e) => {
                tracing::warn!(%id, %e, "a spare supervisor is gone: taking another");
                let mut spare = self.inner.spares.take()?;
                let reply = send_run(&mut spare, dir, attachers)?;
                Ok((spare, reply))
            }
        }
    }

    fn wait_unwatched(&self, id: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut table = self.lock();
        while table.containers.get(id).is_some_and(|r| r.watched) && Instant::now() < deadline {
            table = self
                .inner
                .changed
                .wait_timeout(table, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn dir_of_running(&self, id: &str) -> Result<ContainerDir> {
        let table = self.lock();
        let r = table
            .containers
            .get(id)
            .ok_or_else(|| EngineError::NotFound(id.to_string()))?;
        if !r.state.is_active() {
            return Err(EngineError::NotRunning(id.to_string()));
        }
        Ok(self.inner.store.dir(id))
    }

    fn call(&self, dir: &ContainerDir, req: &Request) -> Result<()> {
        match client::call(&dir.sock(), req)? {
            Reply::Ok => Ok(()),
            Reply::Error { message } => Err(EngineError::Conflict(message)),
            other => Err(EngineError::Io(io::Error::other(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    /// `docker stop`: the stop signal, SIGKILL after `timeout` seconds
    /// (the container's stop timeout when `None`; negative waits forever).
    /// Returns once the container stopped.
    pub fn stop(&self, query: &str, timeout: Option<i64>) -> Result<()> {
        let id = self.resolve(query)?;
        let dir = match self.dir_of_running(&id) {
            Err(EngineError::NotRunning(_)) => return Err(EngineError::NotModified),
            other => other?,
        };
        self.send_stop(&id, &dir, |own| timeout.unwrap_or(own), false)?;
        self.wait(&id, WaitCondition::NotRunning)?;
        self.emit("stop", &id, &[]);
        Ok(())
    }

    /// Asks a running container's supervisor to stop it: its stop signal,
    /// SIGKILL after `timeout(its own stop timeout)` seconds (negative:
    /// never). `by_daemon`: see [`Request::Stop`]. Returns that timeout.
    fn send_stop(
        &self,
        id: &str,
        dir: &ContainerDir,
        timeout: impl FnOnce(i64) -> i64,
        by_daemon: bool,
    ) -> Result<i64> {
        self.thaw(id);
        let (signal, own_timeout) = {
            let table = self.lock();
            let c = &table
                .containers
                .get(id)
                .ok_or_else(|| EngineError::NotFound(id.to_string()))?
                .config;
            (
                parse_signal(&c.stop_signal).unwrap_or(Signal::SIGTERM),
                c.stop_timeout as i64,
            )
        };
        let timeout = timeout(own_timeout);
        self.call(
            dir,
            &Request::Stop {
                signal: signal as i32,
                timeout,
                by_daemon,
            },
        )?;
        // Docker's stop is a kill with the stop signal, and says so.
        self.emit("kill", id, &[("signal", (signal as i32).to_string())]);
        Ok(timeout)
    }

    /// `docker kill` (default SIGKILL).
    pub fn kill(&self, query: &str, signal: Option<&str>) -> Result<()> {
        let id = self.resolve(query)?;
        let sig = match signal {
            None | Some("") => Signal::SIGKILL,
            Some(s) => parse_signal(s)
                .ok_or_else(|| EngineError::Invalid(format!("Invalid signal: {s}")))?,
        };
        let dir = self.dir_of_running(&id)?;
        self.call(
            &dir,
            &Request::Kill {
                signal: sig as i32,
                manual: true,
            },
        )?;
        self.thaw(&id);
        self.emit("kill", &id, &[("signal", (sig as i32).to_string())]);
        if sig == Signal::SIGKILL {
            // As moby's Kill: SIGKILL returns once the container is down
            // (up to 10 s), so a remove right after it finds it stopped.
            let deadline = Instant::now() + KILL_WAIT;
            match self.wait_while(&id, WaitCondition::NotRunning, &|| {
                Instant::now() < deadline
            }) {
                Ok(_) | Err(EngineError::Invalid(_)) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// `docker restart`.
    pub fn restart(&self, query: &str, timeout: Option<i64>) -> Result<()> {
        let id = self.resolve(query)?;
        match self.stop(&id, timeout) {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        self.start(&id)?;
        self.emit("restart", &id, &[]);
        Ok(())
    }

    /// `docker wait`: the exit code once the condition holds.
    pub fn wait(&self, query: &str, condition: WaitCondition) -> Result<i32> {
        self.wait_while(query, condition, &|| true)
    }

    /// How many times the container has exited: what `next-exit` counts
    /// from. The API takes it before it answers a wait, because the client
    /// may start the container as soon as it has the answer's headers.
    pub fn exit_count(&self, query: &str) -> Result<u64> {
        let id = self.resolve(query)?;
        let table = self.lock();
        Ok(table.containers.get(&id).map_or(0, |r| r.state.exits))
    }

    /// [`Engine::wait`] that gives up (with an error) once `wanted` turns
    /// false (a client that stopped waiting), checked every 100 ms.
    pub fn wait_while(
        &self,
        query: &str,
        condition: WaitCondition,
        wanted: &dyn Fn() -> bool,
    ) -> Result<i32> {
        let exits = self.exit_count(query)?;
        self.wait_since(query, condition, exits, wanted)
    }

    /// [`Engine::wait_while`] with `next-exit` counted from `first_exits`
    /// exits (see [`Engine::exit_count`]), not from the call.
    pub fn wait_since(
        &self,
        query: &str,
        condition: WaitCondition,
        first_exits: u64,
        wanted: &dyn Fn() -> bool,
    ) -> Result<i32> {
        let id = match self.resolve(query) {
            Ok(id) => id,
            // Removed between the caller's resolve and this wait: `run
            // --rm` of a quick command can end and be removed before the
            // wait request's task gets here. Its recorded code answers.
            Err(EngineError::NotFound(_)) => {
                return removed_code(&self.lock(), query)
                    .ok_or_else(|| EngineError::NotFound(query.to_string()))
            }
            Err(e) => return Err(e),
        };
        let mut table = self.lock();
        let mut last_code = 0;
        loop {
            let Some(r) = table.containers.get(&id) else {
                let recorded = removed_code(&table, &id);
                // Removed while we waited (`--rm`): it has stopped, with
                // the code it was removed with.
                return match (condition, recorded) {
                    (_, Some(code)) => Ok(code),
                    (WaitCondition::Removed, None) => Ok(last_code),
                    _ => Err(EngineError::NotFound(id)),
                };
            };
            last_code = r.state.exit_code;
            let settled = !r.state.is_active() && !r.watched_running();
            match condition {
                WaitCondition::NotRunning if settled => return Ok(r.state.exit_code),
                WaitCondition::NextExit if r.state.exits > first_exits && !r.watched_running() => {
                    return Ok(r.state.exit_code)
                }
                _ => {}
            }
            let unwatched = !r.watched;
            if !wanted() {
                return Err(EngineError::Invalid("the wait was abandoned".into()));
            }
            let (t, _) = self
                .inner
                .changed
                .wait_timeout(table, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner());
            table = t;
            if unwatched {
                // Nobody streams this container's events (another process
                // started it): follow its state file instead.
                drop(table);
                self.refresh(&id);
                table = self.lock();
            }
        }
    }

    /// `docker rm`: with `force`, kills a running container first. Removes
    /// its directory: rootfs layer, logs, state.
    pub fn remove(&self, query: &str, force: bool) -> Result<()> {
        self.remove_with_volumes(query, force, false)
    }

    /// `docker rm [-f] [-v]`: with `volumes`, the container's anonymous
    /// volumes go too (those no other container uses), as with `--rm`.
    pub fn remove_with_volumes(&self, query: &str, force: bool, volumes: bool) -> Result<()> {
        let id = self.resolve(query)?;
        let active = self
            .lock()
            .containers
            .get(&id)
            .is_some_and(|r| r.state.is_active());
        if active {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a running container {id}. Stop the container before attempting removal or force remove"
                )));
            }
            match self.kill(&id, Some("SIGKILL")) {
                Ok(()) | Err(EngineError::NotRunning(_)) => {
                    self.wait(&id, WaitCondition::NotRunning)?;
                }
                // The process ended as we asked and its supervisor is going
                // away (it refused, or hung up): let it record the exit.
                Err(e @ (EngineError::Io(_) | EngineError::Conflict(_))) => {
                    self.wait_unwatched(&id, Duration::from_secs(5));
                    self.refresh(&id);
                    let still = self
                        .lock()
                        .containers
                        .get(&id)
                        .is_some_and(|r| r.state.is_active());
                    if still {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.unprime(&id);
        self.wait_unwatched(&id, Duration::from_secs(5));
        let id_map = self.inner.store.dir(&id).read_spec().ok().map(|s| s.id_map);
        // The final state (its exit code) for waiters, before it goes.
        self.refresh(&id);
        // Before waiters can see the container gone: `docker run --rm`
        // returns with its anonymous volumes removed.
        if volumes {
            let config = self.lock().containers.get(&id).map(|r| r.config.clone());
            if let Some(config) = config {
                self.remove_anonymous_volumes(&config, &id);
            }
        }
        self.remove_cgroup(&id);
        self.inner.store.remove(&id)?;
        self.forget_network(&id);
        let removed = {
            let mut table = self.lock();
            let removed = table.containers.remove(&id);
            if let Some(r) = &removed {
                table.names.release(&r.config.name);
                if table.removed_codes.len() == REMEMBER_REMOVED {
                    table.removed_codes.pop_front();
                }
                table
                    .removed_codes
                    .push_back((id.clone(), r.state.exit_code));
            }
            // The range is free once nothing of the container is left: its
            // upper directory belonged to the range's root.
            if let Some(map) = id_map.filter(|m| !m.is_identity()) {
                table.ids.release(&map);
            }
            table.execs.retain(|_, e| e.container_id != id);
            removed
        };
        self.inner.changed.notify_all();
        // Two removers may race (`--rm` and `docker rm -f`): one event.
        if let (Some(r), Some(sink)) = (removed, &self.inner.opts.on_event) {
            let attributes = event_attributes(&r.config);
            sink(&EngineEvent {
                kind: EventKind::Container,
                action: "destroy".into(),
                id: id.clone(),
                attributes,
            });
        }
        Ok(())
    }

    /// Waits for background work to finish: the deletion of removed
    /// containers' directories. Call it before the process ends.
    pub fn flush(&self) {
        self.inner.store.flush();
    }

    /// `docker rename`.
    pub fn rename(&self, query: &str, new_name: &str) -> Result<()> {
        let id = self.resolve(query)?;
        // Its name is in the primed container's network (DNS, aliases).
        self.unprime(&id);
        let old = {
            let mut table = self.lock();
            let new_name = table.names.reserve(new_name, &id)?;
            let Some(r) = table.containers.get_mut(&id) else {
                return Err(EngineError::NotFound(id));
            };
            let old = std::mem::replace(&mut r.config.name, new_name.clone());
            let config = r.config.clone();
            if old != new_name {
                table.names.release(&old);
            }
            self.inner.store.dir(&id).write_config(&config)?;
            old
        };
        self.emit("rename", &id, &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    /// `docker update --restart`: the policy applies from the next start
    /// (a running supervisor keeps the one it started with).
    pub fn set_restart_policy(&self, query: &str, policy: RestartPolicy) -> Result<()> {
        let id = self.resolve(query)?;
        // A primed supervisor read the container's config before this.
        self.unprime(&id);
        let mut table = self.lock();
        let Some(r) = table.containers.get_mut(&id) else {
            return Err(EngineError::NotFound(id));
        };
        if r.config.options.auto_remove && policy.name != RestartPolicyName::No {
            return Err(EngineError::Invalid(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        r.config.options.restart_policy = policy;
        let config = r.config.clone();
        drop(table);
        self.inner.store.dir(&id).write_config(&config)?;
        Ok(())
    }

    /// Every container (`all`), or the running ones.
    pub fn list(&self, all: bool) -> Vec<ContainerDetails> {
        let table = self.lock();
        let mut out: Vec<ContainerDetails> = table
            .containers
            .iter()
            .filter(|(_, r)| all || r.state.is_active())
            .map(|(id, r)| self.details(id, r))
            .collect();
        out.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        out
    }

    fn details(&self, id: &str, r: &Record) -> ContainerDetails {
        let dir = self.inner.store.dir(id);
        ContainerDetails {
            config: r.config.clone(),
            state: r.state.clone(),
            log_path: dir.log(id),
            rootfs_upper: dir.upper(),
            rootfs_work: dir.work(),
            network: self.network_settings(id, r.config.options.network_mode.as_deref()),
        }
    }

    /// `docker inspect`.
    pub fn inspect(&self, query: &str) -> Result<ContainerDetails> {
        let id = self.resolve(query)?;
        let table = self.lock();
        let r = table
            .containers
            .get(&id)
            .ok_or_else(|| EngineError::NotFound(id.clone()))?;
        Ok(self.details(&id, r))
    }

    /// `docker logs`: feeds `sink` until done (with `follow`, until the
    /// container stops or `sink` fails).
    pub fn logs(
        &self,
        query: &str,
        opts: &LogsOptions,
        sink: &mut dyn FnMut(LogLine) -> io::Result<()>,
    ) -> Result<()> {
        self.logs_while(query, opts, &|| true, sink)
    }

    /// [`Engine::logs`], where a follow also ends once `wanted` turns false
    /// (the client went away while the container printed nothing).
    pub fn logs_while(
        &self,
        query: &str,
        opts: &LogsOptions,
        wanted: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(LogLine) -> io::Result<()>,
    ) -> Result<()> {
        self.open_logs(query)?.read(opts, wanted, sink)
    }

    /// Opens a container's logs to read them later ([`ContainerLogs::read`]),
    /// whatever happens to the container meanwhile.
    pub fn open_logs(&self, query: &str) -> Result<ContainerLogs> {
        let id = self.resolve(query)?;
        let log = OpenedLog::open(&self.inner.store.dir(&id).log(&id))?;
        Ok(ContainerLogs {
            engine: self.clone(),
            id,
            log,
        })
    }
}

/// A container's opened logs.
#[derive(Debug)]
pub struct ContainerLogs {
    engine: Engine,
    id: String,
    log: OpenedLog,
}

impl ContainerLogs {
    /// Feeds `sink` until done (with `follow`, until the container stops
    /// or is removed, `wanted` turns false or `sink` fails).
    pub fn read(
        self,
        opts: &LogsOptions,
        wanted: &dyn Fn() -> bool,
        sink: &mut dyn FnMut(LogLine) -> io::Result<()>,
    ) -> Result<()> {
        let ContainerLogs { engine, id, log } = self;
        let running = move || {
            wanted()
                && engine
                    .lock()
                    .containers
                    .get(&id)
                    .is_some_and(|r| r.state.is_active() || r.watched)
        };
        logread::read_opened(log, opts, &running, sink)?;
        Ok(())
    }
}

impl Engine {
    /// `docker attach`: a stream of the container's output (and its stdin
    /// with `stdin`) until it exits or the client detaches.
    pub fn attach(
        &self,
        query: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        detach_keys: Option<Vec<u8>>,
    ) -> Result<Stream> {
        let id = self.resolve(query)?;
        let dir = self.dir_of_running(&id)?;
        if self.refuse_paused(&id).is_err() {
            return Err(EngineError::Conflict(
                "You cannot attach to a paused container, unpause it first".into(),
            ));
        }
        let stream = self.attach_to(
            &dir,
            &AttachSpec {
                stdin,
                stdout,
                stderr,
                detach_keys,
            },
        )?;
        self.emit("attach", &id, &[]);
        Ok(stream)
    }

    fn attach_to(&self, dir: &ContainerDir, spec: &AttachSpec) -> Result<Stream> {
        let mut sock = client::open(
            &dir.sock(),
            &Request::Attach {
                stdin: spec.stdin,
                stdout: spec.stdout,
                stderr: spec.stderr,
                detach_keys: spec
                    .detach_keys
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DETACH_KEYS.to_vec()),
            },
        )?;
        match client::reply(&mut sock)? {
            Reply::Ok => Ok(Stream::new(sock)),
            Reply::Error { message } => Err(EngineError::Conflict(message)),
            other => Err(EngineError::Io(io::Error::other(format!(
                "unexpected reply {other:?}"
            )))),
        }
    }

    /// `--rm`: the container goes once its process has ended for good.
    fn auto_removes(&self, id: &str) -> bool {
        self.lock()
            .containers
            .get(id)
            .is_some_and(|r| r.config.options.auto_remove)
    }

    fn remove_in_background(&self, id: &str) {
        let engine = self.clone();
        let id = id.to_string();
        let spawned = std::thread::Builder::new()
            .name("auto-remove".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                if let Err(e) = engine.remove_with_volumes(&id, true, true) {
                    tracing::warn!(%id, %e, "removing an --rm container");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(%e, "starting an auto-remove thread");
        }
    }

    /// `docker resize` of the container's tty.
    pub fn resize(&self, query: &str, rows: u16, cols: u16) -> Result<()> {
        let id = self.resolve(query)?;
        let dir = self.dir_of_running(&id)?;
        self.call(&dir, &Request::Resize { rows, cols })?;
        self.emit(
            "resize",
            &id,
            &[("height", rows.to_string()), ("width", cols.to_string())],
        );
        Ok(())
    }

    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, query: &str, options: ExecOptions) -> Result<String> {
        let id = self.resolve(query)?;
        self.dir_of_running(&id)?;
        self.refuse_paused(&id)?;
        if options.cmd.is_empty() {
            return Err(EngineError::Invalid("No exec command specified".into()));
        }
        let exec_id = ids::new_id()?;
        self.lock().execs.insert(
            exec_id.clone(),
            ExecDetails {
                id: exec_id.clone(),
                container_id: id.clone(),
                options,
                running: false,
                exit_code: None,
                pid: 0,
            },
        );
        self.emit("exec_create", &id, &[("execID", exec_id.clone())]);
        Ok(exec_id)
    }

    /// `POST /exec/{id}/start`: runs the process; its output, and then its
    /// exit code (recorded before the stream reports it), come from the
    /// returned stream.
    pub fn exec_start(&self, exec_id: &str) -> Result<ExecStream> {
        let exec = self.exec_inspect(exec_id)?;
        if exec.running || exec.exit_code.is_some() {
            return Err(EngineError::Conflict(format!(
                "exec {exec_id} has already run"
            )));
        }
        let dir = self.dir_of_running(&exec.container_id)?;
        let process = self.exec_process(&dir, &exec.options)?;
        let mut sock = client::open(
            &dir.sock(),
            &Request::Exec {
                process: Box::new(process),
                tty: exec.options.tty,
                stdin: exec.options.attach_stdin,
            },
        )?;
        match client::reply(&mut sock)? {
            Reply::Started { pid } => {
                if let Some(e) = self.lock().execs.get_mut(exec_id) {
                    e.running = true;
                    e.pid = pid;
                }
                self.emit(
                    "exec_start",
                    &exec.container_id,
                    &[("execID", exec_id.to_string())],
                );
                Ok(ExecStream {
                    engine: self.clone(),
                    exec_id: exec_id.to_string(),
                    stream: Stream::new(sock),
                })
            }
            Reply::Failed { code, message } => {
                if let Some(e) = self.lock().execs.get_mut(exec_id) {
                    e.exit_code = Some(code);
                }
                Err(EngineError::Failed { code, message })
            }
            Reply::Error { message } => Err(EngineError::Conflict(message)),
            Reply::Ok => Err(EngineError::Io(io::Error::other(
                "unexpected reply to exec",
            ))),
        }
    }

    /// The exec'd process: the container's environment, user, working
    /// directory and capabilities, with the exec's options over them.
    fn exec_process(&self, dir: &ContainerDir, o: &ExecOptions) -> Result<ProcessSpec> {
        let spec = dir.read_spec()?;
        let mut p = spec.process;
        p.args = o.cmd.clone();
        p.env = build::merge_env(&p.env, &o.env);
        if let Some(u) = o.user.as_ref().filter(|u| !u.is_empty()) {
            p.user.name = u.clone();
        }
        if let Some(w) = o.working_dir.as_ref().filter(|w| !w.is_empty()) {
            p.cwd = PathBuf::from(w);
        }
        if o.privileged {
            p.capabilities = caps::all().into_iter().map(|c| c.to_string()).collect();
        }
        p.init = false;
        Ok(p)
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, exec_id: &str) -> Result<ExecDetails> {
        self.lock()
            .execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| EngineError::ExecNotFound(exec_id.to_string()))
    }

    /// `POST /exec/{id}/resize`.
    pub fn exec_resize(&self, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
        let exec = self.exec_inspect(exec_id)?;
        let dir = self.dir_of_running(&exec.container_id)?;
        self.call(
            &dir,
            &Request::ResizeExec {
                pid: exec.pid,
                rows,
                cols,
            },
        )
    }
}

impl Record {
    /// The supervisor still streams (the run's end is not processed yet).
    fn watched_running(&self) -> bool {
        self.watched && self.state.status == Status::Running
    }
}

/// An exec's output stream; its exit code is stored in the exec record
/// before [`ExecStream::next`] returns it.
pub struct ExecStream {
    engine: Engine,
    exec_id: String,
    stream: Stream,
}

impl ExecStream {
    pub fn input(&self) -> io::Result<client::Input> {
        self.stream.input()
    }

    pub fn next_output(&mut self) -> io::Result<Option<Output>> {
        let out = self.stream.next_output()?;
        let code = match &out {
            Some(Output::Exit(info)) => Some(info.code),
            None => Some(-1),
            _ => None,
        };
        if let Some(code) = code {
            if let Some(e) = self.engine.lock().execs.get_mut(&self.exec_id) {
                e.running = false;
                e.exit_code = Some(code);
            }
            self.engine.inner.changed.notify_all();
        }
        Ok(out)
    }
}

/// What Docker puts in every container event's attributes: the labels
/// (compose filters events on them), the name and the image.
fn event_attributes(config: &ContainerConfig) -> BTreeMap<String, String> {
    let mut attributes = config.options.labels.clone();
    attributes.insert("name".into(), config.name.clone());
    attributes.insert("image".into(), config.image.clone());
    attributes
}

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(text: &str) -> Option<Signal> {
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).ok()
}

/// Networking: attach at create, plug at each start (through the hook the
/// supervisor calls), release when the process ends, forget at removal.
impl Engine {
    /// Serves the network hook. Containers that kept running while no
    /// engine ran lost their veths with the previous engine's bridge netns,
    /// and this engine, in a user namespace of its own, cannot reach into
    /// their netns to plug them again: the daemon stops them and starts
    /// again those whose restart policy says so ([`Engine::restore`]).
    fn start_networking(&self) -> Result<()> {
        let Some(nets) = &self.inner.opts.networks else {
            return Ok(());
        };
        let known: HashSet<String> = self.lock().containers.keys().cloned().collect();
        if let Err(e) = nets.keep_only(&known) {
            tracing::warn!(%e, "dropping the network reservations of removed containers");
        }
        let weak = Arc::downgrade(&self.inner);
        networking::serve_hook(
            &networking::hook_path(&self.inner.opts.data_root),
            move |id, pid| {
                let inner = weak.upgrade().ok_or("the engine is shutting down")?;
                Engine { inner }.plug_network(id, pid)
            },
        )?;
        Ok(())
    }

    /// The image's `ExposedPorts` join the request's (`-P` publishes them,
    /// inspect lists them).
    fn add_exposed_ports(opts: &mut CreateOptions, image_config: &serde_json::Value) {
        let exposed = image_config
            .get("config")
            .and_then(|c| c.get("ExposedPorts"))
            .and_then(|e| e.as_object());
        for key in exposed.into_iter().flat_map(|e| e.keys()) {
            let key = networking::normalize_port(key);
            if !opts.network.exposed_ports.contains(&key) {
                opts.network.exposed_ports.push(key);
            }
        }
    }

    /// What the networks need to know about a container.
    fn container_networking(&self, config: &ContainerConfig) -> Result<ContainerNetworking> {
        let o = &config.options;
        let mode = match o.network_mode.as_deref() {
            Some(m) if m.starts_with("container:") => {
                let other = self.resolve(&m["container:".len()..])?;
                if other == config.id {
                    return Err(EngineError::Invalid(
                        "cannot join own network namespace".into(),
                    ));
                }
                Some(format!("container:{other}"))
            }
            other => other.map(str::to_string),
        };
        let mut c = networking::describe(
            &config.id,
            &config.name,
            mode.as_deref(),
            o.hostname.as_deref(),
            &o.labels,
            &o.network,
        )
        .map_err(EngineError::Invalid)?;
        let links = self.links_of(config)?;
        c.links = self.host_links(&links);
        Ok(c)
    }

    /// At create: reserves the container's endpoints and writes its hosts
    /// and resolver files; the spec gets their binds, the netns to join
    /// and, on bridge networks, the hook to plug it at each start.
    fn attach_network(
        &self,
        config: &ContainerConfig,
        spec: &mut crate::runtime::ContainerSpec,
    ) -> Result<()> {
        let Some(nets) = &self.inner.opts.networks else {
            return Ok(());
        };
        let c = self.container_networking(config)?;
        let attachment = nets.attach(&c).map_err(|e| match e {
            // Not a 404: clients take a 404 from create for a missing
            // image and go pulling (Docker finds out at start instead).
            crate::network::NetworkError::NotFound(n) => {
                EngineError::Invalid(format!("network {n} not found"))
            }
            e => e.into(),
        })?;
        if matches!(c.mode, NetMode::Networks(_)) {
            spec.network_hook = Some(networking::hook_path_for_supervisor(
                &self.inner.opts.data_root,
            ));
        }
        spec.namespaces.network = attachment.network;
        spec.mounts.extend(attachment.mounts);
        spec.hostname = Some(attachment.hostname);
        // Docker gives a link's environment on the default bridge only.
        let on_default_bridge = matches!(
            config.options.network_mode.as_deref(),
            None | Some("" | "default" | "bridge")
        );
        if on_default_bridge && !config.options.network.links.is_empty() {
            let links = self.links_of(config)?;
            spec.process.env.extend(self.link_env(config, &links));
        }
        Ok(())
    }

    /// Before a `container:<id>` container starts: the other container's
    /// netns as it is bound now (a name per start of that container, so
    /// the one recorded at create is gone once it restarted, e.g. after a
    /// daemon restart).
    fn rejoin_network(&self, id: &str, dir: &ContainerDir) -> Result<()> {
        let Some(nets) = &self.inner.opts.networks else {
            return Ok(());
        };
        let Some(config) = self.lock().containers.get(id).map(|r| r.config.clone()) else {
            return Err(EngineError::NotFound(id.to_string()));
        };
        if !config
            .options
            .network_mode
            .as_deref()
            .is_some_and(|m| m.starts_with("container:"))
        {
            return Ok(());
        }
        let c = self.container_networking(&config)?;
        let network = nets.attach(&c)?.network;
        let mut spec = dir.read_spec()?;
        if spec.namespaces.network != network {
            spec.namespaces.network = network;
            dir.write_spec(&spec)?;
        }
        Ok(())
    }

    /// The hook: plugs the created container `id` (init `pid`) in; the
    /// `connect` events go out right before the hook's answer.
    fn plug_network(
        &self,
        id: &str,
        pid: i32,
    ) -> std::result::Result<Option<networking::AfterReply>, String> {
        let Some(nets) = &self.inner.opts.networks else {
            return Ok(None);
        };
        let config = self
            .lock()
            .containers
            .get(id)
            .map(|r| r.config.clone())
            .ok_or_else(|| format!("No such container: {id}"))?;
        let mut c = self
            .container_networking(&config)
            .map_err(|e| e.to_string())?;
        if matches!(c.mode, NetMode::Networks(_)) {
            // The endpoints as connect and disconnect left them.
            let list = nets.endpoints_of(id).map_err(|e| e.to_string())?;
            c.mode = if list.is_empty() {
                NetMode::None
            } else {
                NetMode::Networks(list)
            };
        }
        let t0 = Instant::now();
        nets.attach(&c).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        nets.plug(id, pid).map_err(|e| e.to_string())?;
        tracing::debug!(
            %id,
            attach_ms = (t1 - t0).as_secs_f64() * 1e3,
            plug_ms = t1.elapsed().as_secs_f64() * 1e3,
            "plugged"
        );
        if self.inner.opts.on_event.is_none() {
            return Ok(None);
        }
        let engine = self.clone();
        let owned = id.to_string();
        let publish: networking::AfterReply = Box::new(move || {
            if let Some(settings) = engine
                .inner
                .opts
                .networks
                .as_ref()
                .and_then(|nets| nets.settings(&owned).ok())
            {
                engine.emit_network("connect", &owned, &settings);
            }
        });
        // A primed container is connected when it starts (see `primes`).
        Ok(self.inner.primes.hold(id, publish))
    }

    /// Deleting veths takes the kernel tens of milliseconds: the watcher
    /// goes on meanwhile (a restart's plug or the removal's forget waits
    /// for the networks' lock, so nothing overtakes the release).
    fn release_network_in_background(&self, id: &str) {
        if self.inner.opts.networks.is_none() {
            return;
        }
        let engine = self.clone();
        let owned = id.to_string();
        let spawned = std::thread::Builder::new()
            .name("net-release".into())
            .stack_size(256 * 1024)
            .spawn(move || engine.release_network(&owned));
        if let Err(e) = spawned {
            tracing::warn!(%e, "starting a release thread: releasing in place");
            self.release_network(id);
        }
    }

    fn release_network(&self, id: &str) {
        self.release_network_announcing(id, true);
    }

    /// Unplugs a container whose `connect` was never published (a dropped
    /// prime): no `disconnect` either.
    fn release_network_quietly(&self, id: &str) {
        self.release_network_announcing(id, false);
    }

    fn release_network_announcing(&self, id: &str, announce: bool) {
        if let Some(nets) = &self.inner.opts.networks {
            let t0 = Instant::now();
            // Only a plugged container (it has a sandbox) is disconnected;
            // its networks are read only when someone listens for events.
            let plugged = self
                .inner
                .opts
                .on_event
                .as_ref()
                .filter(|_| announce)
                .and_then(|_| nets.settings(id).ok())
                .filter(|s| !s.sandbox_key.is_empty());
            if let Err(e) = nets.release(id) {
                tracing::warn!(%id, %e, "releasing a container's network");
            } else if let Some(settings) = plugged {
                self.emit_network("disconnect", id, &settings);
            }
            tracing::debug!(%id, ms = t0.elapsed().as_secs_f64() * 1e3, "released");
        }
    }

    fn forget_network(&self, id: &str) {
        if let Some(nets) = &self.inner.opts.networks {
            let t0 = Instant::now();
            if let Err(e) = nets.forget(id) {
                tracing::warn!(%id, %e, "forgetting a container's network");
            }
            tracing::debug!(%id, ms = t0.elapsed().as_secs_f64() * 1e3, "forgotten");
        }
    }

    /// A container's endpoints and ports; `host` and `none` have an entry
    /// without addresses, as in Docker.
    fn network_settings(&self, id: &str, mode: Option<&str>) -> Option<NetworkSettings> {
        let nets = self.inner.opts.networks.as_ref()?;
        let mut settings = nets.settings(id).ok()?;
        if let Some(m @ ("host" | "none")) = mode {
            if let Ok(info) = nets.inspect(m) {
                settings.networks.insert(
                    m.to_string(),
                    crate::network::EndpointSettings {
                        network_id: info.id,
                        endpoint_id: String::new(),
                        gateway: String::new(),
                        ip_address: String::new(),
                        ip_prefix_len: 0,
                        mac_address: String::new(),
                        aliases: Vec::new(),
                        dns_names: Vec::new(),
                    },
                );
            }
        }
        Some(settings)
    }

    /// The networks, when networking is on.
    pub fn networks(&self) -> Option<&Arc<Networks>> {
        self.inner.opts.networks.as_ref()
    }

    /// `docker network connect`: a running container is plugged in at
    /// once, a stopped one at its next start.
    /// `links`: the endpoint's `Links` (`network connect --link
    /// NAME[:ALIAS]`), hosts lines written when the container starts.
    pub fn network_connect(
        &self,
        network: &str,
        query: &str,
        opts: &crate::network::EndpointOptions,
        links: &[String],
    ) -> Result<()> {
        let nets = self.networks().ok_or_else(no_networking)?;
        let id = self.resolve(query)?;
        for link in links {
            networking::parse_link(link).map_err(EngineError::Invalid)?;
        }
        self.unprime(&id);
        let (name, mode, running) = {
            let table = self.lock();
            let r = table
                .containers
                .get(&id)
                .ok_or_else(|| EngineError::NotFound(id.clone()))?;
            (
                r.config.name.clone(),
                r.config.options.network_mode.clone(),
                r.state.is_active(),
            )
        };

        if matches!(mode.as_deref(), Some("host") | Some("none"))
            || mode.as_deref().is_some_and(|m| m.starts_with("container:"))
        {
            return Err(EngineError::Invalid(format!(
                "container sharing network namespace with another container or host cannot be connected to any other network (network mode {})",
                mode.unwrap_or_default()
            )));
        }
        let net = nets.inspect(network)?;
        nets.connect(&net.id, &id, &name, opts)?;
        self.remember_endpoint(&id, &net.name, opts, links, true)?;
        // Links are /etc/hosts lines, written at each start; a running
        // container gets the new ones now (Docker's DNS answers them at
        // once).
        if running && !links.is_empty() {
            let config = self
                .lock()
                .containers
                .get(&id)
                .map(|r| r.config.clone())
                .ok_or_else(|| EngineError::NotFound(id.clone()))?;
            let added: Vec<_> = self
                .links_of(&config)?
                .into_iter()
                .filter(|l| {
                    !l.legacy
                        && links.iter().any(|spec| {
                            networking::parse_link(spec).is_ok_and(|(_, alias)| alias == l.alias)
                        })
                })
                .collect();
            nets.add_host_links(&id, &self.host_links(&added))?;
        }
        Ok(())
    }

    /// `docker network disconnect`.
    pub fn network_disconnect(&self, network: &str, query: &str) -> Result<()> {
        let nets = self.networks().ok_or_else(no_networking)?;
        let id = self.resolve(query)?;
        self.unprime(&id);
        let net = nets.inspect(network)?;
        nets.disconnect(&net.id, &id)?;
        let empty = crate::network::EndpointOptions::default();
        self.remember_endpoint(&id, &net.name, &empty, &[], false)
    }

    /// Keeps the container's config in step with connect/disconnect, so
    /// the next start plugs the same networks.
    fn remember_endpoint(
        &self,
        id: &str,
        network: &str,
        opts: &crate::network::EndpointOptions,
        links: &[String],
        connected: bool,
    ) -> Result<()> {
        let mut table = self.lock();
        let Some(r) = table.containers.get_mut(id) else {
            return Err(EngineError::NotFound(id.to_string()));
        };
        let o = &mut r.config.options;
        let primary = match o.network_mode.as_deref() {
            None | Some("") | Some("default") => "bridge".to_string(),
            Some(m) => m.to_string(),
        };
        if connected {
            if network != primary {
                o.network.endpoints.insert(
                    network.to_string(),
                    networking::EndpointConfig {
                        aliases: opts.aliases.clone(),
                        links: links.to_vec(),
                        ipv4_address: opts.ipv4_address,
                        mac_address: None,
                    },
                );
            }
        } else {
            // Docker keeps the mode even for the primary network: the
            // container has no endpoint there until connected again.
            o.network.endpoints.remove(network);
        }
        let config = r.config.clone();
        drop(table);
        self.inner.store.dir(id).write_config(&config)?;
        Ok(())
    }
}

fn no_networking() -> EngineError {
    EngineError::Invalid("networking is not enabled in this engine".into())
}

/// Asks a spare to run the container in `dir` (see `Request::Run`); its
/// first reply.
fn send_run(
    spare: &mut super::spare::Spare,
    dir: &ContainerDir,
    attachers: usize,
) -> io::Result<Reply> {
    protocol::write_json(
        &mut spare.sock,
        Kind::Request,
        &Request::Run {
            dir: dir.path.display().to_string(),
            attachers: u32::try_from(attachers).unwrap_or(u32::MAX),
        },
    )?;
    client::reply(&mut spare.sock)
}
