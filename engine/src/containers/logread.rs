//! Reading a container's json-file log as `docker logs` does: the rotated
//! files oldest first, then the live one; by stream; `since`/`until`;
//! `tail`; and `follow`, which keeps reading while the container runs.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::logfile::{rotated as rotated_path, Entry};
use super::timefmt;

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct LogsOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only the last N entries (before following).
    pub tail: Option<usize>,
    pub follow: bool,
}

/// One logged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: Stream,
    pub time: String,
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl LogLine {
    /// The message as `docker logs` prints it, with `--timestamps` the
    /// entry's time and a space in front.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.message.len() + 32);
        if timestamps {
            out.extend_from_slice(self.time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.message);
        out
    }
}

/// How often a follower looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(50);

/// A container's log files, opened: reading them later is unaffected by
/// the container's removal meanwhile (`docker-py` removes a container
/// before it reads the logs it asked for).
#[derive(Debug)]
pub struct OpenedLog {
    path: std::path::PathBuf,
    /// Rotated files, oldest first.
    rotated: Vec<File>,
    /// The live file, if there is one yet.
    live: Option<File>,
}

impl OpenedLog {
    pub fn open(path: &Path) -> io::Result<OpenedLog> {
        let mut rotated = Vec::new();
        for n in (1..1000).rev() {
            if let Ok(f) = File::open(rotated_path(path, n)) {
                rotated.push(f);
            }
        }
        let live = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        Ok(OpenedLog {
            path: path.to_path_buf(),
            rotated,
            live,
        })
    }
}

/// Reads the log at `path` into `sink`. With `follow`, keeps reading while
/// `running()` is true (and drains what was written before it turned
/// false). `sink` returning an error (a client gone) ends the read.
pub fn read(
    path: &Path,
    opts: &LogsOptions,
    running: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(LogLine) -> io::Result<()>,
) -> io::Result<()> {
    read_opened(OpenedLog::open(path)?, opts, running, sink)
}

/// [`read`] from files opened before.
pub fn read_opened(
    log: OpenedLog,
    opts: &LogsOptions,
    running: &dyn Fn() -> bool,
    sink: &mut dyn FnMut(LogLine) -> io::Result<()>,
) -> io::Result<()> {
    let path = log.path.as_path();
    let mut tail: VecDeque<LogLine> = VecDeque::new();
    let mut emit = |line: LogLine, tail: &mut VecDeque<LogLine>| -> io::Result<bool> {
        match opts.tail {
            Some(0) => Ok(true),
            Some(n) => {
                if tail.len() == n {
                    tail.pop_front();
                }
                tail.push_back(line);
                Ok(true)
            }
            None => sink(line).map(|()| true),
        }
    };
    for file in log.rotated {
        let mut reader = BufReader::new(file);
        while let Some(line) = next_line(&mut reader, opts)? {
            match line {
                Filtered::Past => return flush_tail(tail, sink),
                Filtered::Line(l) => {
                    emit(l, &mut tail)?;
                }
                Filtered::Skip => {}
            }
        }
    }
    let Some(file) = log.live else {
        return flush_tail(tail, sink);
    };
    let mut ino = file.metadata()?.ino();
    let mut reader = BufReader::new(file);
    loop {
        match next_line(&mut reader, opts)? {
            Some(Filtered::Past) => return flush_tail(tail, sink),
            Some(Filtered::Line(l)) => {
                emit(l, &mut tail)?;
            }
            Some(Filtered::Skip) => {}
            None => break,
        }
    }
    flush_tail(tail, sink)?;
    if !opts.follow {
        return Ok(());
    }
    let mut last_round = false;
    loop {
        match next_line(&mut reader, opts)? {
            Some(Filtered::Past) => return Ok(()),
            Some(Filtered::Line(l)) => sink(l)?,
            Some(Filtered::Skip) => {}
            None => {
                if last_round {
                    return Ok(());
                }
                // Rotated away: continue in the new live file.
                if let Ok(md) = std::fs::metadata(path) {
                    if md.ino() != ino {
                        ino = md.ino();
                        reader = BufReader::new(File::open(path)?);
                        continue;
                    }
                }
                if !running() {
                    // One more pass for what was written before it stopped.
                    last_round = true;
                    continue;
                }
                std::thread::sleep(FOLLOW_POLL);
                let pos = reader.stream_position()?;
                reader.seek(SeekFrom::Start(pos))?;
            }
        }
    }
}

fn flush_tail(
    tail: VecDeque<LogLine>,
    sink: &mut dyn FnMut(LogLine) -> io::Result<()>,
) -> io::Result<()> {
    for l in tail {
        sink(l)?;
    }
    Ok(())
}

enum Filtered {
    Line(LogLine),
    Skip,
    /// Beyond `until`: stop.
    Past,
}

/// The next complete entry; `None` at the end of what is written (a
/// half-written last line is left for the next call).
fn next_line(reader: &mut BufReader<File>, opts: &LogsOptions) -> io::Result<Option<Filtered>> {
    let start = reader.stream_position()?;
    let mut buf = Vec::new();
    let n = reader.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        reader.seek(SeekFrom::Start(start))?;
        return Ok(None);
    }
    let Ok(entry) = serde_json::from_slice::<Entry>(&buf) else {
        return Ok(Some(Filtered::Skip));
    };
    let stream = match entry.stream.as_str() {
        "stdout" if opts.stdout => Stream::Stdout,
        "stderr" if opts.stderr => Stream::Stderr,
        _ => return Ok(Some(Filtered::Skip)),
    };
    if let Some(t) = timefmt::parse(&entry.time) {
        if opts.since.is_some_and(|since| t < since) {
            return Ok(Some(Filtered::Skip));
        }
        if opts.until.is_some_and(|until| t > until) {
            return Ok(Some(Filtered::Past));
        }
    }
    Ok(Some(Filtered::Line(LogLine {
        stream,
        time: entry.time,
        message: entry.log.into_bytes(),
    })))
}

#[cfg(test)]
mod tests {
    use super::super::config::LogConfig;
    use super::super::logfile::LogWriter;
    use super::*;

    fn collect(path: &Path, opts: &LogsOptions) -> io::Result<Vec<LogLine>> {
        let mut out = Vec::new();
        read(path, opts, &|| false, &mut |l| {
            out.push(l);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn streams_tail_and_rotated_files_read_in_order() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c-json.log");
        let mut w = LogWriter::open(
            &path,
            LogConfig {
                driver: Default::default(),
                max_size: Some(600),
                max_file: 5,
            },
        )?;
        for i in 0..10 {
            w.write("stdout", format!("out {i}\n").as_bytes())?;
            w.write("stderr", format!("err {i}\n").as_bytes())?;
        }
        assert!(rotated_path(&path, 1).exists());
        let all = LogsOptions {
            stdout: true,
            stderr: true,
            ..LogsOptions::default()
        };
        let lines = collect(&path, &all)?;
        assert_eq!(lines.len(), 20);
        assert_eq!(lines[0].message, b"out 0\n");
        assert_eq!(lines[19].message, b"err 9\n");
        let out_only = collect(
            &path,
            &LogsOptions {
                stdout: true,
                tail: Some(2),
                ..LogsOptions::default()
            },
        )?;
        let msgs: Vec<_> = out_only.iter().map(|l| l.message.clone()).collect();
        assert_eq!(msgs, vec![b"out 8\n".to_vec(), b"out 9\n".to_vec()]);
        assert!(out_only.iter().all(|l| l.stream == Stream::Stdout));
        let rendered = out_only[0].render(true);
        assert!(rendered.ends_with(b"Z out 8\n"), "{rendered:?}");
        Ok(())
    }

    #[test]
    fn since_and_until_bound_by_entry_time() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("c-json.log");
        let lines = [
            r#"{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:01Z"}"#,
            r#"{"log":"b\n","stream":"stdout","time":"2024-01-01T00:00:02.5Z"}"#,
            r#"{"log":"c\n","stream":"stdout","time":"2024-01-01T00:00:04Z"}"#,
        ];
        std::fs::write(&path, lines.join("\n") + "\n")?;
        let opts = LogsOptions {
            stdout: true,
            since: timefmt::parse("2024-01-01T00:00:02Z"),
            until: timefmt::parse("2024-01-01T00:00:03Z"),
            ..LogsOptions::default()
        };
        let got = collect(&path, &opts)?;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message, b"b\n");
        Ok(())
    }
}
