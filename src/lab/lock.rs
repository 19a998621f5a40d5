//! Locks that keep runs of nsscript from interleaving (flock(2): released by the
//! kernel when the holder exits, also after SIGKILL, so a lock is never stale).
//!
//! - The *lab lock* (`/run/nsscript/locks/LAB.lock`) is held by the one process that
//!   builds, changes or takes down a lab, for its whole life. A second run of the
//!   same lab, or `down` while it builds, is refused at once with the holder's pid.
//!   Lock files are never deleted (deleting a lock file races with a newcomer that
//!   opens it); each is a few bytes on /run's tmpfs.
//! - The *name lock* (`/run/nsscript/names.lock`) is held briefly around every
//!   create (ledger intent, kernel call, ledger result) and around every teardown, so
//!   two labs that claim the same namespace or link name never interleave: one
//!   creates it and records it, the other then finds it taken and is refused.

use crate::error::{Code, Error, Result};
use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn lock_dir() -> PathBuf {
    super::state_root().join("locks")
}

fn names_lock() -> PathBuf {
    super::state_root().join("names.lock")
}

/// How long a create may wait for another run's create or teardown.
const NAMES_WAIT: Duration = Duration::from_secs(30);

fn open_lock_file(path: &PathBuf) -> Result<File> {
    super::state_dir(path.parent().expect("lock files live in a directory"))?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io(Code::IoFailed, format!("cannot open the lock file {}", path.display()), &e))
}

/// flock(2) without waiting: Ok(true) when taken, Ok(false) when someone holds it.
fn try_flock(f: &File) -> std::io::Result<bool> {
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// The lock on one lab, held until dropped or until the process exits.
pub struct LabLock {
    pub lab: String,
    _file: File,
}

pub fn lab_lock_path(lab: &str) -> PathBuf {
    lock_dir().join(format!("{lab}.lock"))
}

/// Take the lock of `lab` for `doing` ("building it", "taking it down"), or say who
/// holds it. Never waits.
pub fn lab(lab: &str, doing: &str) -> Result<LabLock> {
    crate::ops::names::validate_lab_name(lab)?;
    let path = lab_lock_path(lab);
    let mut f = open_lock_file(&path)?;
    let taken = try_flock(&f).map_err(|e| Error::io(Code::IoFailed, format!("cannot lock lab {lab:?}"), &e))?;
    if !taken {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = match holder.split_once(' ') {
            Some((pid, doing)) => format!("nsscript pid {pid} ({doing})"),
            None if holder.is_empty() => "another nsscript process".to_string(),
            None => format!("nsscript pid {holder}"),
        };
        return Err(Error::new(Code::LabBusy, format!("lab {lab:?} is busy"))
            .why(format!("{who} holds its lock ({})", path.display()))
            .help(
                "two runs never work on one lab at once: wait for the other run to end (or stop it with Ctrl-C), then try again; \
                 to run a second copy side by side, give it another name with --name (its namespace and link names must differ too)",
            ));
    }
    // Who holds it, for the message above (pid and what it does).
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{} {doing}", std::process::id());
    Ok(LabLock { lab: lab.to_string(), _file: f })
}

/// The lab lock this process holds for its run, if any.
static HELD: Mutex<Option<LabLock>> = Mutex::new(None);

/// Take the lock of `lab` and keep it for the rest of the process (a lab renamed by
/// `lab("NAME")` moves its lock: the new one is taken before the old one is let go).
pub fn hold(lab_name: &str, doing: &str) -> Result<()> {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if held.as_ref().is_some_and(|l| l.lab == lab_name) {
        return Ok(());
    }
    let new = lab(lab_name, doing)?;
    *held = Some(new);
    Ok(())
}

static NAMES_FILE: OnceLock<File> = OnceLock::new();

thread_local! {
    static NAMES_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// The name lock, held while the guard lives. Re-entrant within a thread.
pub struct NamesGuard(());

pub fn names() -> Result<NamesGuard> {
    if NAMES_DEPTH.with(|d| d.get()) > 0 {
        NAMES_DEPTH.with(|d| d.set(d.get() + 1));
        return Ok(NamesGuard(()));
    }
    let f = match NAMES_FILE.get() {
        Some(f) => f,
        None => {
            let f = open_lock_file(&names_lock())?;
            let _ = NAMES_FILE.set(f);
            NAMES_FILE.get().expect("just set")
        }
    };
    let start = Instant::now();
    loop {
        if try_flock(f).map_err(|e| Error::io(Code::IoFailed, "cannot take the name lock", &e))? {
            break;
        }
        if start.elapsed() > NAMES_WAIT {
            return Err(Error::new(Code::LabBusy, "another nsscript run holds the name lock for too long")
                .why(format!("waited {} s for {}", NAMES_WAIT.as_secs(), names_lock().display()))
                .help("another nsscript process is stuck while creating or removing objects (stopped with Ctrl-Z?); resume or end it"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    NAMES_DEPTH.with(|d| d.set(1));
    Ok(NamesGuard(()))
}

impl Drop for NamesGuard {
    fn drop(&mut self) {
        let left = NAMES_DEPTH.with(|d| {
            let n = d.get().saturating_sub(1);
            d.set(n);
            n
        });
        if left == 0 {
            if let Some(f) = NAMES_FILE.get() {
                // SAFETY: flock on an fd we own.
                unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
            }
        }
    }
}
