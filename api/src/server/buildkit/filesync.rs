//! Fetching a local source (the build context, the Dockerfile's directory)
//! from the client: fsutil's DiffCopy, with hutch as the receiver, on the
//! client's session. The sender lists every entry (`STAT` packets, ending
//! with an empty one), the receiver asks for file contents by the entry's
//! index (`REQ`), the sender answers `DATA` packets ending with an empty
//! one, and each side ends with `FIN`.
//!
//! The entries become a tar stream unpacked by the images crate's layer
//! unpacker, so a client's paths get the same kernel-enforced containment
//! (no `..`, no symlinked parents) as any layer or `POST /build` context.
//! The sender answers up to four requests at once and interleaves their
//! data, so files are asked for in batches of at most 4 MiB, held until the
//! batch is complete, then written in listing order; a larger file is
//! asked for alone and streamed through.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use hutch_images::unpack::{unpack_layer, UnpackLimits};
use tokio::sync::mpsc;
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

use super::filemode;
use super::proto::filesync::file_sync_client::FileSyncClient;
use super::proto::fsutil_types::{packet::PacketType, Packet, Stat};
use super::sessions::{self, Session};
use super::status::Vertex;

pub const DIFF_COPY: &str = "/moby.filesync.v1.FileSync/DiffCopy";
/// Bytes of file data held at once while a batch of files arrives.
const BATCH_BYTES: i64 = 4 << 20;
/// Most entries a source may list (the listing is held in memory).
const MAX_ENTRIES: usize = 1_000_000;

/// What to fetch: a directory the client exposes, filtered on its side.
pub struct Source<'a> {
    /// The local's name (`context`, `dockerfile`).
    pub name: &'a str,
    pub include: &'a [String],
    pub exclude: &'a [String],
    /// Only these paths (and the directories leading to them).
    pub follow: &'a [String],
}

/// Fetches `source` into the empty directory `dest`; returns the bytes
/// transferred.
pub async fn fetch(
    session: &Session,
    source: Source<'_>,
    dest: &Path,
    progress: &Vertex,
) -> Result<u64, Status> {
    if !session.serves(DIFF_COPY) {
        return Err(Status::failed_precondition(
            "the client's session does not serve local files (fsutil DiffCopy)",
        ));
    }
    let (out_tx, out_rx) = mpsc::channel::<Packet>(16);
    let outgoing =
        futures_util::stream::unfold(
            out_rx,
            |mut rx| async move { rx.recv().await.map(|p| (p, rx)) },
        );
    let mut request = Request::new(outgoing);
    let md = request.metadata_mut();
    insert(md, "dir-name", &[source.name.to_owned()])?;
    insert(md, "include-patterns", source.include)?;
    insert(md, "exclude-patterns", source.exclude)?;
    insert(md, "followpaths", source.follow)?;
    let mut client = FileSyncClient::with_origin(session.channel.clone(), sessions::origin());
    let incoming = client.diff_copy(request).await?.into_inner();

    let (tar_tx, tar_rx) = mpsc::channel::<TarEvent>(16);
    let dest = dest.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || write_tree(tar_rx, &dest));
    let received = receive(source.name, incoming, &out_tx, &tar_tx, progress).await;
    drop(tar_tx);
    let written = writer
        .await
        .map_err(|e| Status::internal(format!("writing the files: {e}")))?;
    let bytes = received?;
    written.map_err(|e| Status::internal(format!("writing the files of {}: {e}", source.name)))?;
    Ok(bytes)
}

/// gRPC metadata values are ASCII: like fsutil, others are query-escaped
/// and flagged with `KEY-encoded: true`.
fn insert(
    md: &mut tonic::metadata::MetadataMap,
    key: &'static str,
    values: &[String],
) -> Result<(), Status> {
    let encode = values
        .iter()
        .any(|v| !v.is_ascii() || v.chars().any(char::is_control));
    for v in values {
        let text = if encode {
            form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
        } else {
            v.clone()
        };
        let value: MetadataValue<_> = text
            .parse()
            .map_err(|_| Status::invalid_argument(format!("{key} {v:?} cannot be sent")))?;
        md.append(key, value);
    }
    if encode {
        let flag = match key {
            "include-patterns" => "include-patterns-encoded",
            "exclude-patterns" => "exclude-patterns-encoded",
            "followpaths" => "followpaths-encoded",
            _ => "dir-name-encoded",
        };
        md.insert(flag, MetadataValue::from_static("true"));
    }
    Ok(())
}

/// The sender's packets (tonic's stream; a plain one in the tests).
trait Incoming: futures_util::Stream<Item = Result<Packet, Status>> + Unpin {}

impl<S: futures_util::Stream<Item = Result<Packet, Status>> + Unpin> Incoming for S {}

/// The receiving half of the protocol; sends tree events to the writer.
async fn receive(
    name: &str,
    mut incoming: impl Incoming,
    out: &mpsc::Sender<Packet>,
    tree: &mpsc::Sender<TarEvent>,
    progress: &Vertex,
) -> Result<u64, Status> {
    let mut transferred = Transferred::new(progress, name);
    // 1. The listing.
    let mut entries: Vec<(u32, Stat)> = Vec::new();
    let mut index: u32 = 0;
    loop {
        let p = next(&mut incoming).await?;
        transferred.add(&p);
        match kind(&p)? {
            PacketType::PacketStat => match p.stat {
                None => break,
                Some(stat) => {
                    if entries.len() >= MAX_ENTRIES {
                        return Err(Status::resource_exhausted(format!(
                            "the local source lists more than {MAX_ENTRIES} entries"
                        )));
                    }
                    entries.push((index, stat));
                    index = index.wrapping_add(1);
                }
            },
            PacketType::PacketErr => return Err(sender_error(&p)),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unexpected {other:?} packet while the client lists files"
                )))
            }
        }
    }
    // 2. The contents, in batches, written in listing order.
    let mut at = 0;
    while at < entries.len() {
        let (id, stat) = &entries[at];
        if !wants_data(stat) {
            send_tree(tree, TarEvent::Entry(stat.clone(), Vec::new())).await?;
            at += 1;
            continue;
        }
        if stat.size > BATCH_BYTES {
            request(out, *id).await?;
            send_tree(tree, TarEvent::Begin(stat.clone())).await?;
            loop {
                let p = data_packet(&mut incoming, &mut transferred).await?;
                if p.id != *id {
                    return Err(Status::invalid_argument(format!(
                        "data for file {} not asked for",
                        p.id
                    )));
                }
                if p.data.is_empty() {
                    break;
                }
                send_tree(tree, TarEvent::Chunk(Bytes::from(p.data))).await?;
            }
            send_tree(tree, TarEvent::End).await?;
            at += 1;
            continue;
        }
        // A batch: consecutive entries up to BATCH_BYTES of small files.
        let mut end = at;
        let mut size = 0;
        let mut pending: HashMap<u32, Vec<Bytes>> = HashMap::new();
        while end < entries.len() {
            let (id, stat) = &entries[end];
            if wants_data(stat) {
                if stat.size > BATCH_BYTES
                    || (size + stat.size > BATCH_BYTES && !pending.is_empty())
                {
                    break;
                }
                size += stat.size;
                pending.insert(*id, Vec::new());
                request(out, *id).await?;
            }
            end += 1;
        }
        let mut open = pending.len();
        let mut held: i64 = 0;
        while open > 0 {
            let p = data_packet(&mut incoming, &mut transferred).await?;
            let Some(chunks) = pending.get_mut(&p.id) else {
                return Err(Status::invalid_argument(format!(
                    "data for file {} not asked for",
                    p.id
                )));
            };
            if p.data.is_empty() {
                open -= 1;
                continue;
            }
            held += p.data.len() as i64;
            if held > 2 * BATCH_BYTES {
                return Err(Status::invalid_argument(
                    "the client sent more data than its files' sizes",
                ));
            }
            chunks.push(Bytes::from(p.data));
        }
        for (id, stat) in &entries[at..end] {
            let data = pending.remove(id).unwrap_or_default();
            send_tree(tree, TarEvent::Entry(stat.clone(), data)).await?;
        }
        at = end;
    }
    // 3. The end: our FIN, the sender's FIN, then the stream closes.
    out.send(Packet {
        r#type: PacketType::PacketFin as i32,
        ..Packet::default()
    })
    .await
    .map_err(|_| Status::cancelled("the client's file transfer ended early"))?;
    while let Some(p) = incoming.next().await {
        let p = p?;
        if kind(&p)? == PacketType::PacketErr {
            return Err(sender_error(&p));
        }
    }
    transferred.finish();
    Ok(transferred.bytes)
}

/// Counts the bytes received for the vertex's `transferring NAME:` status.
struct Transferred<'v> {
    vertex: &'v Vertex,
    id: String,
    bytes: u64,
    reported: u64,
}

impl<'v> Transferred<'v> {
    fn new(vertex: &'v Vertex, name: &str) -> Transferred<'v> {
        Transferred {
            vertex,
            id: format!("transferring {name}:"),
            bytes: 0,
            reported: 0,
        }
    }

    fn add(&mut self, p: &Packet) {
        self.bytes += prost::Message::encoded_len(p) as u64;
        if self.bytes - self.reported >= 1 << 20 {
            self.reported = self.bytes;
            self.report(false);
        }
    }

    fn report(&self, done: bool) {
        let bytes = i64::try_from(self.bytes).unwrap_or(i64::MAX);
        self.vertex.progress(&self.id, bytes, 0, done);
    }

    fn finish(&self) {
        self.report(true);
    }
}

async fn next(incoming: &mut impl Incoming) -> Result<Packet, Status> {
    incoming
        .next()
        .await
        .ok_or_else(|| Status::aborted("the client's file transfer ended early"))?
}

async fn data_packet(
    incoming: &mut impl Incoming,
    transferred: &mut Transferred<'_>,
) -> Result<Packet, Status> {
    let p = next(incoming).await?;
    transferred.add(&p);
    match kind(&p)? {
        PacketType::PacketData => Ok(p),
        PacketType::PacketErr => Err(sender_error(&p)),
        other => Err(Status::invalid_argument(format!(
            "unexpected {other:?} packet while the client sends file data"
        ))),
    }
}

fn kind(p: &Packet) -> Result<PacketType, Status> {
    PacketType::try_from(p.r#type)
        .map_err(|_| Status::invalid_argument(format!("unknown packet type {}", p.r#type)))
}

fn sender_error(p: &Packet) -> Status {
    Status::aborted(format!(
        "the client failed to send its files: {}",
        String::from_utf8_lossy(&p.data)
    ))
}

async fn request(out: &mpsc::Sender<Packet>, id: u32) -> Result<(), Status> {
    out.send(Packet {
        r#type: PacketType::PacketReq as i32,
        id,
        ..Packet::default()
    })
    .await
    .map_err(|_| Status::cancelled("the client's file transfer ended early"))
}

async fn send_tree(tree: &mpsc::Sender<TarEvent>, event: TarEvent) -> Result<(), Status> {
    tree.send(event)
        .await
        .map_err(|_| Status::internal("writing the files stopped"))
}

/// A regular file whose contents come as data (not a hardlink to an
/// earlier one, which fsutil sends as a regular file with a link name).
fn wants_data(stat: &Stat) -> bool {
    stat.mode & filemode::TYPE == 0 && stat.linkname.is_empty() && stat.size > 0
}

/// What the writer thread gets.
enum TarEvent {
    /// An entry with all its data.
    Entry(Stat, Vec<Bytes>),
    /// A large file whose data follows as chunks, then `End`.
    Begin(Stat),
    Chunk(Bytes),
    End,
}

/// Writes the entries as a tar into the layer unpacker (blocking).
fn write_tree(mut events: mpsc::Receiver<TarEvent>, dest: &Path) -> io::Result<()> {
    let (reader, writer) = io::pipe()?;
    let dest = dest.to_path_buf();
    let unpacker = std::thread::Builder::new()
        .name("context-unpack".into())
        .spawn(move || unpack_layer(reader, &dest, UnpackLimits::default()))?;
    let mut tar = tar::Builder::new(writer);
    let mut written = Ok(());
    while let Some(event) = events.blocking_recv() {
        let step = match event {
            TarEvent::Entry(stat, data) => {
                let size = data.iter().map(|c| c.len() as u64).sum();
                append(&mut tar, &stat, size, Chunks::new(data))
            }
            TarEvent::Begin(stat) => {
                let size = u64::try_from(stat.size).unwrap_or(0);
                append(
                    &mut tar,
                    &stat,
                    size,
                    Streamed {
                        events: &mut events,
                        current: Bytes::new(),
                        done: false,
                    },
                )
            }
            TarEvent::Chunk(_) | TarEvent::End => Err(io::Error::other("file data out of order")),
        };
        if let Err(e) = step {
            written = Err(e);
            break;
        }
    }
    let finished = written.and_then(|()| tar.into_inner().map(drop));
    let unpacked = unpacker
        .join()
        .map_err(|_| io::Error::other("the unpacker panicked"))?;
    finished?;
    unpacked.map(drop).map_err(io::Error::other)
}

fn append(
    tar: &mut tar::Builder<io::PipeWriter>,
    stat: &Stat,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    let perm = filemode::unix_permissions(stat.mode);
    header.set_mode(perm);
    // As the docker CLI's context tar: files belong to root; COPY's
    // --chown decides ownership in the image.
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(u64::try_from(stat.mod_time.div_euclid(1_000_000_000)).unwrap_or(0));
    let path = stat.path.trim_start_matches('/');
    let kind = stat.mode & filemode::TYPE;
    if kind & filemode::DIR != 0 {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        return tar.append_data(&mut header, path, io::empty());
    }
    if kind & filemode::SYMLINK != 0 {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        return tar.append_link(&mut header, path, &stat.linkname);
    }
    if kind & filemode::NAMED_PIPE != 0 {
        header.set_entry_type(tar::EntryType::Fifo);
        header.set_size(0);
        return tar.append_data(&mut header, path, io::empty());
    }
    if kind != 0 {
        // Devices (which the unpacker would skip anyway), sockets and
        // irregular files have no place in a build context.
        tracing::debug!(
            path,
            mode = stat.mode,
            "skipping a special file of the context"
        );
        return Ok(());
    }
    if !stat.linkname.is_empty() {
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        return tar.append_link(&mut header, path, &stat.linkname);
    }
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    let mut exact = ExactSize {
        inner: data,
        left: size,
        path,
    };
    tar.append_data(&mut header, path, &mut exact)?;
    if exact.left != 0 {
        return Err(io::Error::other(format!(
            "{path} changed size while being sent"
        )));
    }
    Ok(())
}

/// The data of a file held whole.
struct Chunks {
    chunks: std::collections::VecDeque<Bytes>,
}

impl Chunks {
    fn new(chunks: Vec<Bytes>) -> Chunks {
        Chunks {
            chunks: chunks.into(),
        }
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(front) = self.chunks.front_mut() {
            if front.is_empty() {
                self.chunks.pop_front();
                continue;
            }
            let n = buf.len().min(front.len());
            buf[..n].copy_from_slice(&front.split_to(n));
            return Ok(n);
        }
        Ok(0)
    }
}

/// The data of a large file, as its chunks arrive.
struct Streamed<'a> {
    events: &'a mut mpsc::Receiver<TarEvent>,
    current: Bytes,
    done: bool,
}

impl Read for Streamed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.events.blocking_recv() {
                Some(TarEvent::Chunk(c)) => self.current = c,
                Some(TarEvent::End) | None => self.done = true,
                Some(_) => return Err(io::Error::other("file data out of order")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Reads exactly the size the header promised: more data than the listed
/// size is an error, less leaves `left` above zero.
struct ExactSize<'p, R> {
    inner: R,
    left: u64,
    path: &'p str,
}

impl<R: Read> Read for ExactSize<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{} changed size while being sent",
                    self.path
                ))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            // Short: tar pads nothing here; the caller reports the change.
            return Err(io::Error::other(format!(
                "{} changed size while being sent",
                self.path
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(path: &str, mode: u32, size: i64) -> Stat {
        Stat {
            path: path.into(),
            mode,
            size,
            mod_time: 1_700_000_000_000_000_000,
            ..Stat::default()
        }
    }

    /// Writes `events` into a fresh directory next to an `outside` one.
    fn write(events: Vec<TarEvent>) -> (tempfile::TempDir, io::Result<()>) {
        let base = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(base.path().join("dest")).expect("dest");
        std::fs::create_dir(base.path().join("outside")).expect("outside");
        let (tx, rx) = mpsc::channel(events.len() + 1);
        for e in events {
            assert!(tx.try_send(e).is_ok(), "queue");
        }
        drop(tx);
        let dest = base.path().join("dest");
        let result = write_tree(rx, &dest);
        (base, result)
    }

    fn data(text: &str) -> Vec<Bytes> {
        vec![Bytes::copy_from_slice(text.as_bytes())]
    }

    #[test]
    fn go_modes_become_files_links_and_bits() {
        let (base, result) = write(vec![
            TarEvent::Entry(stat("dir", filemode::DIR | 0o755, 0), Vec::new()),
            TarEvent::Entry(
                stat("dir/tool", filemode::go_permissions(0o4755), 3),
                data("abc"),
            ),
            TarEvent::Entry(
                Stat {
                    linkname: "dir/tool".into(),
                    ..stat("link", filemode::SYMLINK | 0o777, 8)
                },
                Vec::new(),
            ),
            TarEvent::Entry(
                Stat {
                    linkname: "dir/tool".into(),
                    ..stat("hard", 0o755, 0)
                },
                Vec::new(),
            ),
        ]);
        result.expect("written");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dest = base.path().join("dest");
        let tool = std::fs::metadata(dest.join("dir/tool")).expect("tool");
        assert_eq!(tool.permissions().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::read(dest.join("dir/tool")).expect("read"), b"abc");
        assert_eq!(
            std::fs::read_link(dest.join("link")).expect("link"),
            Path::new("dir/tool")
        );
        assert_eq!(
            tool.ino(),
            std::fs::metadata(dest.join("hard")).expect("hard").ino()
        );
        assert_eq!(tool.uid(), 0, "context files belong to root");
    }

    #[test]
    fn paths_out_of_the_directory_are_refused() {
        let (base, result) = write(vec![TarEvent::Entry(
            stat("../outside/escaped", 0o644, 4),
            data("evil"),
        )]);
        assert!(result.is_err(), "a ../ path was accepted");
        assert!(!base.path().join("outside/escaped").exists());
    }

    #[test]
    fn symlinks_and_hardlinks_cannot_lead_out() {
        let base_outside = tempfile::tempdir().expect("tempdir");
        let target = base_outside.path().display().to_string();
        let secret = base_outside.path().join("secret");
        std::fs::write(&secret, "host file").expect("secret");
        let (_base, _result) = write(vec![
            TarEvent::Entry(
                Stat {
                    linkname: target.clone(),
                    ..stat("evil", filemode::SYMLINK | 0o777, 0)
                },
                Vec::new(),
            ),
            TarEvent::Entry(stat("evil/pwned", 0o644, 4), data("evil")),
            TarEvent::Entry(
                Stat {
                    linkname: secret.display().to_string(),
                    ..stat("hard", 0o644, 0)
                },
                Vec::new(),
            ),
        ]);
        // Refused or contained: nothing reaches the outside directory, and
        // the host file keeps its content.
        assert!(!base_outside.path().join("pwned").exists());
        assert_eq!(
            std::fs::read_to_string(&secret).expect("secret"),
            "host file"
        );
    }

    #[test]
    fn a_streamed_file_of_another_size_is_an_error() {
        let (_base, result) = write(vec![
            TarEvent::Begin(stat("big", 0o644, 10)),
            TarEvent::Chunk(Bytes::from_static(b"abc")),
            TarEvent::End,
        ]);
        let err = result.expect_err("a short file was accepted");
        assert!(err.to_string().contains("changed size"), "{err}");
        let (_base, result) = write(vec![
            TarEvent::Begin(stat("big", 0o644, 2)),
            TarEvent::Chunk(Bytes::from_static(b"abc")),
            TarEvent::End,
        ]);
        assert!(result.is_err(), "a long file was accepted");
    }

    fn packet(
        kind: PacketType,
        id: u32,
        data: &[u8],
        stat: Option<Stat>,
    ) -> Result<Packet, Status> {
        Ok(Packet {
            r#type: kind as i32,
            stat,
            id,
            data: data.to_vec(),
        })
    }

    /// Runs the receiver over `sent`; returns its result, the packets it
    /// sent back and the entries it passed on (path, data).
    async fn exchange(
        sent: Vec<Result<Packet, Status>>,
    ) -> (Result<u64, Status>, Vec<(i32, u32)>, Vec<(String, Vec<u8>)>) {
        let solves = super::super::solves::Solves::default();
        let solve = solves.entry("test");
        let vertex = Vertex::start(&solve, "[internal] load build context");
        let (out_tx, mut out_rx) = mpsc::channel(64);
        let (tree_tx, mut tree_rx) = mpsc::channel(64);
        let result = receive(
            "context",
            futures_util::stream::iter(sent),
            &out_tx,
            &tree_tx,
            &vertex,
        )
        .await;
        drop(tree_tx);
        let mut replies = Vec::new();
        while let Ok(p) = out_rx.try_recv() {
            replies.push((p.r#type, p.id));
        }
        let mut entries = Vec::new();
        while let Some(event) = tree_rx.recv().await {
            match event {
                TarEvent::Entry(stat, data) => entries.push((stat.path, data.concat())),
                TarEvent::Begin(stat) => entries.push((stat.path, Vec::new())),
                TarEvent::Chunk(c) => {
                    if let Some(last) = entries.last_mut() {
                        last.1.extend_from_slice(&c);
                    }
                }
                TarEvent::End => {}
            }
        }
        (result, replies, entries)
    }

    #[tokio::test]
    async fn interleaved_data_is_written_in_listing_order() {
        use PacketType::*;
        let sent = vec![
            packet(
                PacketStat,
                0,
                b"",
                Some(stat("dir", filemode::DIR | 0o755, 0)),
            ),
            packet(PacketStat, 0, b"", Some(stat("dir/a", 0o644, 3))),
            packet(PacketStat, 0, b"", Some(stat("dir/b", 0o644, 2))),
            packet(PacketStat, 0, b"", Some(stat("dir/empty", 0o644, 0))),
            packet(PacketStat, 0, b"", None),
            packet(PacketData, 2, b"hi", None),
            packet(PacketData, 1, b"ab", None),
            packet(PacketData, 2, b"", None),
            packet(PacketData, 1, b"c", None),
            packet(PacketData, 1, b"", None),
            packet(PacketFin, 0, b"", None),
        ];
        let (result, replies, entries) = exchange(sent).await;
        result.expect("received");
        let (req, fin) = (PacketReq as i32, PacketFin as i32);
        assert_eq!(replies, vec![(req, 1), (req, 2), (fin, 0)]);
        let entries: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_slice()))
            .collect();
        assert_eq!(
            entries,
            vec![
                ("dir", &b""[..]),
                ("dir/a", b"abc"),
                ("dir/b", b"hi"),
                ("dir/empty", b"")
            ]
        );
    }

    #[tokio::test]
    async fn a_sender_that_misbehaves_is_an_error() {
        use PacketType::*;
        let listing = || {
            vec![
                packet(PacketStat, 0, b"", Some(stat("a", 0o644, 3))),
                packet(PacketStat, 0, b"", None),
            ]
        };
        // Data for a file nobody asked for.
        let mut sent = listing();
        sent.push(packet(PacketData, 7, b"xyz", None));
        let (result, _, _) = exchange(sent).await;
        let err = result.expect_err("unasked data accepted");
        assert!(err.message().contains("not asked for"), "{err}");
        // The sender's own error.
        let mut sent = listing();
        sent.push(packet(PacketErr, 0, b"permission denied", None));
        let (result, _, _) = exchange(sent).await;
        let err = result.expect_err("an ERR packet accepted");
        assert!(err.message().contains("permission denied"), "{err}");
        // A stream that ends in the middle of the listing.
        let sent = vec![packet(PacketStat, 0, b"", Some(stat("a", 0o644, 3)))];
        let (result, _, _) = exchange(sent).await;
        let err = result.expect_err("a cut listing accepted");
        assert!(err.message().contains("ended early"), "{err}");
        // A packet type that does not exist.
        let sent = vec![Ok(Packet {
            r#type: 42,
            ..Packet::default()
        })];
        let (result, _, _) = exchange(sent).await;
        assert!(result.is_err(), "packet type 42 accepted");
    }
}
