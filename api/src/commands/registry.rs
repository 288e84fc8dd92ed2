//! The daemonless `pull` and `push` commands. They talk to registries
//! directly and write the image store under the data root, whose file locks
//! keep them consistent with a daemon using the same data root.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use hutch_images::registry::{AuthConfig, PullStatus, RegistrySettings};
use hutch_images::{ImageStore, NoProgress, ProgressSink, Reference, RegistryRequest};

use super::images::open_store;
use super::progress::{Operation, Renderer};
use crate::cli::{GlobalOptions, PullArgs, PushArgs};

/// Registry settings and credentials from the environment:
/// `HUTCH_REGISTRY_AUTH` is an `X-Registry-Auth` value (base64url JSON of
/// username/password/identitytoken/registrytoken), as the API receives it;
/// without it the user's Docker config.json is used.
fn registry_request() -> anyhow::Result<RegistryRequest> {
    let auth = match std::env::var("HUTCH_REGISTRY_AUTH") {
        Ok(value) if !value.trim().is_empty() => {
            Some(AuthConfig::from_header(&value).context("HUTCH_REGISTRY_AUTH")?)
        }
        _ => None,
    };
    Ok(RegistryRequest {
        settings: RegistrySettings::from_env(),
        auth,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn pull(global: &GlobalOptions, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let request = registry_request()?;
    let runtime = runtime()?;
    if args.all_tags {
        return pull_all_tags(&store, &request, &runtime, args);
    }
    let reference = Reference::parse(&args.image)?;
    if !args.quiet {
        let given = Reference::parse_normalized(&args.image)?;
        if given.tag().is_none() && given.digest().is_none() {
            println!("Using default tag: latest");
        }
    }
    let status = pull_one(&store, &request, &runtime, &reference, args)?;
    if !args.quiet {
        println!("Status: {} {}", status.status_text(), reference.familiar());
    }
    println!("{reference}");
    Ok(ExitCode::SUCCESS)
}

/// `pull --all-tags`: every tag the registry lists, one after the other,
/// as Docker's CLI shows it; the first tag that fails ends the command.
fn pull_all_tags(
    store: &ImageStore,
    request: &RegistryRequest,
    runtime: &tokio::runtime::Runtime,
    args: &PullArgs,
) -> anyhow::Result<ExitCode> {
    let repository = Reference::parse_normalized(&args.image)?;
    if repository.tag().is_some() || repository.digest().is_some() {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let tags = runtime.block_on(store.tags(&repository, request))?;
    let mut downloaded = false;
    for tag in tags {
        let reference = repository.with_tag(&tag)?;
        downloaded |=
            pull_one(store, request, runtime, &reference, args)? == PullStatus::Downloaded;
    }
    if !args.quiet {
        let status = if downloaded {
            PullStatus::Downloaded
        } else {
            PullStatus::UpToDate
        };
        println!("Status: {} {}", status.status_text(), repository.familiar());
    }
    println!("{repository}");
    Ok(ExitCode::SUCCESS)
}

/// Pulls one tag or digest with its progress: `TAG: Pulling from ...`, the
/// layers, `Digest: ...`.
fn pull_one(
    store: &ImageStore,
    request: &RegistryRequest,
    runtime: &tokio::runtime::Runtime,
    reference: &Reference,
    args: &PullArgs,
) -> anyhow::Result<PullStatus> {
    let renderer = Arc::new(Renderer::new(Operation::Pull));
    let sink: Arc<dyn ProgressSink> = if args.quiet {
        Arc::new(NoProgress)
    } else {
        renderer.clone()
    };
    if !args.quiet {
        let what = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => String::new(),
        };
        renderer.line(&format!("{what}: Pulling from {}", reference.path()));
    }
    let pulled = runtime.block_on(store.pull(
        &reference.to_string(),
        args.platform.as_deref(),
        request,
        sink,
    ));
    renderer.finish();
    let pulled = pulled?;
    if !args.quiet {
        renderer.line(&format!("Digest: {}", pulled.digest));
    }
    Ok(pulled.status)
}

pub fn push(global: &GlobalOptions, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let request = registry_request()?;
    let reference = Reference::parse(&args.image)?;
    let renderer = Arc::new(Renderer::new(Operation::Push));
    let sink: Arc<dyn ProgressSink> = if args.quiet {
        Arc::new(NoProgress)
    } else {
        renderer.clone()
    };
    if !args.quiet {
        renderer.line(&format!(
            "The push refers to repository [{}]",
            reference.repository().familiar_name()
        ));
    }
    let pushed = runtime()?.block_on(store.push(&args.image, &request, sink));
    renderer.finish();
    let pushed = pushed?;
    if args.quiet {
        println!("{}", reference.familiar());
    } else {
        renderer.line(&format!(
            "{}: digest: {} size: {}",
            reference.tag().unwrap_or("latest"),
            pushed.digest,
            pushed.size
        ));
    }
    Ok(ExitCode::SUCCESS)
}
