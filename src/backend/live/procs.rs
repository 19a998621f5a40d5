//! Background processes of a lab (`spawn`, `dhcp_server`): started inside a namespace
//! in a process group of their own, written to the ledger (pid and start time) and
//! stopped at `down`, at rollback and when a sandboxed run ends. A pid is only ever
//! signalled when the kernel shows the same start time as recorded: a recycled pid
//! belongs to someone else.

use super::kernel::{Exit, Kernel, NsProcess, Ready};
use super::LiveBackend;
use crate::error::{Code, Error, Result};
use crate::lab::report::Report;
use crate::lab::{self, LabState, Object};
use crate::ops::process::{Command, ProcRecord, Spawn};
use crate::ops::{NsRef, Outcome};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A program on PATH, or the error naming the Debian package that provides it.
pub fn require_program(program: &str, package: &str, purpose: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::new(Code::ProgramMissing, format!("{purpose} needs {program}, which is not installed"))
        .why(format!("{program} is not on PATH"))
        .help(format!("install the Debian package {package}: apt-get install {package}")))
}

/// The last lines a process printed, introduced (for an error's `why`).
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "it printed nothing".into();
    }
    format!("it printed:\n{}", lines[lines.len().saturating_sub(8)..].join("\n"))
}

impl<K: Kernel> LiveBackend<K> {
    /// Start `cmd` inside `ns`, recorded before it starts; wait up to `wait` for `ready`.
    /// `extra_files` are removed with the process (a lease file...). Returns the pid.
    pub(super) fn start_process(
        &mut self,
        ns: &NsRef,
        cmd: &Command,
        what: &str,
        extra_files: Vec<PathBuf>,
        ready: Ready,
        wait: Duration,
    ) -> Result<u32> {
        cmd.validate()?;
        let log = lab::lab_dir(&self.lab).join(format!("proc-{}.log", self.state.new_id()));
        let mut files: Vec<String> = vec![log.display().to_string()];
        files.extend(extra_files.iter().map(|p| p.display().to_string()));
        let record = ProcRecord { ns: ns.clone(), what: what.to_string(), pid: None, start: None, files };
        let tied = self.sandboxed;
        // Intent, start (the process waits at its gate), done with pid and start time,
        // and only then does it run: a run killed at any point leaves either no process
        // or one the ledger names.
        let started = self.created(
            Object::Proc(record),
            |b| b.nl.kernel().start(ns, cmd, &log, tied),
            |s, object| match object {
                Object::Proc(p) => Object::Proc(ProcRecord { pid: Some(s.pid), start: Some(s.start), ..p }),
                other => other,
            },
        )?;
        let pid = started.pid;
        self.nl.kernel().release(pid)?;
        // Early failure (a bad flag, a port in use) or readiness.
        let deadline = Instant::now() + wait;
        let grace = Instant::now() + Duration::from_millis(30);
        loop {
            let k = self.nl.kernel();
            match k.reap(pid) {
                Some(Exit::Code(code)) => {
                    if code == 0 && matches!(ready, Ready::Started) {
                        return Ok(pid);
                    }
                    return Err(Error::new(Code::DaemonFailed, format!("{what} in {ns} exited at once (code {code})"))
                        .why(log_tail(&log))
                        .help("run the same command with exec(ns, cmd) to see it fail in the foreground"));
                }
                Some(Exit::Signal(sig)) => {
                    let sig = Signal::try_from(sig).map(|s| format!("{s:?}")).unwrap_or_else(|_| format!("signal {sig}"));
                    return Err(Error::new(Code::DaemonFailed, format!("{what} in {ns} was killed at once by {sig}")).why(log_tail(&log)));
                }
                None => {}
            }
            let now = Instant::now();
            if k.listening(pid, ready) && now >= grace {
                return Ok(pid);
            }
            if now >= deadline {
                let port = match ready {
                    Ready::Tcp(p) => format!("TCP port {p}"),
                    Ready::Udp(p) => format!("UDP port {p}"),
                    Ready::Icmpv6 => "an ICMPv6 socket".to_string(),
                    Ready::Started => return Ok(pid),
                };
                return Err(Error::new(
                    Code::DaemonFailed,
                    format!("{what} in {ns} did not listen on {port} within {} ms", wait.as_millis()),
                )
                .why(log_tail(&log))
                .help("check the command, or give it more time with the wait option (ms)"));
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    pub(super) fn spawn(&mut self, op: Spawn) -> Result<Outcome> {
        let ready = op.listen.map(Ready::Tcp).unwrap_or(Ready::Started);
        let pid = self.start_process(&op.ns, &op.cmd, &op.cmd.short(), Vec::new(), ready, Duration::from_millis(u64::from(op.wait_ms)))?;
        Ok(Outcome::Spawned { pid })
    }

    /// At the end of a sandboxed run the lab's processes go with the sandbox.
    pub(super) fn stop_processes_if_sandboxed(&mut self) {
        if self.state.procs().next().is_none() || !self.sandboxed {
            return;
        }
        let mut report = Report::default();
        stop_all(&self.state, self.nl.kernel(), &mut report);
    }
}

/// Stop one recorded process (its whole process group), if it is still the one we started.
fn stop<K: Kernel>(p: &ProcRecord, k: &mut K, report: &mut Report, waits: &mut Vec<Duration>) {
    let what = match p.pid {
        Some(pid) => format!("process {pid} ({}) in {}", p.what, p.ns),
        None => format!("process {} in {}", p.what, p.ns),
    };
    // Its log and lease files go in any case (the ledger names only files in the lab's
    // own directory: see lab::verify).
    let remove_files = || {
        for f in &p.files {
            let _ = std::fs::remove_file(f);
        }
    };
    let Some(pid) = p.pid else {
        // Killed between the intent and the record of its pid: the process, if it was
        // forked, waited at its gate and exited when nsscript died, running nothing.
        remove_files();
        return;
    };
    let Some(recorded) = p.start else {
        // Without a start time a recycled pid cannot be told apart: nothing is signalled.
        report.skipped(format!("{what}: the ledger has no start time for it, so pid {pid} may be anyone's now; not signalled"));
        remove_files();
        return;
    };
    match k.process(pid) {
        None | Some(('Z', _)) => {
            // The leader is gone: its number may already be someone else's group, so
            // nothing is signalled.
            report.skipped(format!("{what}: already gone"));
        }
        Some((_, now)) if now != recorded => {
            report.skipped(format!("{what}: pid {pid} now belongs to another process (start time {now}, recorded {recorded})"));
        }
        Some(_) => {
            let since = Instant::now();
            k.kill_group(pid, Signal::SIGTERM);
            let gone = |k: &mut K, until: Instant| loop {
                // Reap it if it is our child; otherwise init does.
                let _ = k.reap(pid);
                match k.process(pid) {
                    None | Some(('Z', _)) => return true,
                    Some((_, s)) if s != recorded => return true,
                    _ => {}
                }
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if !gone(k, Instant::now() + Duration::from_secs(2)) {
                k.kill_group(pid, Signal::SIGKILL);
                if !gone(k, Instant::now() + Duration::from_secs(2)) {
                    report.failed(format!("{what}: still alive after SIGKILL"));
                    return;
                }
            }
            // Members that ignored SIGTERM.
            k.kill_group(pid, Signal::SIGKILL);
            waits.push(since.elapsed());
            report.removed(what);
        }
    }
    remove_files();
}

/// Stop every process the ledger names, newest first (before its namespaces go).
pub fn stop_all<K: Kernel>(state: &LabState, k: &mut K, report: &mut Report) {
    let mut waits = Vec::new();
    for (_, p) in state.procs().rev() {
        stop(p, k, report, &mut waits);
    }
    if !waits.is_empty() {
        let total: Duration = waits.iter().sum();
        report.waited.push(format!("{} ms for {} process(es) of the ledger to end after SIGTERM", total.as_millis(), waits.len()));
    }
}

/// Stop every process that is inside one of `names` (lab namespaces whose identity was
/// checked), whoever started it: an `exec("server &")`, a child of a spawned program, a
/// shell someone opened there. SIGTERM, up to 2 s for them to end, then SIGKILL. Each is
/// signalled through a pidfd after its start time is checked: never a recycled pid.
pub fn stop_in_namespaces<K: Kernel>(names: &[String], k: &mut K, report: &mut Report) {
    if names.is_empty() {
        return;
    }
    let found = k.processes_in(names);
    if found.is_empty() {
        return;
    }
    let since = Instant::now();
    let alive = |k: &mut K, p: &NsProcess| {
        let _ = k.reap(p.pid);
        matches!(k.process(p.pid), Some((state, s)) if s == p.start && state != 'Z')
    };
    for p in &found {
        k.signal(p.pid, p.start, Signal::SIGTERM);
    }
    let mut left: Vec<&NsProcess> = found.iter().collect();
    let mut killed = false;
    let term_until = since + Duration::from_secs(2);
    let kill_until = term_until + Duration::from_secs(2);
    loop {
        left.retain(|p| alive(k, p));
        let now = Instant::now();
        if left.is_empty() || now >= kill_until {
            break;
        }
        if now >= term_until && !killed {
            for p in &left {
                k.signal(p.pid, p.start, Signal::SIGKILL);
            }
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for p in &found {
        let what = format!("process {} ({}) in {} (found in the namespace)", p.pid, p.comm, p.ns);
        if left.iter().any(|l| l.pid == p.pid) {
            report.failed(format!("{what}: still alive after SIGKILL"));
        } else {
            report.removed(what);
        }
    }
    report.waited(
        format!(
            "{} process(es) found in the lab's namespaces to end{}",
            found.len(),
            if killed { " (SIGTERM, then SIGKILL)" } else { " after SIGTERM" }
        ),
        since,
    );
}
