//! Routes: `ns.route(dest, via, #{ table, metric, src, mtu, onlink, dev })` (`ip route
//! add`), and the question `route_get(ns, dst, #{ from, iif, fwmark })` (`ip route get`).

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where a route goes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum RouteVia {
    Gateway(IpAddr),
    Device(String),
}

/// The kernel's numbers of the tables iproute2 knows by name (`/etc/iproute2/rt_tables`,
/// which nsscript never writes: every other table is a number).
pub const TABLE_MAIN: u32 = 254;
pub const TABLE_LOCAL: u32 = 255;
pub const TABLE_DEFAULT: u32 = 253;

/// A table given by name or number: "main", "local", "default", or 1..4294967295.
pub fn table_by_name(name: &str) -> Option<u32> {
    match name {
        "main" => Some(TABLE_MAIN),
        "local" => Some(TABLE_LOCAL),
        "default" => Some(TABLE_DEFAULT),
        n => n.parse::<u32>().ok().filter(|t| *t > 0),
    }
}

/// A table as `ip` writes it (`main`, `local`, `default` or the number).
pub fn table_name(table: u32) -> String {
    match table {
        TABLE_MAIN => "main".into(),
        TABLE_LOCAL => "local".into(),
        TABLE_DEFAULT => "default".into(),
        t => t.to_string(),
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `ip route add DEST via GW | dev DEV [dev DEV] [table T] [metric M] [src S] [mtu N]
/// [onlink]`. `dest` None is the default route (of the gateway's family). The ledger
/// keeps it as it is when the namespace outlives the lab, and `down` deletes it from the
/// same fields (so from the right table). Options left out are left out of the ledger
/// line too: a plain route reads as it always did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AddRoute {
    pub ns: NsRef,
    pub dest: Option<IpNetwork>,
    pub via: RouteVia,
    /// The device of a gateway route (`via GW dev DEV`); onlink needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// None is the main table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// The preferred source address of what the route carries (`src`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The gateway is on the link even though no subnet of it says so.
    #[serde(default, skip_serializing_if = "is_default")]
    pub onlink: bool,
}

impl AddRoute {
    /// A route in the main table with nothing but a destination and a next hop.
    pub fn new(ns: NsRef, dest: Option<IpNetwork>, via: RouteVia) -> Self {
        AddRoute { ns, dest, via, dev: None, table: None, metric: None, src: None, mtu: None, onlink: false }
    }

    pub fn validate(&self) -> Result<()> {
        let what = || format!("cannot route {}", self.describe());
        if let RouteVia::Device(dev) = &self.via {
            super::names::validate_ifname(dev)?;
            if self.dev.is_some() {
                return Err(Error::new(Code::BadValue, what())
                    .why("the route goes to a device already")
                    .help("give the device once: as via, or as dev with a gateway in via"));
            }
        }
        if let Some(dev) = &self.dev {
            super::names::validate_ifname(dev)?;
        }
        if let (RouteVia::Gateway(gw), Some(d)) = (&self.via, self.dest) {
            if gw.is_ipv4() != d.is_ipv4() {
                return Err(Error::new(Code::BadValue, format!("cannot route {d} via {gw}"))
                    .why("the destination and the gateway are of different address families")
                    .help("use an IPv4 gateway for IPv4 destinations and an IPv6 one for IPv6"));
            }
        }
        if let Some(src) = self.src {
            if src.is_ipv4() != self.dest_or_default().is_ipv4() {
                return Err(Error::new(Code::BadValue, what())
                    .why(format!("the source {src} is not of the destination's address family"))
                    .help("src is an address of this namespace of the route's own family"));
            }
        }
        if self.table == Some(0) {
            return Err(Error::new(Code::BadValue, what()).why("table 0 is no table").help(TABLE_HELP));
        }
        if self.onlink && self.device().is_none() {
            return Err(Error::new(Code::MissingOption, what())
                .why("an onlink gateway needs the device it is on")
                .help("give it: ns.route(dest, gateway, #{ onlink: true, dev: \"eth0\" })"));
        }
        Ok(())
    }

    /// The device the route names (via a device, or dev with a gateway).
    pub fn device(&self) -> Option<&str> {
        match &self.via {
            RouteVia::Device(d) => Some(d),
            RouteVia::Gateway(_) => self.dev.as_deref(),
        }
    }

    /// The destination as the kernel gets it: the default route of the gateway's family.
    pub fn dest_or_default(&self) -> IpNetwork {
        match (self.dest, &self.via) {
            (Some(d), _) => d,
            (None, RouteVia::Gateway(IpAddr::V6(_))) => "::/0".parse().expect("valid"),
            (None, _) => "0.0.0.0/0".parse().expect("valid"),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.dest_or_default().is_ipv6()
    }

    /// The table the route is in.
    pub fn table_id(&self) -> u32 {
        self.table.unwrap_or(TABLE_MAIN)
    }

    /// The metric the kernel gives it: IPv6 routes without one get 1024.
    pub fn metric_or_default(&self) -> u32 {
        self.metric.unwrap_or(if self.is_ipv6() { 1024 } else { 0 })
    }

    /// The route in words, as `ip route` writes it (without what is left out).
    pub fn describe(&self) -> String {
        let mut s = describe_route(self.dest, &self.via);
        if let (RouteVia::Gateway(_), Some(dev)) = (&self.via, &self.dev) {
            s.push_str(&format!(" dev {dev}"));
        }
        if let Some(t) = self.table {
            s.push_str(&format!(" table {}", table_name(t)));
        }
        if let Some(m) = self.metric {
            s.push_str(&format!(" metric {m}"));
        }
        if let Some(src) = self.src {
            s.push_str(&format!(" src {src}"));
        }
        if let Some(mtu) = self.mtu {
            s.push_str(&format!(" mtu {mtu}"));
        }
        if self.onlink {
            s.push_str(" onlink");
        }
        s
    }

    /// The kernel refused the route with `errno`.
    pub fn refused(&self, errno: i32) -> Error {
        let err = Error::new(Code::RouteRefused, format!("cannot add route {} in {}", self.describe(), self.ns)).errno(errno);
        match errno {
            libc::ENETUNREACH => err.with_code(Code::GatewayUnreachable).help(
                "the gateway is not on any connected subnet of this namespace: add an address on its subnet (and bring the link up) first, or say onlink: true with its dev",
            ),
            libc::EEXIST => err.help(match self.table {
                Some(t) => format!("a route to this destination with this metric already exists in table {}", table_name(t)),
                None => "a route to this destination already exists".to_string(),
            }),
            libc::EINVAL if self.src.is_some() => err.help("src must be an address this namespace has (on any of its links)"),
            libc::ENODEV => err.help("the route's device does not exist, or an onlink gateway was given without it"),
            _ => err,
        }
    }

    /// The words after `ip route add|del`: the same for both, so the undo names the same route.
    fn spec(&self, c: Sh) -> Sh {
        let mut c = c.w(self.dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into()));
        c = match &self.via {
            RouteVia::Gateway(gw) => c.raw("via").w(gw.to_string()).opt("dev", self.dev.as_ref()),
            RouteVia::Device(dev) => c.raw("dev").w(dev),
        };
        c = c.opt("table", self.table.map(table_name)).opt("metric", self.metric).opt("src", self.src).opt("mtu", self.mtu);
        if self.onlink {
            c = c.raw("onlink");
        }
        c
    }

    pub fn shell(&self) -> Step {
        let add = self.spec(Sh::ip_family(&self.ns, self.is_ipv6()).raw("route add")).raw("proto static").done();
        Step::new(format!("route {} in {}", self.describe(), self.ns), vec![add])
    }

    /// `ip route del ...` of the same route (the plan's undo).
    pub fn undo_shell(&self) -> String {
        self.spec(Sh::ip_family(&self.ns, self.is_ipv6()).raw("route del")).done()
    }
}

pub const TABLE_HELP: &str = "a table is a number from 1 to 4294967295, or \"main\", \"local\" or \"default\"";

pub fn describe_route(dest: Option<IpNetwork>, via: &RouteVia) -> String {
    let d = dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into());
    match via {
        RouteVia::Gateway(gw) => format!("{d} via {gw}"),
        RouteVia::Device(dev) => format!("{d} dev {dev}"),
    }
}

/// `ip route get DST [from FROM] [iif IIF] [mark FWMARK]`: which route the kernel picks
/// for a packet, rules and tables included.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteQuery {
    pub dst: IpAddr,
    pub from: Option<IpAddr>,
    /// Ask as for a packet arriving on this link (a forwarded one), not one sent from ns.
    pub iif: Option<String>,
    pub fwmark: Option<u32>,
}

/// What `ip route get` says: the device and gateway the packet leaves by, the source
/// address it gets, and the table the route came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteAnswer {
    pub dev: Option<String>,
    pub via: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub table: u32,
}

impl RouteQuery {
    pub fn describe(&self) -> String {
        let mut s = self.dst.to_string();
        if let Some(f) = self.from {
            s.push_str(&format!(" from {f}"));
        }
        if let Some(i) = &self.iif {
            s.push_str(&format!(" iif {i}"));
        }
        if let Some(m) = self.fwmark {
            s.push_str(&format!(" fwmark {m:#x}"));
        }
        s
    }

    pub fn validate(&self) -> Result<()> {
        if let Some(from) = self.from {
            if from.is_ipv4() != self.dst.is_ipv4() {
                return Err(Error::new(Code::BadValue, format!("cannot ask for a route to {}", self.describe()))
                    .why("from and the destination are of different address families")
                    .help("ask for IPv4 destinations from IPv4 sources, IPv6 from IPv6"));
            }
        }
        if let Some(iif) = &self.iif {
            super::names::validate_ifname(iif)?;
            if self.from.is_none() {
                return Err(Error::new(Code::MissingOption, format!("cannot ask for a route to {}", self.describe()))
                    .why("a packet arriving on a link has a source address")
                    .help("give from with iif: route_get(ns, dst, #{ from: \"10.0.0.12\", iif: \"eth0\" })"));
            }
        }
        Ok(())
    }

    /// The kernel found no way for the packet (`ip route get` says why).
    pub fn refused(&self, ns: &NsRef, errno: i32) -> Error {
        let what = format!("no route to {} in {ns}", self.describe());
        let err = Error::new(Code::NoRoute, what).errno(errno);
        match errno {
            libc::ENETUNREACH => {
                err.help("no table the rules lead to has a route to it: routes(ns, #{ table: \"all\" }) and rules(ns) show what there is")
            }
            libc::EHOSTUNREACH => err.help(if self.iif.is_some() {
                "an unreachable route covers it, or the namespace does not forward (ns.forward(true)) what arrives on iif"
            } else {
                "an unreachable route covers it (ip route add unreachable ...)"
            }),
            libc::EACCES => err.help("a prohibit route (or a prohibit rule) covers it"),
            libc::EINVAL => err.help("a blackhole route covers it"),
            _ => Error { code: Code::KernelRefused, ..err },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> AddRoute {
        AddRoute::new(NsRef::named("rt"), None, RouteVia::Gateway("100.64.2.1".parse().unwrap()))
    }

    #[test]
    fn options_read_as_ip_route_writes_them() {
        let r = AddRoute { table: Some(2), metric: Some(20), src: Some("100.64.2.2".parse().unwrap()), ..route() };
        assert_eq!(r.shell().commands, ["ip -n rt route add default via 100.64.2.1 table 2 metric 20 src 100.64.2.2 proto static"]);
        assert_eq!(r.undo_shell(), "ip -n rt route del default via 100.64.2.1 table 2 metric 20 src 100.64.2.2");
        let onlink = AddRoute { dev: Some("eth2".into()), onlink: true, table: Some(TABLE_MAIN), mtu: Some(1400), ..route() };
        assert_eq!(onlink.describe(), "default via 100.64.2.1 dev eth2 table main mtu 1400 onlink");
    }

    #[test]
    fn a_plain_route_keeps_its_ledger_line() {
        let text = serde_json::to_string(&route()).unwrap();
        assert_eq!(text, r#"{"ns":{"Named":"rt"},"dest":null,"via":{"Gateway":"100.64.2.1"}}"#);
        assert_eq!(serde_json::from_str::<AddRoute>(&text).unwrap(), route());
    }

    #[test]
    fn checks_both_backends_share() {
        assert_eq!(AddRoute { onlink: true, ..route() }.validate().unwrap_err().code, Code::MissingOption);
        assert_eq!(AddRoute { table: Some(0), ..route() }.validate().unwrap_err().code, Code::BadValue);
        assert_eq!(AddRoute { src: Some("fd00::1".parse().unwrap()), ..route() }.validate().unwrap_err().code, Code::BadValue);
        let dev_twice = AddRoute { dev: Some("eth0".into()), ..AddRoute::new(NsRef::Host, None, RouteVia::Device("eth1".into())) };
        assert_eq!(dev_twice.validate().unwrap_err().code, Code::BadValue);
        assert_eq!(table_by_name("main"), Some(254));
        assert_eq!(table_by_name("0"), None);
        assert_eq!(table_by_name("4294967295"), Some(u32::MAX));
        let q = RouteQuery { dst: "10.0.0.1".parse().unwrap(), from: None, iif: Some("eth0".into()), fwmark: None };
        assert_eq!(q.validate().unwrap_err().code, Code::MissingOption);
        assert_eq!(q.refused(&NsRef::Host, libc::EACCES).code, Code::NoRoute);
    }
}
