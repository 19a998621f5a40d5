//! What taking a lab down did, object by object: the report `down`, a rollback and
//! `--replace` print.

#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<String>,
    /// Objects left alone on purpose: already gone, or no longer the one recorded.
    pub skipped: Vec<String>,
    /// Objects that could not be removed (the ledger is kept for another try).
    pub failed: Vec<String>,
    /// What it waited for, and how long (processes to end, the kernel to free links).
    pub waited: Vec<String>,
}

impl Report {
    pub fn removed(&mut self, what: impl Into<String>) {
        self.removed.push(what.into());
    }

    pub fn skipped(&mut self, what: impl Into<String>) {
        self.skipped.push(what.into());
    }

    pub fn failed(&mut self, what: impl Into<String>) {
        self.failed.push(what.into());
    }

    /// `what` was waited for from `since` until now.
    pub fn waited(&mut self, what: impl std::fmt::Display, since: std::time::Instant) {
        self.waited.push(format!("{} ms for {what}", since.elapsed().as_millis()));
    }
}
