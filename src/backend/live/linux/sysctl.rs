//! sysctl under `/proc/sys/net`, which shows the namespace of the thread that opens
//! it: reads and writes run inside the namespace (through nsexec).

use crate::error::Result;
use crate::nsexec;
use crate::ops::sysctl::{key_path, read_failed, write_failed};
use std::os::fd::BorrowedFd;

pub fn read(ns: BorrowedFd<'_>, key: &str) -> Result<String> {
    let path = key_path(key)?;
    let key = key.to_string();
    nsexec::run_in(ns, move || std::fs::read_to_string(&path).map(|s| s.trim().to_string()).map_err(|e| read_failed(&key, &e)))
}

pub fn write(ns: BorrowedFd<'_>, key: &str, value: &str) -> Result<()> {
    let path = key_path(key)?;
    let (key, value) = (key.to_string(), value.to_string());
    nsexec::run_in(ns, move || std::fs::write(&path, &value).map_err(|e| write_failed(&key, &value, &e)))
}
