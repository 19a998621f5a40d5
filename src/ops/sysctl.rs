//! sysctls of a namespace: `ns.sysctl(key, value)`, `forward`, `ipv6`.

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Write `value` to the sysctl `key` inside `ns`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sysctl {
    pub ns: NsRef,
    pub key: String,
    pub value: String,
}

impl Sysctl {
    pub fn validate(&self) -> Result<()> {
        key_path(&self.key).map(|_| ())
    }

    pub fn shell(&self) -> Step {
        Step::new(
            format!("sysctl in {}", self.ns),
            vec![Sh::inside(&self.ns, "sysctl").raw("-qw").w(format!("{}={}", self.key, self.value)).done()],
        )
    }
}

/// What the ledger keeps of a sysctl changed in a namespace that outlives the lab: the
/// value to restore.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SysctlRecord {
    pub ns: NsRef,
    pub key: String,
    pub old: String,
}

/// `net.ipv4.ip_forward` -> `/proc/sys/net/ipv4/ip_forward`. Keys may also be given
/// with '/' separators (needed when an interface name contains a dot). Only the
/// namespace's own sysctls (under net.) can be set: the others are the machine's.
pub fn key_path(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') { key.trim_start_matches('/').to_string() } else { key.replace('.', "/") };
    let bad = rel.is_empty() || rel.split('/').any(|part| part.is_empty() || part == "..") || !rel.starts_with("net/");
    if bad {
        return Err(Error::new(Code::SysctlRefused, format!("invalid sysctl key {key:?}"))
            .help("namespace sysctls live under net., e.g. \"net.ipv4.ip_forward\""));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

/// Reading `key` failed.
pub fn read_failed(key: &str, e: &std::io::Error) -> Error {
    unknown_key(Error::io(Code::SysctlRefused, format!("cannot read sysctl {key}"), e))
}

/// Writing `value` to `key` failed.
pub fn write_failed(key: &str, value: &str, e: &std::io::Error) -> Error {
    let err = unknown_key(Error::io(Code::SysctlRefused, format!("cannot set sysctl {key} = {value}"), e));
    if err.is_errno(libc::EINVAL) {
        err.help("the kernel refused this value for this key")
    } else {
        err
    }
}

fn unknown_key(err: Error) -> Error {
    if err.is_errno(libc::ENOENT) {
        err.help("this kernel has no such key in a network namespace: check the name with `sysctl -a | grep KEY`")
    } else {
        err
    }
}
