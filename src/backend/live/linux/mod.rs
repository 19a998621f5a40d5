//! The real [`Kernel`]: netlink sockets opened inside each namespace once and kept,
//! namespace handles, /proc/sys, iptables, processes. Everything below the seam that
//! switches namespaces does it through `crate::nsexec`.

pub mod events;
pub mod exec;
mod icmp;
mod iptables;
mod nft;
mod sysctl;
mod tap;
pub mod wire;

use super::kernel::{Answer, Aside, Exit, Kernel, NewNetns, Ready, Request};
use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::check::{PingResult, PingSpec};
use crate::ops::firewall::Rule;
use crate::ops::process::{Command, ExecOutput};
use crate::ops::NsRef;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use rtnetlink::packet_route::RouteNetlinkMessage;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wire::Wire;

/// The machine nsscript runs on.
pub struct Linux {
    wires: HashMap<NsRef, Wire>,
    /// Wires lent to a thread of [`Kernel::exchange_aside`], given back when it ends.
    lent: Arc<Mutex<Vec<(NsRef, Wire)>>>,
    ns_files: HashMap<String, File>,
    /// One answer buffer for every wire: a lab of 1000 namespaces has 1000 of them.
    answer_buf: Vec<u8>,
}

impl Default for Linux {
    fn default() -> Self {
        Linux { wires: HashMap::new(), lent: Default::default(), ns_files: HashMap::new(), answer_buf: vec![0; wire::ANSWER_BUF] }
    }
}

impl Linux {
    fn fd(&mut self, ns: &NsRef) -> Result<BorrowedFd<'_>> {
        match ns {
            NsRef::Host => Ok(nsexec::host_ns()),
            NsRef::Named(name) => {
                if !self.ns_files.contains_key(name) {
                    let f = nsexec::open_netns(name)?;
                    self.ns_files.insert(name.clone(), f);
                }
                Ok(self.ns_files[name].as_fd())
            }
        }
    }

    /// The raw handle for a child process to join (None: the host's, where we are).
    fn child_fd(&mut self, ns: &NsRef) -> Result<Option<RawFd>> {
        match ns {
            NsRef::Host => Ok(None),
            named => Ok(Some(self.fd(named)?.as_raw_fd())),
        }
    }

    fn wire(&mut self, ns: &NsRef) -> Result<&mut Wire> {
        for (n, w) in std::mem::take(&mut *self.lent.lock().unwrap_or_else(|p| p.into_inner())) {
            self.wires.insert(n, w);
        }
        if !self.wires.contains_key(ns) {
            let socket = match ns {
                NsRef::Host => nsexec::route_socket()?,
                named => nsexec::route_socket_in(self.fd(named)?)?,
            };
            self.wires.insert(ns.clone(), Wire::new(socket));
        }
        Ok(self.wires.get_mut(ns).expect("just opened"))
    }
}

impl Kernel for Linux {
    fn create_netns(&mut self, name: &str) -> Result<NewNetns> {
        let made = nsexec::create_netns(name)?;
        let ns = NsRef::named(name);
        self.wires.insert(ns, Wire::new(made.route_socket));
        self.ns_files.insert(name.to_string(), made.handle);
        Ok(NewNetns { inode: made.inode })
    }

    fn netns_identity(&mut self, name: &str) -> Option<u64> {
        nsexec::netns_inode(name)
    }

    fn delete_netns(&mut self, name: &str) -> Result<()> {
        nsexec::delete_netns(name)
    }

    fn remove_netns_placeholder(&mut self, name: &str) -> Result<bool> {
        nsexec::remove_netns_placeholder(name)
    }

    fn open_netns(&mut self, name: &str) -> Result<()> {
        self.fd(&NsRef::named(name)).map(|_| ())
    }

    fn ns_fd(&mut self, ns: &NsRef) -> Result<RawFd> {
        self.fd(ns).map(|fd| fd.as_raw_fd())
    }

    fn forget(&mut self, ns: &NsRef) {
        self.wires.remove(ns);
        if let NsRef::Named(name) = ns {
            self.ns_files.remove(name);
        }
    }

    fn exchange(&mut self, ns: &NsRef, requests: Vec<Request>) -> Result<Vec<Answer>> {
        let mut buf = std::mem::take(&mut self.answer_buf);
        let out = self.wire(ns).and_then(|w| w.exchange(requests, &mut buf));
        self.answer_buf = buf;
        out
    }

    fn dump(&mut self, ns: &NsRef, request: RouteNetlinkMessage) -> Result<std::result::Result<Vec<RouteNetlinkMessage>, i32>> {
        let mut buf = std::mem::take(&mut self.answer_buf);
        let out = self.wire(ns).and_then(|w| w.dump(request, &mut buf));
        self.answer_buf = buf;
        out
    }

    /// The jobs run on a thread of their own over the namespaces' own sockets (lent to
    /// it, given back when it ends), so no socket is opened for them.
    fn exchange_aside(&mut self, jobs: Vec<(NsRef, Vec<Request>)>) -> Result<Aside> {
        let mut wires: HashMap<NsRef, Wire> = HashMap::new();
        for (ns, _) in &jobs {
            if !wires.contains_key(ns) {
                self.wire(ns)?;
                wires.insert(ns.clone(), self.wires.remove(ns).expect("just opened"));
            }
        }
        let lent = self.lent.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; wire::ANSWER_BUF];
            let answers: Vec<Result<Vec<Answer>>> = jobs
                .into_iter()
                .map(|(ns, requests)| wires.get_mut(&ns).expect("a wire per namespace").exchange(requests, &mut buf))
                .collect();
            lent.lock().unwrap_or_else(|p| p.into_inner()).extend(wires);
            answers
        });
        Ok(Box::new(move || {
            thread.join().unwrap_or_else(|_| vec![Err(Error::new(Code::Internal, "the thread sending netlink requests failed"))])
        }))
    }

    fn sysctl_read(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        sysctl::read(self.fd(ns)?, key)
    }

    fn sysctl_write(&mut self, ns: &NsRef, key: &str, value: &str) -> Result<()> {
        sysctl::write(self.fd(ns)?, key, value)
    }

    fn rule_exists(&mut self, ns: &NsRef, rule: &Rule) -> Result<bool> {
        iptables::exists(self.fd(ns)?, rule)
    }

    fn rule_add(&mut self, ns: &NsRef, rule: &Rule, pos: Option<u32>) -> Result<()> {
        let what = format!("in {ns}");
        iptables::add(self.fd(ns)?, rule, pos, &what)
    }

    fn rule_delete(&mut self, ns: &NsRef, rule: &Rule) -> Result<()> {
        iptables::delete(self.fd(ns)?, rule)
    }

    fn chain_policy(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<String> {
        iptables::policy(self.fd(ns)?, table, chain)
    }

    fn set_chain_policy(&mut self, ns: &NsRef, table: &str, chain: &str, policy: &str) -> Result<()> {
        let what = format!("in {ns}");
        iptables::set_policy(self.fd(ns)?, table, chain, policy, &what)
    }

    fn iptables(&mut self, ns: &NsRef, args: &[String]) -> Result<String> {
        let what = format!("iptables {} failed in {ns}", args.join(" "));
        iptables::raw(self.fd(ns)?, args, what)
    }

    fn forward_drops(&mut self, ns: &NsRef) -> bool {
        self.fd(ns).is_ok_and(iptables::forward_drops)
    }

    fn run(&mut self, ns: &NsRef, cmd: &Command, timeout: Option<Duration>) -> Result<ExecOutput> {
        let fd = self.child_fd(ns)?;
        match timeout {
            None => exec::run(fd, cmd, &ns.to_string()),
            Some(t) => exec::run_timeout(fd, cmd, &ns.to_string(), t),
        }
    }

    fn start(&mut self, ns: &NsRef, cmd: &Command, log: &Path, tied: bool) -> Result<u32> {
        let (program, mut command) = exec::build(cmd)?;
        let fd = self.child_fd(ns)?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(log)
            .map_err(|e| Error::io(Code::IoFailed, format!("cannot create {}", log.display()), &e))?;
        let err = out.try_clone().map_err(|e| Error::io(Code::Internal, "cannot duplicate a file handle", &e))?;
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        nsexec::command_in(fd, &mut command);
        exec::unblock_signals(&mut command);
        if tied {
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
            let err = Error::io(code, format!("cannot start {program:?} in {ns}"), &e);
            if e.kind() == std::io::ErrorKind::NotFound {
                err.help(format!("{program} is not installed or not on PATH; install the package that provides it"))
            } else {
                err
            }
        })?;
        let pid = child.id();
        // The child is reaped by `reap` (or by init once nsscript has exited).
        std::mem::forget(child);
        Ok(pid)
    }

    fn process(&mut self, pid: u32) -> Option<(char, u64)> {
        exec::stat(pid)
    }

    fn reap(&mut self, pid: u32) -> Option<Exit> {
        match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig as i32)),
            _ => None,
        }
    }

    fn listening(&mut self, pid: u32, ready: Ready) -> bool {
        exec::listening(pid, ready)
    }

    fn kill_group(&mut self, pgid: u32, signal: nix::sys::signal::Signal) {
        // killpg(1) is kill(-1): every process on the machine. No lab process is init.
        if pgid <= 1 {
            return;
        }
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid as i32), signal);
    }

    fn create_tap(&mut self, ns: &NsRef, name: &str, owner: Option<u32>, group: Option<u32>) -> Result<()> {
        let name = name.to_string();
        nsexec::in_netns(self.fd(ns)?, move || tap::create(&name, owner, group))
    }

    fn ping(&mut self, ns: &NsRef, addr: std::net::IpAddr, spec: &PingSpec) -> Result<PingResult> {
        icmp::ping(self.fd(ns)?, addr, spec)
    }

    fn icmp_socket(&mut self, ns: &NsRef) -> Result<OwnedFd> {
        nsexec::run_in(self.fd(ns)?, icmp::pingall_socket)
    }
}
