//! DHCP: `dhcp_server` and `dhcp_relay` run dnsmasq (the program is the point, see
//! `ops::dnsmasq`), `dhcp_client` obtains a lease and applies it as ordinary ops
//! (address, default route).

use super::dnsmasq::{base_args, validate_dns_name, Dnsmasq, Service};
use super::link::format_mac;
use super::query::RouteInfo;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::{IpNetwork, Ipv4Network};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};

/// A fixed lease: the client with this MAC always gets `ip` (and `name`).
#[derive(Clone, Debug, PartialEq)]
pub struct FixedHost {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub name: Option<String>,
}

/// `dhcp_server(ns, #{ iface, range? | ranges?, router?, dns?, hosts?, lease?, domain? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpServer {
    pub ns: NsRef,
    pub iface: String,
    /// `[first, last]` each: in the interface's subnet, or in one the server routes to
    /// (clients behind a relay).
    pub ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub hosts: Vec<FixedHost>,
    /// dnsmasq's lease time (`12h`), checked by [`super::dnsmasq::duration`].
    pub lease: Option<String>,
    pub domain: Option<String>,
}

/// A range where the server's interfaces and routes put it: the subnet it is in, and
/// whether its clients are behind a relay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlacedRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub net: Ipv4Network,
    pub relayed: bool,
}

impl DhcpServer {
    fn what(&self) -> String {
        format!("cannot serve DHCP on {} in {}", self.iface, self.ns)
    }

    pub fn validate(&self) -> Result<()> {
        super::names::validate_ifname(&self.iface)?;
        if self.ranges.is_empty() {
            return Err(Error::new(Code::MissingOption, self.what())
                .why("no range given")
                .help("give range: [first, last] or ranges: [[first, last], ...]"));
        }
        for (first, last) in &self.ranges {
            if u32::from(*first) > u32::from(*last) {
                return Err(Error::new(Code::BadValue, self.what())
                    .why(format!("the range starts at {first} after its end {last}"))
                    .help("write the range as [first, last] with first <= last"));
            }
        }
        if let Some(l) = &self.lease {
            super::dnsmasq::duration("dhcp_server", "lease", l)?;
        }
        if let Some(d) = &self.domain {
            validate_dns_name("dhcp_server", "domain", d)?;
        }
        for h in &self.hosts {
            if let Some(n) = &h.name {
                validate_dns_name("dhcp_server", "host name", n)?;
            }
        }
        Ok(())
    }

    /// Where each range is served: in a subnet of `iface` (`nets`, its IPv4 networks), or
    /// in a subnet the server has a route to (`routes`: its routes; a relay sends those
    /// clients' requests, and the server answers the relay by that route).
    pub fn place(&self, nets: &[Ipv4Network], routes: &[RouteInfo]) -> Result<Vec<PlacedRange>> {
        let iface = &self.iface;
        if nets.is_empty() {
            return Err(Error::new(Code::NoAddress, self.what())
                .why(format!("{iface} has no IPv4 address, so dnsmasq cannot tell which subnet to serve"))
                .help(format!("give it one first, e.g. link(ns, \"{iface}\").addr(\"10.0.0.254/24\")")));
        }
        let routed: Vec<Ipv4Network> = routes
            .iter()
            .filter(|r| r.dest != "default")
            .filter_map(|r| match r.dest.parse::<IpNetwork>() {
                Ok(IpNetwork::V4(n)) if n.prefix() > 0 => Some(n),
                _ => None,
            })
            .collect();
        let mut placed = Vec::new();
        for &(first, last) in &self.ranges {
            let inside = |n: &&Ipv4Network| n.contains(first) && n.contains(last);
            let (net, relayed) = match (nets.iter().find(inside), routed.iter().filter(inside).max_by_key(|n| n.prefix())) {
                (Some(n), _) => (*n, false),
                (None, Some(n)) => (*n, true),
                (None, None) => return Err(self.outside(first, last, nets)),
            };
            for ip in [first, last] {
                if net.prefix() < 31 && (ip == net.network() || ip == net.broadcast()) {
                    return Err(Error::new(Code::OutsideSubnet, self.what())
                        .why(format!(
                            "{ip} is the {} address of {}/{}",
                            if ip == net.network() { "network" } else { "broadcast" },
                            net.network(),
                            net.prefix()
                        ))
                        .help("leave the first and the last address of the subnet out of the range"));
                }
            }
            placed.push(PlacedRange { first, last, net, relayed });
        }
        for h in &self.hosts {
            if !placed.iter().any(|r| r.net.contains(h.ip)) {
                let nets: Vec<String> = placed.iter().map(|r| format!("{}/{}", r.net.network(), r.net.prefix())).collect();
                return Err(Error::new(
                    Code::OutsideSubnet,
                    format!("the fixed lease {} of {} is outside the served subnets", h.ip, format_mac(&h.mac)),
                )
                .why(format!("the ranges are in {}", nets.join(", ")))
                .help("dnsmasq gives a fixed address only in a subnet it serves: pick it there, or add a range for its subnet"));
            }
        }
        Ok(placed)
    }

    /// A range in no subnet of the interface and none the server routes to. A relay's
    /// clients are served from a range outside the interface's subnet: what it needs is
    /// a route to their subnet.
    fn outside(&self, first: Ipv4Addr, last: Ipv4Addr, nets: &[Ipv4Network]) -> Error {
        let iface = &self.iface;
        let have = nets.iter().map(|n| format!("{n} (subnet {}/{})", n.network(), n.prefix())).collect::<Vec<_>>().join(", ");
        let example = nets[0];
        let (lo, hi) = (u32::from(example.network()) + 100, u32::from(example.broadcast()) - 1);
        let hint = if example.prefix() <= 24 {
            format!(", e.g. [\"{}\", \"{}\"]", Ipv4Addr::from(lo), Ipv4Addr::from(lo + 9))
        } else {
            format!(" (up to {})", Ipv4Addr::from(hi))
        };
        let relay_net = Ipv4Network::new(first, 24).map(|n| format!("{}/24", n.network())).unwrap_or_default();
        Error::new(Code::OutsideSubnet, format!("the DHCP range {first} - {last} is outside the subnet of {iface}"))
            .why(format!("{iface} in {} has {have}, and {} has no route to the range's subnet", self.ns, self.ns))
            .help(format!(
                "for clients on {iface}'s own segment choose first and last inside {}/{}{hint}; for clients behind a relay \
                 (dhcp_relay on their router), give the server a route to their subnet first, e.g. {}.route(\"{relay_net}\", ROUTER)",
                example.network(),
                example.prefix(),
                self.ns.in_script()
            ))
    }

    /// The dnsmasq that serves the ranges as placed. Relayed ranges need their netmask
    /// (dnsmasq cannot see their subnet), and get the relay as their router (dnsmasq's
    /// default for a relayed request: the relay's address, giaddr); `router` is for the
    /// interface's own subnet.
    pub fn dnsmasq(&self, placed: &[PlacedRange]) -> Dnsmasq {
        let mut args = base_args();
        args.extend([
            // DHCP only: no DNS port.
            "--port=0".to_string(),
            format!("--interface={}", self.iface),
            "--except-interface=lo".into(),
        ]);
        for r in placed {
            let mut range = format!("--dhcp-range=set:{},{},{}", if r.relayed { "relayed" } else { "local" }, r.first, r.last);
            if r.relayed {
                range.push_str(&format!(",{}", r.net.mask()));
            }
            if let Some(l) = &self.lease {
                range.push_str(&format!(",{l}"));
            }
            args.push(range);
        }
        for h in &self.hosts {
            let mut host = format!("--dhcp-host={},{}", format_mac(&h.mac), h.ip);
            if let Some(n) = &h.name {
                host.push_str(&format!(",{n}"));
            }
            args.push(host);
        }
        // dnsmasq pings an address before offering it (~3 s): not on a lab segment.
        args.extend(["--no-ping".to_string(), "--dhcp-authoritative".into()]);
        if let Some(r) = self.router {
            args.push(format!("--dhcp-option=tag:local,option:router,{r}"));
        }
        if !self.dns.is_empty() {
            args.push(format!("--dhcp-option=option:dns-server,{}", self.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")));
        }
        if let Some(d) = &self.domain {
            args.push(format!("--domain={d}"));
        }
        let ranges: Vec<String> =
            placed.iter().map(|r| format!("{} - {}{}", r.first, r.last, if r.relayed { " (relayed)" } else { "" })).collect();
        Dnsmasq {
            ns: self.ns.clone(),
            service: Service::Dhcp,
            iface: Some(self.iface.clone()),
            args,
            leases: true,
            describe: format!("dnsmasq (DHCP on {}, {})", self.iface, ranges.join(", ")),
            label: format!("dhcp {} {}", self.iface, ranges.join(", ")),
        }
    }
}

/// `dhcp_relay(ns, #{ iface, server })`: DHCP from the clients on `iface` relayed to
/// `server` (dnsmasq's relay mode; the relay's address on iface tells the server which
/// range to serve, and is the clients' router).
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpRelay {
    pub ns: NsRef,
    pub iface: String,
    pub server: Ipv4Addr,
}

impl DhcpRelay {
    pub fn validate(&self) -> Result<()> {
        super::names::validate_ifname(&self.iface)
    }

    /// The relay's address on `iface` (of `nets`, its IPv4 networks): what the server sees.
    pub fn local(&self, nets: &[Ipv4Network]) -> Result<Ipv4Addr> {
        nets.first().map(|n| n.ip()).ok_or_else(|| {
            Error::new(Code::NoAddress, format!("cannot relay DHCP on {} in {}", self.iface, self.ns))
                .why(format!("{} has no IPv4 address: the relay puts it in every request it forwards (giaddr)", self.iface))
                .help(format!("give it the clients' gateway address first, e.g. link(ns, \"{}\").addr(\"10.0.2.1/24\")", self.iface))
        })
    }

    pub fn dnsmasq(&self, local: Ipv4Addr) -> Dnsmasq {
        let mut args = base_args();
        args.extend([
            "--port=0".to_string(),
            format!("--interface={}", self.iface),
            "--except-interface=lo".into(),
            format!("--dhcp-relay={local},{}", self.server),
        ]);
        Dnsmasq {
            ns: self.ns.clone(),
            service: Service::Relay,
            iface: Some(self.iface.clone()),
            args,
            leases: true,
            describe: format!("dnsmasq (DHCP relay on {} to {})", self.iface, self.server),
            label: format!("dhcp relay {} -> {}", self.iface, self.server),
        }
    }
}

/// Obtain a DHCP lease on `iface`; changes nothing (the caller applies it with ops).
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpLease {
    pub ns: NsRef,
    pub iface: String,
    pub timeout_ms: u32,
}

impl DhcpLease {
    pub fn shell(&self) -> Step {
        Step::new(
            format!("DHCP client on {} in {}: nsscript's own client; the plan assumes the first free lease", self.iface, self.ns),
            vec![format!("# {}", Sh::inside(&self.ns, "dhclient").raw("-1").w(&self.iface).done())],
        )
    }

    /// No server answered.
    pub fn no_lease(&self, why: String) -> Error {
        Error::new(Code::NoLease, format!("no DHCP lease for {} in {}", self.iface, self.ns)).why(why)
    }
}

/// A DHCP lease as the server offered it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub dns: Vec<String>,
    pub domain: Option<String>,
    pub lease_secs: Option<u32>,
    /// How long obtaining it took.
    pub ms: u64,
}

impl Lease {
    /// The DNS servers it names, as addresses.
    pub fn dns_servers(&self) -> Vec<IpAddr> {
        self.dns.iter().filter_map(|d| d.parse().ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> DhcpServer {
        DhcpServer {
            ns: NsRef::named("srv"),
            iface: "eth0".into(),
            ranges: vec![("10.0.1.100".parse().unwrap(), "10.0.1.150".parse().unwrap())],
            router: Some("10.0.1.254".parse().unwrap()),
            dns: vec!["10.0.1.1".parse().unwrap()],
            hosts: vec![],
            lease: Some("12h".into()),
            domain: Some("lab".into()),
        }
    }

    fn route(dest: &str) -> RouteInfo {
        RouteInfo { dest: dest.into(), via: Some("10.0.1.2".into()), dev: Some("eth0".into()), family: 4 }
    }

    #[test]
    fn relayed_ranges_are_served_where_the_server_routes() {
        let mut s = server();
        s.ranges.push(("10.0.2.100".parse().unwrap(), "10.0.2.150".parse().unwrap()));
        s.hosts.push(FixedHost { mac: [2, 0, 0, 0, 2, 16], ip: "10.0.2.10".parse().unwrap(), name: Some("printer".into()) });
        let nets = ["10.0.1.1/24".parse().unwrap()];
        let err = s.place(&nets, &[route("default")]).unwrap_err();
        assert_eq!(err.code, Code::OutsideSubnet);
        assert!(
            err.help
                .as_deref()
                .unwrap()
                .contains("give the server a route to their subnet first, e.g. netns(\"srv\").route(\"10.0.2.0/24\", ROUTER)"),
            "{err:?}"
        );
        let placed = s.place(&nets, &[route("10.0.2.0/24")]).unwrap();
        assert_eq!(placed.iter().map(|r| r.relayed).collect::<Vec<_>>(), [false, true]);
        let args = s.dnsmasq(&placed).args;
        for want in [
            "--dhcp-range=set:local,10.0.1.100,10.0.1.150,12h",
            "--dhcp-range=set:relayed,10.0.2.100,10.0.2.150,255.255.255.0,12h",
            "--dhcp-host=02:00:00:00:02:10,10.0.2.10,printer",
            "--dhcp-option=tag:local,option:router,10.0.1.254",
            "--domain=lab",
            "--conf-file=/dev/null",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
        }
        let stray =
            DhcpServer { hosts: vec![FixedHost { mac: [2, 0, 0, 0, 0, 1], ip: "10.9.9.9".parse().unwrap(), name: None }], ..server() };
        assert!(stray.place(&nets, &[]).is_err());
    }
}
