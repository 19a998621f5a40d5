//! SIGINT and SIGTERM while a lab is being built.
//!
//! [`install`] blocks both signals in the main thread before any other thread exists
//! (so every thread inherits the mask; child processes get a clean mask from std) and
//! starts one thread that waits for them with sigwait(2). A signal only sets a flag:
//! the live backend checks it before every op, Rhai's `on_progress` stops a running
//! script, and `main` then rolls back (or keeps, with `--keep`) and exits with
//! 128 + the signal's number. An op in flight always completes and is recorded, so the
//! ledger never lies. SIGKILL cannot be caught: the ledger written before each create
//! is what lets `nsscript down` clean up after it.

use crate::error::{Code, Error, Result};
use nix::sys::signal::{SigSet, Signal};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// REPL mode: a signal stops one entry and is then forgotten.
static PER_ENTRY: AtomicBool = AtomicBool::new(false);
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
static INSTALLED: OnceLock<()> = OnceLock::new();

fn set() -> SigSet {
    let mut set = SigSet::empty();
    // A shell starts background jobs with SIGINT ignored (so a Ctrl-C meant for the
    // foreground does not reach them): keep it ignored then, as POSIX advises.
    if !ignored(Signal::SIGINT) {
        set.add(Signal::SIGINT);
    }
    set.add(Signal::SIGTERM);
    set
}

/// Whether `sig` was set to SIG_IGN by whoever started us.
fn ignored(sig: Signal) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig as libc::c_int, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Catch SIGINT and SIGTERM from now on. Call on the main thread before any other
/// thread is started.
pub fn install() -> Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    let set = set();
    set.thread_block().map_err(|e| Error::new(Code::Internal, "cannot block SIGINT and SIGTERM").errno(e as i32))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            if let Ok(sig) = set.wait() {
                // The first signal wins; later ones (a second Ctrl-C during rollback)
                // do not cut the rollback short.
                let _ = SIGNAL.compare_exchange(0, sig as i32, Ordering::SeqCst, Ordering::SeqCst);
                let _guard = WAKE.0.lock().unwrap_or_else(|p| p.into_inner());
                WAKE.1.notify_all();
            }
        })
        .map_err(|e| Error::io(Code::Internal, "cannot start the signal thread", &e))?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// The signal that arrived, if any.
pub fn interrupted() -> Option<Signal> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// From now on a signal stops the running REPL entry only: the first check that sees
/// it (an op or Rhai's progress callback) consumes it.
pub fn one_entry_at_a_time() {
    PER_ENTRY.store(true, Ordering::SeqCst);
}

/// Whether the running script must stop now (for Rhai's `on_progress`).
pub fn stop_requested() -> Option<Signal> {
    if PER_ENTRY.load(Ordering::SeqCst) {
        return Signal::try_from(SIGNAL.swap(0, Ordering::SeqCst)).ok();
    }
    interrupted()
}

/// Err when a signal arrived: checked before every op.
pub fn check() -> Result<()> {
    match stop_requested() {
        None => Ok(()),
        Some(sig) => Err(Error::new(Code::Interrupted, format!("interrupted by {}", sig.as_str()))
            .help("the build stops between two steps; what it created is rolled back, or kept with --keep")),
    }
}

/// The exit code for a run ended by `sig`: 128 + its number, as shells do.
pub fn exit_code(sig: Signal) -> u8 {
    128u8.saturating_add(sig as i32 as u8)
}

/// Block until SIGINT or SIGTERM arrives (for `--hold`).
pub fn wait() {
    if INSTALLED.get().is_none() {
        let set = set();
        let _ = set.thread_block();
        if let Ok(sig) = set.wait() {
            SIGNAL.store(sig as i32, Ordering::SeqCst);
        }
        return;
    }
    let mut guard = WAKE.0.lock().unwrap_or_else(|p| p.into_inner());
    while interrupted().is_none() {
        guard = WAKE.1.wait(guard).unwrap_or_else(|p| p.into_inner());
    }
}

/// Wait `dur`, or less when SIGINT/SIGTERM arrives meanwhile (a script's `sleep()`):
/// the error says the run was interrupted.
pub fn sleep(dur: std::time::Duration) -> Result<()> {
    if INSTALLED.get().is_none() {
        std::thread::sleep(dur);
        return check();
    }
    let until = std::time::Instant::now() + dur;
    let mut guard = WAKE.0.lock().unwrap_or_else(|p| p.into_inner());
    while stop_requested().is_none() {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        guard = WAKE.1.wait_timeout(guard, left).unwrap_or_else(|p| p.into_inner()).0;
    }
    drop(guard);
    check()
}
