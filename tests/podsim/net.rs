//! The pod's network namespace: creating it the way the node does, and
//! bringing up its loopback interface, as the CNI loopback plugin would.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use crate::sys;

/// Sets `lo` up in the caller's network namespace.
pub fn bring_up_loopback() -> anyhow::Result<()> {
    let sock = datagram_socket()?;
    let flags = sys::interface_flags(sock.as_fd(), "lo", None).context("reading lo's flags")?;
    let up = flags | libc::IFF_UP as i16;
    if up != flags {
        sys::interface_flags(sock.as_fd(), "lo", Some(up)).context("setting lo up")?;
    }
    Ok(())
}

/// Whether `lo` is up in the caller's network namespace.
pub fn loopback_is_up() -> anyhow::Result<bool> {
    let sock = datagram_socket()?;
    let flags = sys::interface_flags(sock.as_fd(), "lo", None).context("reading lo's flags")?;
    Ok(flags & libc::IFF_UP as i16 != 0)
}

fn datagram_socket() -> anyhow::Result<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening a socket")
}

/// Creates a network namespace owned by the initial user namespace, as the
/// node's runtime and CNI do before a pod exists, and returns a descriptor
/// holding it. The calling (single-threaded, host root) process enters it
/// only for as long as it takes to bring `lo` up.
pub fn create_node_netns() -> anyhow::Result<OwnedFd> {
    let host = File::open("/proc/thread-self/ns/net").context("opening the host netns")?;
    unshare(CloneFlags::CLONE_NEWNET).context("creating the pod netns")?;
    let created = File::open("/proc/thread-self/ns/net").map(OwnedFd::from);
    let lo = bring_up_loopback();
    // Return to the host netns before looking at any error.
    setns(host.as_fd(), CloneFlags::CLONE_NEWNET).context("returning to the host netns")?;
    lo?;
    created.context("opening the pod netns")
}
