//! Running programs inside a namespace (`exec`, `spawn`, `nsscript exec`): the program
//! itself is the point.

use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::process::{Command, ExecOutput};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::process::Stdio;

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

/// Run a command and wait for it, in a process group of its own. Past `timeout` the
/// group is killed and the answer is code 124 (as timeout(1) answers), with what it
/// printed until then and a last line of stderr saying so. A SIGINT or SIGTERM to
/// nsscript kills the group at once and is the error (the run then rolls back, as
/// between two steps); if nsscript itself is killed, the command gets SIGKILL
/// (PR_SET_PDEATHSIG: the thread that forks it, the script's, lives as long as the run).
pub fn run(ns: Option<RawFd>, cmd: &Command, where_: &str, timeout: Option<std::time::Duration>) -> Result<ExecOutput> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::sync::mpsc::RecvTimeoutError;
    let (program, mut command) = build(cmd)?;
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    nsexec::command_in(ns, &mut command);
    unblock_signals(&mut command);
    // SAFETY: one raw syscall between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
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
    let kill = || {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    };
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let (status, timed_out) = loop {
        // The wait returns as soon as the command ends; the slice only bounds how long a
        // signal waits to be seen.
        let slice = std::time::Duration::from_millis(20);
        let wait = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()).min(slice)).unwrap_or(slice);
        match rx.recv_timeout(wait) {
            Ok(s) => break (s, false),
            Err(RecvTimeoutError::Disconnected) => break (Err(std::io::Error::other("lost the child")), false),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Err(e) = crate::signals::check() {
            kill();
            let _ = rx.recv();
            return Err(e.why(format!("{program} was running in {where_}; its process group was killed")));
        }
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            kill();
            break (rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("lost the child"))), true);
        }
    };
    let status = status.map_err(|e| Error::io(Code::ExecFailed, format!("cannot wait for {program:?} in {where_}"), &e))?;
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if timed_out {
        let ms = timeout.map(|t| t.as_millis()).unwrap_or(0);
        stderr.push_str(&format!("nsscript: killed after the timeout of {ms} ms\n"));
    }
    Ok(ExecOutput { code: if timed_out { 124 } else { exit_code(status) }, stdout, stderr })
}

/// What a background process runs first: it waits until nsscript has recorded it (a
/// line on stdin), then becomes the command (exec keeps its pid and start time). If
/// nsscript dies first, stdin ends and it exits without running anything.
const GATE: &str = "read -r _ || exit 125; exec \"$@\" </dev/null";

/// The std Command for a background process held at the gate (see [`GATE`]), its
/// program's name, and the gate's write end (stdin of the process is its read end).
pub fn gated(cmd: &Command, where_: &str) -> Result<(String, std::process::Command, std::fs::File)> {
    let argv: Vec<String> = match cmd {
        Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        Command::Argv(argv) => argv.clone(),
    };
    let Some(program) = argv.first().cloned() else {
        return Err(
            Error::new(Code::ExecFailed, "cannot run an empty command").help("give the program and its arguments, e.g. [\"ip\", \"addr\"]")
        );
    };
    // The gate's shell would only say "not found" once released: look first.
    if !on_path(&program) {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        return Err(Error::io(Code::ProgramMissing, format!("cannot start {program:?} in {where_}"), &e)
            .help(format!("{program} is not installed or not on PATH; install the package that provides it")));
    }
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::new(Code::Internal, "cannot make a pipe").errno(e as i32))?;
    let mut c = std::process::Command::new("/bin/sh");
    c.arg("-c").arg(GATE).arg("nsscript-gate").args(&argv).stdin(Stdio::from(read));
    Ok((program, c, std::fs::File::from(write)))
}

/// Whether `program` names an executable file, as execvp would find it.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return runnable(std::path::Path::new(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).any(|d| runnable(&d.join(program)))
}

/// Every process whose network namespace is one of `names` (under /run/netns), this
/// one aside: what `ip netns pids` finds, by comparing /proc/PID/ns/net with the
/// namespace's nsfs inode (both are live here, so the inode is exact). Processes of
/// other PID namespaces are not visible from here.
pub fn processes_in(names: &[String]) -> Vec<crate::backend::live::kernel::NsProcess> {
    use std::os::unix::fs::MetadataExt;
    let mut wanted = std::collections::HashMap::new();
    for n in names {
        if let Ok(m) = std::fs::metadata(nsexec::netns_path(n)) {
            wanted.insert((m.dev(), m.ino()), n.clone());
        }
    }
    let mut found = Vec::new();
    if wanted.is_empty() {
        return found;
    }
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else { return found };
    for entry in dir.filter_map(|e| e.ok()) {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else { continue };
        let Some(ns) = wanted.get(&(m.dev(), m.ino())) else { continue };
        let Some((state, start)) = stat(pid) else { continue };
        if state == 'Z' {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
        found.push(crate::backend::live::kernel::NsProcess { ns: ns.clone(), pid, start, comm });
    }
    found
}

/// Signal `pid` only if it is still the process that started at `start`: a pidfd is
/// opened first and pins the process, then its start time is compared, then the
/// signal goes through the pidfd (never to whoever has the number by then).
pub fn signal_if(pid: u32, start: u64, signal: nix::sys::signal::Signal) -> bool {
    if pid <= 1 {
        return false;
    }
    // SAFETY: pidfd_open(2) with a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: the kernel just gave us this descriptor.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as RawFd) };
    if stat(pid).map(|(_, s)| s) != Some(start) {
        return false;
    }
    // SAFETY: pidfd_send_signal(2) on our pidfd, no siginfo.
    unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal as libc::c_int, std::ptr::null::<libc::siginfo_t>(), 0) == 0
    }
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
        // A raw socket's "port" is its protocol: 58, ICMPv6.
        Ready::Icmpv6 => (&["raw6"], 58, None),
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
