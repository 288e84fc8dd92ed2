//! Plugging a container into a network: a veth pair whose bridge-netns end
//! joins the network's bridge and whose other end is created directly in
//! the container's netns, with Docker's MAC, the endpoint's address and,
//! for the first network with an uplink, the default route.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex};

use super::netns::NetNs;
use super::rtnl::Rtnl;

pub struct Plug<'a> {
    pub bridge: &'a str,
    /// The bridge-netns end's name.
    pub host_if: &'a str,
    /// The name inside the container (`eth0`, `eth1`, ...).
    pub container_if: &'a str,
    pub mac: [u8; 6],
    /// Both ends' MTU: the network's.
    pub mtu: u32,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// Default route via this gateway.
    pub gateway: Option<Ipv4Addr>,
}

/// The bridge-netns end's name for an endpoint: short, unique per endpoint.
pub fn host_if_name(endpoint_id: &str) -> String {
    format!("veth{}", &endpoint_id[..endpoint_id.len().min(8)])
}

/// Two requests in the bridge netns (the bridge's index, the veth created
/// enslaved and up) and one batch in the container's (see
/// [`Rtnl::configure_endpoint`]), from one thread there.
pub fn plug(bridge_rtnl: &mut Rtnl, container: &NetNs, p: &Plug<'_>) -> io::Result<()> {
    let master = bridge_rtnl.require(p.bridge)?;
    let add = |rtnl: &mut Rtnl| {
        rtnl.add_veth_on(
            p.host_if,
            p.container_if,
            container.fd(),
            p.mac,
            master,
            p.mtu,
        )
    };
    match add(bridge_rtnl) {
        // A stale end of this endpoint's last plug (the reaper has not
        // deleted it yet, or a daemon died before it could): dropped, and
        // the veth made again. Only then, not before every plug.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            bridge_rtnl.delete_link_named(p.host_if)?;
            add(bridge_rtnl)?;
        }
        other => other?,
    }
    let (name, ip, prefix, gateway) = (p.container_if.to_owned(), p.ip, p.prefix, p.gateway);
    container.run(move || {
        let mut rtnl = Rtnl::open()?;
        let index = rtnl.require(&name)?;
        rtnl.configure_endpoint(index, ip, prefix, gateway)
    })
}

/// Tears down what a stopped container leaves, off the caller's path:
/// its veths, its netns binding and (once removed) its files. Deleting a
/// link waits for the kernel's RCU grace periods, and so does an unmount
/// (`synchronize_rcu_expedited` in `namespace_unlock`); on a busy node each
/// takes milliseconds, which a stopped container's waiters (`docker run
/// --rm`) need not wait for. Links are deleted by index and netns bindings
/// have a name per start, so what a quick restart makes again is never
/// what is torn down.
pub struct Reaper {
    tx: Mutex<mpsc::Sender<ReaperJob>>,
}

enum ReaperJob {
    /// Delete the link with this index.
    Delete(u32),
    /// Unmount and remove a netns binding.
    Unbind(PathBuf),
    /// Remove a removed container's files (hosts, resolv.conf, hostname).
    RemoveDir(PathBuf),
    /// Answer once every deletion queued before it is done.
    Barrier(mpsc::SyncSender<()>),
}

/// How long [`Reaper::settle`] waits for the queue to drain.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Reaper {
    /// `rtnl`: a socket opened in the bridge netns, owned by the thread.
    pub fn start(mut rtnl: Rtnl) -> io::Result<Reaper> {
        let (tx, rx) = mpsc::channel::<ReaperJob>();
        std::thread::Builder::new()
            .name("hutch-veth-reaper".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for job in rx {
                    match job {
                        ReaperJob::Delete(index) => match rtnl.delete_link(index) {
                            Err(e) if e.raw_os_error() != Some(libc::ENODEV) => {
                                tracing::warn!(index, %e, "deleting a stopped container's veth");
                            }
                            _ => {}
                        },
                        ReaperJob::Unbind(path) => {
                            if let Err(e) = super::netns::unbind(&path) {
                                tracing::warn!(path = %path.display(), %e, "unbinding a stopped container's netns");
                            }
                        }
                        ReaperJob::RemoveDir(dir) => match std::fs::remove_dir_all(&dir) {
                            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                                tracing::warn!(dir = %dir.display(), %e, "removing a container's network files");
                            }
                            _ => {}
                        },
                        ReaperJob::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            })?;
        Ok(Reaper { tx: Mutex::new(tx) })
    }

    /// Queues the deletion of `host_if` (found now, through `bridge_rtnl`);
    /// deletes it here when the reaper is gone.
    pub fn unplug_later(&self, bridge_rtnl: &mut Rtnl, host_if: &str) -> io::Result<()> {
        let Some(index) = bridge_rtnl.index(host_if)? else {
            return Ok(());
        };
        match self.send(ReaperJob::Delete(index)) {
            Ok(()) => Ok(()),
            Err(_) => bridge_rtnl.delete_link(index),
        }
    }

    /// Queues the unmount of a netns binding; unbinds here when the
    /// reaper is gone.
    pub fn unbind_later(&self, path: PathBuf) -> io::Result<()> {
        match self.send(ReaperJob::Unbind(path.clone())) {
            Ok(()) => Ok(()),
            Err(_) => super::netns::unbind(&path),
        }
    }

    /// Queues the removal of a directory; removes it here when the reaper
    /// is gone.
    pub fn remove_dir_later(&self, dir: PathBuf) -> io::Result<()> {
        match self.send(ReaperJob::RemoveDir(dir.clone())) {
            Ok(()) => Ok(()),
            Err(_) => match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// Waits until every deletion queued so far is done (before a bridge
    /// is removed or the daemon shuts down), for at most a few seconds.
    pub fn settle(&self) {
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        if self.send(ReaperJob::Barrier(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(SETTLE_TIMEOUT);
        }
    }

    fn send(&self, job: ReaperJob) -> io::Result<()> {
        self.tx
            .lock()
            .map_err(|_| io::Error::other("veth reaper lock poisoned"))
            .and_then(|tx| tx.send(job).map_err(|_| io::Error::other("reaper gone")))
    }
}

/// Removes the endpoint's veth pair (deleting one end removes both).
pub fn unplug(bridge_rtnl: &mut Rtnl, host_if: &str) -> io::Result<()> {
    bridge_rtnl.delete_link_named(host_if)
}
