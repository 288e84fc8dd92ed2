//! Network namespaces held by descriptors. The daemon is multi-threaded, so
//! it never moves itself: work that must happen inside a namespace (opening
//! a socket there, creating one) runs on a short-lived thread that enters it
//! and ends with the work. Sockets keep the namespace they were made in.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use super::rtnl::Rtnl;

/// A network namespace, kept alive by the descriptor.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
}

impl NetNs {
    /// The calling thread's network namespace.
    pub fn current() -> io::Result<NetNs> {
        Ok(NetNs {
            fd: File::open("/proc/thread-self/ns/net")?.into(),
        })
    }

    /// A namespace file (`/proc/PID/ns/net` or a bind mount of one).
    pub fn open(path: &Path) -> io::Result<NetNs> {
        Ok(NetNs {
            fd: File::open(path)?.into(),
        })
    }

    /// A new network namespace owned by the caller's user namespace, with
    /// its loopback interface up.
    pub fn create() -> io::Result<NetNs> {
        std::thread::scope(|s| {
            s.spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                let ns = NetNs::current()?;
                let mut rtnl = Rtnl::open()?;
                let lo = rtnl.require("lo")?;
                rtnl.set_up(lo)?;
                Ok(ns)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")))
        })
    }

    /// Runs `f` on a thread inside this namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")))
        })
    }

    /// A route-netlink socket inside this namespace.
    pub fn rtnl(&self) -> io::Result<Rtnl> {
        self.run(Rtnl::open)
    }

    /// Binds the namespace onto `path` (created as an empty file), so that
    /// others (the runtime helper) can open it by name.
    pub fn bind_to(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        File::create(path)?;
        let source = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        mount(
            Some(source.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether two descriptors name the same namespace.
    pub fn same_as(&self, other: &NetNs) -> bool {
        use std::os::unix::fs::MetadataExt;
        let meta = |fd: &OwnedFd| File::from(fd.try_clone().ok()?).metadata().ok();
        match (meta(&self.fd), meta(&other.fd)) {
            (Some(a), Some(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }
}

impl From<OwnedFd> for NetNs {
    fn from(fd: OwnedFd) -> Self {
        NetNs { fd }
    }
}

/// Undoes [`NetNs::bind_to`]; a missing file is fine.
pub fn unbind(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A long-lived thread inside a namespace that runs small jobs there
/// (creating sockets for each proxied connection), so that hot paths do
/// not pay for a thread and a setns each time.
#[derive(Debug)]
pub struct Worker {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl Worker {
    pub fn start(ns: &NetNs) -> io::Result<Worker> {
        let fd = ns.fd.try_clone()?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("hutch-netns".into())
            .spawn(move || {
                let entered = setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })?;
        ready_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the netns worker died")))?;
        Ok(Worker {
            tx: std::sync::Mutex::new(tx),
        })
    }

    /// Runs `f` on the worker and waits for its result.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.tx
            .lock()
            .map_err(|_| io::Error::other("netns worker lock poisoned"))?
            .send(job)
            .map_err(|_| io::Error::other("the netns worker is gone"))?;
        rx.recv()
            .unwrap_or_else(|_| Err(io::Error::other("the netns worker dropped a job")))
    }
}
