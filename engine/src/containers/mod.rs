//! Containers as the daemon manages them: persistent records under the
//! data root, names, the typed [`Engine`] API, logs, and the protocol to
//! each container's supervisor (see [`crate::supervisor`]).

pub mod build;
pub mod client;
pub mod config;
pub(crate) mod copy_tree;
pub mod devices;
pub mod engine;
pub mod ids;
pub mod logfile;
pub mod logread;
pub mod mounts;
pub mod names;
pub mod networking;
mod orphan;
pub(crate) mod primes;
pub mod private_layers;
pub mod protocol;
pub mod sharing;
pub mod shifted_layers;
pub mod spare;
pub mod state;
pub mod store;
pub mod timefmt;
pub mod tmpfs_layers;

pub use engine::{
    AttachSpec, ContainerDetails, ContainerLogs, Created, Engine, EngineError, EngineEvent,
    EngineOptions, EventKind, EventSink, ExecDetails, ExecOptions, ExecStream, VolumeUsage,
    VolumesPruned, WaitCondition,
};
