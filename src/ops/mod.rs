//! The operations: the one contract between the script layer and the backends.
//!
//! One file per family of operations. Each family holds, in one place, what its
//! operations *mean*: the typed op, the validation every backend shares (names,
//! ranges, and the error with its help text, written once), how the op reads as shell
//! for `nsscript plan`, and what the ledger records of it (the op itself, or the
//! record named in the family) so that `down` can undo it.
//!
//! The script layer checks a call's arguments, builds an [`Op`] and hands it to a
//! [`crate::backend::Backend`]; it never sees netlink. A backend executes (live) or
//! records (plan) the op and answers with an [`Outcome`]. Nothing here knows Rhai or
//! the kernel.

pub mod address;
pub mod capture;
pub mod check;
pub mod dhcp;
pub mod dns;
pub mod dnsmasq;
pub mod firewall;
pub mod link;
pub mod names;
pub mod netns;
pub mod overlay;
pub mod process;
pub mod qdisc;
pub mod query;
pub mod ra;
pub mod route;
pub mod shell;
pub mod sysctl;
pub mod trace;

use serde::{Deserialize, Serialize};
use std::fmt;

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

    /// How a script names this namespace: `host()` or `netns("NAME")`.
    pub fn in_script(&self) -> String {
        match self {
            NsRef::Host => "host()".to_string(),
            NsRef::Named(n) => format!("netns(\"{n}\")"),
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

/// Everything a script can ask of a backend.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    CreateNetns(netns::CreateNetns),
    CreateBridge(link::CreateBridge),
    CreateVeth(link::CreateVeth),
    /// A link of a kind beyond veth and bridge (vxlan, vlan, macvlan, tap).
    CreateLink(overlay::CreateLink),
    SetLink(link::SetLink),
    DeleteLink(link::DeleteLink),
    AddAddr(address::AddAddr),
    AddRoute(route::AddRoute),
    Sysctl(sysctl::Sysctl),
    FdbAppend(overlay::FdbAppend),
    BridgeVlanFiltering(overlay::VlanFiltering),
    BridgeVlan(overlay::BridgeVlan),
    Shape(qdisc::SetShape),
    Firewall(firewall::Firewall),
    Exec(process::Exec),
    Spawn(process::Spawn),
    DhcpServer(dhcp::DhcpServer),
    DhcpLease(dhcp::DhcpLease),
    DhcpRelay(dhcp::DhcpRelay),
    DnsServer(dns::DnsServer),
    RouterAdv(ra::RouterAdv),
    Resolve(dns::Resolve),
    WaitAddr(address::WaitAddr),
    Ping(check::Ping),
    PingAll(check::PingAll),
    /// Packets: a capture in the background, and a trace of one probe.
    Capture(capture::CaptureOp),
    Trace(trace::Trace),
    /// Questions: they change nothing.
    Query(query::Query),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done,
    /// Where a link is now (after a rename or a move, or the peer of a veth).
    Link {
        ns: NsRef,
        name: String,
    },
    Links(Vec<query::LinkInfo>),
    Addrs(Vec<query::AddrInfo>),
    Routes(Vec<query::RouteInfo>),
    Fdb(Vec<query::FdbEntry>),
    Exec(process::ExecOutput),
    Text(String),
    Spawned {
        pid: u32,
    },
    Lease(dhcp::Lease),
    /// Addresses (a DNS answer).
    Ips(Vec<std::net::IpAddr>),
    Ping(check::PingResult),
    PingAll(check::PingAllResult),
    /// A capture started: its id.
    Capture(u64),
    CaptureStats(capture::CaptureStats),
    Packets(Vec<capture::Packet>),
    Trace(trace::TraceResult),
}
