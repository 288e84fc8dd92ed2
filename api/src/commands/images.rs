//! The daemonless image commands: `load`, `save`, `images`, `tag`, `rmi`.
//! They open the image store under the data root directly; its file locks
//! keep them consistent with a daemon using the same data root.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use hutch_images::store::Durability;
use hutch_images::{ImageStore, ImageSummary, ListFilters, Removed, UnpackLimits};

use super::humanize::{human_duration, human_size};
use crate::cli::{GlobalOptions, ImagesArgs, LoadArgs, RmiArgs, SaveArgs, TagArgs};
use crate::defaults;

pub(super) fn open_store(global: &GlobalOptions) -> anyhow::Result<ImageStore> {
    let root: PathBuf = global.data_root.clone().unwrap_or_else(defaults::data_root);
    open_store_at(&root)
}

/// The image store under `root`, with the layer limits from the environment.
pub fn open_store_at(root: &std::path::Path) -> anyhow::Result<ImageStore> {
    let store = ImageStore::open(root)
        .with_context(|| format!("opening the image store in {}", root.display()))?;
    Ok(store
        .with_limits(limits_from_env()?)
        .with_durability(durability_from_env()))
}

/// `HUTCH_STORE_SYNC=1` makes blobs and layers durable against machine
/// crashes before they appear (fsync/syncfs), at the cost of writing them
/// through to disk during the pull.
fn durability_from_env() -> Durability {
    match std::env::var("HUTCH_STORE_SYNC").as_deref().map(str::trim) {
        Ok("1" | "true" | "yes") => Durability::Full,
        _ => Durability::Relaxed,
    }
}

/// Decompression-bomb limits: `HUTCH_LAYER_MAX_SIZE` (bytes a layer may
/// expand to) and `HUTCH_LAYER_MAX_RATIO` (uncompressed:compressed).
fn limits_from_env() -> anyhow::Result<UnpackLimits> {
    let mut limits = UnpackLimits::default();
    let read = |name: &str| -> anyhow::Result<Option<u64>> {
        match std::env::var(name) {
            Ok(v) => v
                .trim()
                .parse()
                .map(Some)
                .with_context(|| format!("{name}={v:?} is not a whole number")),
            Err(_) => Ok(None),
        }
    };
    if let Some(size) = read("HUTCH_LAYER_MAX_SIZE")? {
        limits.max_uncompressed = size;
    }
    if let Some(ratio) = read("HUTCH_LAYER_MAX_RATIO")? {
        limits.max_ratio = ratio;
    }
    Ok(limits)
}

pub fn load(global: &GlobalOptions, args: &LoadArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let loaded = match &args.input {
        Some(path) if path.is_dir() => store.load_dir(path)?,
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            store.load(BufReader::with_capacity(1 << 20, file))?
        }
        None => {
            let stdin = io::stdin();
            if stdin.is_terminal() {
                bail!("requested load from stdin, but stdin is empty (use -i FILE or a pipe)");
            }
            store.load(BufReader::with_capacity(1 << 20, stdin.lock()))?
        }
    };
    let mut out = io::stdout().lock();
    for image in loaded {
        if image.names.is_empty() {
            writeln!(out, "Loaded image ID: {}", image.id)?;
        }
        for name in image.names {
            writeln!(out, "Loaded image: {}", name.familiar())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn save(global: &GlobalOptions, args: &SaveArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let names: Vec<&str> = args.images.iter().map(String::as_str).collect();
    match &args.output {
        Some(path) => {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            // Written beside the target and renamed, so a failed save leaves
            // no truncated archive behind.
            let tmp = tempfile::Builder::new()
                .prefix(".hutch-save-")
                .tempfile_in(dir)
                .with_context(|| format!("creating a file in {}", dir.display()))?;
            let mut writer = BufWriter::with_capacity(1 << 20, tmp);
            store.save(&names, &mut writer)?;
            let tmp = writer.into_inner().map_err(|e| e.into_error())?;
            tmp.persist(path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut writer = BufWriter::with_capacity(1 << 20, stdout.lock());
            store.save(&names, &mut writer)?;
            writer.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn images(global: &GlobalOptions, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let mut filters = ListFilters::parse(&args.filter)?;
    if let Some(reference) = &args.reference {
        filters.reference.push(reference.clone());
    }
    let list = store.list(&filters)?;
    let mut out = io::stdout().lock();
    let id_of = |s: &ImageSummary| {
        if args.no_trunc {
            s.id.to_string()
        } else {
            s.id.short().to_owned()
        }
    };
    if args.quiet {
        for summary in &list {
            writeln!(out, "{}", id_of(summary))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE"]);
    rows.push(header.iter().map(|s| s.to_string()).collect());
    for summary in &list {
        let created = match summary.created {
            Some(c) => format!("{} ago", human_duration(now.signed_duration_since(c))),
            None => "N/A".to_owned(),
        };
        let mut names: Vec<(String, String)> = summary
            .repo_tags
            .iter()
            .map(|t| (t.familiar_name(), t.tag().unwrap_or_default().to_owned()))
            .collect();
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            let mut row = vec![repo.clone(), tag];
            if args.digests {
                let digest = summary
                    .repo_digests
                    .iter()
                    .find(|d| d.familiar_name() == repo)
                    .and_then(|d| d.digest())
                    .map_or_else(|| "<none>".to_owned(), |d| d.to_string());
                row.push(digest);
            }
            row.extend([id_of(summary), created.clone(), human_size(summary.size)]);
            rows.push(row);
        }
    }
    write_table(&mut out, &rows)?;
    Ok(ExitCode::SUCCESS)
}

/// Columns padded to their widest cell plus three spaces, as docker's
/// tabwriter output.
fn write_table(out: &mut impl Write, rows: &[Vec<String>]) -> io::Result<()> {
    out.write_all(crate::columns::columns(rows, 3).as_bytes())
}

pub fn tag(global: &GlobalOptions, args: &TagArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    store.tag(&args.source, &args.target)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(global: &GlobalOptions, args: &RmiArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(global)?;
    let mut failed = false;
    let mut out = io::stdout().lock();
    for image in &args.images {
        match store.remove(image, args.force) {
            Ok(removed) => {
                for r in removed {
                    match r {
                        Removed::Untagged(name) => writeln!(out, "Untagged: {}", name.familiar())?,
                        Removed::Deleted(id) => writeln!(out, "Deleted: {id}")?,
                    }
                }
            }
            Err(err) => {
                failed = true;
                eprintln!("Error: {err}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
