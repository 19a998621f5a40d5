//! A progress line for long builds: shown on a terminal once a run has taken more than
//! a second, never otherwise (pipes, CI and short labs stay silent). Whatever else
//! prints to stderr meanwhile (warnings, `-v` logs) goes through [`suspend`], so the
//! line is redrawn below it instead of being written over.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The progress line on screen, if any.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Run `f` (which prints to stderr) with the progress line taken away meanwhile.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match shown {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

pub struct Progress {
    start: Instant,
    ops: u64,
    bar: Option<ProgressBar>,
    enabled: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress { start: Instant::now(), ops: 0, bar: None, enabled: std::io::stderr().is_terminal() }
    }
}

impl Progress {
    /// One more kernel operation done; `what` says where the build is.
    pub fn tick(&mut self, what: impl FnOnce() -> String) {
        // The clock starts with the first operation of a build (or of a REPL entry), not
        // when the last one ended: time spent at the prompt is not building.
        if self.ops == 0 {
            self.start = Instant::now();
        }
        self.ops += 1;
        if !self.enabled {
            return;
        }
        if self.bar.is_none() {
            if self.start.elapsed() < Duration::from_secs(1) {
                return;
            }
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("a valid template"));
            bar.enable_steady_tick(Duration::from_millis(120));
            *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar.clone());
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} operations: {}", self.ops, what()));
        }
    }

    /// The build is over (or failed): take the line away.
    pub fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            SHOWN.lock().unwrap_or_else(|e| e.into_inner()).take();
            bar.finish_and_clear();
        }
        self.start = Instant::now();
        self.ops = 0;
    }
}
