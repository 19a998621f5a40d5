//! Background processes of a lab (`spawn`, `dhcp_server`): started inside a namespace
//! in a process group of their own, written to the ledger (pid and start time) and
//! stopped at `down`, at rollback and when a sandboxed run ends. A pid is only ever
//! signalled when /proc shows the same start time as recorded: a recycled pid belongs
//! to someone else.

use super::LiveBackend;
use crate::error::{Code, Error, Result};
use crate::lab::teardown::Report;
use crate::lab::{self, Entry, LabState, Phase, ProcRec};
use crate::nsexec;
use crate::op::{Command, NsRef};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What to wait for after starting a process.
#[derive(Clone, Copy, Debug)]
pub enum Ready {
    /// Nothing: only that it did not fail at once.
    Started,
    /// A listening TCP socket on this port in the namespace.
    Tcp(u16),
    /// A bound UDP socket on this port in the namespace.
    Udp(u16),
}

/// `pid`'s state letter and start time (field 3 and 22 of /proc/PID/stat), or None.
pub fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: skip past it.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

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

/// Whether a socket of ours listens on `port` in the namespace of `pid`.
fn listening(pid: u32, ready: Ready) -> bool {
    let (files, port, want_state): (&[&str], u16, Option<&str>) = match ready {
        Ready::Started => return true,
        Ready::Tcp(p) => (&["tcp", "tcp6"], p, Some("0A")),
        Ready::Udp(p) => (&["udp", "udp6"], p, None),
    };
    let port_hex = format!(":{port:04X}");
    files.iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}")).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.get(1).is_some_and(|local| local.ends_with(&port_hex)) && want_state.is_none_or(|s| cols.get(3) == Some(&s))
            })
        })
    })
}

impl LiveBackend {
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
        let (program, mut command) = super::process::build(cmd)?;
        let id = self.state.new_id();
        let log = lab::lab_dir(&self.lab).join(format!("proc-{id}.log"));
        let mut files: Vec<String> = vec![log.display().to_string()];
        files.extend(extra_files.iter().map(|p| p.display().to_string()));
        let intent =
            Entry::Proc { id, phase: Phase::Intent, ns: ns.clone(), what: what.to_string(), pid: None, start: None, files: files.clone() };
        let sandbox = self.sandboxed;
        let fd = match ns {
            NsRef::Host => None,
            named => Some(self.nl.ns_fd(named)?.as_raw_fd()),
        };
        let where_ = ns.to_string();
        let (pid, _start) = self.created(
            intent,
            |_| {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .mode(0o600)
                    .open(&log)
                    .map_err(|e| Error::io(Code::IoFailed, format!("cannot create {}", log.display()), &e))?;
                let err = out.try_clone().map_err(|e| Error::io(Code::Internal, "cannot duplicate a file handle", &e))?;
                command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
                nsexec::command_in(fd, &mut command);
                super::process::unblock_signals(&mut command);
                if sandbox {
                    // If nsscript dies, the sandbox must not live on in its processes.
                    // SAFETY: one raw syscall between fork and exec.
                    unsafe {
                        command.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                }
                let child = command.spawn().map_err(|e| {
                    let code = if e.kind() == std::io::ErrorKind::NotFound { Code::ProgramMissing } else { Code::DaemonFailed };
                    let err = Error::io(code, format!("cannot start {program:?} in {where_}"), &e);
                    if e.kind() == std::io::ErrorKind::NotFound {
                        err.help(format!("{program} is not installed or not on PATH; install the package that provides it"))
                    } else {
                        err
                    }
                })?;
                let pid = child.id();
                // The child is reaped by stop() (or by init once nsscript has exited).
                std::mem::forget(child);
                Ok((pid, stat(pid).map(|(_, s)| s)))
            },
            |(pid, start), e| match e {
                Entry::Proc { id, phase, ns, what, files, .. } => {
                    Entry::Proc { id, phase, ns, what, pid: Some(*pid), start: *start, files }
                }
                other => other,
            },
        )?;
        // Early failure (a bad flag, a port in use) or readiness.
        let deadline = Instant::now() + wait;
        let grace = Instant::now() + Duration::from_millis(30);
        loop {
            match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => {
                    if code == 0 && matches!(ready, Ready::Started) {
                        return Ok(pid);
                    }
                    return Err(Error::new(Code::DaemonFailed, format!("{what} in {where_} exited at once (code {code})"))
                        .why(log_tail(&log))
                        .help("run the same command with exec(ns, cmd) to see it fail in the foreground"));
                }
                Ok(WaitStatus::Signaled(_, sig, _)) => {
                    return Err(
                        Error::new(Code::DaemonFailed, format!("{what} in {where_} was killed at once by {sig:?}")).why(log_tail(&log))
                    );
                }
                _ => {}
            }
            let now = Instant::now();
            if listening(pid, ready) && now >= grace {
                return Ok(pid);
            }
            if now >= deadline {
                let port = match ready {
                    Ready::Tcp(p) => format!("TCP port {p}"),
                    Ready::Udp(p) => format!("UDP port {p}"),
                    Ready::Started => return Ok(pid),
                };
                return Err(Error::new(
                    Code::DaemonFailed,
                    format!("{what} in {where_} did not listen on {port} within {} ms", wait.as_millis()),
                )
                .why(log_tail(&log))
                .help("check the command, or give it more time with the wait option (ms)"));
            }
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    /// At the end of a sandboxed run the lab's processes go with the sandbox.
    pub(super) fn stop_processes_if_sandboxed(&mut self) {
        if self.state.procs.is_empty() || !self.sandboxed {
            return;
        }
        let mut report = Report::default();
        teardown(&self.state, &mut report);
    }
}

/// Stop one recorded process (its whole process group), if it is still the one we started.
fn stop(p: &ProcRec, report: &mut Report) {
    let what = match p.pid {
        Some(pid) => format!("process {pid} ({}) in {}", p.what, p.ns),
        None => format!("process {} in {}", p.what, p.ns),
    };
    let Some(pid) = p.pid else {
        // Died between the intent and the start: nothing was started.
        return;
    };
    let pgid = Pid::from_raw(pid as i32);
    match (stat(pid), p.start) {
        (None, _) => {
            // The leader is gone: its number may already be someone else's group, so
            // nothing is signalled.
            report.skipped.push(format!("{what}: already gone"));
        }
        (Some((_, now)), Some(recorded)) if now != recorded => {
            report.skipped.push(format!("{what}: pid {pid} now belongs to another process (start time {now}, recorded {recorded})"));
        }
        (Some(_), _) => {
            let _ = killpg(pgid, Signal::SIGTERM);
            let gone = |until: Instant| loop {
                // Reap it if it is our child; otherwise init does.
                let _ = waitpid(pgid, Some(WaitPidFlag::WNOHANG));
                match stat(pid) {
                    None => return true,
                    Some(('Z', _)) => return true,
                    Some((_, s)) if Some(s) != p.start => return true,
                    _ => {}
                }
                if Instant::now() >= until {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if !gone(Instant::now() + Duration::from_secs(2)) {
                let _ = killpg(pgid, Signal::SIGKILL);
                if !gone(Instant::now() + Duration::from_secs(2)) {
                    report.failed.push(format!("{what}: still alive after SIGKILL"));
                    return;
                }
            }
            // Members that ignored SIGTERM.
            let _ = killpg(pgid, Signal::SIGKILL);
            report.removed.push(what);
        }
    }
    for f in &p.files {
        let _ = std::fs::remove_file(f);
    }
}

/// Stop every process of the lab, newest first (before its namespaces go).
pub fn teardown(state: &LabState, report: &mut Report) {
    for p in state.procs.iter().rev() {
        stop(p, report);
    }
}

impl LiveBackend {
    pub(super) fn spawn(&mut self, ns: NsRef, cmd: Command, listen: Option<u16>, wait_ms: u32) -> Result<crate::op::Outcome> {
        let text = match &cmd {
            Command::Shell(line) => line.clone(),
            Command::Argv(argv) => argv.join(" "),
        };
        let what =
            if text.chars().count() > 60 { format!("`{}...`", text.chars().take(57).collect::<String>()) } else { format!("`{text}`") };
        let ready = listen.map(Ready::Tcp).unwrap_or(Ready::Started);
        let pid = self.start_process(&ns, &cmd, &what, Vec::new(), ready, Duration::from_millis(u64::from(wait_ms)))?;
        Ok(crate::op::Outcome::Spawned { pid })
    }

    pub(super) fn exec_timeout(&mut self, ns: NsRef, cmd: Command, timeout_ms: u32) -> Result<crate::op::Outcome> {
        let fd = match &ns {
            NsRef::Host => None,
            named => Some(self.nl.ns_fd(named)?.as_raw_fd()),
        };
        super::process::run_timeout(fd, &cmd, &ns.to_string(), Duration::from_millis(u64::from(timeout_ms))).map(crate::op::Outcome::Exec)
    }
}
