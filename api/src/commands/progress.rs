//! Renders pull and push progress as Docker does: one line per layer that
//! changes in place on a terminal (indicatif bars), or one line per state
//! change when the output is not a terminal.

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;

use hutch_images::digest::Digest;
use hutch_images::{ProgressEvent, ProgressSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Pull,
    Push,
}

pub struct Renderer {
    op: Operation,
    bars: Option<MultiProgress>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    bars: HashMap<Digest, ProgressBar>,
    /// The last line printed per layer (plain output prints changes only).
    last: HashMap<Digest, String>,
}

impl Renderer {
    /// Bars on a terminal; plain lines otherwise.
    pub fn new(op: Operation) -> Renderer {
        let bars = io::stdout()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stdout_with_hz(10)));
        Renderer {
            op,
            bars,
            state: Mutex::new(State::default()),
        }
    }

    /// Prints a line that is not about one layer, above any bars.
    pub fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => {
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
        }
    }

    /// Leaves the bars as they are (finished) before the summary lines.
    pub fn finish(&self) {
        if let Ok(state) = self.state.lock() {
            for bar in state.bars.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
        }
    }

    fn status(&self, event: &ProgressEvent) -> Option<String> {
        let pull = self.op == Operation::Pull;
        Some(match event {
            ProgressEvent::Waiting { .. } if pull => "Pulling fs layer".into(),
            ProgressEvent::Waiting { .. } => "Preparing".into(),
            ProgressEvent::AlreadyExists { .. } if pull => "Already exists".into(),
            ProgressEvent::AlreadyExists { .. } => "Layer already exists".into(),
            ProgressEvent::Downloading { .. } if pull => "Downloading".into(),
            ProgressEvent::Downloading { .. } => "Pushing".into(),
            ProgressEvent::Verifying { .. } => "Verifying Checksum".into(),
            ProgressEvent::Extracting { .. } => "Extracting".into(),
            ProgressEvent::Mounted { from, .. } => format!("Mounted from {from}"),
            ProgressEvent::Done { .. } if pull => "Pull complete".into(),
            ProgressEvent::Done { .. } => "Pushed".into(),
            ProgressEvent::Resolving { .. } | ProgressEvent::Complete { .. } => return None,
        })
    }
}

impl ProgressSink for Renderer {
    fn event(&self, event: ProgressEvent) {
        let (Some(layer), Some(status)) = (event.layer().cloned(), self.status(&event)) else {
            return;
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let id = layer.short().to_owned();
        match &self.bars {
            Some(bars) => {
                let bar = state
                    .bars
                    .entry(layer)
                    .or_insert_with(|| {
                        let bar = bars.add(ProgressBar::new(0));
                        bar.set_style(idle_style());
                        bar.set_prefix(id);
                        bar
                    })
                    .clone();
                match event {
                    ProgressEvent::Downloading { current, total, .. } => {
                        if bar.length() != total {
                            bar.set_style(transfer_style());
                            if let Some(total) = total {
                                bar.set_length(total);
                            }
                        }
                        bar.set_position(current);
                        bar.set_message(status);
                    }
                    ProgressEvent::Done { .. }
                    | ProgressEvent::AlreadyExists { .. }
                    | ProgressEvent::Mounted { .. } => {
                        bar.set_style(idle_style());
                        bar.finish_with_message(status);
                    }
                    _ => {
                        bar.set_style(idle_style());
                        bar.set_message(status);
                    }
                }
            }
            None => {
                // Without a terminal, Docker prints state changes only.
                if state.last.get(&layer) == Some(&status) {
                    return;
                }
                state.last.insert(layer, status.clone());
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{id}: {status}");
                if matches!(event, ProgressEvent::Verifying { .. }) {
                    let _ = writeln!(out, "{id}: Download complete");
                }
            }
        }
    }
}

fn idle_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_bar())
}

fn transfer_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix}: {msg} [{bar:50}] {bytes}/{total_bytes}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}
