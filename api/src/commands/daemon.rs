//! `hutch daemon`: prepare the data root and serve the API.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{DaemonArgs, GlobalOptions};
use crate::defaults;
use crate::server::{self, ListenAddr};

pub fn run(global: &GlobalOptions, args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let data_root = global.data_root.clone().unwrap_or_else(defaults::data_root);
    std::fs::create_dir_all(&data_root)
        .with_context(|| format!("creating data root {}", data_root.display()))?;
    let addrs = if global.hosts.is_empty() {
        vec![ListenAddr::Unix(defaults::socket_path())]
    } else {
        global
            .hosts
            .iter()
            .map(|h| ListenAddr::parse(h))
            .collect::<Result<Vec<_>, _>>()?
    };
    let images = super::images::open_store_at(&data_root)?;
    let config = server::Config {
        addrs,
        socket_group: args.group.clone(),
        data_root,
        images,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(server::serve(config))?;
    Ok(ExitCode::SUCCESS)
}
