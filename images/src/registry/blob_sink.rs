//! A layer blob written to the store on a thread of its own.
//!
//! While a layer streams in, its bytes go both to the blob store (written
//! and hashed for the blob digest) and to the unpacker (decompressed, hashed
//! for the diff ID, applied). Decompression bounds a pull's speed, so the
//! blob's write and hash run here instead of on the decoding thread; the
//! chunks are shared (`Bytes`), not copied.

use std::io::{self, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::store::BlobWriter;

/// Chunks queued for the writer (a few MB at most: HTTP body chunks are small).
const QUEUE: usize = 64;

pub struct BlobSink {
    tx: Option<mpsc::SyncSender<Bytes>>,
    thread: Option<JoinHandle<io::Result<BlobWriter>>>,
}

impl BlobSink {
    pub fn spawn(writer: BlobWriter) -> io::Result<BlobSink> {
        let (tx, rx) = mpsc::sync_channel::<Bytes>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("blob-writer".into())
            .spawn(move || {
                let mut writer = writer;
                for chunk in rx {
                    writer.write_all(&chunk)?;
                }
                Ok(writer)
            })?;
        Ok(BlobSink {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a chunk; false when the writer has stopped (its error is what
    /// [`BlobSink::finish`] returns).
    pub fn send(&self, chunk: Bytes) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(chunk).is_ok())
    }

    /// Waits until every queued chunk is written and hands the writer back
    /// (to be verified), or the error that stopped it.
    pub fn finish(mut self) -> io::Result<BlobWriter> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the blob writer thread panicked")),
            None => Err(io::Error::other("the blob writer is gone")),
        }
    }
}

impl Drop for BlobSink {
    /// Stops the writer and waits for it, so its temp file is gone by the
    /// time a failed pull returns.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::store::Store;

    #[test]
    fn writes_and_hashes_every_chunk_on_its_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let sink = BlobSink::spawn(store.blobs.writer().expect("writer")).expect("spawn");
        let mut whole = Vec::new();
        for i in 0..200u32 {
            let chunk = i.to_le_bytes().repeat(1000);
            whole.extend_from_slice(&chunk);
            assert!(sink.send(Bytes::from(chunk)));
        }
        let writer = sink.finish().expect("written");
        let blob = writer
            .finish(Some(&Digest::of(&whole)), Some(whole.len() as u64))
            .expect("the digest and size match");
        assert_eq!(std::fs::read(blob.path()).expect("read back"), whole);
    }

    #[test]
    fn a_dropped_sink_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let sink = BlobSink::spawn(store.blobs.writer().expect("writer")).expect("spawn");
        assert!(sink.send(Bytes::from_static(b"partial")));
        drop(sink);
        let left: Vec<_> = std::fs::read_dir(store.ingest_dir())
            .expect("ingest dir")
            .collect();
        assert!(left.is_empty(), "ingest leftovers: {left:?}");
    }
}
