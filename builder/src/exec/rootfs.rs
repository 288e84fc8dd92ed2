//! Whole root filesystems in and out of the store: `docker export` (a
//! container's merged filesystem as one tar) and `docker import` (a tar as
//! the single layer of a new image, with `--change` instructions and a
//! message).

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use hutch_images::{BuiltLayer, Digest, ImageStore, Reference};
use serde_json::json;

use super::commit::apply_changes;
use super::image::ImageState;
use super::tarball;
use super::upperdiff;
use super::view::MergedView;
use super::BuildError;
use super::BuildTmp;

/// A container's merged filesystem (its image's layers under its overlay
/// upper directory), ready to be written as a tar. The upper directory joins
/// a read-only overlay as its topmost lower layer, so the kernel applies its
/// whiteouts and opaque directories, whether the container runs or not.
pub struct Export {
    /// Unmounted when the export is dropped.
    view: ContainerView,
    entries: Vec<tarball::Entry>,
    /// The empty directory an image's export stands in for an upper one.
    _empty: Option<BuildTmp>,
}

impl Export {
    /// Mounts the view (in an entry of `tmp`, `builder/tmp`) and lists it, so that errors come
    /// before the first byte is sent.
    pub fn prepare(
        store: &ImageStore,
        image_id: &str,
        upper: &Path,
        tmp: &Path,
    ) -> Result<Export, BuildError> {
        let view = ContainerView::mount(store, image_id, upper, None, tmp)?;
        // A merged view shows no whiteouts, so this is a plain walk (with
        // hardlinks kept); sockets and device nodes are left out, as layers
        // cannot carry them here.
        let entries = upperdiff::upper_entries(view.path(), &Default::default())
            .map_err(|e| BuildError::io("reading the container's filesystem", e))?;
        Ok(Export {
            view,
            entries,
            _empty: None,
        })
    }

    /// An image's filesystem (its layers merged), as a build's `--output
    /// type=tar|local` exports it.
    pub fn prepare_image(
        store: &ImageStore,
        image_id: &str,
        tmp: &Path,
    ) -> Result<Export, BuildError> {
        let empty = BuildTmp::create_in(tmp, "image-export")
            .map_err(|e| BuildError::io("creating the export directory", e))?;
        // A directory of its own: the entry holds its lock file.
        let upper = empty.path().join("upper");
        std::fs::create_dir(&upper)
            .map_err(|e| BuildError::io("creating the export directory", e))?;
        let mut export = Export::prepare(store, image_id, &upper, tmp)?;
        export._empty = Some(empty);
        Ok(export)
    }

    /// Writes the tar into `out`.
    pub fn write_to<W: Write>(self, out: W) -> io::Result<W> {
        let written = tarball::write_tar(out, self.entries, None);
        drop(self.view);
        written
    }

    /// Writes the files of images `ids` as one tar into `out`: one image's
    /// at the root; several (a build's platforms) each under a directory
    /// named for its platform, as BuildKit's platform split writes them
    /// (`linux_amd64/...`, `linux_arm_v7/...`).
    pub fn write_images<W: Write>(
        store: &ImageStore,
        ids: &[String],
        tmp: &Path,
        out: W,
    ) -> Result<W, BuildError> {
        let written = if let [id] = ids {
            Export::prepare_image(store, id, tmp)?.write_to(out)
        } else {
            let mut exports = Vec::with_capacity(ids.len());
            for id in ids {
                let record = store.inspect(id)?.record;
                let dir = [Some(record.os), Some(record.architecture), record.variant]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("_");
                exports.push((dir, Export::prepare_image(store, id, tmp)?));
            }
            Export::write_split(exports, out)
        };
        written.map_err(|e| BuildError::io("writing the image's files", e))
    }

    /// Writes several exports as one tar, each under a directory of its
    /// own (`dir/`, then its entries below it; hardlinks follow).
    fn write_split<W: Write>(exports: Vec<(String, Export)>, out: W) -> io::Result<W> {
        let mut views = Vec::with_capacity(exports.len());
        let mut entries = Vec::new();
        for (dir, export) in exports {
            let dir = dir.trim_matches('/').to_owned();
            entries.push(tarball::Entry::dir(&dir, 0o755, 0, 0, 0));
            entries.extend(export.entries.into_iter().map(|mut e| {
                e.path = format!("{dir}/{}", e.path);
                if let tarball::Body::Link(target) = &mut e.body {
                    *target = format!("{dir}/{target}");
                }
                e
            }));
            views.push((export.view, export._empty));
        }
        let written = tarball::write_tar(out, entries, None);
        drop(views);
        written
    }
}

/// A container's filesystem (not running) mounted in the engine's mount
/// namespace, unmounted when dropped, for `docker cp`: read-only, with its
/// upper directory as the topmost lower layer, or writable through its own
/// upper and work directories as when it runs. (Its volumes are not in it.)
pub struct ContainerView {
    /// Unmounted before its directory goes (fields drop in order).
    view: MergedView,
    /// A locked entry of `builder/tmp` (see `buildtmp`), so a daemon that
    /// dies with the view mounted leaves an entry the next build sweeps.
    _tmp: BuildTmp,
}

impl ContainerView {
    /// `work`: mount writable through `upper` and `work`; `None`: read-only.
    pub fn mount(
        store: &ImageStore,
        image_id: &str,
        upper: &Path,
        work: Option<&Path>,
        tmp: &Path,
    ) -> Result<ContainerView, BuildError> {
        let img = ImageState::load(store, image_id)?;
        let scratch = BuildTmp::create_in(tmp, "view")
            .map_err(|e| BuildError::io("creating the view directory", e))?;
        let layers = img.lower_dirs(store);
        let view = match work {
            Some(work) => MergedView::mount_writable(&layers, upper, work, scratch.path()),
            None => {
                let mut lower: Vec<PathBuf> = vec![upper.to_path_buf()];
                lower.extend(layers);
                MergedView::mount(&lower, scratch.path())
            }
        };
        let view = view.map_err(|e| BuildError::io("mounting the container's filesystem", e))?;
        Ok(ContainerView {
            view,
            _tmp: scratch,
        })
    }

    /// The container's `/`.
    pub fn path(&self) -> &Path {
        self.view.path()
    }
}

/// One `docker import`.
#[derive(Debug, Clone, Default)]
pub struct ImportRequest {
    /// `--change` instructions (`CMD ["x"]`, `ENV A=b`, ...).
    pub changes: Vec<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// Where the tar came from, for the default comment (`-`, a URL).
    pub source: String,
    pub os: String,
    pub architecture: String,
    pub names: Vec<Reference>,
}

/// Gzip's magic number: `docker import` takes compressed tars too.
const GZIP: [u8; 2] = [0x1f, 0x8b];

/// Stores the tar read from `body` (plain or gzip) as a one-layer image;
/// returns its ID. The layer goes through the store's unpacker, which
/// refuses entries that leave the root and skips device nodes.
pub fn import<R: Read>(
    store: &ImageStore,
    body: R,
    req: &ImportRequest,
) -> Result<Digest, BuildError> {
    let mut img = ImageState::scratch(&req.os, &req.architecture, None);
    // The changes first: a bad one fails before the body is read.
    apply_changes(&mut img, &req.changes)?;
    let mut body = io::BufReader::new(body);
    let head =
        io::BufRead::fill_buf(&mut body).map_err(|e| BuildError::io("reading the archive", e))?;
    if head.is_empty() {
        return Err(BuildError::Invalid("the archive to import is empty".into()));
    }
    let gzipped = head.starts_with(&GZIP);
    let mut w = store.layer_writer()?;
    let copied = if gzipped {
        io::copy(&mut flate2::read::MultiGzDecoder::new(body), &mut w)
    } else {
        io::copy(&mut body, &mut w)
    };
    copied.map_err(|e| BuildError::io("reading the archive", e))?;
    let layer = w
        .finish()
        .map_err(|e| BuildError::Image(hutch_images::ImageError::Store(e)))?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    img.push_history(&created, "", Some(&layer.diff_id));
    let comment = req
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("Imported from {}", req.source));
    if let Some(serde_json::Value::Array(history)) = img.config.get_mut("history") {
        if let Some(serde_json::Value::Object(last)) = history.last_mut() {
            last.remove("created_by");
            last.insert("comment".into(), json!(comment));
        }
    }
    if let Some(m) = req.message.as_ref().filter(|m| !m.is_empty()) {
        img.config["comment"] = json!(m);
    }
    img.config["created"] = json!(created);
    let bytes = serde_json::to_vec(&img.config)
        .map_err(|e| BuildError::Invalid(format!("encoding the image config: {e}")))?;
    Ok(store.add_built(
        &bytes,
        vec![BuiltLayer::New(layer)],
        req.names.clone(),
        false,
    )?)
}
