//! Optional devices: /dev/fuse (the FUSE ID-shifting fallback) and
//! /dev/net/tun (pasta, slirp4netns).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::child::{At, Failure, Sandbox};
use super::report::{Check, Status};
use super::scratch::Scratch;

const FIX_FUSE: &str = "\
# expose /dev/fuse through a device plugin, e.g. squat.ai/generic-device-plugin:
containers:
- name: hutch
  resources:
    limits: {squat.ai/fuse: 1}
# or on CRI-O: metadata.annotations: {io.kubernetes.cri-o.Devices: /dev/fuse}";

const FIX_TUN: &str = "\
# expose /dev/net/tun through a device plugin, e.g. squat.ai/generic-device-plugin:
containers:
- name: hutch
  resources:
    limits: {squat.ai/tun: 1}
# or on CRI-O: metadata.annotations: {io.kubernetes.cri-o.Devices: /dev/net/tun}";

/// `devices.fuse`: open /dev/fuse and mount a FUSE filesystem in a child
/// user namespace (nobody serves it; the mount dies with the child).
pub fn check_fuse(scratch: &Result<Scratch, Failure>) -> Check {
    let outcome = if Path::new("/dev/fuse").exists() {
        scratch
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|s| s.dir("fuse"))
            .and_then(|dir| {
                Sandbox::user().mount().run(move || {
                    // Opened inside the child userns: the kernel requires the
                    // device fd and the mount to belong to the same one.
                    let dev = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open("/dev/fuse")
                        .at("open /dev/fuse")?;
                    let options =
                        format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
                    mount(
                        Some("hutch-doctor"),
                        &dir,
                        Some("fuse"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some(options.as_str()),
                    )
                    .at("mount fuse")
                })
            })
    } else {
        Err(Failure::other("/dev/fuse", "not present"))
    };
    let (status, detail) = match outcome {
        Ok(()) => (
            Status::Ok,
            "/dev/fuse opens and FUSE mounts in a child user namespace".to_owned(),
        ),
        Err(failure) => (Status::Missing, failure.to_string()),
    };
    Check::new("devices.fuse", "/dev/fuse", status, detail)
        .blocks("the FUSE ID-shifting fallback for private ID ranges (copies are used)")
        .fix(FIX_FUSE)
}

/// `devices.tun`: open /dev/net/tun and create a tap device in a child
/// user + network namespace, as pasta and slirp4netns do.
pub fn check_tun() -> Check {
    let outcome = if Path::new("/dev/net/tun").exists() {
        Sandbox::user().net().run(|| {
            let tun = OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .at("open /dev/net/tun")?;
            create_tap(&tun).at("ioctl(TUNSETIFF)")
        })
    } else {
        Err(Failure::other("/dev/net/tun", "not present"))
    };
    let (status, detail) = match outcome {
        Ok(()) => (
            Status::Ok,
            "/dev/net/tun opens and a tap device can be created in a child namespace".to_owned(),
        ),
        Err(failure) => (Status::Missing, failure.to_string()),
    };
    Check::new("devices.tun", "/dev/net/tun", status, detail)
        .blocks("user-mode networking with pasta or slirp4netns")
        .fix(FIX_TUN)
}

fn create_tap(tun: &std::fs::File) -> Result<(), nix::errno::Errno> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"hutchdoctor0") {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives
    // across the call.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) };
    if rc < 0 {
        Err(nix::errno::Errno::last())
    } else {
        Ok(())
    }
}
