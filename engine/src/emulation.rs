//! Which other architectures this machine can run, and with what: QEMU's
//! user-mode emulators found on the engine's PATH, as Debian's
//! qemu-user-static names them (`qemu-aarch64-static`), or under their
//! plain names (`qemu-aarch64`, Debian 13's qemu-user) when statically
//! linked. A container or RUN step of such an architecture gets its
//! emulator registered in its own user namespace (`runtime::binfmt`).
//!
//! The handlers' magic and mask are QEMU's own (scripts/qemu-binfmt-conf.sh,
//! the values Debian's /usr/lib/binfmt.d and tonistiigi/binfmt register).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::runtime::binfmt::Binfmt;

/// A Docker architecture and its emulator's binfmt_misc handler.
struct Arch {
    docker: &'static str,
    qemu: &'static str,
    magic: &'static [u8; 20],
    mask: &'static [u8; 20],
}

const ELF_MASK: &[u8; 20] =
    b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";
const X86_MASK: &[u8; 20] =
    b"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff";

const ARCHES: &[Arch] = &[
    Arch {
        docker: "arm64",
        qemu: "aarch64",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        mask: ELF_MASK,
    },
    Arch {
        docker: "arm",
        qemu: "arm",
        magic: b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00",
        mask: ELF_MASK,
    },
    Arch {
        docker: "amd64",
        qemu: "x86_64",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
        mask: X86_MASK,
    },
    Arch {
        docker: "386",
        qemu: "i386",
        magic: b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00",
        mask: X86_MASK,
    },
    Arch {
        docker: "ppc64le",
        qemu: "ppc64le",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00",
        mask: b"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00",
    },
    Arch {
        docker: "s390x",
        qemu: "s390x",
        magic: b"\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16",
        mask: b"\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff",
    },
    Arch {
        docker: "riscv64",
        qemu: "riscv64",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00",
        mask: ELF_MASK,
    },
    Arch {
        docker: "mips64le",
        qemu: "mips64el",
        magic: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00",
        mask: b"\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    },
];

/// Whether the machine runs binaries of the Docker architecture `arch`
/// itself: its own, and 32-bit x86 on x86-64.
pub fn runs_natively(arch: &str) -> bool {
    let host = hutch_images::oci::host_platform().architecture;
    arch == host || (host == "amd64" && arch == "386")
}

/// The handler that runs binaries of the Docker architecture `arch` here,
/// when they need one and an emulator is installed.
pub fn find(arch: &str) -> Option<Binfmt> {
    if runs_natively(arch) {
        return None;
    }
    let entry = ARCHES.iter().find(|a| a.docker == arch)?;
    let interpreter = find_emulator(entry.qemu, &search_path())?;
    Some(Binfmt {
        name: format!("qemu-{}", entry.qemu),
        magic: entry.magic.to_vec(),
        mask: entry.mask.to_vec(),
        interpreter,
    })
}

/// What running an image takes: nothing, or the emulator of its
/// architecture (or none was found).
#[derive(Debug, Default)]
pub struct Emulation {
    /// The image's architecture, when this machine does not run it.
    foreign: Option<String>,
    /// Then its platform, `os/arch[/variant]`.
    platform: Option<String>,
    emulator: Option<Binfmt>,
}

impl Emulation {
    /// For the image config `config` (its `architecture`; an image naming
    /// none runs as it is).
    pub fn of_image(config: &serde_json::Value) -> Emulation {
        match config.get("architecture").and_then(|a| a.as_str()) {
            Some(arch) if !arch.is_empty() && !runs_natively(arch) => {
                let field = |k: &str| config.get(k).and_then(|v| v.as_str()).unwrap_or_default();
                let os = Some(field("os"))
                    .filter(|o| !o.is_empty())
                    .unwrap_or("linux");
                let platform = match field("variant") {
                    "" => format!("{os}/{arch}"),
                    variant => format!("{os}/{arch}/{variant}"),
                };
                Emulation {
                    foreign: Some(arch.to_string()),
                    platform: Some(platform),
                    emulator: find(arch),
                }
            }
            _ => Emulation::default(),
        }
    }

    pub fn emulator(&self) -> Option<Binfmt> {
        self.emulator.clone()
    }

    /// The image's platform, when its architecture is not this machine's.
    pub fn foreign_platform(&self) -> Option<&str> {
        self.platform.as_deref()
    }

    /// Create's warning for a foreign image nothing can run here; Docker
    /// creates it too, and its start then fails with "exec format error".
    pub fn warning(&self) -> Option<String> {
        let arch = self
            .foreign
            .as_deref()
            .filter(|_| self.emulator.is_none())?;
        let host = hutch_images::oci::host_platform().architecture;
        Some(format!(
            "the image is for {arch} and this host is {host}, with {}: its binaries fail \
             with \"exec format error\"",
            missing(arch)
        ))
    }
}

/// Why binaries of the Docker architecture `arch` cannot run here (for an
/// architecture [`find`] found no emulator for), and what would fix it.
pub fn missing(arch: &str) -> String {
    match ARCHES.iter().find(|a| a.docker == arch) {
        Some(a) => format!(
            "no emulator for {arch} (qemu-{}-static on hutch's PATH, from QEMU's \
             qemu-user-static package)",
            a.qemu
        ),
        None => format!("no emulation for {arch}"),
    }
}

/// The foreign architectures an emulator was found for, with its path (for
/// `hutch doctor` and the build worker's platforms).
pub fn available() -> Vec<(&'static str, PathBuf)> {
    let path = search_path();
    ARCHES
        .iter()
        .filter(|a| !runs_natively(a.docker))
        .filter_map(|a| Some((a.docker, find_emulator(a.qemu, &path)?)))
        .collect()
}

fn search_path() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default()
}

/// The first statically linked `qemu-NAME-static` or `qemu-NAME` on `path`.
fn find_emulator(qemu: &str, path: &[PathBuf]) -> Option<PathBuf> {
    let names = [format!("qemu-{qemu}-static"), format!("qemu-{qemu}")];
    names
        .iter()
        .flat_map(|name| path.iter().map(move |dir| dir.join(name)))
        .find(|candidate| is_static_executable(candidate))
}

/// Whether `path` is an ELF executable with no program interpreter: a
/// dynamically linked emulator would look for its loader inside the
/// container's root, where it runs, and fail there.
fn is_static_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return false;
    }
    let mut head = Vec::new();
    match std::fs::File::open(path).map(|f| f.take(64 * 1024).read_to_end(&mut head)) {
        Ok(Ok(_)) => !elf_has_interpreter(&head).unwrap_or(true),
        _ => false,
    }
}

/// Whether the ELF image starting `head` has a PT_INTERP program header
/// (is dynamically linked); `None` when `head` is no 64-bit little-endian
/// ELF header and program header table (the emulators of the hosts hutch
/// runs on; written here rather than pulling in an ELF crate for three
/// fields). The test images use it to pick a static busybox too.
pub fn elf_has_interpreter(head: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if head.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let entsize = usize::from(u16_at(0x36)?);
    let count = usize::from(u16_at(0x38)?);
    let mut found = false;
    for i in 0..count {
        let at = phoff.checked_add(i.checked_mul(entsize)?)?;
        let kind = u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?);
        found |= kind == PT_INTERP;
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handler_matches_an_elf_header_of_its_own_kind() {
        for a in ARCHES {
            assert_eq!(&a.magic[..4], b"\x7fELF", "{}", a.docker);
            // The ELF magic and class are compared whole (the kernel
            // compares `(header ^ magic) & mask`).
            assert_eq!(&a.mask[..5], b"\xff\xff\xff\xff\xff", "{}", a.docker);
        }
        let names: std::collections::BTreeSet<_> = ARCHES.iter().map(|a| a.docker).collect();
        assert_eq!(names.len(), ARCHES.len());
    }

    #[test]
    fn the_host_architecture_is_never_emulated() {
        let host = hutch_images::oci::host_platform().architecture;
        assert!(runs_natively(&host));
        assert!(find(&host).is_none());
        assert!(available().iter().all(|(arch, _)| *arch != host));
    }

    #[test]
    fn a_foreign_image_without_an_emulator_is_warned_of_with_the_package() {
        let config = serde_json::json!({"architecture": "riscv64", "os": "linux"});
        let mut emulation = Emulation::of_image(&config);
        emulation.emulator = None;
        let warning = emulation.warning().unwrap_or_default();
        assert!(warning.starts_with("the image is for riscv64"), "{warning}");
        assert!(warning.contains("qemu-riscv64-static"), "{warning}");
        assert!(
            warning.ends_with("fail with \"exec format error\""),
            "{warning}"
        );
        assert_eq!(emulation.foreign_platform(), Some("linux/riscv64"));
        let arm = Emulation::of_image(
            &serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v7"}),
        );
        assert_eq!(arm.foreign_platform(), Some("linux/arm/v7"));
        // An unknown architecture, and images that run here.
        let odd = Emulation::of_image(&serde_json::json!({"architecture": "sparc64"}));
        assert!(odd
            .warning()
            .is_some_and(|w| w.contains("no emulation for sparc64")));
        let host = hutch_images::oci::host_platform().architecture;
        for config in [
            serde_json::json!({"architecture": host}),
            serde_json::json!({}),
        ] {
            let native = Emulation::of_image(&config);
            assert!(native.warning().is_none() && native.emulator().is_none());
        }
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() -> std::io::Result<()> {
        // This test binary is dynamically linked (it has a PT_INTERP).
        let me = std::env::current_exe()?;
        let head = std::fs::read(&me)?;
        assert_eq!(elf_has_interpreter(&head), Some(true));
        assert!(!is_static_executable(&me));
        // An ELF header with no program headers: nothing to interpret it.
        let mut bare = vec![0u8; 64];
        bare[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(elf_has_interpreter(&bare), Some(false));
        assert_eq!(elf_has_interpreter(b"#!/bin/sh\n"), None);
        Ok(())
    }

    #[test]
    fn emulators_are_looked_up_by_both_names_and_must_be_static() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let mut bare = vec![0u8; 64];
        bare[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let plain = dir.path().join("qemu-riscv64");
        std::fs::write(&plain, &bare)?;
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o755))?;
        let path = [dir.path().to_path_buf()];
        assert_eq!(find_emulator("riscv64", &path), Some(plain.clone()));
        // The -static name first.
        let named = dir.path().join("qemu-riscv64-static");
        std::fs::write(&named, &bare)?;
        std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o755))?;
        assert_eq!(find_emulator("riscv64", &path), Some(named.clone()));
        // Not executable, or dynamic: passed over.
        std::fs::set_permissions(&named, std::fs::Permissions::from_mode(0o644))?;
        std::fs::copy(std::env::current_exe()?, &plain)?;
        assert_eq!(find_emulator("riscv64", &path), None);
        Ok(())
    }
}
