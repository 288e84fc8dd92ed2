//! Regular files finished on a thread of their own.
//!
//! The applier is a pull's critical path: one thread making every
//! directory, file and link of the layer, in tar order. Much of its time
//! went to the second half of each regular file: copying the content into
//! the page cache, then owner, mode, xattrs, times and close. None of that
//! resolves a path (it all goes through the descriptor the applier opened
//! inside the layer), and nothing later in the tar depends on it, so it is
//! done here, alongside the applier: it creates, this thread fills.
//!
//! Content travels in pieces from a fixed pool that the finisher hands
//! back, which bounds memory (and makes the applier wait when the finisher
//! lags). Files go over in batches, so the finisher is woken once per
//! batch rather than once per file; a batch's open files are bounded too.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc;

use super::apply::Notes;
use super::attrs::complete_new_file;
use super::meta::EntryMeta;
use super::{fs_err, read_full, UnpackError};

/// Bytes per piece of content (a small file takes one piece).
const PIECE: usize = 128 * 1024;
/// Pieces in the pool: at most this much content waits to be written.
const PIECES: usize = 48;
/// A batch goes over once it holds this many files or pieces...
const BATCH_FILES: usize = 16;
const BATCH_PIECES: usize = 8;
/// ...and at most this many batches wait (with `BATCH_FILES`, the open
/// files in flight).
const BATCHES: usize = 4;

struct Piece {
    buf: Vec<u8>,
    len: usize,
}

enum Job {
    /// A file the applier created; the jobs up to its `End` are its own.
    Begin {
        file: File,
        path: Vec<u8>,
    },
    Content(Piece),
    /// The file's content is complete: its metadata, then close it.
    End(Box<EntryMeta>),
}

/// The applier's end: hands over created files with their content.
pub struct FileQueue {
    jobs: Option<mpsc::SyncSender<Vec<Job>>>,
    free: mpsc::Receiver<Piece>,
    /// Pieces made so far (never more than `PIECES`).
    made: usize,
    /// A piece taken but left empty (the content had ended).
    spare: Option<Piece>,
    batch: Vec<Job>,
    batch_files: usize,
    batch_pieces: usize,
}

/// The finisher stopped taking files; its own result says why.
#[derive(Debug)]
pub struct Stopped;

/// The finisher's end, to be run on its own thread by [`Finisher::run`].
pub struct Finisher {
    jobs: mpsc::Receiver<Vec<Job>>,
    free: mpsc::Sender<Piece>,
}

pub fn channel() -> (FileQueue, Finisher) {
    let (jobs_tx, jobs_rx) = mpsc::sync_channel(BATCHES);
    // Unbounded, but never holds more than the pool.
    let (free_tx, free_rx) = mpsc::channel();
    (
        FileQueue {
            jobs: Some(jobs_tx),
            free: free_rx,
            made: 0,
            spare: None,
            batch: Vec::new(),
            batch_files: 0,
            batch_pieces: 0,
        },
        Finisher {
            jobs: jobs_rx,
            free: free_tx,
        },
    )
}

/// How handing a file over failed.
pub enum QueueError {
    /// Reading the entry's content from the tar failed.
    Read(io::Error),
    /// The finisher is gone (it failed).
    Stopped(Stopped),
}

impl FileQueue {
    /// Queues `file`, just created for the entry at `path`, with the rest
    /// of `content` and the `meta` to set once it is written; returns the
    /// content's size.
    pub fn push(
        &mut self,
        file: File,
        path: &[u8],
        content: &mut impl Read,
        meta: EntryMeta,
    ) -> Result<u64, QueueError> {
        self.batch.push(Job::Begin {
            file,
            path: path.to_vec(),
        });
        self.batch_files += 1;
        let mut total = 0u64;
        loop {
            let mut piece = self.piece().map_err(QueueError::Stopped)?;
            piece.len = read_full(content, &mut piece.buf).map_err(QueueError::Read)?;
            if piece.len == 0 {
                self.spare = Some(piece);
                break;
            }
            total += piece.len as u64;
            let last = piece.len < PIECE;
            self.batch.push(Job::Content(piece));
            self.batch_pieces += 1;
            if self.batch_pieces >= BATCH_PIECES {
                self.send().map_err(QueueError::Stopped)?;
            }
            if last {
                break;
            }
        }
        self.batch.push(Job::End(Box::new(meta)));
        if self.batch_files >= BATCH_FILES {
            self.send().map_err(QueueError::Stopped)?;
        }
        Ok(total)
    }

    /// Sends what is batched and closes the queue: the finisher ends once
    /// it has finished every file.
    pub fn close(&mut self) -> Result<(), Stopped> {
        let sent = self.send();
        self.jobs = None;
        sent
    }

    fn send(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_files = 0;
        self.batch_pieces = 0;
        let jobs = self.jobs.as_ref().ok_or(Stopped)?;
        jobs.send(batch).map_err(|_| Stopped)
    }

    /// A piece to fill: a returned one, a new one while the pool has room,
    /// or else the next one the finisher returns.
    fn piece(&mut self) -> Result<Piece, Stopped> {
        if let Some(piece) = self.spare.take() {
            return Ok(piece);
        }
        if let Ok(piece) = self.free.try_recv() {
            return Ok(piece);
        }
        if self.made < PIECES {
            self.made += 1;
            return Ok(Piece {
                buf: vec![0; PIECE],
                len: 0,
            });
        }
        // Every piece is out: what is batched must go, or none comes back.
        self.send()?;
        self.free.recv().map_err(|_| Stopped)
    }
}

impl Finisher {
    /// Writes and completes every queued file, in order, until the queue
    /// is closed; what could not be honoured is in the returned notes.
    pub fn run(self) -> Result<Notes, UnpackError> {
        let mut notes = Notes::default();
        let mut current: Option<(File, Vec<u8>)> = None;
        for batch in self.jobs {
            for job in batch {
                match (job, &mut current) {
                    (Job::Begin { file, path }, _) => current = Some((file, path)),
                    (Job::Content(piece), Some((file, path))) => {
                        file.write_all(&piece.buf[..piece.len])
                            .map_err(fs_err(path, "write file"))?;
                        // The applier may be gone already: then no one needs it.
                        let _ = self.free.send(piece);
                    }
                    (Job::End(meta), Some((file, path))) => {
                        complete_new_file(&*file, path, &meta, &mut notes)?;
                        current = None;
                    }
                    (Job::Content(_) | Job::End(_), None) => {
                        return Err(UnpackError::Read(io::Error::other(
                            "file content queued without its file",
                        )))
                    }
                }
            }
        }
        Ok(notes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::MetadataExt;

    /// Owned as the test's own files are (the finisher then needs no chown).
    fn meta() -> EntryMeta {
        let own = std::env::temp_dir().metadata().expect("stat the temp dir");
        EntryMeta {
            uid: own.uid(),
            gid: own.gid(),
            clamped: false,
            mode: 0o640,
            mtime: rustix::fs::Timespec {
                tv_sec: 1_600_000_000,
                tv_nsec: 0,
            },
            xattrs: Vec::new(),
        }
    }

    /// Sizes around the piece boundaries, and more content than the pool
    /// holds, so pieces come back and are reused while files are queued.
    #[test]
    fn files_of_every_size_are_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sizes = [
            0,
            1,
            PIECE - 1,
            PIECE,
            PIECE + 1,
            3 * PIECE + 5,
            PIECES * PIECE + 7,
        ];
        let (mut queue, finisher) = channel();
        let finished = std::thread::spawn(move || finisher.run());
        let mut expected = Vec::new();
        for round in 0..3 {
            for (i, &size) in sizes.iter().enumerate() {
                let path = dir.path().join(format!("f{round}-{i}"));
                let data: Vec<u8> = (0..size).map(|b| (b * 31 + i + round) as u8).collect();
                let file = File::create(&path).expect("create");
                let written = queue
                    .push(file, b"name", &mut &data[..], meta())
                    .unwrap_or_else(|_| panic!("queue {size} bytes"));
                assert_eq!(written, size as u64);
                expected.push((path, data));
            }
        }
        queue.close().expect("close");
        let notes = finished.join().expect("join").expect("finished");
        assert_eq!(notes.xattrs_skipped, 0);
        for (path, data) in expected {
            let got = std::fs::read(&path).expect("read back");
            assert!(got == data, "{} differs", path.display());
            let st = std::fs::metadata(&path).expect("stat");
            assert_eq!(st.mode() & 0o7777, 0o640);
            assert_eq!(st.mtime(), 1_600_000_000);
        }
    }

    /// A write that fails ends the finisher with an error naming the file,
    /// and the applier's next hand-over reports it stopped instead of
    /// waiting for pieces that never come back.
    #[test]
    fn a_failed_write_names_the_file_and_stops_the_queue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("readonly");
        std::fs::write(&path, b"").expect("create");
        let (mut queue, finisher) = channel();
        let finished = std::thread::spawn(move || finisher.run());
        // Opened for reading: the finisher's write fails (EBADF).
        let file = File::open(&path).expect("open");
        queue
            .push(file, b"etc/broken", &mut &b"data"[..], meta())
            .unwrap_or_else(|_| panic!("first push"));
        queue.send().unwrap_or_else(|_| panic!("first batch"));
        let err = finished
            .join()
            .expect("join")
            .expect_err("the write must fail");
        assert!(
            err.to_string().contains("etc/broken") && err.to_string().contains("write file"),
            "{err}"
        );
        // Enough content to need more pieces than the pool has.
        let big = vec![7u8; (PIECES + 1) * PIECE];
        let mut stopped = false;
        for _ in 0..BATCHES + 2 {
            let file = File::create(dir.path().join("next")).expect("create");
            if let Err(QueueError::Stopped(Stopped)) =
                queue.push(file, b"next", &mut &big[..], meta())
            {
                stopped = true;
                break;
            }
        }
        assert!(stopped, "the queue never noticed the finisher was gone");
    }
}
