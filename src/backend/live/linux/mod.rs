//! The real [`Kernel`]: netlink sockets opened inside each namespace once and kept,
//! namespace handles, /proc/sys, iptables, processes. Everything below the seam that
//! switches namespaces does it through `crate::nsexec`.

pub mod events;
pub mod exec;
mod icmp;
mod iptables;
mod nft;
mod packets;
mod sysctl;
mod tap;
pub mod wire;

use super::kernel::{Answer, Aside, Exit, Kernel, NetnsAt, NsProcess, Ready, Request, Started};
use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::check::{PingResult, PingSpec};
use crate::ops::firewall::Rule;
use crate::ops::process::{Command, ExecOutput};
use crate::ops::trace::Conntrack;
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
    /// The namespace made by `prepare_netns`, waiting for its name.
    prepared: Option<nsexec::Spare>,
    /// The write ends of the pipes background processes wait on before they run.
    gates: HashMap<u32, File>,
    /// Taps made but not yet persistent: closing the handle removes the tap.
    taps: HashMap<(NsRef, String), File>,
}

impl Default for Linux {
    fn default() -> Self {
        Linux {
            wires: HashMap::new(),
            lent: Default::default(),
            ns_files: HashMap::new(),
            answer_buf: vec![0; wire::ANSWER_BUF],
            prepared: None,
            gates: HashMap::new(),
            taps: HashMap::new(),
        }
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
    fn prepare_netns(&mut self) -> Result<u64> {
        if self.prepared.is_none() {
            self.prepared = Some(nsexec::take_spare()?);
        }
        Ok(self.prepared.as_ref().expect("just made").cookie)
    }

    fn create_netns(&mut self, name: &str, lab: &str) -> Result<()> {
        let spare = match self.prepared.take() {
            Some(s) => s,
            None => nsexec::take_spare()?,
        };
        let made = nsexec::create_netns(name, spare, lab)?;
        let ns = NsRef::named(name);
        self.wires.insert(ns, Wire::new(made.route_socket));
        self.ns_files.insert(name.to_string(), made.handle);
        Ok(())
    }

    fn netns_at(&mut self, name: &str) -> NetnsAt {
        nsexec::netns_at(name)
    }

    fn delete_netns(&mut self, name: &str) -> Result<()> {
        nsexec::delete_netns(name)
    }

    fn remove_netns_placeholder(&mut self, name: &str, cookie: u64) -> Result<bool> {
        nsexec::remove_netns_placeholder(name, cookie)
    }

    fn netns_cookie(&mut self, ns: &NsRef) -> Result<u64> {
        match ns {
            NsRef::Host => nsexec::host_cookie(),
            named => nsexec::netns_cookie(self.fd(named)?),
        }
    }

    fn open_netns(&mut self, name: &str) -> Result<()> {
        self.fd(&NsRef::named(name)).map(|_| ())
    }

    fn ns_fd(&mut self, ns: &NsRef) -> Result<RawFd> {
        self.fd(ns).map(|fd| fd.as_raw_fd())
    }

    fn forget_all(&mut self) {
        self.wires.clear();
        self.ns_files.clear();
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

    fn chain_exists(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<bool> {
        iptables::chain_exists(self.fd(ns)?, table, chain)
    }

    fn chain_add(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()> {
        let what = format!("in {ns}");
        iptables::chain_add(self.fd(ns)?, table, chain, &what)
    }

    fn chain_delete(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()> {
        let what = format!("in {ns}");
        iptables::chain_delete(self.fd(ns)?, table, chain, &what)
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
        exec::run(fd, cmd, &ns.to_string(), timeout)
    }

    fn start(&mut self, ns: &NsRef, cmd: &Command, log: &Path, tied: bool) -> Result<Started> {
        let (program, mut command, gate) = exec::gated(cmd, &ns.to_string())?;
        let fd = self.child_fd(ns)?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(log)
            .map_err(|e| Error::io(Code::IoFailed, format!("cannot create {}", log.display()), &e))?;
        let err = out.try_clone().map_err(|e| Error::io(Code::Internal, "cannot duplicate a file handle", &e))?;
        command.stdout(out).stderr(err).process_group(0);
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
            Error::io(code, format!("cannot start {program:?} in {ns}"), &e)
        })?;
        let pid = child.id();
        // The child is reaped by `reap` (or by init once nsscript has exited).
        std::mem::forget(child);
        // It waits on the gate: it exists, so its start time can be read.
        let start = exec::stat(pid).map(|(_, s)| s).unwrap_or(0);
        self.gates.insert(pid, gate);
        Ok(Started { pid, start })
    }

    fn release(&mut self, pid: u32) -> Result<()> {
        use std::io::Write;
        if let Some(mut gate) = self.gates.remove(&pid) {
            // EPIPE: it died on its own; the caller sees that when it reaps it.
            let _ = gate.write_all(b"go\n");
        }
        Ok(())
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

    fn processes_in(&mut self, names: &[String]) -> Vec<NsProcess> {
        exec::processes_in(names)
    }

    fn signal(&mut self, pid: u32, start: u64, signal: nix::sys::signal::Signal) -> bool {
        exec::signal_if(pid, start, signal)
    }

    fn create_tap(&mut self, ns: &NsRef, name: &str, owner: Option<u32>, group: Option<u32>) -> Result<()> {
        let n = name.to_string();
        let handle = nsexec::in_netns(self.fd(ns)?, move || tap::create(&n, owner, group))?;
        self.taps.insert((ns.clone(), name.to_string()), handle);
        Ok(())
    }

    fn persist_tap(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        match self.taps.remove(&(ns.clone(), name.to_string())) {
            Some(handle) => tap::persist(&handle, name),
            None => Ok(()),
        }
    }

    fn ping(&mut self, ns: &NsRef, addr: std::net::IpAddr, spec: &PingSpec) -> Result<PingResult> {
        icmp::ping(self.fd(ns)?, addr, spec)
    }

    fn icmp_socket(&mut self, ns: &NsRef) -> Result<OwnedFd> {
        nsexec::run_in(self.fd(ns)?, icmp::pingall_socket)
    }

    fn socket_in(&mut self, ns: &NsRef, domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd> {
        nsexec::run_in(self.fd(ns)?, move || socket(domain, ty, protocol, "a socket for the check"))
    }

    fn packet_socket(&mut self, ns: &NsRef, ifindex: u32) -> Result<OwnedFd> {
        packets::packet_socket(self.fd(ns)?, ifindex)
    }

    fn raw_socket(&mut self, ns: &NsRef, protocol: i32) -> Result<OwnedFd> {
        packets::raw_socket(self.fd(ns)?, protocol)
    }

    fn conntrack(&mut self, ns: &NsRef) -> Result<Vec<Conntrack>> {
        packets::conntrack(self.fd(ns)?)
    }

    fn filter_counters(&mut self, ns: &NsRef) -> Result<Option<String>> {
        packets::filter_counters(self.fd(ns)?)
    }
}

/// socket(2) in the calling thread's namespace (close-on-exec): the one place the live
/// backend opens sockets other than netlink's (checks, DNS, capture, trace). `what` names
/// it in the error; a refusal for want of privilege says so.
pub(in crate::backend::live) fn socket(domain: i32, ty: i32, protocol: i32, what: &str) -> Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        let err = Error::io(Code::KernelRefused, format!("cannot open {what}"), &e);
        return Err(match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                err.with_code(Code::NotRoot).help("raw and packet sockets need CAP_NET_RAW: run nsscript as root")
            }
            _ => err,
        });
    }
    // SAFETY: fd was just returned by socket(2).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
