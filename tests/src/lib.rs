//! Test harness for hutch: the pod simulator's client side, the offline test
//! images and the local registry fixture. The tests themselves live in
//! `tests/tests/`, one file per area.

pub mod network;
pub mod podsim;
pub mod registry;
pub mod runtime;
pub mod testimages;
pub mod workspace;
