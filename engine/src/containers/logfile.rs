//! Writing container output in Docker's json-file format: one JSON object
//! per line, `{"log":"...","stream":"stdout","time":"<RFC3339Nano>"}`, with
//! lines longer than Docker's 16 KiB buffer split into partial messages
//! (a `log` without the trailing newline), and rotation by size and count.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::LogConfig;
use super::timefmt;

/// Docker's buffer size: longer lines are logged in pieces of this size.
pub const MAX_MESSAGE: usize = 16 * 1024;

/// One json-file entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Splits a stream of bytes into the messages Docker would log: each
/// complete line with its newline, and 16 KiB pieces of longer ones.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; returns the messages now complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            match self.pending.iter().position(|&b| b == b'\n') {
                Some(i) if i < MAX_MESSAGE => {
                    out.push(self.pending.drain(..=i).collect());
                }
                _ if self.pending.len() >= MAX_MESSAGE => {
                    out.push(self.pending.drain(..MAX_MESSAGE).collect());
                }
                _ => return out,
            }
        }
    }

    /// At end of stream: the unterminated rest, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Appends entries to the container's log, rotating by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    config: LogConfig,
}

impl LogWriter {
    pub fn open(path: &Path, config: LogConfig) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            config,
        })
    }

    /// Logs one message of `stream` (`stdout` or `stderr`) stamped now.
    pub fn write(&mut self, stream: &str, message: &[u8]) -> io::Result<()> {
        if self.config.driver == super::config::LogDriver::None {
            return Ok(());
        }
        let entry = Entry {
            log: String::from_utf8_lossy(message).into_owned(),
            stream: stream.to_string(),
            time: timefmt::now(),
        };
        let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Some(max) = self.config.max_size {
            if self.size > 0 && self.size + line.len() as u64 > max {
                self.rotate()?;
            }
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `log` → `log.1` → ... → `log.<max-file - 1>`, the oldest dropped.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.config.files() - 1;
        if keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..keep).rev() {
            let from = rotated(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        *self = LogWriter::open(&self.path, self.config)?;
        Ok(())
    }
}

/// The path of the `n`th rotated file (`n` ≥ 1).
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_newlines_and_long_lines_in_pieces() {
        let mut s = LineSplitter::default();
        assert_eq!(s.feed(b"a\nb"), vec![b"a\n".to_vec()]);
        assert_eq!(s.feed(b"c\n\n"), vec![b"bc\n".to_vec(), b"\n".to_vec()]);
        let long = vec![b'x'; MAX_MESSAGE + 10];
        let out = s.feed(&long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_MESSAGE);
        assert_eq!(s.finish(), Some(vec![b'x'; 10]));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn entries_are_dockers_json_and_files_rotate() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c-json.log");
        let config = LogConfig {
            driver: Default::default(),
            max_size: Some(200),
            max_file: 3,
        };
        let mut w = LogWriter::open(&path, config)?;
        w.write("stdout", b"hello \"world\"\n")?;
        let text = std::fs::read_to_string(&path)?;
        let e: Entry = serde_json::from_str(text.trim_end()).map_err(io::Error::other)?;
        assert_eq!(e.log, "hello \"world\"\n");
        assert_eq!(e.stream, "stdout");
        assert!(text.starts_with("{\"log\":"));
        for i in 0..20 {
            w.write("stderr", format!("line {i}\n").as_bytes())?;
        }
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        for p in [path.clone(), rotated(&path, 1), rotated(&path, 2)] {
            assert!(std::fs::metadata(&p)?.len() <= 200, "{}", p.display());
        }
        let last = std::fs::read_to_string(&path)?;
        assert!(last.contains("line 19\\n"));
        Ok(())
    }
}
