//! podsim: simulates a Kubernetes `hostUsers: false` pod (containerd 2.x with
//! runc) on a plain Linux host, so hutch's tests run where hutch will live.
//!
//! podsim runs as host root and stays single-threaded: it forks processes
//! that change namespaces and credentials, which is only sound without
//! threads. See `podsim --help` and the `hutch_tests::podsim` client.

mod caps;
mod cgroups;
mod cli;
mod create;
mod exec;
mod idrange;
mod init;
mod layout;
mod mounts;
mod net;
mod podns;
mod selfcheck;
mod shim;
mod sidecar;
mod spec;
mod sync;
mod sys;
mod teardown;

use clap::Parser;

use crate::cli::{Cli, Verb};

fn main() {
    let cli = Cli::parse();
    let result = match cli.verb {
        Verb::Run { pod, cmd } => shim::run(&pod, &cmd),
        Verb::Start { pod, state } => shim::start(&pod, &state),
        Verb::Exec {
            state,
            self_exe,
            cmd,
        } => exec::run(&state, self_exe, &cmd),
        Verb::Sidecar { state, cmd } => sidecar::run(&state, &cmd).map(|never| match never {}),
        Verb::SelfCheck { pod } => selfcheck::run(&pod),
        Verb::PodInit => init::run().map(|()| 0),
        Verb::CheckInside { expect } => selfcheck::inside::run(&expect),
        Verb::SidecarProbe => selfcheck::probe::run().map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("podsim: {err:#}");
            std::process::exit(125);
        }
    }
}
