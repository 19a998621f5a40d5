//! The one contract between the script layer and the backends.
//!
//! The script layer checks and parses arguments, builds an [`Op`] and hands it to a
//! [`crate::backend::Backend`]; it never sees netlink. A backend executes (live) or
//! records (plan) the op and answers with an [`Outcome`].

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Which network namespace an object lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum NsRef {
    /// The namespace nsscript itself runs in (the machine's, or the sandbox's).
    Host,
    /// A named namespace, iproute2-style: `/run/netns/NAME`.
    Named(String),
}

impl NsRef {
    pub fn named(name: &str) -> Self {
        NsRef::Named(name.to_string())
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            NsRef::Host => None,
            NsRef::Named(n) => Some(n),
        }
    }
}

impl fmt::Display for NsRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsRef::Host => write!(f, "the host namespace"),
            NsRef::Named(n) => write!(f, "namespace {n}"),
        }
    }
}

/// A change to an existing link (`ip link set ...`).
#[derive(Clone, Debug, PartialEq)]
pub enum LinkChange {
    Up,
    Down,
    Mtu(u32),
    Mac([u8; 6]),
    /// Enslave to a bridge in the same namespace.
    Master(String),
    NoMaster,
    Rename(String),
    MoveTo(NsRef),
}

/// Where a route goes.
#[derive(Clone, Debug, PartialEq)]
pub enum RouteVia {
    Gateway(IpAddr),
    Device(String),
}

/// A command for `exec`.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run by `sh -c`.
    Shell(String),
    /// argv, no shell.
    Argv(Vec<String>),
}

/// The far end of a veth pair when it is created somewhere else than the near end.
#[derive(Clone, Debug, PartialEq)]
pub struct VethSpec {
    pub ns: NsRef,
    pub name: String,
    pub peer_ns: NsRef,
    pub peer: String,
    pub mtu: Option<u32>,
    /// Bring both ends up in the creating request.
    pub up: bool,
    /// Enslave the near end (`name`) to this bridge, in `ns`.
    pub master: Option<String>,
}

// ---- Issue 4: more link kinds, overlays, bridge VLANs, shaping (grouped here) ----

/// A link of a kind beyond veth and bridge, created in `ns`.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkSpec {
    pub ns: NsRef,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: Option<u32>,
    pub up: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LinkKind {
    Vxlan(VxlanSpec),
    /// An 802.1Q sub-interface of `parent` (in the same namespace).
    Vlan {
        parent: String,
        id: u16,
    },
    /// A macvlan child of `parent` (in the same namespace).
    Macvlan {
        parent: String,
        mode: MacvlanMode,
    },
    /// A persistent tap device (TUNSETPERSIST) for a VM or a userspace peer.
    Tap {
        owner: Option<u32>,
        group: Option<u32>,
    },
}

impl LinkKind {
    /// The kernel's name of the kind (`ip -d link` "kind"), as the ledger records it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Tap { .. } => "tap",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VxlanSpec {
    pub id: u32,
    pub remote: Option<IpAddr>,
    pub group: Option<IpAddr>,
    pub local: Option<IpAddr>,
    /// The underlay device, in the same namespace.
    pub dev: Option<String>,
    pub dstport: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

/// Egress shaping of a link: tbf for the rate, netem for delay and loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Bits per second.
    pub rate: Option<u64>,
    /// Bytes.
    pub burst: Option<u32>,
    /// Microseconds a packet may wait in the queue.
    pub latency_us: Option<u32>,
    /// netem: added delay in microseconds.
    pub delay_us: Option<u32>,
    /// netem: loss in percent.
    pub loss_pct: Option<f64>,
}

/// One entry of a bridge or VXLAN forwarding table (`bridge fdb`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FdbEntry {
    pub mac: String,
    pub dev: String,
    pub master: Option<String>,
    pub dst: Option<String>,
    pub vlan: Option<u16>,
    pub vni: Option<u32>,
    /// `permanent`, `static`, `reachable`, `stale`...
    pub state: String,
    /// The entry is the device's own (`self`), not the bridge's (`master`).
    pub is_self: bool,
}

// ---- Issue 3: firewall/NAT, processes, DHCP, reachability (grouped here) ----

/// An iptables (IPv4) change inside a namespace, made through the iptables crate.
#[derive(Clone, Debug, PartialEq)]
pub enum FwOp {
    /// Append `rule` to `table`/`chain` unless an identical rule is there (`iptables -C`).
    Append { table: String, chain: String, rule: String },
    /// Insert `rule` at `pos` (1-based) unless an identical rule is there.
    Insert { table: String, chain: String, rule: String, pos: u32 },
    /// Set the policy of a built-in chain.
    Policy { table: String, chain: String, policy: String },
    /// `iptables ARGS` as given (listing, -N, -D, -F...): answered with its output, not recorded.
    Raw { args: Vec<String> },
}

/// `dhcp_server`: dnsmasq on `iface`, handing out `first..=last`.
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpServerSpec {
    pub iface: String,
    pub first: std::net::Ipv4Addr,
    pub last: std::net::Ipv4Addr,
    pub router: Option<std::net::Ipv4Addr>,
    pub dns: Vec<std::net::Ipv4Addr>,
}

/// How to ping: up to `count` echo requests `interval_ms` apart, then wait `wait_ms`
/// for late replies; `stop_on_reply` ends at the first reply.
#[derive(Clone, Debug, PartialEq)]
pub struct PingSpec {
    pub count: u32,
    pub interval_ms: u32,
    pub wait_ms: u32,
    pub stop_on_reply: bool,
}

/// A DHCP lease as the server offered it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lease {
    pub addr: std::net::Ipv4Addr,
    pub prefix: u8,
    pub router: Option<std::net::Ipv4Addr>,
    pub server: Option<std::net::Ipv4Addr>,
    pub dns: Vec<String>,
    pub lease_secs: Option<u32>,
    /// How long obtaining it took.
    pub ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PingResult {
    pub sent: u32,
    pub received: u32,
    /// Average round trip of the replies.
    pub rtt_ms: Option<f64>,
    pub waited_ms: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    CreateNetns {
        name: String,
    },
    CreateBridge {
        ns: NsRef,
        name: String,
    },
    CreateVeth(VethSpec),
    SetLink {
        ns: NsRef,
        name: String,
        change: LinkChange,
    },
    DeleteLink {
        ns: NsRef,
        name: String,
    },
    AddAddr {
        ns: NsRef,
        link: String,
        addr: IpNetwork,
    },
    /// `dest` None is the default route (of the gateway's family).
    AddRoute {
        ns: NsRef,
        dest: Option<IpNetwork>,
        via: RouteVia,
    },
    Sysctl {
        ns: NsRef,
        key: String,
        value: String,
    },
    Exec {
        ns: NsRef,
        cmd: Command,
    },
    // Queries: they change nothing.
    Links {
        ns: NsRef,
    },
    Addrs {
        ns: NsRef,
    },
    Routes {
        ns: NsRef,
    },
    /// The other end of a veth: its namespace and name.
    VethPeer {
        ns: NsRef,
        name: String,
    },
    // Issue 4 (overlays, link kinds, shaping): see LinkSpec and Shape above.
    CreateLink(LinkSpec),
    /// `bridge fdb append MAC dev LINK dst IP` (a VXLAN's static flood/unicast list).
    FdbAppend {
        ns: NsRef,
        link: String,
        mac: [u8; 6],
        dst: IpAddr,
    },
    /// The bridge forwarding table of ns (`bridge fdb show`).
    Fdb {
        ns: NsRef,
    },
    /// `shape` Some sets the link's root qdisc; None removes it.
    Shape {
        ns: NsRef,
        link: String,
        shape: Option<Shape>,
    },
    BridgeVlanFiltering {
        ns: NsRef,
        bridge: String,
        on: bool,
    },
    /// `bridge vlan add vid VID dev PORT [pvid] [untagged]`
    BridgeVlan {
        ns: NsRef,
        port: String,
        vid: u16,
        pvid: bool,
        untagged: bool,
    },
    // Issue 3 (firewall/NAT, processes, DHCP, reachability): see FwOp, DhcpServerSpec, PingSpec.
    Fw {
        ns: NsRef,
        op: FwOp,
    },
    /// Start `cmd` in the background inside ns, tracked until `down`; `listen` waits
    /// (up to `wait_ms`) until that TCP port listens in ns.
    Spawn {
        ns: NsRef,
        cmd: Command,
        listen: Option<u16>,
        wait_ms: u32,
    },
    /// `exec` with a time limit: the command's process group is killed after `timeout_ms` (code 124).
    ExecTimeout {
        ns: NsRef,
        cmd: Command,
        timeout_ms: u32,
    },
    DhcpServer {
        ns: NsRef,
        spec: DhcpServerSpec,
    },
    /// Obtain a DHCP lease on `iface`; changes nothing (the caller applies it with AddAddr/AddRoute).
    DhcpLease {
        ns: NsRef,
        iface: String,
        timeout_ms: u32,
    },
    /// ICMP echo from a raw socket opened inside ns.
    Ping {
        ns: NsRef,
        addr: IpAddr,
        spec: PingSpec,
    },
    // Issue 6: every ordered pair of nodes probed at once.
    PingAll(PingAllSpec),
}

/// One node of `pingall`: where it probes from and the address it answers on.
#[derive(Clone, Debug, PartialEq)]
pub struct PingNode {
    pub ns: NsRef,
    pub addr: IpAddr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PingAllSpec {
    pub nodes: Vec<PingNode>,
    /// How long unanswered pairs are retried.
    pub timeout_ms: u32,
    /// Install permanent neighbour entries for the nodes' own addresses first (they do
    /// not count against the kernel's shared neighbour table limit).
    pub static_arp: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PingAllResult {
    /// `rtt_ms[src][dst]`: None when dst never answered src (and on the diagonal).
    pub rtt_ms: Vec<Vec<Option<f64>>>,
    pub elapsed_ms: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    pub kind: String,
    pub up: bool,
    pub state: String,
    pub mtu: u32,
    pub mac: String,
    pub master: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AddrInfo {
    pub link: String,
    /// `10.0.0.1/24`
    pub addr: String,
    pub family: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteInfo {
    /// `default` or a CIDR
    pub dest: String,
    pub via: Option<String>,
    pub dev: Option<String>,
    pub family: u8,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done,
    Links(Vec<LinkInfo>),
    Addrs(Vec<AddrInfo>),
    Routes(Vec<RouteInfo>),
    Exec(ExecOutput),
    Link { ns: NsRef, name: String },
    Fdb(Vec<FdbEntry>),
    // Issue 3
    Text(String),
    Spawned { pid: u32 },
    Lease(Lease),
    Ping(PingResult),
    PingAll(PingAllResult),
}
