//! Idmapped mounts: the zero-copy way to give a container with a private ID
//! range image files it owns. The kernel allows idmapping only a filesystem
//! whose superblock our user namespace owns: not the node's ext4 under an
//! emptyDir, but a tmpfs mounted by a namespace we created.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult};

use super::child::{At, Failure, Sandbox};
use super::report::{Check, Status};
use super::scratch::Scratch;
use crate::mount_api;

/// The shift the trials apply: ID 0 seen through the idmapped mount as this.
const SHIFT: u32 = 1000;

/// A user namespace whose ID 0 is our `SHIFT`, held by an fd (the process
/// that created it is gone). Runs inside a probe's child, which must own it
/// for mount_setattr to accept it.
fn shifted_userns() -> Result<OwnedFd, Failure> {
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).at("pipe")?;
    let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC).at("pipe")?;
    // SAFETY: we are the doctor's single-threaded probe child.
    match unsafe { fork() }.at("fork the userns holder")? {
        ForkResult::Child => {
            drop((ready_r, done_w));
            let created = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = fs::File::from(ready_w).write_all(&[u8::from(created)]);
            // Wait until the parent has the namespace's fd (EOF), then go.
            let _ = fs::File::from(done_r).read(&mut [0u8; 1]);
            // SAFETY: ends the holder without running inherited destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop((ready_w, done_r));
            let mut created = [0u8; 1];
            let read = fs::File::from(ready_r).read(&mut created);
            let ns = match read {
                Ok(1) if created[0] == 1 => (|| {
                    let map = format!("0 {SHIFT} {SHIFT}\n");
                    fs::write(format!("/proc/{child}/uid_map"), &map).at("write uid_map")?;
                    fs::write(format!("/proc/{child}/gid_map"), &map).at("write gid_map")?;
                    fs::File::open(format!("/proc/{child}/ns/user"))
                        .map(OwnedFd::from)
                        .at("open the userns")
                })(),
                _ => Err(Failure::other(
                    "create the idmap's user namespace",
                    "unshare failed",
                )),
            };
            drop(done_w);
            let _ = waitpid(child, None);
            ns
        }
    }
}

/// Idmaps a detached clone of `path`, and attaches it at `target` if given.
fn idmap(path: &Path, target: Option<&Path>) -> Result<(), Failure> {
    let userns = shifted_userns()?;
    let tree = mount_api::clone_tree(path).at("open_tree(OPEN_TREE_CLONE)")?;
    mount_api::set_idmap(tree.as_fd(), userns.as_fd()).at("mount_setattr(MOUNT_ATTR_IDMAP)")?;
    if let Some(target) = target {
        mount_api::attach(tree.as_fd(), target).at("move_mount")?;
    }
    Ok(())
}

/// `idmap.data_root`: can a bind of the data root be idmapped?
pub fn check_data_root(scratch: &Result<Scratch, Failure>) -> Check {
    let outcome = scratch.as_ref().map_err(Clone::clone).and_then(|s| {
        let dir = s.path().to_owned();
        Sandbox::user().mount().run(move || idmap(&dir, None))
    });
    let (status, detail) = match outcome {
        Ok(()) => (
            Status::Ok,
            "a bind of the data root can be idmapped".to_owned(),
        ),
        Err(failure) if failure.is(nix::errno::Errno::EPERM) => (
            Status::Missing,
            format!(
                "{failure}: the data root's filesystem belongs to the node, not to our \
                 user namespace (expected on an emptyDir or PVC)"
            ),
        ),
        Err(failure) => (Status::Missing, failure.to_string()),
    };
    Check::new(
        "idmap.data_root",
        "idmapped mounts of the data root",
        status,
        detail,
    )
    .blocks(
        "zero-copy private ID ranges for layers on the data root; hutch idmaps \
             layers in an engine-owned tmpfs, or shifts them by FUSE or copies",
    )
    .fix(
        "# none needed from the pod: node filesystems cannot be idmapped from inside \
             a user namespace; this is expected",
    )
}

/// `idmap.tmpfs`: a tmpfs mounted in a child namespace, idmapped, and used as
/// an overlay lower layer under an upper dir on the data root.
pub fn check_tmpfs(scratch: &Result<Scratch, Failure>) -> Check {
    let outcome = scratch
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|s| s.dir("idmap-tmpfs"))
        .and_then(|dir| tmpfs_trial(&dir));
    let (status, detail) = match outcome {
        Ok(Step::OverlayWorks) => (
            Status::Ok,
            format!(
                "an engine-owned tmpfs can be idmapped, and overlay over it shows its \
                 root's files as ID {SHIFT}"
            ),
        ),
        Ok(Step::IdmapOnly(failure)) => (
            Status::Degraded,
            format!("the tmpfs can be idmapped, but overlay over it fails: {failure}"),
        ),
        Err(failure) => (Status::Missing, failure.to_string()),
    };
    Check::new(
        "idmap.tmpfs",
        "idmapped tmpfs layers (engine-owned)",
        status,
        detail,
    )
    .blocks(
        "zero-copy private ID ranges: containers with their own ID range get shifted \
         copies of their layers (or FUSE shifting where /dev/fuse exists)",
    )
    .fix("node: kernel >= 6.3 (idmappable tmpfs)")
}

#[derive(serde::Serialize, serde::Deserialize)]
enum Step {
    OverlayWorks,
    IdmapOnly(Failure),
}

fn tmpfs_trial(dir: &Path) -> Result<Step, Failure> {
    for sub in ["tmpfs", "lower", "upper", "work", "merged"] {
        fs::create_dir_all(dir.join(sub)).at(&format!("create {sub}"))?;
    }
    let dir = dir.to_owned();
    Sandbox::user().mount().run(move || {
        nix::unistd::chdir(&dir).at("chdir")?;
        mount(
            Some("tmpfs"),
            "tmpfs",
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k,mode=0755"),
        )
        .at("mount tmpfs")?;
        fs::write("tmpfs/file", "layer").at("write into the tmpfs")?;
        idmap(Path::new("tmpfs"), Some(Path::new("lower")))?;
        let overlay = mount(
            Some("overlay"),
            "merged",
            Some("overlay"),
            MsFlags::empty(),
            Some("lowerdir=lower,upperdir=upper,workdir=work,userxattr"),
        )
        .at("mount overlay over the idmapped tmpfs");
        if let Err(failure) = overlay {
            return Ok(Step::IdmapOnly(failure));
        }
        let owner = fs::metadata("merged/file")
            .at("stat through the overlay")?
            .uid();
        if owner != SHIFT {
            return Ok(Step::IdmapOnly(Failure::other(
                "stat through the overlay",
                format!("file shows as owned by {owner}, not {SHIFT}"),
            )));
        }
        Ok(Step::OverlayWorks)
    })
}
