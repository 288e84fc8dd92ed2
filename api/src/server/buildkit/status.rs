//! A build's progress as BuildKit status: each step a vertex named as
//! BuildKit names it (`[stage 2/4] RUN make`), started, then cached, done
//! or failed; RUN output as the vertex's logs; sub-tasks (a context
//! transfer, naming the image) as vertex statuses. buildx renders these
//! with its own progress printer (`--progress=plain|tty`).
//!
//! The builder reports steps as calls per thread (stages of a wave build on
//! threads of their own), so the step a `cached` or `done` is about is the
//! one begun last on the calling thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::SystemTime;

use hutch_builder::exec::{BuildError, OutputSink, Progress, StepInfo};
use hutch_builder::Warning;
use hutch_images::{Digest, ProgressEvent, ProgressSink};
use prost_types::Timestamp;
use sha2::{Digest as _, Sha256};

use super::proto::control::{
    StatusResponse, Vertex as PbVertex, VertexLog, VertexStatus, VertexWarning,
};
use super::solves::Solve;

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// A vertex digest unique within the solve (BuildKit's are the LLB op
/// digests; clients only use them as keys).
fn digest(solve: &Solve, serial: usize) -> String {
    let mut h = Sha256::new();
    h.update(solve.reference.as_bytes());
    h.update(serial.to_le_bytes());
    format!("sha256:{:x}", h.finalize())
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// One vertex of a solve, reported as it goes.
pub struct Vertex {
    solve: Arc<Solve>,
    record: Mutex<PbVertex>,
    /// When each byte-counting sub-task began.
    task_starts: Mutex<HashMap<String, Timestamp>>,
}

impl Vertex {
    /// A vertex that has started.
    pub fn start(solve: &Arc<Solve>, name: &str) -> Vertex {
        let record = PbVertex {
            digest: digest(solve, SERIAL.fetch_add(1, Ordering::Relaxed)),
            name: name.to_owned(),
            started: Some(now()),
            ..PbVertex::default()
        };
        solve.publish(StatusResponse {
            vertexes: vec![record.clone()],
            ..StatusResponse::default()
        });
        Vertex {
            solve: solve.clone(),
            record: Mutex::new(record),
            task_starts: Mutex::default(),
        }
    }

    fn end(&self, cached: bool, error: Option<&str>) {
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if record.completed.is_some() {
            return;
        }
        record.cached = cached;
        record.completed = Some(now());
        if let Some(e) = error {
            record.error = e.to_owned();
        }
        self.solve.publish(StatusResponse {
            vertexes: vec![record.clone()],
            ..StatusResponse::default()
        });
    }

    pub fn done(&self) {
        self.end(false, None);
    }

    pub fn cached(&self) {
        self.end(true, None);
    }

    pub fn fail(&self, error: &str) {
        self.end(false, Some(error));
    }

    /// Done or failed, as `result` says; passes the result on.
    pub fn finish<T>(&self, result: Result<T, tonic::Status>) -> Result<T, tonic::Status> {
        match &result {
            Ok(_) => self.done(),
            Err(e) => self.fail(e.message()),
        }
        result
    }

    /// Output of the vertex (`stream` 1 stdout, 2 stderr).
    pub fn log(&self, stream: i64, bytes: &[u8]) {
        let vertex = self.digest();
        self.solve.publish(StatusResponse {
            logs: vec![VertexLog {
                vertex,
                timestamp: Some(now()),
                stream,
                msg: bytes.to_vec(),
            }],
            ..StatusResponse::default()
        });
    }

    /// The vertex's digest, as clients key it.
    pub fn id(&self) -> String {
        self.digest()
    }

    fn digest(&self) -> String {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .digest
            .clone()
    }

    /// A sub-task that has started; `done()` on what this returns ends it.
    pub fn status_start(&self, name: &str) -> SubTask<'_> {
        let id = name.to_owned();
        let record = VertexStatus {
            id,
            vertex: self.digest(),
            name: name.to_owned(),
            timestamp: Some(now()),
            started: Some(now()),
            ..VertexStatus::default()
        };
        self.publish_status(record.clone());
        SubTask {
            vertex: self,
            record,
        }
    }

    /// A sub-task reported at once (`done`: already finished).
    pub fn status(&self, name: &str, done: bool) {
        let task = self.status_start(name);
        if done {
            task.done();
        }
    }

    /// A sub-task with a byte count (`transferring context: 2.1kB`, a
    /// layer's `2.1MB / 3.4MB`; `total` 0 when unknown).
    pub fn progress(&self, id: &str, current: i64, total: i64, done: bool) {
        let at = now();
        // buildx shows a status only once it has a start, kept the same
        // for each update.
        let started = *self
            .task_starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_insert(at);
        self.publish_status(VertexStatus {
            id: id.to_owned(),
            vertex: self.digest(),
            name: id.to_owned(),
            current,
            total,
            timestamp: Some(at),
            started: Some(started),
            completed: done.then_some(at),
        });
    }

    fn publish_status(&self, status: VertexStatus) {
        self.solve.publish(StatusResponse {
            statuses: vec![status],
            ..StatusResponse::default()
        });
    }
}

pub struct SubTask<'v> {
    vertex: &'v Vertex,
    record: VertexStatus,
}

impl SubTask<'_> {
    pub fn done(mut self) {
        let at = now();
        self.record.timestamp = Some(at);
        self.record.completed = Some(at);
        self.vertex.publish_status(self.record);
    }
}

/// The builder's `Progress`, reported as vertexes of `solve`.
pub struct BuildStatus {
    solve: Arc<Solve>,
    /// Put before each step's name when a solve builds for several
    /// platforms, as BuildKit does.
    platform: Option<String>,
    steps: Mutex<HashMap<ThreadId, Arc<Vertex>>>,
    /// Set by `begin`, used by the `step` that follows on the same thread.
    labels: Mutex<HashMap<ThreadId, String>>,
}

impl BuildStatus {
    pub fn new(solve: &Arc<Solve>) -> BuildStatus {
        BuildStatus {
            solve: solve.clone(),
            platform: None,
            steps: Mutex::default(),
            labels: Mutex::default(),
        }
    }

    fn current(&self) -> Option<Arc<Vertex>> {
        let steps = self.steps.lock().unwrap_or_else(|e| e.into_inner());
        steps.get(&std::thread::current().id()).cloned()
    }

    pub fn for_platform(mut self, platform: Option<String>) -> BuildStatus {
        self.platform = platform;
        self
    }

    /// Starts vertex `name` as this thread's current one, ending the one
    /// before.
    fn open(&self, name: &str) {
        let vertex = Arc::new(Vertex::start(&self.solve, name));
        let previous = self
            .steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(std::thread::current().id(), vertex);
        if let Some(previous) = previous {
            previous.done();
        }
    }

    /// Ends every step still open (the build is over).
    pub fn close(&self, error: Option<&str>) {
        let steps = std::mem::take(&mut *self.steps.lock().unwrap_or_else(|e| e.into_inner()));
        for vertex in steps.values() {
            match error {
                Some(e) => vertex.fail(e),
                None => vertex.done(),
            }
        }
    }
}

impl Progress for BuildStatus {
    fn begin(&self, step: &StepInfo) {
        let label = match (&self.platform, step.label().strip_prefix('[')) {
            (Some(p), Some(rest)) => format!("[{p} {rest}"),
            _ => step.label(),
        };
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        labels.insert(std::thread::current().id(), label);
    }

    fn step(&self, index: usize, total: usize, text: &str) {
        let thread = std::thread::current().id();
        let label = self
            .labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&thread)
            .unwrap_or_else(|| format!("[{index}/{total}] {text}"));
        self.open(&label);
    }

    fn phase(&self, name: &str) {
        self.open(name);
    }

    fn cached(&self) {
        if let Some(v) = self.current() {
            v.cached();
        }
    }

    fn running(&self, _id: &str) {}

    fn done(&self, _id: &Digest) {
        if let Some(v) = self.current() {
            v.done();
        }
    }

    fn output(&self) -> OutputSink {
        let vertex = self.current();
        Arc::new(move |bytes: &[u8]| {
            if let Some(v) = &vertex {
                v.log(1, bytes);
            }
        })
    }

    fn message(&self, text: &str) {
        if let Some(v) = self.current() {
            v.log(2, format!("{text}\n").as_bytes());
        }
    }

    fn pull_progress(&self) -> Arc<dyn ProgressSink> {
        match self.current() {
            Some(vertex) => Arc::new(PullStatus { vertex }),
            None => Arc::new(hutch_images::NoProgress),
        }
    }

    fn failed(&self, error: &BuildError) {
        if let Some(v) = self.current() {
            v.fail(&super::frontend::error_text(error));
        }
    }

    /// BuildKit's lint warnings, under the vertex that loaded the
    /// Dockerfile (`#1 WARN: ...` in plain progress; buildx lists them all
    /// after the build), each once per solve.
    fn warnings(&self, warnings: &[Warning]) {
        let shorts: Vec<String> = warnings.iter().map(Warning::short).collect();
        let (vertex, fresh) = self.solve.new_warnings(&shorts);
        let vertex = vertex.unwrap_or_else(|| {
            // (A git or http context: no Dockerfile vertex of our own.)
            let v = Vertex::start(&self.solve, "[internal] load build definition");
            v.done();
            let id = v.id();
            self.solve.set_definition_vertex(id.clone());
            id
        });
        let published = warnings
            .iter()
            .zip(&shorts)
            .filter(|(_, short)| fresh.contains(short))
            .map(|(w, short)| VertexWarning {
                vertex: vertex.clone(),
                level: 1,
                short: short.clone().into_bytes(),
                detail: vec![w.description().as_bytes().to_vec()],
                url: w.url(),
            })
            .collect::<Vec<_>>();
        if !published.is_empty() {
            self.solve.publish(StatusResponse {
                warnings: published,
                ..StatusResponse::default()
            });
        }
    }
}

/// A base image's pull under its FROM step, as BuildKit shows one: a
/// status per layer with its bytes, then its extraction.
struct PullStatus {
    vertex: Arc<Vertex>,
}

impl ProgressSink for PullStatus {
    fn event(&self, event: ProgressEvent) {
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        match event {
            ProgressEvent::Downloading {
                layer,
                current,
                total,
            } => self.vertex.progress(
                &layer.to_string(),
                bytes(current),
                total.map_or(0, bytes),
                false,
            ),
            ProgressEvent::Extracting { layer, .. } => {
                self.vertex.progress(&layer.to_string(), 0, 0, true);
                self.vertex
                    .progress(&format!("extracting {layer}"), 0, 0, false);
            }
            ProgressEvent::Done { layer } => {
                self.vertex
                    .progress(&format!("extracting {layer}"), 0, 0, true);
            }
            _ => {}
        }
    }
}
