//! Questions about a namespace (`links`, `addrs`, `routes`, `fdb`, `link.peer()`),
//! and the views their answers come in. They change nothing.

use super::route::RouteQuery;
use super::NsRef;
use ipnetwork::IpNetwork;
use serde::Serialize;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq)]
pub enum Query {
    Links(NsRef),
    /// One link, read from the kernel now (`link.info()`, `link.mtu`...).
    Link {
        ns: NsRef,
        name: String,
    },
    Addrs(NsRef),
    /// The main table's routes.
    Routes(NsRef),
    /// The routes of one table, or of all of them.
    RoutesIn(NsRef, Tables),
    /// Which route the kernel picks for a packet (`ip route get`).
    RouteGet(NsRef, RouteQuery),
    /// The policy rules of ns (`ip rule`, both families).
    Rules(NsRef),
    /// The qdiscs of ns and their HTB classes (`tc qdisc show`, `tc class show`).
    Qdiscs(NsRef),
    /// The ports of a bridge with their STP state (`bridge link`).
    BridgePorts {
        ns: NsRef,
        bridge: String,
    },
    /// The bridge and VXLAN forwarding tables of ns (`bridge fdb show`).
    Fdb(NsRef),
    /// The other end of a veth: its namespace and name.
    VethPeer {
        ns: NsRef,
        name: String,
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
    /// Still being checked for duplicates (IPv6 DAD): not usable yet.
    pub tentative: bool,
    /// `global`, `site`, `link` or `host`, as `ip addr` says it.
    pub scope: String,
    /// It has a lifetime (SLAAC, a kernel-managed lease), as `ip addr` marks `dynamic`.
    pub dynamic: bool,
}

impl AddrInfo {
    /// An address as it is added by hand: usable at once (IPv6 without DAD), permanent,
    /// of the scope the kernel gives it.
    pub fn permanent(link: &str, addr: IpNetwork) -> AddrInfo {
        AddrInfo {
            link: link.to_string(),
            addr: addr.to_string(),
            family: family(&addr.ip()),
            tentative: false,
            scope: scope_of(&addr.ip()).into(),
            dynamic: false,
        }
    }

    /// Global (not link or host scope), and done with DAD: what a host can use for the
    /// outside world.
    pub fn usable_global(&self) -> bool {
        self.scope == "global" && !self.tentative
    }
}

/// The scope the kernel gives an address added without one: host for loopback, link
/// for IPv6 link-local (fe80::/10), global otherwise.
pub fn scope_of(ip: &IpAddr) -> &'static str {
    match ip {
        ip if ip.is_loopback() => "host",
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => "link",
        _ => "global",
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteInfo {
    /// `default` or a CIDR
    pub dest: String,
    pub via: Option<String>,
    pub dev: Option<String>,
    pub family: u8,
    pub table: u32,
    /// 0 when the route has none (IPv4); IPv6 routes always have one.
    pub metric: u32,
    /// The preferred source address (`src`).
    pub src: Option<String>,
}

/// Which tables `routes(ns, #{ table })` lists.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tables {
    One(u32),
    All,
}

impl Tables {
    pub fn holds(&self, table: u32) -> bool {
        match self {
            Tables::One(t) => *t == table,
            Tables::All => true,
        }
    }
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

/// 4 or 6, as the `family` fields say it.
pub fn family(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

/// The route a namespace would use for `addr`: the longest prefix of its main table.
pub fn route_for(routes: &[RouteInfo], addr: IpAddr) -> Option<&RouteInfo> {
    let family = family(&addr);
    routes
        .iter()
        .filter(|r| r.family == family)
        .filter_map(|r| {
            let prefix = if r.dest == "default" {
                0
            } else {
                let net: IpNetwork = r.dest.parse().or_else(|_| r.dest.parse::<IpAddr>().map(IpNetwork::from)).ok()?;
                if !net.contains(addr) {
                    return None;
                }
                net.prefix()
            };
            Some((prefix, r))
        })
        .max_by_key(|(p, _)| *p)
        .map(|(_, r)| r)
}

/// The route a namespace would use for `addr` (longest prefix of its main table), in words.
pub fn route_used(routes: &[RouteInfo], addr: IpAddr) -> Option<String> {
    route_for(routes, addr).map(|r| {
        let mut s = r.dest.clone();
        if let Some(v) = &r.via {
            s.push_str(&format!(" via {v}"));
        }
        if let Some(d) = &r.dev {
            s.push_str(&format!(" dev {d}"));
        }
        s
    })
}

/// How a failed check names the route `src` would send `target` by (or that it has none).
pub fn route_words(src: &NsRef, routes: &[RouteInfo], target: IpAddr) -> String {
    match route_used(routes, target) {
        Some(r) => format!("{src} sends it by the route `{r}`"),
        None => format!("{src} has no route to {target}: add one, e.g. {}.route(\"default\", GATEWAY)", src.in_script()),
    }
}

/// A namespace's links, addresses and routes as the REPL's `:show` prints them (like
/// `ip -br`): one line per link (`NAME @MASTER  STATE  ADDRS`), then `route ...` lines.
/// The live view's namespace panel shows the same text.
pub fn show(links: &[LinkInfo], addrs: &[AddrInfo], routes: &[RouteInfo]) -> String {
    let mut out = String::new();
    for l in links {
        let a: Vec<&str> = addrs.iter().filter(|a| a.link == l.name).map(|a| a.addr.as_str()).collect();
        let name = match &l.master {
            Some(m) => format!("{} @{m}", l.name),
            None => l.name.clone(),
        };
        out.push_str(format!("{name:<24} {:<8} {}", l.state, a.join(" ")).trim_end());
        out.push('\n');
    }
    for r in routes {
        let mut s = r.dest.clone();
        if let Some(v) = &r.via {
            s.push_str(&format!(" via {v}"));
        }
        if let Some(d) = &r.dev {
            s.push_str(&format!(" dev {d}"));
        }
        out.push_str(&format!("route {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix() {
        let r = |dest: &str, via: Option<&str>, dev: &str| RouteInfo {
            dest: dest.into(),
            via: via.map(String::from),
            dev: Some(dev.into()),
            family: 4,
            table: 254,
            metric: 0,
            src: None,
        };
        let routes = vec![r("default", Some("10.0.0.254"), "eth0"), r("10.0.0.0/24", None, "eth0")];
        assert_eq!(route_used(&routes, "10.0.0.9".parse().unwrap()).unwrap(), "10.0.0.0/24 dev eth0");
        assert_eq!(route_used(&routes, "203.0.113.1".parse().unwrap()).unwrap(), "default via 10.0.0.254 dev eth0");
        assert_eq!(route_used(&routes[1..], "203.0.113.1".parse().unwrap()), None);
    }
}
