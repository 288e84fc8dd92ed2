//! The file exporters of a build: `--output type=tar,dest=F` (the image's
//! filesystem as one tar, its bytes streamed to the client's `FileSend`)
//! and `--output type=local,dest=DIR` (the same files sent with fsutil's
//! DiffCopy, hutch the sender: every entry listed, then file contents as
//! the client asks for them by index). The filesystem is the image's layers
//! merged by a read-only overlay (`rootfs::Export`, as `docker export`),
//! written to a tar in the build's scratch space first, so both exporters
//! read from one file and the overlay is gone before anything is sent.
//! The archive exporters (`type=oci`, `type=docker`) write the image as
//! `save` does to a scratch file and send it as `type=tar` sends its tar.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use hutch_builder::exec::cache_store::CacheStore;
use hutch_builder::exec::rootfs::Export;
use hutch_builder::exec::BuildTmp;
use hutch_images::archive::ArchiveFormat;
use hutch_images::oci::Descriptor;
use hutch_images::{Digest, Reference};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use super::super::Daemon;
use super::filemode;
use super::proto::filesync::file_send_client::FileSendClient;
use super::proto::filesync::BytesMessage;
use super::proto::fsutil_types::{packet::PacketType, Packet, Stat};
use super::sessions::{self, Session};
use super::status::Vertex;

const FILE_SEND: &str = "/moby.filesync.v1.FileSend/DiffCopy";
/// Which of the client's exporters a transfer is for.
const EXPORTER_ID: &str = "buildkit-attachable-exporter-id";
/// Bytes per message: fsutil's own chunk size for file data.
const CHUNK: usize = 32 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tar,
    Local,
}

/// A file exporter, by its place among the solve's exporters (the id the
/// client knows its destination by).
pub struct FileExport {
    pub kind: Kind,
    pub index: usize,
}

/// An image archive exporter: the archive's format, the names it gives
/// the image, the exporter's place among the solve's exporters, and
/// whether the client gets a tar (or, `tar=false`, the blobs into its
/// directory's content store).
pub struct ArchiveExport {
    pub format: ArchiveFormat,
    pub names: Vec<Reference>,
    pub index: usize,
    pub tar: bool,
}

/// Exports image `image_id` to the client as an image archive (a build
/// for several platforms: their images, `platforms`, as one OCI index).
/// With `tar=false`, returns the manifest's (or index's) descriptor,
/// which the client names in its directory's `index.json`.
pub async fn export_archive(
    daemon: &Arc<Daemon>,
    vertex: &Vertex,
    session: &Session,
    image_id: &str,
    platforms: &[Digest],
    export: &ArchiveExport,
) -> Result<Option<Descriptor>, Status> {
    let layout = if export.tar {
        receives_files(session)?;
        None
    } else {
        Some(super::content::export_store(session).map_err(Status::failed_precondition)?)
    };
    let task = vertex.status_start("exporting manifest and layers");
    let store = daemon.images.clone();
    let data_root = daemon.data_root.clone();
    let (image, names, format) = (image_id.to_owned(), export.names.clone(), export.format);
    let platforms = platforms.to_vec();
    let (scratch, tar) = tokio::task::spawn_blocking(move || {
        let scratch = BuildTmp::create(&data_root, "output").map_err(|e| e.to_string())?;
        let path = scratch.path().join("image.tar");
        let file =
            std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| e.to_string())?);
        let saved = if platforms.len() > 1 {
            store.save_platforms(&platforms, &names, file)
        } else {
            store.save_image(&image, &names, format, file)
        };
        saved.map_err(|e| e.to_string())?;
        Ok::<_, String>((scratch, path))
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| Status::internal(format!("writing the image archive: {e}")))?;
    task.done();
    let Some(layout) = layout else {
        let task = vertex.status_start("sending tarball");
        let sent = send_tar(session, &tar, export.index).await;
        drop(scratch);
        sent?;
        task.done();
        return Ok(None);
    };
    let task = vertex.status_start("sending image layout");
    let sent = tokio::task::spawn_blocking(move || send_layout(&layout, &tar))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    drop(scratch);
    let manifest = sent.map_err(|e| Status::unknown(format!("sending the image layout: {e}")))?;
    task.done();
    Ok(Some(manifest))
}

/// Writes the archive's blobs into `store` and returns the manifest its
/// `index.json` names.
fn send_layout(store: &dyn CacheStore, tar: &Path) -> Result<Descriptor, String> {
    let file = std::fs::File::open(tar).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(file);
    let mut manifest = None;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let path = path.to_string_lossy();
        if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            let desc = Descriptor {
                media_type: "application/octet-stream".to_owned(),
                digest: Digest::from_hex(hex).map_err(|e| e.to_string())?,
                size: entry.size(),
                annotations: Default::default(),
                platform: None,
            };
            store.put(&desc, &mut entry)?;
        } else if path == "index.json" {
            let index: hutch_images::oci::Index =
                serde_json::from_reader(&mut entry).map_err(|e| e.to_string())?;
            manifest = index.manifests.into_iter().next();
        }
    }
    let mut manifest = manifest.ok_or("the archive has no manifest")?;
    manifest.annotations.clear();
    Ok(manifest)
}

fn receives_files(session: &Session) -> Result<(), Status> {
    if session.serves(FILE_SEND) {
        Ok(())
    } else {
        Err(Status::failed_precondition(
            "the client's session does not receive exported files",
        ))
    }
}

/// Exports image `image_id` to the client as `export` asks; a build for
/// several platforms (`platforms`, their images) as a directory per
/// platform, as BuildKit splits them.
pub async fn export(
    daemon: &Arc<Daemon>,
    vertex: &Vertex,
    session: &Session,
    image_id: &str,
    platforms: &[Digest],
    export: &FileExport,
) -> Result<(), Status> {
    receives_files(session)?;
    let task = vertex.status_start("copying files");
    let images = if platforms.len() > 1 {
        platforms.iter().map(Digest::to_string).collect()
    } else {
        vec![image_id.to_owned()]
    };
    let (scratch, tar) = write_tar(daemon, images).await?;
    let sent = match export.kind {
        Kind::Tar => send_tar(session, &tar, export.index).await,
        Kind::Local => send_local(session, &tar, export.index).await,
    };
    drop(scratch);
    sent?;
    task.done();
    Ok(())
}

/// The image's filesystem as a tar file in a scratch entry of
/// `builder/tmp` (removed with the returned guard); several images (a
/// build's platforms) each under a directory named for its platform.
async fn write_tar(
    daemon: &Arc<Daemon>,
    images: Vec<String>,
) -> Result<(BuildTmp, PathBuf), Status> {
    let store = daemon.images.clone();
    let data_root = daemon.data_root.clone();
    tokio::task::spawn_blocking(move || {
        let scratch = BuildTmp::create(&data_root, "output").map_err(|e| e.to_string())?;
        let path = scratch.path().join("rootfs.tar");
        let file = std::fs::File::create(&path).map_err(|e| e.to_string())?;
        Export::write_images(
            &store,
            &images,
            &data_root.join("builder/tmp"),
            std::io::BufWriter::new(file),
        )
        .map_err(|e| e.to_string())?;
        Ok::<_, String>((scratch, path))
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?
    .map_err(|e| Status::internal(format!("writing the image's files: {e}")))
}

fn with_exporter_id<T>(message: T, index: usize) -> Result<Request<T>, Status> {
    let mut request = Request::new(message);
    let id: MetadataValue<_> = index
        .to_string()
        .parse()
        .map_err(|_| Status::internal("an exporter id"))?;
    request.metadata_mut().insert(EXPORTER_ID, id);
    Ok(request)
}

/// `type=tar`: the file's bytes, in order.
async fn send_tar(session: &Session, tar: &Path, index: usize) -> Result<(), Status> {
    let file = tokio::fs::File::open(tar)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 8 * CHUNK];
        match file.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((BytesMessage { data: buf }, file))
            }
        }
    });
    let mut client = FileSendClient::with_origin(session.channel.clone(), sessions::origin());
    let mut answers = client
        .diff_copy(with_exporter_id(chunks, index)?)
        .await?
        .into_inner();
    while let Some(answer) = answers.next().await {
        answer?;
    }
    Ok(())
}

/// One entry to send: its stat and where its data is in the tar.
struct Listed {
    stat: Stat,
    data: Option<(u64, u64)>,
}

/// `type=local`: fsutil's DiffCopy with hutch as the sender.
async fn send_local(session: &Session, tar: &Path, index: usize) -> Result<(), Status> {
    let path = tar.to_path_buf();
    let listed = tokio::task::spawn_blocking(move || list(&path))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("reading the image's files: {e}")))?;
    let (out_tx, out_rx) = mpsc::channel::<Packet>(16);
    let outgoing =
        futures_util::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
        );
    let mut grpc = tonic::client::Grpc::with_origin(session.channel.clone(), sessions::origin());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("the client's session: {e}")))?;
    let codec = tonic_prost::ProstCodec::<Packet, Packet>::default();
    // The listing goes out while the call starts: the client answers
    // (and so sends its response headers) only once it has it.
    let listed = Arc::new(listed);
    let listing = {
        let (listed, tx) = (listed.clone(), out_tx.clone());
        tokio::spawn(async move {
            let stats = listed.iter().map(|entry| Some(entry.stat.clone()));
            for stat in stats.chain(std::iter::once(None)) {
                if tx
                    .send(packet(PacketType::PacketStat, 0, Vec::new(), stat))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        })
    };
    let mut incoming = grpc
        .streaming(
            with_exporter_id(outgoing, index)?,
            hyper::http::uri::PathAndQuery::from_static(FILE_SEND),
            codec,
        )
        .await?
        .into_inner();
    let send = |p: Packet| {
        let tx = out_tx.clone();
        async move {
            tx.send(p)
                .await
                .map_err(|_| Status::cancelled("the client stopped receiving"))
        }
    };
    listing.await.map_err(|e| Status::internal(e.to_string()))?;
    let file = std::fs::File::open(tar).map_err(|e| Status::internal(e.to_string()))?;
    while let Some(p) = incoming.next().await {
        let p = p?;
        match PacketType::try_from(p.r#type) {
            Ok(PacketType::PacketReq) => {
                let wanted = usize::try_from(p.id)
                    .ok()
                    .and_then(|i| listed.get(i))
                    .and_then(|l| l.data)
                    .ok_or_else(|| Status::invalid_argument(format!("invalid file id {}", p.id)))?;
                let (mut at, mut left) = wanted;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, at)
                        .map_err(|e| Status::internal(e.to_string()))?;
                    send(packet(PacketType::PacketData, p.id, buf, None)).await?;
                    at += n as u64;
                    left -= n as u64;
                }
                send(packet(PacketType::PacketData, p.id, Vec::new(), None)).await?;
            }
            Ok(PacketType::PacketFin) => {
                send(packet(PacketType::PacketFin, 0, Vec::new(), None)).await?;
                break;
            }
            Ok(PacketType::PacketErr) => {
                return Err(Status::aborted(format!(
                    "the client could not write the files: {}",
                    String::from_utf8_lossy(&p.data)
                )))
            }
            _ => {
                return Err(Status::invalid_argument(format!(
                    "unexpected packet type {} from the client",
                    p.r#type
                )))
            }
        }
    }
    drop(out_tx);
    while let Some(p) = incoming.next().await {
        p?;
    }
    Ok(())
}

fn packet(kind: PacketType, id: u32, data: Vec<u8>, stat: Option<Stat>) -> Packet {
    Packet {
        r#type: kind as i32,
        stat,
        id,
        data,
    }
}

/// The tar's entries in fsutil's walk order (each directory before what is
/// in it, names sorted), with where each regular file's data is. Hardlinks
/// become files of their own (their target may sort after them, which
/// fsutil's receiver refuses); devices, fifos and sockets are left out.
fn list(tar: &Path) -> std::io::Result<Vec<Listed>> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar)?);
    let mut entries: Vec<Listed> = Vec::new();
    let mut files: HashMap<String, (u64, u64)> = HashMap::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header().clone();
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if path.is_empty() || path == "." {
            continue;
        }
        let mode = header.mode()?;
        let perm = filemode::go_permissions(mode);
        let mut stat = Stat {
            path: path.clone(),
            mode: perm,
            mod_time: i64::try_from(header.mtime()?)
                .unwrap_or(0)
                .saturating_mul(1_000_000_000),
            ..Stat::default()
        };
        let data = match header.entry_type() {
            tar::EntryType::Directory => {
                stat.mode |= filemode::DIR;
                None
            }
            tar::EntryType::Symlink => {
                stat.mode |= filemode::SYMLINK;
                stat.linkname = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                None
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let place = (entry.raw_file_position(), entry.size());
                files.insert(path.clone(), place);
                stat.size = i64::try_from(place.1).unwrap_or(i64::MAX);
                Some(place)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()?
                    .map(|l| l.to_string_lossy().trim_start_matches("./").to_owned())
                    .unwrap_or_default();
                let Some(place) = files.get(&target).copied() else {
                    continue;
                };
                stat.size = i64::try_from(place.1).unwrap_or(i64::MAX);
                Some(place)
            }
            _ => continue,
        };
        // Drain the entry so the archive's reader moves on.
        std::io::copy(&mut entry.by_ref().take(0), &mut std::io::sink())?;
        entries.push(Listed { stat, data });
    }
    entries.sort_by(|a, b| a.stat.path.split('/').cmp(b.stat.path.split('/')));
    Ok(entries)
}
