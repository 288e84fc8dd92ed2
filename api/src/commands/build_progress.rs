//! `hutch build --progress=tty`: BuildKit's terminal view of a build. One
//! line per step (`[stage 2/4] RUN make`) with a spinner and the elapsed time
//! while it runs, `CACHED` / `DONE 1.2s` / `ERROR` once it ends; a base image
//! pull's layers under its FROM; the last lines of a running RUN's output
//! under its step; and, when a step fails, its whole output after the bars.
//! Finished steps are printed above the live area (so it only holds running
//! steps and fits any terminal), the way BuildKit scrolls its finished lines.
//!
//! The executor reports steps as a sequence of calls per thread (stages of a
//! wave build on threads of their own), so the step a `cached` or `done`
//! call is about is the one begun last on the calling thread.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use hutch_builder::exec::{BuildError, OutputSink, Progress, StepInfo};
use hutch_builder::Warning;
use hutch_images::{Digest, ProgressEvent, ProgressSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use super::humanize::human_size;

/// Lines of a running RUN's output shown under its step.
const TAIL_LINES: usize = 6;
/// A failed step's output is printed whole up to this many bytes (its end).
const MAX_OUTPUT: usize = 4 << 20;

/// The lint warnings as buildx lists them after a build (empty when there
/// are none): a count, then each rule with its message and line, its
/// description and page.
pub fn warnings_summary(warnings: &[Warning]) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let mut out = match warnings.len() {
        1 => "\n 1 warning found:\n".to_owned(),
        n => format!("\n {n} warnings found:\n"),
    };
    for w in warnings {
        out.push_str(&format!(" - {}\n", w.short()));
        out.push_str(&format!("   {} ({})\n", w.description(), w.url()));
    }
    out
}

/// `--progress`: how `hutch build` shows a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// BuildKit's terminal view.
    Tty,
    /// Docker's legacy builder lines (`Step 1/3 : FROM ...`).
    Plain,
    /// Nothing but the image ID (and errors).
    Quiet,
}

impl Mode {
    /// `auto` is `tty` when stderr is a terminal, else `plain`.
    pub fn parse(value: &str) -> anyhow::Result<Mode> {
        let tty = std::io::stderr().is_terminal();
        Ok(match value {
            "auto" if tty => Mode::Tty,
            "auto" | "plain" => Mode::Plain,
            "tty" if tty => Mode::Tty,
            "tty" => anyhow::bail!("--progress=tty needs a terminal on stderr (use plain)"),
            "quiet" => Mode::Quiet,
            other => anyhow::bail!("invalid --progress {other:?}: use auto, tty, plain or quiet"),
        })
    }
}

/// Reports nothing (`--progress=quiet`).
pub struct Quiet;

impl Progress for Quiet {
    fn step(&self, _: usize, _: usize, _: &str) {}
    fn cached(&self) {}
    fn running(&self, _: &str) {}
    fn done(&self, _: &Digest) {}
    fn output(&self) -> OutputSink {
        Arc::new(|_: &[u8]| {})
    }
    fn message(&self, _: &str) {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Cached,
    Done,
    Error,
    Canceled,
}

struct Step {
    label: String,
    bar: ProgressBar,
    started: Instant,
    cached: bool,
    status: Status,
    /// Everything the step printed (its end, past `MAX_OUTPUT`).
    output: Vec<u8>,
    /// The line being written (no newline yet).
    partial: String,
    tail: Vec<String>,
    tail_bars: Vec<ProgressBar>,
    /// Layer lines, in the order the pull reported them.
    layers: Vec<(Digest, ProgressBar)>,
    /// The last line under this step (new layer or tail lines go after it).
    last: ProgressBar,
}

struct State {
    steps: Vec<Step>,
    current: HashMap<ThreadId, usize>,
    /// The Dockerfile's lint warnings, listed after the build.
    warnings: Vec<Warning>,
}

struct Inner {
    multi: MultiProgress,
    header: ProgressBar,
    started: Instant,
    state: Mutex<State>,
}

/// The terminal renderer (`--progress=tty`).
pub struct Tty {
    inner: Arc<Inner>,
}

fn secs_key(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key("secs", secs_key)
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

/// Output as one printable line (no escapes or carriage returns).
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim_end()
        .to_string()
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish_step(&self, step: &mut Step, status: Status) {
        if step.status != Status::Running {
            return;
        }
        step.status = status;
        let took = step.started.elapsed().as_secs_f64();
        let end = match status {
            Status::Cached => "CACHED".to_string(),
            Status::Error => format!("ERROR {took:.1}s"),
            Status::Canceled => format!("CANCELED {took:.1}s"),
            _ => format!("DONE {took:.1}s"),
        };
        // A finished step leaves the live area for the scrollback above
        // it, with its layers: the live area keeps only running steps, so
        // it fits the terminal however long the Dockerfile (indicatif stops
        // drawing at the terminal's height).
        let mut lines = vec![format!(" => {}  {end}", step.label)];
        step.bar.finish();
        self.multi.remove(&step.bar);
        for (_, b) in &step.layers {
            lines.push(format!(" => => {} {}", b.prefix(), b.message()));
            b.finish();
            self.multi.remove(b);
        }
        // The output tail goes with the step (a failure prints it whole).
        for b in step.tail_bars.drain(..) {
            self.multi.remove(&b);
        }
        let _ = self.multi.println(lines.join("\n"));
    }

    fn add_line(&self, step: &mut Step, bar: ProgressBar) -> ProgressBar {
        let bar = self.multi.insert_after(&step.last, bar);
        step.last = bar.clone();
        bar
    }

    fn write_output(&self, index: usize, bytes: &[u8]) {
        let mut state = self.lock();
        let Some(step) = state.steps.get_mut(index) else {
            return;
        };
        step.output.extend_from_slice(bytes);
        if step.output.len() > MAX_OUTPUT {
            let cut = step.output.len() - MAX_OUTPUT;
            step.output.drain(..cut);
        }
        step.partial.push_str(&String::from_utf8_lossy(bytes));
        while let Some(nl) = step.partial.find('\n') {
            let line: String = step.partial.drain(..=nl).collect();
            // A progress meter's carriage returns: its last state counts.
            let line = line
                .rsplit('\r')
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            step.tail.push(printable(line));
            if step.tail.len() > TAIL_LINES {
                step.tail.remove(0);
            }
        }
        if step.status != Status::Running {
            return;
        }
        while step.tail_bars.len() < step.tail.len() {
            let bar = ProgressBar::hidden().with_style(style("     {wide_msg:.dim}"));
            let bar = self.add_line(step, bar);
            step.tail_bars.push(bar);
        }
        for (bar, line) in step.tail_bars.iter().zip(&step.tail) {
            bar.set_message(line.clone());
        }
    }

    fn layer_event(&self, index: usize, event: ProgressEvent) {
        let Some(layer) = event.layer().cloned() else {
            return;
        };
        let mut state = self.lock();
        let Some(step) = state.steps.get_mut(index) else {
            return;
        };
        if step.status != Status::Running {
            return;
        }
        let bar = match step.layers.iter().find(|(d, _)| *d == layer) {
            Some((_, b)) => b.clone(),
            None => {
                let bar = ProgressBar::hidden().with_style(style(" => => {prefix} {wide_msg}"));
                bar.set_prefix(format!("sha256:{}", layer.short()));
                let bar = self.add_line(step, bar);
                step.layers.push((layer.clone(), bar.clone()));
                bar
            }
        };
        let amount = |current: u64, total: Option<u64>| match total {
            Some(t) => format!("{} / {}", human_size(current), human_size(t)),
            None => human_size(current),
        };
        match event {
            ProgressEvent::Waiting { .. } => bar.set_message("waiting"),
            ProgressEvent::AlreadyExists { .. } => bar.finish_with_message("already exists"),
            ProgressEvent::Downloading { current, total, .. } => {
                bar.set_message(format!("{} downloading", amount(current, total)))
            }
            ProgressEvent::Verifying { .. } => bar.set_message("verifying"),
            ProgressEvent::Extracting { current, total, .. } => {
                bar.set_message(format!("{} extracting", amount(current, total)))
            }
            ProgressEvent::Done { .. } => bar.finish_with_message("done"),
            _ => {}
        }
    }
}

impl Tty {
    pub fn new() -> Tty {
        Tty::with_target(ProgressDrawTarget::stderr_with_hz(10))
    }

    fn with_target(target: ProgressDrawTarget) -> Tty {
        let multi = MultiProgress::with_draw_target(target);
        let header =
            multi.add(ProgressBar::new_spinner().with_style(style("[+] Building {secs} {msg}")));
        header.enable_steady_tick(Duration::from_millis(100));
        Tty {
            inner: Arc::new(Inner {
                multi,
                header,
                started: Instant::now(),
                state: Mutex::new(State {
                    steps: Vec::new(),
                    current: HashMap::new(),
                    warnings: Vec::new(),
                }),
            }),
        }
    }

    fn current(&self) -> Option<usize> {
        let state = self.inner.lock();
        state.current.get(&std::thread::current().id()).copied()
    }

    fn with_current(&self, f: impl FnOnce(&Inner, &mut Step)) {
        let inner = &self.inner;
        let mut state = inner.lock();
        let Some(&i) = state.current.get(&std::thread::current().id()) else {
            return;
        };
        if let Some(step) = state.steps.get_mut(i) {
            f(inner, step);
        }
    }

    fn update_header(&self, state: &State) {
        let done = state
            .steps
            .iter()
            .filter(|s| s.status != Status::Running)
            .count();
        self.inner
            .header
            .set_message(format!("({done}/{})", state.steps.len()));
    }

    /// Ends the view: every step still running ends as `ok` says, the header
    /// shows FINISHED or ERROR, and a failure prints the failed steps'
    /// output (BuildKit's `------ > [2/3] RUN ...:` block) and the error.
    pub fn finish(&self, result: Result<&hutch_builder::exec::Built, &BuildError>) {
        let inner = &self.inner;
        let mut state = inner.lock();
        let ok = result.is_ok();
        for i in 0..state.steps.len() {
            let step = &mut state.steps[i];
            let status = if ok { Status::Done } else { Status::Canceled };
            let status = if step.cached { Status::Cached } else { status };
            inner.finish_step(step, status);
        }
        let total = state.steps.len();
        let took = inner.started.elapsed().as_secs_f64();
        let word = if ok { "FINISHED" } else { "ERROR" };
        inner.header.set_style(style(&format!(
            "[+] Building {took:.1}s ({total}/{total}) {word}"
        )));
        inner.header.finish();
        let failed: Vec<(String, Vec<u8>)> = state
            .steps
            .iter()
            .filter(|s| s.status == Status::Error && !s.output.is_empty())
            .map(|s| (s.label.clone(), s.output.clone()))
            .collect();
        let warnings = std::mem::take(&mut state.warnings);
        drop(state);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(warnings_summary(&warnings).as_bytes());
        match result {
            Ok(built) => {
                let _ = writeln!(err, " => writing image {}", built.id);
                for n in &built.names {
                    let _ = writeln!(err, " => naming to {n}");
                }
            }
            Err(e) => {
                for (label, output) in failed {
                    let _ = writeln!(err, "------\n > {label}:");
                    let _ = err.write_all(&output);
                    if !output.is_empty() && !output.ends_with(b"\n") {
                        let _ = writeln!(err);
                    }
                    let _ = writeln!(err, "------");
                }
                match e {
                    BuildError::RunFailed { command, code, .. } => {
                        let _ = writeln!(
                            err,
                            "ERROR: process \"{command}\" did not complete successfully: exit code: {code}"
                        );
                    }
                    other => {
                        let _ = writeln!(err, "ERROR: {other}");
                    }
                }
            }
        }
    }
}

impl Default for Tty {
    fn default() -> Self {
        Tty::new()
    }
}

impl Progress for Tty {
    fn warnings(&self, warnings: &[Warning]) {
        self.inner.lock().warnings.extend_from_slice(warnings);
    }

    fn begin(&self, info: &StepInfo) {
        let inner = &self.inner;
        let mut state = inner.lock();
        let thread = std::thread::current().id();
        // A step with nothing to report at its end (FROM scratch) ends when
        // the next one of its stage begins.
        if let Some(&prev) = state.current.get(&thread) {
            if let Some(step) = state.steps.get_mut(prev) {
                let status = if step.cached {
                    Status::Cached
                } else {
                    Status::Done
                };
                inner.finish_step(step, status);
            }
        }
        let label = info.label();
        let bar = ProgressBar::new_spinner().with_style(style(" {spinner} {wide_msg} {secs}"));
        bar.set_message(label.clone());
        let bar = inner.multi.add(bar);
        bar.enable_steady_tick(Duration::from_millis(100));
        state.steps.push(Step {
            label,
            bar: bar.clone(),
            started: Instant::now(),
            cached: false,
            status: Status::Running,
            output: Vec::new(),
            partial: String::new(),
            tail: Vec::new(),
            tail_bars: Vec::new(),
            layers: Vec::new(),
            last: bar,
        });
        let i = state.steps.len() - 1;
        state.current.insert(thread, i);
        self.update_header(&state);
    }

    fn step(&self, _index: usize, _total: usize, _text: &str) {}

    fn cached(&self) {
        self.with_current(|_, step| step.cached = true);
    }

    fn running(&self, _id: &str) {}

    fn done(&self, _id: &Digest) {
        self.with_current(|inner, step| {
            let status = if step.cached {
                Status::Cached
            } else {
                Status::Done
            };
            inner.finish_step(step, status);
        });
        let state = self.inner.lock();
        self.update_header(&state);
    }

    fn output(&self) -> OutputSink {
        let inner = self.inner.clone();
        let index = self.current();
        Arc::new(move |bytes: &[u8]| {
            if let Some(i) = index {
                inner.write_output(i, bytes);
            }
        })
    }

    fn message(&self, text: &str) {
        // Pulls show as layer lines under their FROM.
        if text.starts_with("Pulling ") {
            return;
        }
        let _ = self.inner.multi.println(text);
    }

    fn failed(&self, error: &BuildError) {
        let status = if matches!(error, BuildError::Cancelled) {
            Status::Canceled
        } else {
            Status::Error
        };
        self.with_current(|inner, step| inner.finish_step(step, status));
    }

    fn pull_progress(&self) -> Arc<dyn ProgressSink> {
        Arc::new(Layers {
            inner: self.inner.clone(),
            index: self.current(),
        })
    }
}

/// A base image pull's layers, under the FROM that pulls it.
struct Layers {
    inner: Arc<Inner>,
    index: Option<usize>,
}

impl ProgressSink for Layers {
    fn event(&self, event: ProgressEvent) {
        if let Some(i) = self.index {
            self.inner.layer_event(i, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(stage: &str, index: usize, text: &str) -> StepInfo {
        StepInfo {
            stage: stage.into(),
            index,
            count: 2,
            text: text.into(),
        }
    }

    fn statuses(tty: &Tty) -> Vec<(String, Status)> {
        let state = tty.inner.lock();
        state
            .steps
            .iter()
            .map(|s| (s.label.clone(), s.status))
            .collect()
    }

    #[test]
    fn output_tail_keeps_the_last_lines_and_a_meters_last_state() {
        let tty = Tty::with_target(ProgressDrawTarget::hidden());
        tty.begin(&info("", 2, "RUN make"));
        let out = tty.output();
        out(b"one\ntw");
        out(b"o\r\nmeter 10%\rmeter 100%\n");
        {
            let state = tty.inner.lock();
            assert_eq!(state.steps[0].tail, ["one", "two", "meter 100%"]);
        }
        for i in 0..10 {
            out(format!("line {i}\n").as_bytes());
        }
        let state = tty.inner.lock();
        assert_eq!(state.steps[0].tail.len(), TAIL_LINES);
        assert_eq!(
            state.steps[0].tail.last().map(String::as_str),
            Some("line 9")
        );
        assert_eq!(state.steps[0].tail_bars.len(), TAIL_LINES);
        assert!(String::from_utf8_lossy(&state.steps[0].output).starts_with("one\ntwo\r\n"));
    }

    #[test]
    fn steps_follow_their_thread() {
        let tty = Tty::with_target(ProgressDrawTarget::hidden());
        tty.begin(&info("a", 1, "FROM x"));
        std::thread::scope(|s| {
            s.spawn(|| {
                tty.begin(&info("b", 1, "FROM y"));
                tty.cached();
                tty.done(&Digest::of(b"y"));
            });
        });
        let got = statuses(&tty);
        assert_eq!(got[0], ("[a 1/2] FROM x".to_string(), Status::Running));
        assert_eq!(got[1], ("[b 1/2] FROM y".to_string(), Status::Cached));
        // The next step of a stage ends the one before it.
        tty.begin(&info("a", 2, "RUN false"));
        tty.failed(&BuildError::Run("boom".into()));
        let got = statuses(&tty);
        assert_eq!(got[0].1, Status::Done);
        assert_eq!(got[2].1, Status::Error);
        // Its tail lines go; the output stays for the error report.
        let state = tty.inner.lock();
        assert!(state.steps[2].tail_bars.is_empty());
    }
}
