//! Up-front checks for what nsscript needs from the system, and waiting for Ctrl-C.

use crate::error::{Code, Error, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(0))))
        .unwrap_or(0)
}

/// Building labs needs CAP_NET_ADMIN (netlink) and CAP_SYS_ADMIN (setns, mounts).
pub fn require_root(what: &str) -> Result<()> {
    let caps = effective_caps();
    let missing: Vec<&str> = [(CAP_NET_ADMIN, "CAP_NET_ADMIN"), (CAP_SYS_ADMIN, "CAP_SYS_ADMIN")]
        .iter()
        .filter(|(bit, _)| caps & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::new(Code::NotRoot, format!("{what} needs root"))
        .why(format!("this process lacks {}", missing.join(" and ")))
        .help("run it with sudo (labs create namespaces and links, which only root may do)"))
}

/// Block until SIGINT or SIGTERM (through the signal thread when it runs).
pub fn wait_for_interrupt() {
    crate::signals::wait();
}

/// Whether this process has what building a lab needs (root, or root of its own user
/// namespace).
pub fn is_privileged() -> bool {
    let caps = effective_caps();
    caps & (1 << CAP_NET_ADMIN) != 0 && caps & (1 << CAP_SYS_ADMIN) != 0
}
