//! The live backend's side of `capture()` and `trace()`: captures run in the
//! background (`capture::Capture`, one thread for all their links) and are kept here
//! by id until the script stops them; a trace runs to its end (`trace::trace`).

use super::capture::{self, Capture, Tap};
use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::{Code, Error, Result};
use crate::ops::capture::{CaptureOp, CaptureStats, StartCapture};
use crate::ops::trace::{Trace, TraceResult};
use crate::ops::Outcome;
use std::collections::HashMap;
use std::path::PathBuf;

/// Bytes of each packet a script's capture keeps for `packets()`: every header a
/// summary reads, VXLAN's inner frame included.
const KEEP: usize = 512;

#[derive(Default)]
pub struct Captures {
    running: HashMap<u64, (Capture, Option<PathBuf>)>,
    next: u64,
}

impl<K: Kernel> LiveBackend<K> {
    pub(super) fn capture(&mut self, op: CaptureOp) -> Result<Outcome> {
        match op {
            CaptureOp::Start(s) => self.start_capture(s).map(Outcome::Capture),
            CaptureOp::Stop(id) => {
                let Some((cap, file)) = self.captures.running.get_mut(&id) else {
                    return Ok(Outcome::CaptureStats(CaptureStats::default()));
                };
                let (packets, dropped) = cap.stop()?;
                Ok(Outcome::CaptureStats(CaptureStats { packets, dropped, file: file.clone() }))
            }
            CaptureOp::Packets(id) => {
                let Some((cap, _)) = self.captures.running.get(&id) else { return Ok(Outcome::Packets(Vec::new())) };
                let targets = cap.targets().to_vec();
                Ok(Outcome::Packets(cap.frames().iter().map(|f| f.packet(&targets[f.tap])).collect()))
            }
        }
    }

    fn start_capture(&mut self, s: StartCapture) -> Result<u64> {
        s.validate()?;
        let mut taps = Vec::with_capacity(s.targets.len());
        for t in &s.targets {
            taps.push(Tap { target: t.clone(), index: self.nl.require_link(&t.ns, &t.link)? });
        }
        let file: Option<Box<dyn std::io::Write + Send>> = match &s.file {
            Some(path) => Some(Box::new(
                std::fs::File::create(path).map_err(|e| Error::io(Code::IoFailed, format!("cannot create {}", path.display()), &e))?,
            )),
            None => None,
        };
        let opts =
            capture::Options { filter: s.filter.clone(), snaplen: s.snaplen, count: s.count, file, keep: KEEP, ..Default::default() };
        let cap = Capture::start(self.nl.kernel(), &taps, opts)?;
        self.captures.next += 1;
        let id = self.captures.next;
        self.captures.running.insert(id, (cap, s.file.clone()));
        Ok(id)
    }

    pub(super) fn trace(&mut self, t: Trace) -> Result<TraceResult> {
        super::trace::trace(&mut self.nl, &self.state, &t)
    }
}
