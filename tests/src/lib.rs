//! Test harness for hutch: the pod simulator's client side, the offline test
//! images, the local registry fixture, and a hutch daemon in a pod with the
//! real clients that drive it. The tests themselves live in
//! `tests/tests/`, one file per area.

pub mod build_context;
pub mod daemon;
pub mod engine;
pub mod http_fixture;
pub mod loop_disk;
pub mod network;
pub mod podsim;
pub mod poll;
pub mod registry;
pub mod runtime;
pub mod testimages;
pub mod workspace;
