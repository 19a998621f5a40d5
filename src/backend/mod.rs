//! Backends execute [`Op`]s. `live` changes the kernel and keeps the lab's ledger;
//! a recording backend (for `plan`/`graph`) can implement the same trait.

pub mod live;
pub mod plan;

use crate::error::{Origin, Result};
use crate::ops::{Op, Outcome};

pub trait Backend {
    fn apply(&mut self, op: Op) -> Result<Outcome>;
    /// Apply ops that do not depend on each other's answers (they may be pipelined);
    /// the first refusal is the error.
    fn apply_all(&mut self, ops: Vec<Op>) -> Result<()> {
        for op in ops {
            self.apply(op)?;
        }
        Ok(())
    }
    /// The lab's name; settable until the first object is created.
    fn lab_name(&self) -> String;
    fn set_lab_name(&mut self, name: &str) -> Result<()>;
    /// Whether reachability checks (`assert_ping`, `pingall`...) can be trusted: a
    /// recording backend runs nothing, so its answers are guesses and failed checks are
    /// reported, not fatal.
    fn checks_are_advisory(&self) -> bool {
        false
    }
    /// The script call the next ops serve (None between calls): a pipelining backend
    /// keeps it with requests whose refusal may come after the call returned.
    fn set_origin(&mut self, _origin: Option<Origin>) {}
    /// A pause for the lab to settle (`sleep(ms)`): what is queued is sent first; a
    /// SIGINT/SIGTERM ends it at once.
    fn pause(&mut self, ms: u32) -> Result<()> {
        self.flush()?;
        crate::signals::sleep(std::time::Duration::from_millis(ms.into()))
    }
    /// Send whatever is queued now (before a pause, say), and report its refusals.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Complete whatever is still in flight (a pipelining backend's queued requests).
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
    /// The namespaces the lab created, in creation order.
    fn lab_netns(&self) -> Vec<String> {
        Vec::new()
    }
}
