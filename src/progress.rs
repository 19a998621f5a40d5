//! A progress line for long builds: shown on a terminal once a run has taken more than
//! a second, never otherwise (pipes, CI and short labs stay silent).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

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
            self.bar = Some(bar);
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} operations: {}", self.ops, what()));
        }
    }

    /// The build is over (or failed): take the line away.
    pub fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.start = Instant::now();
        self.ops = 0;
    }
}
