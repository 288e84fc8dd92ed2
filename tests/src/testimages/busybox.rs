//! The busybox image: Debian's statically linked busybox with one symlink
//! per applet and the few files a shell image needs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::entry::LayerEntry;
use super::layout::{Recipe, RecipeLayer};

/// Where Debian's busybox-static installs its binary (before and after usrmerge).
const CANDIDATES: [&str; 2] = ["/usr/bin/busybox", "/bin/busybox"];

/// The host's static busybox and its bytes.
pub struct Busybox {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Finds Debian's static busybox; a dynamically linked one (package
/// `busybox`) would not run in an image that has no libc.
pub fn find_busybox() -> anyhow::Result<Busybox> {
    for candidate in CANDIDATES {
        let path = Path::new(candidate);
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        if has_interpreter(&bytes)? {
            continue;
        }
        return Ok(Busybox {
            path: path.to_owned(),
            bytes,
        });
    }
    bail!("no statically linked busybox at {CANDIDATES:?}: install Debian's busybox-static")
}

/// Where tests/install-deps puts Debian's arm64 busybox-static.
const ARM64_DEFAULT: &str = "/opt/hutch-test-arm64/busybox";

/// The arm64 static busybox (`HUTCH_TEST_ARM64`/busybox, else
/// [`ARM64_DEFAULT`]); it runs here only under an emulator.
pub fn find_arm64_busybox() -> anyhow::Result<Busybox> {
    let path = std::env::var_os("HUTCH_TEST_ARM64")
        .map(|dir| PathBuf::from(dir).join("busybox"))
        .unwrap_or_else(|| PathBuf::from(ARM64_DEFAULT));
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "reading the arm64 busybox {} (tests/install-deps downloads it)",
            path.display()
        )
    })?;
    // e_machine 183: AArch64.
    if bytes.get(18..20) != Some(&[0xb7, 0x00][..]) {
        bail!("{} is not an arm64 ELF binary", path.display());
    }
    Ok(Busybox { path, bytes })
}

/// The busybox image recipe.
pub fn recipe(busybox: &Busybox) -> anyhow::Result<Recipe> {
    recipe_listed_by(busybox, busybox)
}

/// The busybox image recipe of `busybox`, its applets as `lister` (a
/// busybox of the same version that runs here) lists them.
pub fn recipe_listed_by(busybox: &Busybox, lister: &Busybox) -> anyhow::Result<Recipe> {
    let mut entries = vec![
        LayerEntry::dir("bin", 0o755),
        LayerEntry::file("bin/busybox", 0o755, busybox.bytes.clone()),
        LayerEntry::dir("etc", 0o755),
        LayerEntry::file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        LayerEntry::file("etc/group", 0o644, "root:x:0:\nnogroup:x:65534:\n"),
        LayerEntry::dir("home", 0o755),
        LayerEntry::dir("root", 0o700),
        LayerEntry::dir("tmp", 0o1777),
        LayerEntry::dir("var", 0o755),
    ];
    for applet in applets(&lister.path)? {
        entries.push(LayerEntry::symlink(format!("bin/{applet}"), "busybox"));
    }
    Ok(Recipe {
        tag: super::TAG.to_owned(),
        layers: vec![RecipeLayer {
            created_by: "hutch-tests: busybox-static with applet symlinks, passwd, group"
                .to_owned(),
            entries,
        }],
        cmd: Some(vec!["sh".to_owned()]),
        volumes: Vec::new(),
    })
}

/// The applet names `busybox --list` prints, without busybox itself.
fn applets(busybox: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {} --list", busybox.display()))?;
    if !output.status.success() {
        bail!("{} --list failed: {}", busybox.display(), output.status);
    }
    let list = String::from_utf8(output.stdout).context("busybox --list is not UTF-8")?;
    let applets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox" && !name.contains('/'))
        .map(str::to_owned)
        .collect();
    if !applets.iter().any(|a| a == "sh") {
        bail!("{} has no sh applet", busybox.display());
    }
    Ok(applets)
}

/// Whether a 64-bit little-endian ELF file asks for a program interpreter
/// (PT_INTERP), i.e. is dynamically linked.
fn has_interpreter(elf: &[u8]) -> anyhow::Result<bool> {
    hutch_engine::emulation::elf_has_interpreter(elf)
        .context("not a 64-bit little-endian ELF file with its program headers")
}
