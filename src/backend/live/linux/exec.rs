//! Running programs inside a namespace (`exec`, `spawn`, `nsscript exec`): the program
//! itself is the point.

use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::process::{Command, ExecOutput};
use std::os::fd::RawFd;
use std::process::Stdio;

pub fn run(ns: Option<RawFd>, cmd: &Command, where_: &str) -> Result<ExecOutput> {
    let (program, mut command) = build(cmd)?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    nsexec::command_in(ns, &mut command);
    let out = command.output().map_err(|e| start_error(&program, where_, &e))?;
    Ok(ExecOutput {
        code: exit_code(out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn exit_code(status: std::process::ExitStatus) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    status.code().map(i64::from).unwrap_or_else(|| 128 + i64::from(status.signal().unwrap_or(0)))
}

fn start_error(program: &str, where_: &str, e: &std::io::Error) -> Error {
    let code = if e.kind() == std::io::ErrorKind::NotFound { Code::ProgramMissing } else { Code::ExecFailed };
    let err = Error::io(code, format!("cannot run {program:?} in {where_}"), e);
    if e.kind() == std::io::ErrorKind::NotFound {
        err.help(format!("{program} is not installed or not on PATH; install the package that provides it"))
    } else {
        err
    }
}

/// `run` with a time limit: past `timeout` the command's process group is killed and
/// the answer is code 124 (as timeout(1) answers), with what it printed until then and
/// a last line of stderr saying so.
pub fn run_timeout(ns: Option<RawFd>, cmd: &Command, where_: &str, timeout: std::time::Duration) -> Result<ExecOutput> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let (program, mut command) = build(cmd)?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    nsexec::command_in(ns, &mut command);
    unblock_signals(&mut command);
    let mut child = command.spawn().map_err(|e| start_error(&program, where_, &e))?;
    let pid = child.id();
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = reader(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let (status, timed_out) = match rx.recv_timeout(timeout) {
        Ok(s) => (s, false),
        Err(_) => {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            (rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("lost the child"))), true)
        }
    };
    let status = status.map_err(|e| Error::io(Code::ExecFailed, format!("cannot wait for {program:?} in {where_}"), &e))?;
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        stderr.push_str(&format!("nsscript: killed after the timeout of {} ms\n", timeout.as_millis()));
    }
    Ok(ExecOutput { code: if timed_out { 124 } else { exit_code(status) }, stdout, stderr })
}

/// std does not reset the signal mask of a child, and the main thread blocks SIGINT and
/// SIGTERM (signals.rs): without this a child could not be stopped with SIGTERM.
pub fn unblock_signals(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: async-signal-safe calls between fork and exec, on a stack sigset.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// The std Command for `cmd` (a shell line runs by /bin/sh -c), and the program's name.
pub fn build(cmd: &Command) -> Result<(String, std::process::Command)> {
    Ok(match cmd {
        Command::Shell(line) => {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            ("/bin/sh".to_string(), c)
        }
        Command::Argv(argv) => {
            let Some((first, rest)) = argv.split_first() else {
                return Err(Error::new(Code::ExecFailed, "cannot run an empty command")
                    .help("give the program and its arguments, e.g. [\"ip\", \"addr\"]"));
            };
            let mut c = std::process::Command::new(first);
            c.args(rest);
            (first.clone(), c)
        }
    })
}

/// `nsscript exec` / `nsscript shell`: the same command building as `exec()` in a
/// script, but attached to the terminal (stdin, stdout and stderr inherited), with
/// extra environment. Returns the exit code.
pub fn attached(ns: Option<RawFd>, cmd: &Command, where_: &str, env: &[(&str, String)]) -> Result<i64> {
    let (program, mut command) = build(cmd)?;
    command.stdin(Stdio::inherit()).stdout(Stdio::inherit()).stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    nsexec::command_in(ns, &mut command);
    let status = command.status().map_err(|e| start_error(&program, where_, &e))?;
    Ok(exit_code(status))
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

/// Whether a socket of ours listens on `port` in the namespace of `pid`.
pub fn listening(pid: u32, ready: crate::backend::live::kernel::Ready) -> bool {
    use crate::backend::live::kernel::Ready;
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
