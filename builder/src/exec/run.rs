//! RUN: the command in a container of the engine's runtime, on an overlay of
//! the image's layers with a fresh upper directory, its output streamed to the
//! build's progress; then the layer is read from the upper directory.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hutch_engine::runtime::{
    ContainerSpec, IdMap, MountSpec, NetworkMode, Output, ProcMode, ProcessSpec, RootfsSpec,
    Runtime, RuntimeError, User,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{BuildError, OutputSink};

/// One RUN's container.
pub struct RunRequest {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub network: NetworkMode,
    pub mounts: Vec<MountSpec>,
    /// Layer directories of the image, topmost first.
    pub lower: Vec<PathBuf>,
    /// `/etc/hosts` and `/etc/resolv.conf` for the RUN, as BuildKit gives
    /// every RUN its own (the image's are not used).
    pub etc: EtcFiles,
    /// `--ulimit`s.
    pub rlimits: Vec<hutch_engine::runtime::spec::Rlimit>,
    /// `--shm-size`: a /dev/shm of this many bytes.
    pub shm_size: Option<u64>,
    /// The emulator of the stage's platform, when this machine does not
    /// run its binaries itself.
    pub emulator: Option<hutch_engine::runtime::binfmt::Binfmt>,
}

/// The generated `/etc` files of a RUN.
#[derive(Debug, Clone)]
pub struct EtcFiles {
    pub hosts: String,
    pub resolv_conf: String,
}

impl EtcFiles {
    /// localhost and the sandbox's hostname, then `--add-host`s; the
    /// pod's resolver configuration (builds run in the pod's network).
    pub fn new(extra_hosts: &[(String, std::net::IpAddr)]) -> EtcFiles {
        let mut hosts = String::from(
            "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        for (name, ip) in extra_hosts {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        EtcFiles { hosts, resolv_conf }
    }
}

/// What a RUN left: its exit code and the last output (for error messages).
pub struct RunOutcome {
    pub code: i32,
    pub tail: Vec<u8>,
}

const TAIL: usize = 16 * 1024;

/// Runs the command; `with_upper` reads the upper directory after the command
/// exited and before the container is removed (also on failure, where it is
/// not called).
pub fn run<T>(
    runtime: &Runtime,
    proc_mode: ProcMode,
    tmp: &Path,
    req: RunRequest,
    output: &OutputSink,
    cancel: &Arc<AtomicBool>,
    with_upper: impl FnOnce(&Path) -> Result<T, BuildError>,
) -> Result<(RunOutcome, Option<T>), BuildError> {
    let dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(tmp)
        .map_err(|e| BuildError::io("creating the RUN directory", e))?;
    let empty = dir.path().join("empty");
    let rootfs = RootfsSpec {
        lower: if req.lower.is_empty() {
            vec![empty.clone()]
        } else {
            req.lower.clone()
        },
        upper: dir.path().join("upper"),
        work: dir.path().join("work"),
        target: dir.path().join("rootfs"),
        readonly: false,
        lowers_shifted: false,
    };
    for d in [&empty, &rootfs.upper, &rootfs.work, &rootfs.target] {
        std::fs::create_dir_all(d).map_err(|e| BuildError::io("creating the RUN directory", e))?;
    }
    let mut mounts = req.mounts;
    for (name, text) in [
        ("hosts", &req.etc.hosts),
        ("resolv.conf", &req.etc.resolv_conf),
    ] {
        let file = dir.path().join(name);
        std::fs::write(&file, text)
            .map_err(|e| BuildError::io("writing the RUN's /etc files", e))?;
        mounts.push(MountSpec {
            destination: PathBuf::from("/etc").join(name),
            kind: hutch_engine::runtime::MountKind::Bind {
                source: file,
                readonly: false,
                recursive: false,
            },
        });
    }
    if let Some(size) = req.shm_size.filter(|s| *s > 0) {
        mounts.push(MountSpec {
            destination: PathBuf::from("/dev/shm"),
            kind: hutch_engine::runtime::MountKind::Tmpfs {
                options: format!("size={size},mode=1777,nosuid,nodev,noexec"),
                readonly: false,
            },
        });
    }
    let mut process = ProcessSpec::new(req.argv);
    process.env = req.env;
    process.rlimits = req.rlimits;
    process.cwd = PathBuf::from(req.cwd);
    process.user = User {
        name: req.user,
        group_add: Vec::new(),
    };
    let id = format!("build-{}", hex_id());
    let mut spec = ContainerSpec::new(&id, rootfs, process, IdMap::identity());
    spec.namespaces.network = req.network;
    spec.namespaces.proc = proc_mode;
    spec.mounts = mounts;
    spec.hostname = Some("buildkitsandbox".to_string());
    spec.emulator = req.emulator;

    let (reader, writer) =
        nix::unistd::pipe().map_err(|e| BuildError::io("creating a pipe", e.into()))?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| BuildError::io("creating a pipe", e))?;
    let out = Output {
        stdout: Some(writer),
        stderr: Some(writer2),
    };
    let mut container = match runtime.create(&spec, out) {
        Ok(c) => c,
        Err(RuntimeError::Failed { code, message }) => {
            return Ok((
                RunOutcome {
                    code,
                    tail: message.into_bytes(),
                },
                None,
            ))
        }
        Err(e) => return Err(BuildError::Run(e.to_string())),
    };
    let tail = Arc::new(Mutex::new(Vec::new()));
    let pump = {
        let (output, tail) = (output.clone(), tail.clone());
        std::thread::spawn(move || pump_output(reader, &*output, &tail))
    };
    let code = match container.start() {
        Ok(()) => {
            let done = Arc::new(AtomicBool::new(false));
            let watcher = {
                let (done, cancel, pid) = (done.clone(), cancel.clone(), container.pid());
                std::thread::spawn(move || watch_cancel(pid, &cancel, &done))
            };
            let r = container.wait();
            done.store(true, Ordering::SeqCst);
            let _ = watcher.join();
            r.map_err(|e| BuildError::Run(e.to_string()))
        }
        Err(RuntimeError::Failed { code, message }) => {
            if let Ok(mut t) = tail.lock() {
                t.extend_from_slice(message.as_bytes());
            }
            Ok(code)
        }
        Err(e) => Err(BuildError::Run(e.to_string())),
    };
    let made = match &code {
        Ok(0) if !cancel.load(Ordering::SeqCst) => with_upper(&dir.path().join("upper")).map(Some),
        _ => Ok(None),
    };
    // The helper holds the pipe's write end until the container is gone.
    let deleted = container.delete();
    let _ = pump.join();
    // Cancelled: whatever failed on the way (a terminal's Ctrl-C also
    // reaches the runtime's helpers) is the cancellation's doing.
    if cancel.load(Ordering::SeqCst) {
        if let Err(e) = &deleted {
            tracing::info!(%e, "deleting a cancelled RUN's container");
        }
        return Err(BuildError::Cancelled);
    }
    let code = code?;
    let made = made?;
    deleted.map_err(|e| BuildError::Run(e.to_string()))?;
    let tail = tail.lock().map(|t| t.clone()).unwrap_or_default();
    Ok((RunOutcome { code, tail }, made))
}

fn pump_output(reader: OwnedFd, output: &(dyn Fn(&[u8]) + Send + Sync), tail: &Mutex<Vec<u8>>) {
    let mut file = std::fs::File::from(reader);
    let mut buf = [0u8; 16 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                output(&buf[..n]);
                if let Ok(mut t) = tail.lock() {
                    t.extend_from_slice(&buf[..n]);
                    if t.len() > TAIL {
                        let cut = t.len() - TAIL;
                        t.drain(..cut);
                    }
                }
            }
        }
    }
}

/// Kills the container when the build is cancelled (client gone, Ctrl-C).
fn watch_cancel(pid: i32, cancel: &AtomicBool, done: &AtomicBool) {
    while !done.load(Ordering::SeqCst) {
        if cancel.load(Ordering::SeqCst) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hex_id() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}
