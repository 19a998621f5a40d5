//! The seam between the live backend and the machine: everything the backend asks of
//! the kernel (and of the programs that are the point: iptables, a user's command)
//! goes through [`Kernel`]. [`super::linux::Linux`] is the real one; the unit tests use
//! a recording double (`super::double`) that answers from a model and can refuse on
//! demand, so the ledger, rollback, request batching and teardown order are tested
//! without root. (youki's `Syscall` trait is the model.)
//!
//! The methods are low-level on purpose: netlink requests go through as rtnetlink
//! messages (built by `super::netlink`), so what is above the seam (batching, ledger,
//! ownership, undo) is the code under test, not a copy of it.

use crate::error::Result;
use crate::ops::check::{PingResult, PingSpec};
use crate::ops::firewall::Rule;
use crate::ops::process::{Command, ExecOutput};
use crate::ops::trace::Conntrack;
use crate::ops::NsRef;
use rtnetlink::packet_core::NetlinkMessage;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::RouteNetlinkMessage;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

pub type Request = NetlinkMessage<RouteNetlinkMessage>;

/// The kernel's answer to one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answer {
    /// The errno it refused with, or None for a plain ack.
    pub errno: Option<i32>,
    /// The created or asked-for link, for requests sent with NLM_F_ECHO and RTM_GETLINK.
    pub echo: Option<LinkMessage>,
    /// The route the kernel picked, for RTM_GETROUTE (`ip route get`).
    pub route: Option<RouteMessage>,
}

pub use crate::nsexec::NetnsAt;

/// A background process just started, held before it runs its command (see
/// [`Kernel::start`]): what identifies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Started {
    pub pid: u32,
    /// Field 22 of /proc/PID/stat: with the pid, what no other process shares.
    pub start: u64,
}

/// A process found inside one of a lab's namespaces, whoever started it.
#[derive(Debug, Clone, PartialEq)]
pub struct NsProcess {
    /// The lab namespace it is in.
    pub ns: String,
    pub pid: u32,
    pub start: u64,
    /// Its command name (/proc/PID/comm), for the report.
    pub comm: String,
}

/// What a background process is waiting for before it counts as started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ready {
    /// Nothing: only that it did not fail at once.
    Started,
    /// A listening TCP socket on this port in the namespace.
    Tcp(u16),
    /// A bound UDP socket on this port in the namespace.
    Udp(u16),
    /// A raw ICMPv6 socket (router advertisements).
    Icmpv6,
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// Netlink exchanges running on a thread of their own (see [`Kernel::exchange_aside`]).
pub type Aside = Box<dyn FnOnce() -> AsideDone + Send>;
pub type AsideDone = Vec<Result<Vec<Answer>>>;

pub trait Kernel {
    // ---- namespaces ----
    /// Make the next namespace, still unnamed (it vanishes with nsscript until it is
    /// named), and return its cookie: the identity the ledger records before the name
    /// is claimed.
    fn prepare_netns(&mut self) -> Result<u64>;
    /// `ip netns add NAME` for the namespace [`Kernel::prepare_netns`] made, mounted at
    /// /run/netns/NAME over a placeholder that names it and `lab`, and a socket in it.
    fn create_netns(&mut self, name: &str, lab: &str) -> Result<()>;
    /// What /run/netns/NAME holds now.
    fn netns_at(&mut self, name: &str) -> NetnsAt;
    /// `ip netns del NAME`.
    fn delete_netns(&mut self, name: &str) -> Result<()>;
    /// Remove the placeholder of the namespace with `cookie` that a killed run left at
    /// /run/netns/NAME (true when there was one; never anything else).
    fn remove_netns_placeholder(&mut self, name: &str, cookie: u64) -> Result<bool>;
    /// The cookie of a namespace the lab changes but does not own (the host's, or one
    /// named with `ns()`).
    fn netns_cookie(&mut self, ns: &NsRef) -> Result<u64>;
    /// Check that a named namespace exists, and keep its handle.
    fn open_netns(&mut self, name: &str) -> Result<()>;
    /// The handle of a namespace, as a number for IFLA_NET_NS_FD (valid while held).
    fn ns_fd(&mut self, ns: &NsRef) -> Result<RawFd>;
    /// Drop everything held for ns (its socket pins it in the kernel).
    fn forget(&mut self, ns: &NsRef);
    /// Close every namespace handle and socket held; each is opened again when needed.
    fn forget_all(&mut self);

    // ---- rtnetlink ----
    /// Send `requests` to ns in order (flags set by the caller, NLM_F_ACK included);
    /// one answer per request. A refusal does not stop the ones after it.
    fn exchange(&mut self, ns: &NsRef, requests: Vec<Request>) -> Result<Vec<Answer>>;
    /// A dump: every message of the answer, or the errno the kernel refused with.
    fn dump(&mut self, ns: &NsRef, request: RouteNetlinkMessage) -> Result<std::result::Result<Vec<RouteNetlinkMessage>, i32>>;
    /// Start exchanges that may run while the caller goes on (each namespace's requests
    /// in order); [`Aside`] gives their answers, in the order of `jobs`.
    fn exchange_aside(&mut self, jobs: Vec<(NsRef, Vec<Request>)>) -> Result<Aside>;

    // ---- sysctl ----
    fn sysctl_read(&mut self, ns: &NsRef, key: &str) -> Result<String>;
    fn sysctl_write(&mut self, ns: &NsRef, key: &str, value: &str) -> Result<()>;

    // ---- firewall (iptables; a rule says when it is ip6tables') ----
    fn rule_exists(&mut self, ns: &NsRef, rule: &Rule) -> Result<bool>;
    /// Append, or insert at `pos` (1-based).
    fn rule_add(&mut self, ns: &NsRef, rule: &Rule, pos: Option<u32>) -> Result<()>;
    fn rule_delete(&mut self, ns: &NsRef, rule: &Rule) -> Result<()>;
    fn chain_policy(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<String>;
    fn set_chain_policy(&mut self, ns: &NsRef, table: &str, chain: &str, policy: &str) -> Result<()>;
    /// Whether a chain exists (`iptables -t TABLE -S CHAIN` succeeds).
    fn chain_exists(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<bool>;
    /// `iptables -t TABLE -N CHAIN`.
    fn chain_add(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()>;
    /// `iptables -t TABLE -F CHAIN` and `-X CHAIN`.
    fn chain_delete(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()>;
    /// `iptables ARGS` as given: its output.
    fn iptables(&mut self, ns: &NsRef, args: &[String]) -> Result<String>;
    /// Whether FORWARD drops by default in ns (asked of nftables, not iptables, where it can).
    fn forward_drops(&mut self, ns: &NsRef) -> bool;

    // ---- processes ----
    /// Run a command inside ns and wait (past `timeout` its process group is killed: code 124).
    fn run(&mut self, ns: &NsRef, cmd: &Command, timeout: Option<Duration>) -> Result<ExecOutput>;
    /// Start a command inside ns in the background, in a process group of its own, its
    /// output to `log`; `tied`: it dies with nsscript. The process is held before it
    /// runs the command until [`Kernel::release`], so the caller can record it first; if
    /// nsscript dies before that, it exits without running anything.
    fn start(&mut self, ns: &NsRef, cmd: &Command, log: &Path, tied: bool) -> Result<Started>;
    /// Let a process held by [`Kernel::start`] run its command.
    fn release(&mut self, pid: u32) -> Result<()>;
    /// A process's state letter and start time (fields 3 and 22 of /proc/PID/stat).
    fn process(&mut self, pid: u32) -> Option<(char, u64)>;
    /// Reap a child of ours that ended (None: it runs, or it is not ours).
    fn reap(&mut self, pid: u32) -> Option<Exit>;
    /// Whether the process listens as `ready` says, in its namespace.
    fn listening(&mut self, pid: u32, ready: Ready) -> bool;
    /// Signal a process group.
    fn kill_group(&mut self, pgid: u32, signal: nix::sys::signal::Signal);
    /// Every process (this one aside) whose network namespace is one of the named ones
    /// (as `ip netns pids` finds them).
    fn processes_in(&mut self, names: &[String]) -> Vec<NsProcess>;
    /// Signal `pid` if it still is the process that started at `start` (never a pid the
    /// kernel has given to someone else since). True when it was signalled.
    fn signal(&mut self, pid: u32, start: u64, signal: nix::sys::signal::Signal) -> bool;

    // ---- native sockets and devices ----
    /// A tap device in ns, not yet persistent: it goes when nsscript does, until
    /// [`Kernel::persist_tap`] (called once the ledger knows its ifindex).
    fn create_tap(&mut self, ns: &NsRef, name: &str, owner: Option<u32>, group: Option<u32>) -> Result<()>;
    /// Make the tap made by [`Kernel::create_tap`] stay after nsscript.
    fn persist_tap(&mut self, ns: &NsRef, name: &str) -> Result<()>;
    /// Echo requests from inside ns.
    fn ping(&mut self, ns: &NsRef, addr: std::net::IpAddr, spec: &PingSpec) -> Result<PingResult>;
    /// A raw ICMP socket opened inside ns (pingall drives many at once).
    fn icmp_socket(&mut self, ns: &NsRef) -> Result<OwnedFd>;
    /// A socket opened inside ns (socket(2) with SOCK_CLOEXEC added): the TCP, UDP
    /// and ICMP sockets of the service checks. It stays in that namespace for its life.
    fn socket_in(&mut self, ns: &NsRef, domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd>;

    // ---- packets (capture and trace) ----
    /// An AF_PACKET socket opened inside ns and bound to the link `ifindex` there, with
    /// protocol 0, so it receives nothing yet: the capture engine attaches its filter
    /// and ring first, then arms it (see `capture::ring`).
    fn packet_socket(&mut self, ns: &NsRef, ifindex: u32) -> Result<OwnedFd>;
    /// A raw IPv4 socket of `protocol` (IPPROTO_ICMP, _TCP, _UDP) opened inside ns:
    /// the probe `trace` sends.
    fn raw_socket(&mut self, ns: &NsRef, protocol: i32) -> Result<OwnedFd>;
    /// The connection-tracking table of ns (ctnetlink, as `conntrack -L` shows it).
    fn conntrack(&mut self, ns: &NsRef) -> Result<Vec<Conntrack>>;
    /// `iptables -L -v -x -n` of the filter table in ns (rules with their packet
    /// counters), or None when ns has no filter table (asked of nftables, no process).
    fn filter_counters(&mut self, ns: &NsRef) -> Result<Option<String>>;
}
