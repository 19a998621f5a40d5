//! The lab's services beyond a DHCP server: a DHCP relay, a DNS server and `resolve`,
//! IPv6 router advertisements and `wait_addr`. What they mean is in `ops::dhcp`,
//! `ops::dns`, `ops::ra` and `ops::address`; this file turns a call's options into the
//! typed op.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::router::{addresses, ipv4, ms, required};
use super::types::Netns;
use super::{apply, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::address::WaitAddr;
use crate::ops::dhcp::DhcpRelay;
use crate::ops::dns::{DnsServer, Resolve};
use crate::ops::ra::RouterAdv;
use crate::ops::{Op, Outcome};
use ipnetwork::IpNetwork;
use rhai::{Array, Dynamic, Map};

fn pid(out: Outcome) -> i64 {
    match out {
        Outcome::Spawned { pid } => i64::from(pid),
        _ => 0,
    }
}

fn family(func: &str, o: &Opts, default: Option<u8>) -> RhaiResult<Option<u8>> {
    match o.int("family")? {
        None => Ok(default),
        Some(4) => Ok(Some(4)),
        Some(6) => Ok(Some(6)),
        Some(n) => {
            Err(fail(Error::new(Code::BadValue, format!("{func}(): family {n} is neither 4 nor 6")).help("family: 4 (IPv4) or 6 (IPv6)")))
        }
    }
}

fn dhcp_relay(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<i64> {
    let o = Opts::new("dhcp_relay", opts, &["iface", "server"])?;
    let example = "iface: \"eth0\", server: \"10.0.1.1\"";
    let iface = required(&o, "dhcp_relay", "iface", example)?;
    let server = ipv4("dhcp_relay", "server", &required(&o, "dhcp_relay", "server", example)?)?;
    apply(b, Op::DhcpRelay(DhcpRelay { ns: ns.0, iface, server })).map(pid)
}

fn dns_server(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<i64> {
    const F: &str = "dns_server";
    let o = Opts::new(F, opts, &["iface", "records", "domain", "upstream"])?;
    let records = opts.get("records").filter(|v| !v.is_unit()).ok_or_else(|| {
        fail(
            Error::new(Code::MissingOption, "dns_server() needs the option \"records\"")
                .help("e.g. dns_server(ns, #{ records: #{ web: \"10.0.0.80\" } })"),
        )
    })?;
    let map = records.clone().try_cast::<Map>().ok_or_else(|| {
        fail(
            Error::new(Code::BadValue, "dns_server(): records is a map of name -> address")
                .help("records: #{ web: \"10.0.0.80\", db: [\"10.0.0.5\", \"fd00::5\"] }"),
        )
    })?;
    let mut recs = Vec::new();
    for (name, v) in map {
        let addrs = addresses(F, "records", &v)?.iter().map(|a| args::ip(a)).collect::<RhaiResult<Vec<_>>>()?;
        recs.push((name.to_string(), addrs));
    }
    let upstream = match opts.get("upstream").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(v) => addresses(F, "upstream", v)?.iter().map(|a| args::ip(a)).collect::<RhaiResult<Vec<_>>>()?,
    };
    apply(b, Op::DnsServer(DnsServer { ns: ns.0, iface: o.string("iface")?, records: recs, domain: o.string("domain")?, upstream }))
        .map(pid)
}

fn resolve(b: &Shared, ns: Netns, name: &str, opts: &Map) -> RhaiResult<Array> {
    let o = Opts::new("resolve", opts, &["server", "family", "timeout"])?;
    let server = o.string("server")?.map(|s| args::ip(&s)).transpose()?;
    let timeout_ms = o.int("timeout")?.map(|t| ms("resolve", "timeout", t)).transpose()?.unwrap_or(1000);
    let op = Resolve { ns: ns.0, name: name.to_string(), server, family: family("resolve", &o, None)?, timeout_ms };
    match apply(b, Op::Resolve(op))? {
        Outcome::Ips(ips) => Ok(ips.into_iter().map(|ip| Dynamic::from(ip.to_string())).collect()),
        _ => Ok(Array::new()),
    }
}

fn router_adv(b: &Shared, ns: Netns, iface: &str, opts: &Map) -> RhaiResult<i64> {
    let o = Opts::new("router_adv", opts, &["prefix", "lifetime", "managed"])?;
    let prefix = match o.string("prefix")?.map(|p| args::cidr(&p)).transpose()? {
        None => None,
        Some(IpNetwork::V6(p)) => Some(p),
        Some(IpNetwork::V4(p)) => {
            return Err(fail(
                Error::new(Code::BadValue, format!("router_adv(): prefix {p} is IPv4"))
                    .help("advertise an IPv6 /64, e.g. prefix: \"fd00:1::/64\""),
            ))
        }
    };
    let lifetime = match opts.get("lifetime").filter(|v| !v.is_unit()) {
        None => None,
        Some(v) => Some(match v.as_int() {
            Ok(n) => n.to_string(),
            Err(_) => o.string("lifetime")?.unwrap_or_default(),
        }),
    };
    let managed = match opts.get("managed").filter(|v| !v.is_unit()) {
        None => false,
        Some(v) => {
            v.as_bool().map_err(|ty| fail(Error::new(Code::BadValue, format!("router_adv(): managed must be true or false, not {ty}"))))?
        }
    };
    apply(b, Op::RouterAdv(RouterAdv { ns: ns.0, iface: iface.to_string(), prefix, lifetime, managed })).map(pid)
}

fn wait_addr(b: &Shared, ns: Netns, iface: &str, opts: &Map) -> RhaiResult<Array> {
    let o = Opts::new("wait_addr", opts, &["family", "timeout"])?;
    let timeout_ms = o.int("timeout")?.map(|t| ms("wait_addr", "timeout", t)).transpose()?.unwrap_or(10_000);
    let op = WaitAddr { ns: ns.0, iface: iface.to_string(), family: family("wait_addr", &o, Some(6))?.unwrap_or(6), timeout_ms };
    match apply(b, Op::WaitAddr(op))? {
        Outcome::Addrs(addrs) => Ok(addrs.into_iter().map(|a| Dynamic::from(a.addr.split('/').next().unwrap_or("").to_string())).collect()),
        _ => Ok(Array::new()),
    }
}

/// The services, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "dhcp_relay",
        "dhcp_relay(ns, #{ iface, server }) -> pid",
        "relay DHCP from the clients on iface to the server (dnsmasq's relay mode), stopped at down; the server needs a range in the clients' subnet and a route to it",
    )
    .details(
        "Runs dnsmasq as a DHCP relay on iface inside ns (a router between the clients and the server): requests go to server with iface's address (giaddr), which picks the server's range for that subnet and is the clients' router.",
        "dhcp_relay(rt, #{ iface: \"eth0\", server: \"10.0.1.1\" });",
    ),
    FnDoc::new(
        "dns_server",
        "dns_server(ns, #{ iface?, records, domain?, upstream? }) -> pid",
        "a DNS server for the lab (dnsmasq): records maps name -> address or [addresses] (A or AAAA by family); other names do not exist unless upstream is given; stopped at down",
    )
    .details(
        "Runs dnsmasq as a DNS server inside ns (on iface's addresses, or on all of ns's), with no file of the machine read: neither /etc/hosts nor /etc/resolv.conf. With domain, unqualified names answer as NAME.DOMAIN too. Its address is what dhcp_server's dns option hands out.",
        "dns_server(srv, #{ iface: \"eth0\", domain: \"lab\", records: #{ web: \"10.0.1.80\" } });",
    ),
    FnDoc::new(
        "resolve",
        "resolve(ns, name, #{ server?, family?, timeout? }) -> [addr]",
        "a DNS query sent natively from inside ns (no dig): the A and AAAA addresses of name (family 4 or 6: one of them), [] for a name without any; an unreachable server is an error that names it",
    )
    .details(
        "Asks server (default: the DNS server ns's DHCP lease named, else the lab's dns_server) over UDP from a socket opened inside ns, waiting timeout ms (default 1000).",
        "assert(resolve(c1, \"web.lab\") == [\"10.0.1.80\"], \"web resolves\");",
    )
    .also_method(),
    FnDoc::new(
        "router_adv",
        "router_adv(ns, iface, #{ prefix?, lifetime?, managed? }) -> pid",
        "IPv6 router advertisements on iface (dnsmasq), so hosts on the link form SLAAC addresses from the /64 prefix (default: iface's own); managed sets the M flag (and serves DHCPv6); stopped at down",
    )
    .details(
        "iface needs a global IPv6 address in the prefix; the advertisements start once its link-local address has finished DAD (hosts take them only from there). Hosts form their address where accept_ra allows it (not where they forward); wait_addr waits for it.",
        "router_adv(r, \"eth0\", #{ prefix: \"fd00:1::/64\", lifetime: \"1h\" });",
    ),
    FnDoc::new(
        "wait_addr",
        "wait_addr(ns, iface, #{ family?, timeout? }) -> [addr]",
        "wait (default 10000 ms) until iface has a global address of family (default 6) that is no longer tentative (DAD done); its addresses; past the timeout an error says what it has",
    )
    .also_method(),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("dhcp_relay", move |ns: Netns, opts: Map| dhcp_relay(&b, ns, &opts));
    let b = backend.clone();
    r.func("dns_server", move |ns: Netns, opts: Map| dns_server(&b, ns, &opts));
    let b = backend.clone();
    r.func("resolve", move |ns: Netns, name: &str| resolve(&b, ns, name, &Map::new()));
    let b = backend.clone();
    r.func("resolve", move |ns: Netns, name: &str, opts: Map| resolve(&b, ns, name, &opts));
    let b = backend.clone();
    r.func("router_adv", move |ns: Netns, iface: &str| router_adv(&b, ns, iface, &Map::new()));
    let b = backend.clone();
    r.func("router_adv", move |ns: Netns, iface: &str, opts: Map| router_adv(&b, ns, iface, &opts));
    let b = backend.clone();
    r.func("wait_addr", move |ns: Netns, iface: &str| wait_addr(&b, ns, iface, &Map::new()));
    let b = backend.clone();
    r.func("wait_addr", move |ns: Netns, iface: &str, opts: Map| wait_addr(&b, ns, iface, &opts));
}
