//! Bridge options in the live backend: a bridge's options changed when the lab has the
//! bridge already, a port's options, and waiting for STP to settle.

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::ops::bridge::{settled, SetBridgePort, WaitStp};
use crate::ops::link::CreateBridge;
use crate::ops::Outcome;
use std::time::{Duration, Instant};

impl<K: Kernel> LiveBackend<K> {
    /// `bridge(name, opts)` for a bridge the lab made before: its options, changed.
    pub(super) fn change_bridge(&mut self, op: &CreateBridge) -> Result<Outcome> {
        if !op.opts.is_empty() {
            self.nl.bridge_options(&op.ns, &op.name, &op.opts)?;
        }
        Ok(Outcome::Done)
    }

    pub(super) fn bridge_port(&mut self, op: SetBridgePort) -> Result<Outcome> {
        op.validate()?;
        self.require_owned_link(&op.ns, &op.port, "change")?;
        self.nl.set_bridge_port(&op)?;
        Ok(Outcome::Done)
    }

    /// Poll the bridge's ports until each forwards or blocks, or the time is up.
    pub(super) fn wait_stp(&mut self, op: WaitStp) -> Result<Outcome> {
        let deadline = Instant::now() + Duration::from_millis(op.timeout_ms);
        loop {
            // A port's STP starts once the kernel has seen its carrier (link-watch).
            self.nl.settle()?;
            let ports = self.nl.bridge_ports(&op.ns, &op.bridge)?;
            if ports.iter().all(|p| settled(&p.state)) {
                return Ok(Outcome::Done);
            }
            if Instant::now() >= deadline {
                return Err(op.timed_out(&ports));
            }
            crate::signals::check()?;
            std::thread::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())));
        }
    }
}
