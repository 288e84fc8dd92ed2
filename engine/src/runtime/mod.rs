//! The container runtime: builds a container's process in child namespaces
//! of the engine (user, mount, PID, IPC, UTS, cgroup, network), with an
//! overlay rootfs, Docker's /proc, /dev and /sys, capabilities and user.
//!
//! The work is split by process: [`container`] is the engine's API (safe in
//! the multi-threaded daemon), [`helper`] runs in the single-threaded
//! runtime helper process, and `init` runs in the container's init between
//! clone and execve.

pub mod binfmt;
pub mod caps;
pub(crate) mod channel;
mod clone;
pub mod container;
pub(crate) mod dev;
mod donor;
pub mod enter;
pub(crate) mod error;
pub(crate) mod exec;
pub mod helper;
pub mod idmap;
pub mod idmapped;
pub mod image_ids;
mod init;
mod maps;
mod mounts;
pub mod passwd;
mod proc;
mod rootfs;
mod safe_path;
pub mod seccomp;
pub mod spec;
pub mod stdio;
pub mod sysctl;
mod tiny_init;
pub(crate) mod user;
mod user_mounts;

pub use container::{Container, Output, Runtime, RuntimeError};
pub use idmap::{IdAllocator, IdMap, IdMapError, IdMapLine, PrivateRequest};
pub use proc::probe_fresh_sysfs;
pub use seccomp::Seccomp;
pub use spec::{
    BindMount, ContainerSpec, MountKind, MountSpec, NetworkMode, ProcMode, ProcessSpec, RootfsSpec,
    SubmountsReadonly, User,
};
pub use stdio::InitStdio;
