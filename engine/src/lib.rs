//! hutch's engine: namespaces, ID ranges, the container process, supervision,
//! networks, volumes and container state — and the environment probes behind
//! `hutch doctor`. It knows nothing of HTTP or Dockerfiles.

pub mod bootstrap;
pub mod cgroups;
pub mod containers;
pub mod doctor;
pub mod du;
pub mod emulation;
pub(crate) mod mount_api;
pub mod mountinfo;
pub mod network;
pub mod procs;
pub mod runtime;
pub mod supervisor;
pub mod volumes;
