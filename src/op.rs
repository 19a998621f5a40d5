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
    Vlan { parent: String, id: u16 },
    /// A macvlan child of `parent` (in the same namespace).
    Macvlan { parent: String, mode: MacvlanMode },
    /// A persistent tap device (TUNSETPERSIST) for a VM or a userspace peer.
    Tap { owner: Option<u32>, group: Option<u32> },
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
}
