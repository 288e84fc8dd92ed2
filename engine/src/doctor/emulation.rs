//! `emulation.qemu`: whether containers and RUN steps of other
//! architectures can run here (see `crate::emulation`): QEMU's static
//! emulators on the PATH, and a kernel that gives a child user namespace a
//! binfmt_misc of its own to register them in (Linux 6.7+).

use nix::mount::{mount, MsFlags};

use super::child::{At, Failure, Sandbox};
use super::report::{Check, Status};
use super::scratch::Scratch;

const FIX: &str = "the daemon's image: install QEMU's static user-mode emulators (Debian: \
                   apt-get install --no-install-recommends qemu-user-static)";

pub fn check(scratch: &Result<Scratch, Failure>) -> Check {
    let found = crate::emulation::available();
    let kernel = scratch
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|s| s.dir("binfmt_misc"))
        .and_then(|dir| {
            Sandbox::user().mount().run(move || {
                mount(
                    Some("binfmt_misc"),
                    &dir,
                    Some("binfmt_misc"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    None::<&str>,
                )
                .at("mount binfmt_misc in a child user namespace")
            })
        });
    let listed = found
        .iter()
        .map(|(arch, path)| format!("{arch} ({})", path.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let (status, detail) = match (kernel, found.is_empty()) {
        (Err(failure), _) => (
            Status::Missing,
            format!(
                "{failure}: the kernel gives user namespaces no binfmt_misc of their own \
                 (Linux 6.7+)"
            ),
        ),
        (Ok(()), true) => (
            Status::Missing,
            "no QEMU emulator (qemu-ARCH-static) on the PATH".to_owned(),
        ),
        (Ok(()), false) => (Status::Ok, format!("emulated: {listed}")),
    };
    Check::new("emulation.qemu", "emulation", status, detail)
        .blocks(
            "containers and RUN steps of other architectures (docker run --platform \
             linux/arm64, docker buildx build --platform linux/amd64,linux/arm64)",
        )
        .fix(FIX)
}
