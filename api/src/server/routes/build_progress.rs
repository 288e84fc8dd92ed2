//! A build's progress as the legacy builder streams it: `{"stream": ...}`
//! lines (`Step 1/5 : FROM busybox`, ` ---> Using cache`, ` ---> Running in
//! ...`, the RUN output, ` ---> 3f2a...`), sent from the build thread to the
//! response through a bounded channel. A client that has gone away makes the
//! sends fail, which cancels the build.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hutch_builder::exec::{BuildError, Built, OutputSink, Progress};
use hutch_images::Digest;
use serde_json::json;
use tokio::sync::mpsc;

use super::super::response::json_line;

/// What the build thread tells the response task.
pub enum Msg {
    Line(Bytes),
    Done(Result<Built, BuildError>),
}

pub struct Lines {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    cancel: Arc<AtomicBool>,
    /// `q=1`: lines are kept here and only sent if the build fails.
    quiet: Option<Mutex<Vec<u8>>>,
    /// `rm`: say that the step's RUN container was removed.
    rm: bool,
    /// The current step's RUN container, if it ran one.
    running: Mutex<Option<String>>,
}

impl Inner {
    fn send(&self, line: Bytes) {
        if let Some(buf) = &self.quiet {
            if let Ok(mut b) = buf.lock() {
                b.extend_from_slice(&line);
            }
            return;
        }
        if self.tx.blocking_send(Msg::Line(line)).is_err() {
            // The client went away: stop the build.
            self.cancel.store(true, Ordering::SeqCst);
        }
    }

    fn stream(&self, text: &str) {
        self.send(json_line(&json!({ "stream": text })));
    }
}

impl Lines {
    pub fn new(tx: mpsc::Sender<Msg>, cancel: Arc<AtomicBool>, quiet: bool, rm: bool) -> Lines {
        Lines {
            inner: Arc::new(Inner {
                tx,
                cancel,
                quiet: quiet.then(|| Mutex::new(Vec::new())),
                rm,
                running: Mutex::new(None),
            }),
        }
    }

    /// What `q=1` held back.
    pub fn held_back(&self) -> Vec<u8> {
        self.inner
            .quiet
            .as_ref()
            .and_then(|b| b.lock().ok().map(|b| b.clone()))
            .unwrap_or_default()
    }
}

impl Progress for Lines {
    fn step(&self, index: usize, total: usize, text: &str) {
        self.inner
            .stream(&format!("Step {index}/{total} : {text}\n"));
    }

    fn cached(&self) {
        self.inner.stream(" ---> Using cache\n");
    }

    fn running(&self, id: &str) {
        if let Ok(mut r) = self.inner.running.lock() {
            *r = Some(id.to_owned());
        }
        self.inner.stream(&format!(" ---> Running in {id}\n"));
    }

    fn done(&self, id: &Digest) {
        let ran = self.inner.running.lock().ok().and_then(|mut r| r.take());
        if let (Some(container), true) = (ran, self.inner.rm) {
            self.inner.stream(&format!(
                " ---> Removed intermediate container {container}\n"
            ));
        }
        self.inner.stream(&format!(" ---> {}\n", id.short()));
    }

    fn output(&self) -> OutputSink {
        let inner = self.inner.clone();
        Arc::new(move |bytes: &[u8]| {
            inner.stream(&String::from_utf8_lossy(bytes));
        })
    }

    fn message(&self, text: &str) {
        self.inner.stream(&format!("{text}\n"));
    }
}

/// The error line moby ends a failed build's stream with.
pub fn error_line(message: &str) -> Bytes {
    json_line(&json!({"errorDetail": {"message": message}, "error": message}))
}

/// A build error as the legacy builder words it: a failed RUN is its
/// one-line message (its output was streamed already).
pub fn error_text(err: &BuildError) -> String {
    match err {
        BuildError::RunFailed { command, code, .. } => {
            format!("The command '{command}' returned a non-zero code: {code}")
        }
        other => other.to_string(),
    }
}
