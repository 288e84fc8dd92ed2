//! The command-line surface. It is fixed early because docs, scripts and CI
//! pipelines depend on it: flags are spelled as dockerd and the docker CLI
//! spell them, and the global options are accepted before or after any
//! subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hutch",
    version,
    about = "A Docker-compatible container engine for user-namespaced Kubernetes pods"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// Root directory of persistent hutch state (images, layers, containers).
    #[arg(long, global = true, value_name = "DIR", env = "HUTCH_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// Socket(s) to listen on (daemon) or connect to: unix://PATH or tcp://HOST:PORT.
    #[arg(short = 'H', long = "host", global = true, value_name = "ADDR")]
    pub hosts: Vec<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'l', long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Debug logging (same as --log-level debug).
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: serve the Docker Engine API on a socket.
    Daemon(Box<DaemonArgs>),
    /// Run the daemon as the docker:dind image does: TLS certificates under
    /// $DOCKER_TLS_CERTDIR and tcp://0.0.0.0:2376 (2375 without TLS when it
    /// is empty), and unix:///var/run/docker.sock.
    Dind(Box<DaemonArgs>),
    /// Inspect this environment and report what hutch can and cannot do in it.
    Doctor(DoctorArgs),
    /// Show version information.
    Version,
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// Push an image to a registry.
    Push(PushArgs),
    /// List images.
    Images(ImagesArgs),
    /// Remove one or more images.
    Rmi(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag(TagArgs),
    /// Save one or more images to a tar archive (docker-archive format).
    Save(SaveArgs),
    /// Load images from a tar archive (docker-archive or OCI layout).
    Load(LoadArgs),
    /// Build an image from a Dockerfile, with no daemon.
    Build(Box<BuildArgs>),
    /// Internal: the runtime helper and its test entry (not a stable interface).
    #[command(name = "__runtime", hide = true, subcommand)]
    Runtime(RuntimeCommand),
    /// Internal: a container's supervisor; stdin is its spawn socket.
    #[command(name = "__supervise", hide = true)]
    Supervise,
    /// Internal: the engine API without a daemon, for tests (not a stable
    /// interface). Each invocation opens the data root as a daemon would.
    #[command(name = "__engine", hide = true)]
    Engine(Box<crate::commands::engine::EngineArgs>),
    /// Internal: a running container's files for the daemon's archive
    /// endpoints (`docker cp`).
    #[command(name = "__archive", hide = true, subcommand)]
    Archive(crate::commands::archive::ArchiveCommand),
    /// Internal: a networking test driver taking JSON commands on stdin
    /// (not a stable interface).
    #[command(name = "__net", hide = true)]
    Net(NetArgs),
}

#[derive(Debug, Args)]
pub struct NetArgs {
    /// Data root (network state under `network/`).
    #[arg(long, default_value = "/var/lib/hutch")]
    pub data_root: PathBuf,
    /// Where container netns are bound.
    #[arg(long, default_value = "/run/hutch")]
    pub run_dir: PathBuf,
    /// `auto`, `kernel`, `l4-relay` or `slirp4netns`.
    #[arg(long, default_value = "auto")]
    pub uplink: String,
    /// The pod's resolver configuration (names not of containers go there).
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Serve one container over the control socket on stdin (spawned by the engine).
    Create,
    /// Enter the engine namespace and run containers from a JSON ContainerSpec
    /// through the engine's runtime API; exits with the last one's exit code.
    Run(RuntimeRunArgs),
}

#[derive(Debug, Args)]
pub struct RuntimeRunArgs {
    /// A ContainerSpec, as JSON. Repeat for several containers: they are all
    /// created, then all started, then waited for and removed.
    #[arg(long, value_name = "FILE", required = true)]
    pub spec: Vec<PathBuf>,
    /// Once all containers run, write their init PIDs (in the engine's PID
    /// namespace, the pod's) here, one line per container in --spec order.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// `private`: give each container its own ID range, sized from its
    /// layers, instead of the spec's map.
    #[arg(long, value_name = "MODE", default_value = "spec")]
    pub userns_mode: UsernsMode,
    /// Mount a tmpfs here in the engine's mount namespace first (a layer
    /// store the engine owns, which private mode needs). Repeatable.
    #[arg(long, value_name = "DIR")]
    pub tmpfs: Vec<PathBuf>,
    /// Run this shell command in the engine namespace after the tmpfs mounts
    /// (to fill the layer store).
    #[arg(long, value_name = "CMD")]
    pub setup: Option<String>,
    /// Outside a pod: first host ID of the engine's 65536 IDs.
    #[arg(long, value_name = "ID")]
    pub userns_base: Option<u32>,
    /// Run the containers this many times, one round after the other (for
    /// benchmarks).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Print create-to-removal latencies of each round as JSON on stdout.
    #[arg(long)]
    pub timings: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UsernsMode {
    /// Use each spec's `id_map`.
    Spec,
    /// Allocate a private range per container.
    Private,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Outside a pod, as real root: the first host UID/GID of the engine's
    /// 65536 IDs (default: the `hutch` entry of /etc/subuid and /etc/subgid).
    /// Host root is never mapped into a container.
    #[arg(long, value_name = "ID")]
    pub userns_base: Option<u32>,
    /// Copy the layers of private-ID-mode containers to a tmpfs the engine
    /// mounts, once, and idmap them per container (kernel idmapped layers
    /// need a filesystem the engine owns; costs memory). Without it, each
    /// private ID range gets its own copy of the layers on the data root,
    /// owners shifted (disk, one copy per range, reused by the next holder).
    #[arg(long)]
    pub private_layers_tmpfs: bool,
    /// Group that owns the unix socket (mode 0660).
    #[arg(short = 'G', long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Serve TCP listeners over TLS (implied by --tlsverify).
    #[arg(long)]
    pub tls: bool,
    /// Serve TCP over TLS and accept only clients with a certificate signed by --tlscacert.
    #[arg(long)]
    pub tlsverify: bool,
    /// CA certificate (PEM) that client certificates must be signed by.
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// The daemon's TLS certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// The daemon's TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Where the daemon keeps run-time state (containers' netns binds);
    /// default: the directory of the default socket.
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// How containers reach the pod's network: `auto` (the kernel path when
    /// the pod allows it, else the layer-4 relay), `kernel`, `l4-relay`, or
    /// `slirp4netns` (in a pod with /dev/net/tun; `auto` if it cannot start).
    #[arg(long, value_name = "MODE")]
    pub network_uplink: Option<String>,
    /// The MTU of the bridge networks' links (dockerd's `--mtu`; a
    /// network's `-o com.docker.network.driver.mtu` wins). Default: the MTU
    /// of the pod's default-route interface when below 1500, so container
    /// packets fit the pod network (an overlay's 1450, say), else 1500.
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<i64>,
    /// The default bridge's gateway address and prefix (dockerd's `--bip`,
    /// e.g. 10.200.0.1/24), when 172.17.0.0/16 clashes with addresses
    /// containers must reach.
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,
    /// Where networks without a subnet get one (dockerd's
    /// `--default-address-pool base=10.201.0.0/16,size=24`); repeatable,
    /// in order. The default bridge comes from them too, unless `--bip`.
    #[arg(long = "default-address-pool", value_name = "base=CIDR,size=N")]
    pub default_address_pools: Vec<String>,
    /// dockerd's daemon.json (default /etc/hutch/daemon.json, if present):
    /// the same settings under dockerd's names.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// A registry reached over plain HTTP (and TLS without verification)
    /// as well; localhost and 127.0.0.0/8 always are. Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// A mirror tried before Docker Hub for docker.io images. Repeatable.
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// dockerd options in the config file that hutch ignores (warned about).
    #[arg(skip)]
    pub ignored_config: Vec<String>,
    /// Seconds a container gets between its stop signal and SIGKILL when
    /// the daemon stops it (at shutdown, or at a start that cannot give a
    /// running container its network back): its own stop timeout, at most
    /// this; -1 for no bound. Default 15, as dockerd.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub shutdown_timeout: Option<i64>,
    /// Do all of a container's start at its start request, as dockerd does.
    /// By default the start is begun in the background right after the
    /// create (mounts, seccomp, network plug; ~2 ms off `docker run`) and
    /// dropped if the container is not started within 2 s or is changed
    /// first.
    #[arg(long)]
    pub no_primed_starts: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    pub image: String,
    /// Pull every tagged image of the repository (Docker's `-a`).
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Platform to select from a multi-platform image (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    pub image: String,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Repository (and tag) to list.
    pub reference: Option<String>,
    /// Show all images (including intermediate ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Filter output (dangling=true, label=k=v, before=, since=, reference=).
    #[arg(short, long)]
    pub filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Force removal of the image.
    #[arg(short, long)]
    pub force: bool,
    /// Do not delete untagged parents.
    #[arg(long)]
    pub no_prune: bool,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Write to a file instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from a tar archive file instead of standard input.
    #[arg(short, long)]
    pub input: Option<PathBuf>,
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build context directory.
    pub context: PathBuf,
    /// Name and optionally a tag (name:tag).
    #[arg(short, long)]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Build-time variables (KEY=VALUE).
    #[arg(long)]
    pub build_arg: Vec<String>,
    /// Target build stage.
    #[arg(long)]
    pub target: Option<String>,
    /// Target platform (os/arch[/variant]); several, comma-separated,
    /// build once each into one multi-platform name (no emulation: a RUN
    /// for a platform this machine cannot run fails).
    #[arg(long)]
    pub platform: Option<String>,
    /// Secret to expose to RUN --mount=type=secret (id=ID,src=PATH).
    #[arg(long)]
    pub secret: Vec<String>,
    /// Metadata label (KEY=VALUE).
    #[arg(long)]
    pub label: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Always pull newer versions of base images.
    #[arg(long)]
    pub pull: bool,
    /// Push the result to its registry.
    #[arg(long)]
    pub push: bool,
    /// Output destination besides the image store: type=docker|oci (the
    /// image as an archive), type=tar|local (its files), dest=FILE|DIR|-;
    /// a bare DIR is type=local, a bare - type=tar to stdout.
    #[arg(short, long)]
    pub output: Option<String>,
    /// Write the image ID to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Progress output: auto, tty, plain or quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Suppress the build output and print the image ID on success
    /// (`--progress quiet`, as `docker build -q`).
    #[arg(short, long, conflicts_with = "progress")]
    pub quiet: bool,
    /// Size of the RUNs' /dev/shm (`128m`, `1g`; 64 MiB by default).
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Resource limit of the RUNs: `NAME=SOFT[:HARD]` (repeatable).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add a host to the RUNs' /etc/hosts: `NAME:IP` (IP may be
    /// `host-gateway`, the pod) (repeatable).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Additional build context: `NAME=DIR` or `NAME=docker-image://REF`,
    /// used where the Dockerfile names the image `NAME` (FROM, COPY
    /// --from, RUN --mount from=) (repeatable).
    #[arg(long)]
    pub build_context: Vec<String>,
    /// SSH agent for `RUN --mount=type=ssh`: `default`, `ID` (the agent of
    /// `$SSH_AUTH_SOCK`) or `ID=SOCKET` (repeatable).
    #[arg(long)]
    pub ssh: Vec<String>,
    /// Import build cache from a registry: `REF` or `type=registry,ref=REF`
    /// (a cache manifest, or an image with an inline cache) (repeatable).
    #[arg(long)]
    pub cache_from: Vec<String>,
    /// Export build cache to a registry:
    /// `type=registry,ref=REF[,mode=min|max][,ignore-error=true]`, or into
    /// the image itself: `type=inline` (as `--build-arg BUILDKIT_INLINE_CACHE=1`).
    #[arg(long)]
    pub cache_to: Vec<String>,
}
