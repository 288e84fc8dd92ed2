//! The per-container supervisor: a small single-threaded process (the
//! hidden `hutch __supervise` mode) that owns one container's process, its
//! stdio, pty, logs, exit status, restart policy and healthchecks, and
//! serves attach, exec, stop and kill over a unix socket in the
//! container's directory. It lives in its own session, reparented away
//! from the daemon, so containers keep running and logging while the
//! daemon restarts or crashes.

mod clients;
mod core;
pub mod entry;
mod execs;
mod fdio;
pub mod health;
mod launch;
pub mod restart;
mod trim;
