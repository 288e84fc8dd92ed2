//! Safe, streaming layer unpacking.
//!
//! One pass over the layer blob: the raw stream is hashed (the blob
//! digest), decompressed by what its magic bytes say (gzip, zstd or none),
//! checked against the decompression limits, hashed again (the diff ID),
//! and its tar entries applied to the layer directory as they arrive, so
//! memory stays bounded whatever the layer's size.
//!
//! Entries are applied by our own code, never `tar::Archive::unpack`, with
//! every path resolved inside the layer dir by the kernel (see `root`). OCI
//! whiteouts become overlay whiteouts, and ownership is kept as the engine's
//! root sees it (IDs beyond 0-65535 are clamped).

mod apply;
mod attrs;
mod decompress;
mod finisher;
mod meta;
mod root;
mod special;

use std::io::{self, Read};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;

pub use decompress::{auto_decoder, Compression, LimitHit, UnpackLimits};
pub use meta::{header_gid, header_uid};

use apply::Applier;
use decompress::{decoder, Guard, Input, Stage, StageCell};
use root::LayerRoot;
use special::{SpecialWatch, MAX_SPECIAL_SIZE};

use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, HashingReader};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "layer entry {path:?} points outside the layer (a \"..\" above its root); \
         the layer is malformed or malicious and was not unpacked"
    )]
    Escape { path: String },
    #[error("layer entry {path:?}: cannot {op}: {cause}")]
    Fs {
        path: String,
        op: &'static str,
        cause: io::Error,
    },
    #[error("layer entry {path:?}: hardlink to {target:?} failed: {reason}")]
    Hardlink {
        path: String,
        target: String,
        reason: String,
    },
    #[error("layer entry {path:?} is malformed: {reason}")]
    Malformed { path: String, reason: &'static str },
    #[error("the layer is not a valid tar stream: {0}")]
    Tar(io::Error),
    #[error(
        "the layer has a {kind} of {size} bytes, more than the {limit} byte limit \
         (Docker refuses it too); the layer is malformed or malicious and was not unpacked"
    )]
    SpecialTooLarge {
        kind: &'static str,
        size: u64,
        limit: u64,
    },
    #[error("the layer's compressed stream is corrupt or truncated: {0}")]
    Decompress(io::Error),
    #[error("cannot read the layer: {0}")]
    Read(io::Error),
    #[error(
        "the layer expands to more than {limit} bytes, the configured limit; \
         it may be a decompression bomb (raise the limit if it is genuine)"
    )]
    TooLarge { limit: u64 },
    #[error(
        "the layer expands more than {limit}:1 ({compressed} compressed bytes gave \
         {uncompressed} so far); it looks like a decompression bomb \
         (raise the ratio limit if it is genuine)"
    )]
    Ratio {
        limit: u64,
        compressed: u64,
        uncompressed: u64,
    },
    #[error("cannot open the layer directory {path}: {cause}")]
    Dest { path: String, cause: io::Error },
}

fn fs_err<'a>(path: &'a [u8], op: &'static str) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |cause| UnpackError::Fs {
        path: String::from_utf8_lossy(path).into_owned(),
        op,
        cause,
    }
}

fn errno_err<'a>(
    path: &'a [u8],
    op: &'static str,
) -> impl FnOnce(rustix::io::Errno) -> UnpackError + 'a {
    move |e| fs_err(path, op)(e.into())
}

/// What unpacking a layer found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Digest and size of the stream as read (the blob); no digest when the
    /// caller hashes the stream itself ([`unpack_layer_unhashed`]).
    pub blob_digest: Option<Digest>,
    pub blob_size: u64,
    /// Digest and size of the uncompressed tar (the diff ID).
    pub diff_id: Digest,
    pub diff_size: u64,
    pub compression: Compression,
    /// Bytes of regular-file content.
    pub content_size: u64,
    /// Highest UID/GID owning anything, not counting the overflow ID 65534.
    pub highest_uid: u32,
    pub highest_gid: u32,
    pub uses_overflow_id: bool,
    pub entries: u64,
    /// Device nodes that could not be created and were skipped.
    pub devices_skipped: u64,
    /// Entries whose owner was outside 0-65535 and became 65534.
    pub clamped_ids: u64,
}

/// Decoded bytes per chunk passed down the pipeline (decoder, hasher,
/// applier).
const CHUNK: usize = 512 * 1024;
/// Chunks in flight: half between each pair of stages, and as many kept for
/// reuse (bounds memory: about 2 x CHUNKS x CHUNK).
const CHUNKS: usize = 8;

/// Unpacks the layer read from `reader` into the empty directory `dest`,
/// computing the blob digest of what it read.
pub fn unpack_layer<R: Read + Send>(
    reader: R,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    unpack(reader, dest, limits, true)
}

/// As [`unpack_layer`], for a caller that hashes the raw stream itself (a
/// pull's blob writer does, on its own thread): one SHA-256 pass less on
/// the decoding thread, which bounds the pull's speed.
pub fn unpack_layer_unhashed<R: Read + Send>(
    reader: R,
    dest: &Path,
    limits: UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    unpack(reader, dest, limits, false)
}

/// Four threads share the work, a pipeline of decoded chunks: a scoped
/// helper reads, hashes and decompresses (the inflate alone is the
/// longest stage), a second hashes the decoded stream (the diff ID), this
/// one applies tar entries (mostly syscalls), and a fourth writes and
/// completes the regular files it creates (see `finisher`). On two cores
/// the diff hash on a stage of its own took the decoder's critical path
/// from about 255 ms to 185 ms for a 120 MB layer. Chunks pass through
/// small bounded channels and their buffers are recycled, so memory stays
/// bounded.
fn unpack<R: Read + Send>(
    reader: R,
    dest: &Path,
    limits: UnpackLimits,
    hash_blob: bool,
) -> Result<UnpackStats, UnpackError> {
    let root = LayerRoot::open(dest).map_err(|cause| UnpackError::Dest {
        path: dest.display().to_string(),
        cause,
    })?;
    let (files, finisher) = finisher::channel();
    let mut applier = Applier::new(root, files);
    let (raw_tx, raw_rx) = mpsc::sync_channel::<Chunk>(CHUNKS / 2);
    let (full_tx, full_rx) = mpsc::sync_channel::<Chunk>(CHUNKS / 2);
    let (free_tx, free_rx) = mpsc::sync_channel::<Chunk>(CHUNKS + 1);
    let (decoded, hashed, applied) = std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decode(reader, limits, hash_blob, raw_tx, free_rx));
        let hasher = scope.spawn(move || hash_chunks(raw_rx, full_tx));
        let finisher = scope.spawn(move || finisher.run());
        let mut chunks = ChunkReader {
            full: full_rx,
            free: free_tx,
            current: Chunk::default(),
            pos: 0,
        };
        let applied = apply_all(&mut chunks, &mut applier);
        // Always closed, so the finisher ends (after the files it has).
        let closed = applier.close_files();
        // Dropping the receiver stops the decoder if applying failed.
        drop(chunks);
        let finished = finisher.join().unwrap_or_else(|_| {
            Err(UnpackError::Read(io::Error::other(
                "the file finishing thread panicked",
            )))
        });
        // A finisher that failed stopped the applier: its error is the cause.
        let applied = match (finished, applied.and(closed)) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(notes), Ok(())) => {
                applier.notes.add(&notes);
                applier.finish()
            }
        };
        let decoded = decoder.join().unwrap_or_else(|_| {
            Err(Decoded::Failed(UnpackError::Read(io::Error::other(
                "the layer decoding thread panicked",
            ))))
        });
        let hashed = hasher.join().unwrap_or(None);
        (decoded, hashed, applied)
    });
    // The decoder's own failure is the root cause of anything the applier
    // saw afterwards (a cut stream looks like a short tar to it).
    let decoded = match (decoded, applied) {
        (Err(Decoded::Failed(e)), _) => return Err(e),
        (_, Err(e)) => return Err(e),
        (Err(Decoded::Abandoned), Ok(())) => {
            return Err(UnpackError::Read(io::Error::other(
                "the layer decoding stopped early",
            )))
        }
        (Ok(d), Ok(())) => d,
    };
    // The decoder finished cleanly, so the hasher saw its whole stream.
    let (diff_id, diff_size) = hashed.ok_or_else(|| {
        UnpackError::Read(io::Error::other("the layer hashing thread stopped early"))
    })?;

    let notes = &applier.notes;
    if notes.clamped_ids + notes.devices_skipped + notes.xattrs_skipped + notes.other_skipped > 0 {
        tracing::info!(
            %diff_id,
            clamped_ids = notes.clamped_ids,
            devices_skipped = notes.devices_skipped,
            xattrs_skipped = notes.xattrs_skipped,
            other_skipped = notes.other_skipped,
            "layer unpacked with adjustments for the user namespace"
        );
    }
    let tally = &applier.tally;
    Ok(UnpackStats {
        blob_digest: decoded.blob_digest,
        blob_size: decoded.blob_size,
        diff_id,
        diff_size,
        compression: decoded.compression,
        content_size: tally.content_size,
        highest_uid: tally.highest_uid,
        highest_gid: tally.highest_gid,
        uses_overflow_id: tally.uses_overflow_id,
        entries: tally.entries,
        devices_skipped: notes.devices_skipped,
        clamped_ids: notes.clamped_ids,
    })
}

/// A buffer of decoded bytes passed down the pipeline: `len` of them are
/// filled. The buffer keeps its full length when it is recycled, so it is
/// not zeroed again before each refill (that was a memset of the whole
/// layer).
#[derive(Default)]
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// What the decoding thread found.
struct DecodedStream {
    blob_digest: Option<Digest>,
    blob_size: u64,
    compression: Compression,
}

enum Decoded {
    Failed(UnpackError),
    /// The applier stopped taking chunks (it failed; its error counts).
    Abandoned,
}

/// The decoding thread: raw stream → blob hash → decompressor → limits →
/// chunks for the hasher.
fn decode<R: Read>(
    reader: R,
    limits: UnpackLimits,
    hash_blob: bool,
    full: mpsc::SyncSender<Chunk>,
    free: mpsc::Receiver<Chunk>,
) -> Result<DecodedStream, Decoded> {
    let stage: StageCell = Rc::default();
    let mut input = Input::new(reader, stage.clone(), hash_blob);
    let head = read_head(&mut input).map_err(|e| Decoded::Failed(UnpackError::Read(e)))?;
    let compression = Compression::detect(&head);
    let counter = input.counter();
    {
        let chained = io::Cursor::new(head).chain(&mut input);
        let decoded = decoder(compression, chained, stage.clone())
            .map_err(|e| Decoded::Failed(UnpackError::Decompress(e)))?;
        let guard = Guard::new(
            decoded,
            counter,
            compression != Compression::None,
            limits,
            stage.clone(),
        );
        let mut decoded = guard;
        loop {
            let mut chunk = free.try_recv().unwrap_or_default();
            // (Zeroed once: a new buffer, or the applier's empty first one.)
            if chunk.buf.len() < CHUNK {
                chunk.buf.resize(CHUNK, 0);
            }
            chunk.len = match read_full(&mut decoded, &mut chunk.buf) {
                Ok(n) => n,
                Err(e) => return Err(Decoded::Failed(classify(UnpackError::Read(e), &stage))),
            };
            if chunk.len == 0 {
                break;
            }
            if full.send(chunk).is_err() {
                return Err(Decoded::Abandoned);
            }
        }
    }
    // Whatever follows the compressed stream still belongs to the blob.
    io::copy(&mut input, &mut io::sink()).map_err(|e| Decoded::Failed(UnpackError::Read(e)))?;
    let (blob_digest, blob_size) = input.finish();
    Ok(DecodedStream {
        blob_digest,
        blob_size,
        compression,
    })
}

/// The hashing thread: the diff ID of the decoded chunks, passed on to the
/// applier as they come. `None` when the applier stopped taking them.
fn hash_chunks(
    decoded: mpsc::Receiver<Chunk>,
    applier: mpsc::SyncSender<Chunk>,
) -> Option<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    for chunk in decoded {
        hasher.update(chunk.bytes());
        size += chunk.len as u64;
        applier.send(chunk).ok()?;
    }
    Some((Digest::from_hasher(hasher), size))
}

/// Fills `buf` as far as the stream allows (fewer bytes only at its end).
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The applier's side of the channel: decoded bytes as a `Read`. The end
/// of the channel reads as the end of the stream; whether that end was
/// clean is the decoder's to say.
struct ChunkReader {
    full: mpsc::Receiver<Chunk>,
    free: mpsc::SyncSender<Chunk>,
    current: Chunk,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.current.len {
            match self.full.recv() {
                Ok(next) => {
                    let done = std::mem::replace(&mut self.current, next);
                    // Give the buffer back; if the decoder has enough, drop it.
                    let _ = self.free.try_send(done);
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let rest = &self.current.bytes()[self.pos..];
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads a layer blob without unpacking it and returns its compression
/// and diff ID (the digest of the uncompressed tar), under the same limits.
pub fn diff_id_of<R: Read>(
    reader: R,
    limits: UnpackLimits,
) -> Result<(Compression, Digest), UnpackError> {
    let stage: StageCell = Rc::default();
    let mut input = Input::new(reader, stage.clone(), false);
    let head = read_head(&mut input).map_err(UnpackError::Read)?;
    let compression = Compression::detect(&head);
    let counter = input.counter();
    let chained = io::Cursor::new(head).chain(&mut input);
    let decoded = decoder(compression, chained, stage.clone()).map_err(UnpackError::Decompress)?;
    let guard = Guard::new(
        decoded,
        counter,
        compression != Compression::None,
        limits,
        stage.clone(),
    );
    let mut diff = HashingReader::new(guard);
    match io::copy(&mut diff, &mut io::sink()) {
        Ok(_) => Ok((compression, diff.finish().0)),
        Err(e) => Err(classify(UnpackError::Read(e), &stage)),
    }
}

/// Applies every entry, then reads the rest of the uncompressed stream (the
/// tar's trailing zero blocks) so the diff ID covers all of it.
///
/// A stream that ends right after its last entry's data, without the
/// padding to a 512-byte block and the two zero blocks, ends cleanly, as
/// Go's archive/tar (and so Docker) reads it: the docker CLI sends such a
/// context for `docker build -f - DIR`. A stream that ends inside an
/// entry's data or header is still an error.
///
/// The decoded chunks are already in memory, so the tar reader reads them
/// directly: a `BufReader` here would only copy every byte once more.
fn apply_all(chunks: &mut ChunkReader, applier: &mut Applier) -> Result<(), UnpackError> {
    {
        // Bytes the tar reader has consumed: right after the headers when
        // it yields an entry.
        let pos = std::cell::Cell::new(0u64);
        let ended = std::cell::Cell::new(false);
        // Long names and PAX headers are read whole by the tar reader:
        // their size is checked as their headers go by.
        let watch = std::cell::RefCell::new(SpecialWatch::new());
        let mut archive = tar::Archive::new(Counting {
            inner: &mut *chunks,
            pos: &pos,
            ended: &ended,
            watch: &watch,
        });
        // Where the last entry's data ends (its padding is optional).
        let mut data_end: Option<u64> = None;
        for entry in archive.entries().map_err(UnpackError::Tar)? {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let at = pos.get();
                    let in_padding =
                        data_end.is_some_and(|end| at >= end && at < end.next_multiple_of(512));
                    // (tar's error for it is not an UnexpectedEof.)
                    if ended.get() && in_padding {
                        break;
                    }
                    if let Some(big) = watch.borrow().found {
                        return Err(UnpackError::SpecialTooLarge {
                            kind: big.kind,
                            size: big.size,
                            limit: MAX_SPECIAL_SIZE,
                        });
                    }
                    return Err(UnpackError::Tar(e));
                }
            };
            let size = entry.header().entry_size().map_err(UnpackError::Tar)?;
            let headers_end = pos.get();
            data_end = Some(headers_end + size);
            applier.apply(&mut entry)?;
            // (The size a PAX record gives, which the tar reader follows.)
            watch
                .borrow_mut()
                .expect_header_at(headers_end + entry.size());
        }
    }
    io::copy(chunks, &mut io::sink()).map_err(UnpackError::Tar)?;
    Ok(())
}

/// A reader that keeps the count of bytes read through it, and whether
/// the stream ended, in cells the caller reads while the tar reader owns
/// this.
struct Counting<'a, R> {
    inner: R,
    pos: &'a std::cell::Cell<u64>,
    ended: &'a std::cell::Cell<bool>,
    watch: &'a std::cell::RefCell<SpecialWatch>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let start = self.pos.get();
        self.watch.borrow_mut().saw(start, &buf[..n])?;
        self.pos.set(start + n as u64);
        if n == 0 && !buf.is_empty() {
            self.ended.set(true);
        }
        Ok(n)
    }
}

/// The first bytes, for the magic-number check (fewer if the stream is tiny).
fn read_head<R: Read>(input: &mut R) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(4);
    input.take(4).read_to_end(&mut head)?;
    Ok(head)
}

/// Errors surface through the tar reader; the stage cell says which part of
/// the pipeline really failed.
fn classify(err: UnpackError, stage: &StageCell) -> UnpackError {
    let cause = match err {
        UnpackError::Tar(e) | UnpackError::Read(e) | UnpackError::Decompress(e) => e,
        other => return other,
    };
    match stage.get() {
        Some(Stage::Limit(LimitHit::Size { limit })) => UnpackError::TooLarge { limit },
        Some(Stage::Limit(LimitHit::Ratio {
            limit,
            compressed,
            uncompressed,
        })) => UnpackError::Ratio {
            limit,
            compressed,
            uncompressed,
        },
        Some(Stage::Decompress) => UnpackError::Decompress(cause),
        Some(Stage::Input) => UnpackError::Read(cause),
        None => UnpackError::Tar(cause),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn layer() -> (Vec<u8>, Vec<u8>) {
        let mut builder = tar::Builder::new(Vec::new());
        let data = b"hello layer\n".repeat(100);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, "etc/greeting", &data[..])
            .expect("append");
        let tar = builder.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        (tar, gz.finish().expect("gzip"))
    }

    #[test]
    fn unhashed_unpack_skips_only_the_blob_digest() {
        let (tar, gz) = layer();
        let hashed_dir = tempfile::tempdir().expect("tempdir");
        let hashed =
            unpack_layer(&gz[..], hashed_dir.path(), UnpackLimits::default()).expect("unpack");
        assert_eq!(hashed.blob_digest, Some(Digest::of(&gz)));
        let plain_dir = tempfile::tempdir().expect("tempdir");
        let plain = unpack_layer_unhashed(&gz[..], plain_dir.path(), UnpackLimits::default())
            .expect("unpack");
        assert_eq!(plain.blob_digest, None);
        assert_eq!(plain.blob_size, gz.len() as u64);
        assert_eq!(plain.diff_id, Digest::of(&tar));
        assert_eq!(plain.diff_id, hashed.diff_id);
        assert_eq!(
            std::fs::read(plain_dir.path().join("etc/greeting")).expect("unpacked file"),
            b"hello layer\n".repeat(100)
        );
    }

    /// A layer many pipeline chunks long: every chunk buffer is recycled
    /// several times, including the applier's empty first one.
    #[test]
    fn layers_longer_than_the_chunk_pool_unpack_whole() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut files = Vec::new();
        for i in 0..60u32 {
            // Not a multiple of the chunk size, so entries straddle chunks.
            let data: Vec<u8> = (0..CHUNK / 3 + i as usize * 7)
                .map(|b| (b as u32 ^ i.wrapping_mul(2_654_435_761)) as u8)
                .collect();
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            header.set_cksum();
            let name = format!("data/{i}");
            builder
                .append_data(&mut header, &name, &data[..])
                .expect("append");
            files.push((name, data));
        }
        let tar = builder.into_inner().expect("tar");
        assert!(tar.len() > 2 * CHUNKS * CHUNK, "the layer spans the pool");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = unpack_layer(&gz[..], dir.path(), UnpackLimits::default()).expect("unpack");
        assert_eq!(stats.diff_id, Digest::of(&tar));
        assert_eq!(stats.diff_size, tar.len() as u64);
        for (name, data) in files {
            assert!(
                std::fs::read(dir.path().join(&name)).expect("unpacked file") == data,
                "{name} differs"
            );
        }
    }

    /// Regular files are written by the finisher after the applier has
    /// moved on; later entries still see them as tar order says: a hardlink
    /// to a file whose content is still queued shares it, a file given
    /// twice keeps the second content, a file replaced by a symlink is a
    /// symlink, and a whiteout of a file of the same layer leaves it.
    #[test]
    fn later_entries_see_queued_files_in_tar_order() {
        use std::os::unix::fs::MetadataExt;
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |kind: tar::EntryType, name: &str, data: &[u8], link: Option<&str>| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o4755);
            header.set_mtime(1_650_000_000);
            if let Some(link) = link {
                header.set_link_name(link).expect("link name");
            }
            header.set_cksum();
            builder
                .append_data(&mut header, name, data)
                .expect("append");
        };
        let big = vec![9u8; 3 * CHUNK + 11];
        add(tar::EntryType::Regular, "bin/tool", &big, None);
        add(
            tar::EntryType::Link,
            "bin/tool-alias",
            b"",
            Some("bin/tool"),
        );
        add(tar::EntryType::Regular, "etc/twice", b"first", None);
        add(tar::EntryType::Regular, "etc/twice", b"second", None);
        add(tar::EntryType::Regular, "etc/was-file", b"content", None);
        add(tar::EntryType::Symlink, "etc/was-file", b"", Some("twice"));
        add(tar::EntryType::Regular, "etc/kept", b"kept", None);
        add(tar::EntryType::Regular, "etc/.wh.kept", b"", None);
        let tar = builder.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_layer(&tar[..], dir.path(), UnpackLimits::default()).expect("unpack");
        let p = |name: &str| dir.path().join(name);
        assert!(std::fs::read(p("bin/tool")).expect("tool") == big);
        let (tool, alias) = (
            std::fs::metadata(p("bin/tool")).expect("stat tool"),
            std::fs::metadata(p("bin/tool-alias")).expect("stat alias"),
        );
        assert_eq!(tool.ino(), alias.ino(), "the hardlink shares the inode");
        assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid kept");
        assert_eq!(tool.mtime(), 1_650_000_000);
        assert_eq!(std::fs::read(p("etc/twice")).expect("twice"), b"second");
        assert_eq!(
            std::fs::read_link(p("etc/was-file")).expect("a symlink"),
            std::path::Path::new("twice")
        );
        assert_eq!(std::fs::read(p("etc/kept")).expect("kept"), b"kept");
    }

    fn special_header(kind: u8, size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_path("././@LongLink").expect("path");
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(size);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    #[test]
    fn long_names_within_the_limit_are_unpacked() {
        let name = format!("{}/file", "d".repeat(200));
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(3);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        builder
            .append_data(&mut header, &name, &b"abc"[..])
            .expect("append with a GNU long name");
        let tar = builder.into_inner().expect("tar");
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_layer_unhashed(&tar[..], dir.path(), UnpackLimits::default()).expect("unpack");
        assert_eq!(std::fs::read(dir.path().join(&name)).expect("file"), b"abc");
    }

    /// As Go's archive/tar: a long name or PAX header over 1 MiB is refused
    /// as soon as its header is read, never buffered.
    #[test]
    fn oversized_long_names_and_pax_headers_are_refused_unread() {
        let (tar, _) = layer();
        for (kind, what) in [(b'L', "GNU long name"), (b'x', "PAX extended header")] {
            // A first ordinary entry, then a header claiming 1 TiB (none of
            // which follows: reading it would be a truncation error).
            let mut stream = tar[..2048].to_vec();
            stream.extend(special_header(kind, 1 << 40));
            let dir = tempfile::tempdir().expect("tempdir");
            let err = unpack_layer_unhashed(&stream[..], dir.path(), UnpackLimits::default())
                .expect_err("oversized special member accepted");
            assert!(
                matches!(err, UnpackError::SpecialTooLarge { size, limit, .. }
                    if size == 1 << 40 && limit == MAX_SPECIAL_SIZE),
                "{err}"
            );
            assert!(err.to_string().contains(what), "{err}");
            // Just over the limit, right at the start of the stream.
            let stream = special_header(kind, MAX_SPECIAL_SIZE + 1);
            let err = unpack_layer_unhashed(&stream[..], dir.path(), UnpackLimits::default())
                .expect_err("oversized special member accepted");
            assert!(matches!(err, UnpackError::SpecialTooLarge { .. }), "{err}");
        }
    }

    /// As Go's archive/tar (and so Docker): a stream may end right after
    /// its last entry's data; it may not end inside data or a header.
    #[test]
    fn a_stream_may_end_after_the_last_entry_data_but_not_inside_it() {
        let (tar, _) = layer();
        let data_end = 512 + 1200;
        for cut in [data_end, data_end + 100, 2048] {
            let dir = tempfile::tempdir().expect("tempdir");
            unpack_layer_unhashed(&tar[..cut], dir.path(), UnpackLimits::default())
                .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(
                std::fs::read(dir.path().join("etc/greeting")).expect("unpacked file"),
                b"hello layer\n".repeat(100),
                "cut at {cut}"
            );
        }
        // Inside the data, and inside a second entry's header.
        let mut two = tar[..2048].to_vec();
        two.extend_from_slice(&tar[..100]);
        for (what, bytes) in [("data", &tar[..data_end - 1]), ("header", &two[..])] {
            let dir = tempfile::tempdir().expect("tempdir");
            let err = unpack_layer_unhashed(bytes, dir.path(), UnpackLimits::default());
            assert!(err.is_err(), "a stream cut inside {what} was accepted");
        }
    }
}
