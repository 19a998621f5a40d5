//! sysctl under `/proc/sys/net`, which shows the namespace of the thread that opens
//! it: reads and writes run inside the namespace (through nsexec).

use crate::error::{Code, Error, Result};
use crate::nsexec;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;

/// `net.ipv4.ip_forward` -> `/proc/sys/net/ipv4/ip_forward`. Keys may also be given
/// with '/' separators (needed when an interface name contains a dot).
pub fn key_path(key: &str) -> Result<PathBuf> {
    let rel = if key.contains('/') { key.trim_start_matches('/').to_string() } else { key.replace('.', "/") };
    let bad = rel.is_empty() || rel.split('/').any(|part| part.is_empty() || part == "..") || !rel.starts_with("net/");
    if bad {
        return Err(Error::new(Code::SysctlRefused, format!("invalid sysctl key {key:?}"))
            .help("namespace sysctls live under net., e.g. \"net.ipv4.ip_forward\""));
    }
    Ok(PathBuf::from("/proc/sys").join(rel))
}

pub fn read(ns: BorrowedFd<'_>, key: &str) -> Result<String> {
    let path = key_path(key)?;
    let key = key.to_string();
    nsexec::run_in(ns, move || {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| unknown_key(Error::io(Code::SysctlRefused, format!("cannot read sysctl {key}"), &e)))
    })
}

pub fn write(ns: BorrowedFd<'_>, key: &str, value: &str) -> Result<()> {
    let path = key_path(key)?;
    let (key, value) = (key.to_string(), value.to_string());
    nsexec::run_in(ns, move || {
        std::fs::write(&path, &value).map_err(|e| {
            let err = unknown_key(Error::io(Code::SysctlRefused, format!("cannot set sysctl {key} = {value}"), &e));
            if err.is_errno(libc::EINVAL) {
                err.help("the kernel refused this value for this key")
            } else {
                err
            }
        })
    })
}

fn unknown_key(err: Error) -> Error {
    if err.is_errno(libc::ENOENT) {
        err.help("this kernel has no such key in a network namespace: check the name with `sysctl -a | grep KEY`")
    } else {
        err
    }
}
