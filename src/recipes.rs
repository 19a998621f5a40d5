//! Composite operations built from ops, shared by every backend and free of Rhai:
//! what `connect` and `forward` mean in terms of the kernel.

use crate::backend::Backend;
use crate::error::{Code, Error, Result};
use crate::ops::address::AddAddr;
use crate::ops::link::CreateVeth;
use crate::ops::query::Query;
use crate::ops::route::{AddRoute, RouteVia};
use crate::ops::sysctl::Sysctl;
use crate::ops::{NsRef, Op, Outcome};
use ipnetwork::IpNetwork;
use std::net::IpAddr;

/// What `connect(ns, target, opts)` plugs `ns` into.
#[derive(Clone, Debug)]
pub enum Target {
    /// A bridge: the outer end is created in the bridge's namespace and enslaved.
    Bridge { ns: NsRef, name: String },
    /// Another namespace: a point-to-point pair.
    Netns(NsRef),
}

#[derive(Clone, Debug, Default)]
pub struct ConnectOpts {
    pub ifname: Option<String>,
    pub peer: Option<String>,
    pub addr: Option<IpNetwork>,
    pub gw: Option<IpAddr>,
    pub mtu: Option<u32>,
    pub peer_addr: Option<IpNetwork>,
}

fn link_exists(b: &mut dyn Backend, ns: &NsRef, name: &str) -> Result<bool> {
    match b.apply(Op::Query(Query::Links(ns.clone())))? {
        Outcome::Links(links) => Ok(links.iter().any(|l| l.name == name)),
        _ => Ok(false),
    }
}

/// The first `ethN` not taken in `ns`.
pub fn next_free_eth(b: &mut dyn Backend, ns: &NsRef) -> Result<String> {
    let taken: Vec<String> = match b.apply(Op::Query(Query::Links(ns.clone())))? {
        Outcome::Links(links) => links.into_iter().map(|l| l.name).collect(),
        _ => Vec::new(),
    };
    Ok((0..).map(|i| format!("eth{i}")).find(|n| !taken.contains(n)).expect("some ethN is free"))
}

/// A name for the outer end: `NS-IFNAME` when it fits in 15 bytes, else a short hash.
fn outer_name(b: &mut dyn Backend, where_: &NsRef, ns: &NsRef, ifname: &str) -> Result<String> {
    let base = format!("{}-{ifname}", ns.name().unwrap_or("host"));
    let hashed = |salt: u32| {
        // FNV-1a: stable across runs, so re-runs pick the same names.
        let mut h: u32 = 0x811c9dc5;
        for byte in base.bytes().chain(salt.to_le_bytes()) {
            h = (h ^ u32::from(byte)).wrapping_mul(0x01000193);
        }
        format!("nss{h:08x}")
    };
    let mut candidates = std::iter::once(base.clone()).filter(|n| n.len() < 16).chain((0..).map(hashed));
    loop {
        let name = candidates.next().expect("endless candidates");
        if !link_exists(b, where_, &name)? {
            return Ok(name);
        }
    }
}

/// `connect`: a veth whose inner end is created directly inside `ns` (never moved),
/// attached to `target`, both ends up, then addresses and the default route.
/// Returns the inner end.
pub fn connect(b: &mut dyn Backend, ns: &NsRef, target: &Target, o: &ConnectOpts) -> Result<(NsRef, String)> {
    let ifname = match &o.ifname {
        Some(n) => n.clone(),
        None => next_free_eth(b, ns)?,
    };
    let (outer_ns, master) = match target {
        Target::Bridge { ns: bns, name } => (bns.clone(), Some(name.clone())),
        Target::Netns(t) => {
            if t == ns {
                return Err(Error::new(Code::BadWiring, format!("cannot connect {ns} to itself"))
                    .help("connect two different namespaces, or a namespace to a bridge"));
            }
            (t.clone(), None)
        }
    };
    if o.peer_addr.is_some() && master.is_some() {
        return Err(Error::new(Code::BadWiring, "peer_addr is for a namespace target")
            .help("to give the bridge an address use bridge(...).addr(CIDR)"));
    }
    let peer = match &o.peer {
        Some(p) => p.clone(),
        None if master.is_some() => outer_name(b, &outer_ns, ns, &ifname)?,
        None => next_free_eth(b, &outer_ns)?,
    };
    b.apply(Op::CreateVeth(CreateVeth {
        ns: outer_ns.clone(),
        name: peer.clone(),
        peer_ns: ns.clone(),
        peer: ifname.clone(),
        mtu: o.mtu,
        up: true,
        master,
    }))?;
    // Addresses and the route depend on nothing but the link: one pipelined burst.
    let mut burst = Vec::new();
    if let Some(addr) = o.addr {
        burst.push(Op::AddAddr(AddAddr { ns: ns.clone(), link: ifname.clone(), addr }));
    }
    if let Some(addr) = o.peer_addr {
        burst.push(Op::AddAddr(AddAddr { ns: outer_ns.clone(), link: peer.clone(), addr }));
    }
    if let Some(gw) = o.gw {
        burst.push(Op::AddRoute(AddRoute::new(ns.clone(), None, RouteVia::Gateway(gw))));
    }
    b.apply_all(burst)?;
    Ok((ns.clone(), ifname))
}

/// IPv4 and IPv6 forwarding on or off. IPv6 may be disabled in a lab: then only IPv4.
pub fn forward(b: &mut dyn Backend, ns: &NsRef, on: bool) -> Result<()> {
    let v = if on { "1" } else { "0" };
    b.apply(Op::Sysctl(Sysctl { ns: ns.clone(), key: "net.ipv4.ip_forward".into(), value: v.into() }))?;
    match b.apply(Op::Sysctl(Sysctl { ns: ns.clone(), key: "net.ipv6.conf.all.forwarding".into(), value: v.into() })) {
        Err(e) if e.is_errno(libc::ENOENT) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// IPv6 on or off in a namespace (`disable_ipv6` for all interfaces and new ones).
/// Large labs that do not need IPv6 turn it off: every new interface otherwise sends
/// DAD/MLD/router-solicitation multicast that a bridge floods to every port.
pub fn ipv6(b: &mut dyn Backend, ns: &NsRef, on: bool) -> Result<()> {
    // `all` sets `default` too (addrconf_disable_ipv6): one write per namespace, and in
    // a lab of many namespaces each /proc/sys lookup costs more (star(1000) with IPv6
    // off: 1.55 s with two writes).
    let v = if on { "0" } else { "1" };
    b.apply(Op::Sysctl(Sysctl { ns: ns.clone(), key: "net.ipv6.conf.all.disable_ipv6".into(), value: v.into() })).map(|_| ())
}
