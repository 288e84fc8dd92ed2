//! An emulated container's binfmt_misc: the handler that runs its foreign
//! binaries under QEMU's user-mode emulator.
//!
//! Docker hosts get emulation from handlers registered in the host kernel
//! (`tonistiigi/binfmt --install`, what docker/setup-qemu-action runs as a
//! privileged container); a pod cannot register any there. Since Linux 6.7
//! each user namespace may mount a binfmt_misc instance of its own, whose
//! handlers serve the processes of that namespace and its children before
//! the host's. The init registers its container's handler in a fresh
//! instance of the container's user namespace, so its binaries and every
//! process they start run under the emulator, and nothing outside changes.
//!
//! The instance lives as long as a mount of it does: the init leaves one,
//! read-only, at /proc/sys/fs/binfmt_misc, where a Docker host with QEMU
//! registered shows its handlers.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use super::error::{Context, SetupError};
use super::mounts::remount_readonly;
use super::safe_path::{fd_path, open_in_root, Kind};

/// One binfmt_misc handler: ELF headers matching `magic` under `mask` run
/// through `interpreter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binfmt {
    /// The handler's name (`qemu-aarch64`).
    pub name: String,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
    /// A statically linked emulator on the engine's filesystem. The kernel
    /// opens it when the handler is registered (flag F), so it need not be
    /// inside the container's root.
    pub interpreter: PathBuf,
}

/// P: the binary's own argv[0] is passed on (QEMU reads AT_FLAGS for it).
/// O, C: the kernel opens the binary and takes credentials from it, not the
/// emulator, so set-user-ID programs behave as on their own hardware.
/// F: the emulator is opened now, not looked up in the container's root.
const FLAGS: &str = "POCF";

impl Binfmt {
    /// The line written to binfmt_misc's `register`:
    /// `:name:M::magic:mask:interpreter:flags`, the bytes as `\xHH`.
    pub fn register_line(&self) -> Result<Vec<u8>, String> {
        let interpreter = self.interpreter.as_os_str().as_bytes();
        if interpreter.contains(&b':') || interpreter.contains(&b'\n') {
            return Err(format!(
                "the emulator's path {} cannot be registered (it holds ':' or a newline)",
                self.interpreter.display()
            ));
        }
        if self.name.contains([':', '/', '\n']) || self.magic.len() != self.mask.len() {
            return Err(format!("invalid binfmt_misc handler {:?}", self.name));
        }
        let hex =
            |bytes: &[u8]| -> String { bytes.iter().map(|b| format!("\\x{b:02x}")).collect() };
        let mut line = format!(
            ":{}:M::{}:{}:",
            self.name,
            hex(&self.magic),
            hex(&self.mask)
        )
        .into_bytes();
        line.extend_from_slice(interpreter);
        line.extend_from_slice(format!(":{FLAGS}").as_bytes());
        Ok(line)
    }
}

/// Where the instance is left mounted, inside the container's root.
const MOUNT_POINT: &str = "/proc/sys/fs/binfmt_misc";

/// Registers `binfmt` in a binfmt_misc instance of the calling process's
/// user namespace, mounted at /proc/sys/fs/binfmt_misc under `root` (whose
/// /proc is mounted) and then made read-only. Must run in the container's
/// user and mount namespaces, before the root is entered: the emulator's
/// path is resolved on the engine's filesystem.
pub fn install(root: &OwnedFd, binfmt: &Binfmt) -> Result<(), SetupError> {
    let line = binfmt.register_line().map_err(SetupError::Invalid)?;
    let mount_point = open_in_root(root, Path::new(MOUNT_POINT), Kind::Dir)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(
        Some("binfmt_misc"),
        &fd_path(&mount_point),
        Some("binfmt_misc"),
        flags,
        None::<&str>,
    ) {
        let why = if e == Errno::ENODEV || e == Errno::EPERM {
            " (running other platforms' binaries needs Linux 6.7 or later, where a user \
             namespace may have a binfmt_misc of its own)"
        } else {
            ""
        };
        return Err(SetupError::Invalid(format!(
            "mounting binfmt_misc for emulation: {e}{why}"
        )));
    }
    // Opened again, by path: the first descriptor is of the directory
    // underneath the new mount.
    let instance = open_in_root(root, Path::new(MOUNT_POINT), Kind::Dir)?;
    register(&instance, &line, &binfmt.interpreter)?;
    remount_readonly(&fd_path(&instance))
}

fn register(instance: &OwnedFd, line: &[u8], interpreter: &Path) -> Result<(), SetupError> {
    let fd = openat(
        instance,
        "register",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening binfmt_misc's register".to_string())?;
    match std::fs::File::from(fd).write_all(line) {
        Ok(()) => Ok(()),
        // A user namespace shared with another container (`--pid
        // container:`) whose init registered the same handler.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e).ctx(|| {
            format!(
                "registering the emulator {} with binfmt_misc",
                interpreter.display()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_line_escapes_every_byte_and_ends_with_the_flags() -> Result<(), String> {
        let b = Binfmt {
            name: "qemu-aarch64".into(),
            magic: vec![0x7f, b'E', 0x00],
            mask: vec![0xff, 0xff, 0xfe],
            interpreter: PathBuf::from("/usr/bin/qemu-aarch64-static"),
        };
        assert_eq!(
            String::from_utf8_lossy(&b.register_line()?),
            ":qemu-aarch64:M::\\x7f\\x45\\x00:\\xff\\xff\\xfe:/usr/bin/qemu-aarch64-static:POCF"
        );
        Ok(())
    }

    #[test]
    fn paths_binfmt_misc_cannot_parse_are_refused() {
        let mut b = Binfmt {
            name: "qemu-arm".into(),
            magic: vec![1],
            mask: vec![1],
            interpreter: PathBuf::from("/opt/a:b/qemu-arm"),
        };
        assert!(b.register_line().is_err_and(|e| e.contains("':'")));
        b.interpreter = PathBuf::from("/usr/bin/qemu-arm");
        b.mask = vec![1, 2];
        assert!(b.register_line().is_err());
    }
}
