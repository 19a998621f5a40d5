//! Router labs: firewall/NAT (`snat`, `masquerade`, `dnat`, `forward_accept`,
//! `iptables`), processes (`spawn`, `exec` with a timeout), DHCP (`dhcp_server`,
//! `dhcp_client`) and native reachability (`ping`, `assert_ping`, `assert_no_ping`).
//! What the rules mean is in `ops::firewall`; this file turns a call's options into
//! the typed op.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::types::Netns;
use super::{apply, fail, RhaiResult, Shared};
use crate::backend::Backend;
use crate::error::{Code, Error};
use crate::ops::address::AddAddr;
use crate::ops::check::{Ping, PingResult, PingSpec};
use crate::ops::dhcp::{DhcpLease, DhcpServer, FixedHost, Lease};
use crate::ops::firewall::{self, Firewall, ForwardAccept, FwOp, Masquerade, PortForward, Snat};
use crate::ops::process::{Command, Exec, Spawn};
use crate::ops::query::{route_words, Query};
use crate::ops::route::{AddRoute, RouteVia};
use crate::ops::{NsRef, Op, Outcome};
use ipnetwork::{IpNetwork, Ipv4Network};
use rhai::{Array, Dynamic, Map};
use std::net::{IpAddr, Ipv4Addr};

// ---- arguments ----

pub(super) fn ipv4_net(func: &str, key: &str, text: &str) -> RhaiResult<Ipv4Network> {
    let net = args::cidr(text).or_else(|_| args::ip(text).map(|ip| IpNetwork::new(ip, 32).expect("a /32 is valid")))?;
    match net {
        IpNetwork::V4(n) => Ok(n),
        IpNetwork::V6(_) => Err(fail(
            Error::new(Code::BadValue, format!("{func}(): {key} {text:?} is IPv6"))
                .help("the NAT and firewall functions write IPv4 (iptables) rules"),
        )),
    }
}

pub(super) fn ipv4(func: &str, key: &str, text: &str) -> RhaiResult<Ipv4Addr> {
    match args::ip(text)? {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(fail(
            Error::new(Code::BadValue, format!("{func}(): {key} {text:?} is IPv6")).help("write an IPv4 address, e.g. \"10.0.0.254\""),
        )),
    }
}

pub(super) fn required(o: &Opts, func: &str, key: &str, example: &str) -> RhaiResult<String> {
    o.string(key)?.ok_or_else(|| {
        fail(
            Error::new(Code::MissingOption, format!("{func}() needs the option {key:?}"))
                .help(format!("e.g. {func}(ns, #{{ {example} }})")),
        )
    })
}

pub(super) fn port(func: &str, what: &str, v: &Dynamic) -> RhaiResult<u16> {
    let n = if let Ok(n) = v.as_int() {
        n
    } else if let Ok(s) = v.clone().into_immutable_string() {
        s.trim().parse::<i64>().map_err(|_| {
            fail(
                Error::new(Code::BadValue, format!("{func}(): invalid {what} {:?}", s.as_str())).help("a port is a number from 1 to 65535"),
            )
        })?
    } else {
        return Err(fail(Error::new(Code::BadValue, format!("{func}(): {what} must be a number, not {}", v.type_name()))));
    };
    if !(1..=65535).contains(&n) {
        return Err(fail(
            Error::new(Code::BadValue, format!("{func}(): invalid {what} {n}"))
                .why("out of range")
                .help("a port is a number from 1 to 65535"),
        ));
    }
    Ok(n as u16)
}

fn command_of(func: &str, v: Dynamic) -> RhaiResult<Command> {
    if v.is_string() {
        return Ok(Command::Shell(v.into_immutable_string().map(|s| s.to_string()).unwrap_or_default()));
    }
    let ty = v.type_name();
    match v.try_cast::<Array>() {
        Some(a) => a
            .into_iter()
            .map(|x| x.into_immutable_string().map(|s| s.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Command::Argv)
            .map_err(|ty| {
                fail(
                    Error::new(Code::BadValue, format!("{func}() arguments must be strings, found {ty}"))
                        .help("write numbers as strings: [\"sleep\", \"60\"]"),
                )
            }),
        None => Err(fail(Error::new(Code::BadValue, format!("{func}(): the command must be a string or an array of strings, not {ty}")))),
    }
}

pub(super) fn ms(func: &str, key: &str, n: i64) -> RhaiResult<u32> {
    args::u32_in(&format!("{func}(): {key} of"), n, 1, 3_600_000)
}

// ---- firewall / NAT ----

/// `in` is a Rhai keyword, so a map writes it quoted (`#{ "in": "eth1" }`); `iif` is
/// the same option unquoted.
pub(super) fn in_iface(o: &Opts) -> RhaiResult<Option<String>> {
    Ok(o.string("in")?.or(o.string("iif")?))
}

pub(super) fn fw(b: &Shared, ns: &NsRef, op: FwOp) -> RhaiResult<Outcome> {
    apply(b, Op::Firewall(Firewall { ns: ns.clone(), op }))
}

fn snat(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("snat", opts, &["src", "to", "out", "dst", "not_dst"])?;
    let src = ipv4_net("snat", "src", &required(&o, "snat", "src", "src: \"10.0.0.0/24\", to: \"192.168.100.11\"")?)?;
    let to = ipv4("snat", "to", &required(&o, "snat", "to", "src: \"10.0.0.0/24\", to: \"192.168.100.11\"")?)?;
    let (dst, not_dst) = match (o.string("dst")?, o.string("not_dst")?) {
        (Some(_), Some(_)) => return Err(fail(Error::new(Code::BadValue, "snat(): give dst or not_dst, not both"))),
        (d, n) => (d.map(|d| ipv4_net("snat", "dst", &d)).transpose()?, n.map(|d| ipv4_net("snat", "not_dst", &d)).transpose()?),
    };
    fw(b, &ns.0, FwOp::Snat(Snat { src, to, out: o.string("out")?, dst, not_dst }))?;
    Ok(())
}

fn masquerade(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("masquerade", opts, &["src", "out", "not_dst"])?;
    let example = "src: \"10.0.1.0/24\", out: \"eth1\"";
    let src = ipv4_net("masquerade", "src", &required(&o, "masquerade", "src", example)?)?;
    let out = required(&o, "masquerade", "out", example)?;
    let not_dst = o.string("not_dst")?.map(|d| ipv4_net("masquerade", "not_dst", &d)).transpose()?;
    fw(b, &ns.0, FwOp::Masquerade(Masquerade { src, out, not_dst }))?;
    Ok(())
}

/// Port forwarding (see `ops::firewall::PortForward` for the rules it adds): `to` is one
/// back end or an array of them.
fn dnat(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("dnat", opts, &["proto", "dport", "to", "in", "iif", "dst"])?;
    let example = "proto: \"tcp\", dport: 8080, to: \"10.0.0.1:80\"";
    let proto = required(&o, "dnat", "proto", example)?.trim().to_ascii_lowercase();
    let dport = match opts.get("dport").filter(|v| !v.is_unit()) {
        Some(v) => port("dnat", "dport", v)?,
        None => {
            return Err(fail(
                Error::new(Code::MissingOption, "dnat() needs the option \"dport\"").help(format!("e.g. dnat(ns, #{{ {example} }})")),
            ))
        }
    };
    let backends: Vec<Dynamic> = match opts.get("to").filter(|v| !v.is_unit()) {
        Some(v) if v.is_array() => v.clone().cast::<Array>(),
        Some(v) => vec![v.clone()],
        None => return required(&o, "dnat", "to", example).map(|_| ()),
    };
    let mut to = Vec::new();
    for v in backends {
        let text = v
            .into_immutable_string()
            .map_err(|ty| fail(Error::new(Code::BadValue, format!("dnat(): a back end must be a string \"IP:PORT\", not {ty}"))))?;
        let (ip, p) = match text.rsplit_once(':') {
            Some((ip, p)) if !ip.contains(':') => (ipv4("dnat", "to", ip)?, port("dnat", "port in \"to\"", &Dynamic::from(p.to_string()))?),
            _ => (ipv4("dnat", "to", &text)?, dport),
        };
        to.push(std::net::SocketAddrV4::new(ip, p));
    }
    let dst = o.string("dst")?.map(|d| ipv4_net("dnat", "dst", &d)).transpose()?;
    fw(b, &ns.0, FwOp::PortForward(PortForward { proto, dport, to, iif: in_iface(&o)?, dst }))?;
    Ok(())
}

fn forward_accept(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("forward_accept", opts, &["in", "iif", "out", "oif", "src", "dst"])?;
    let oif = o.string("out")?.or(o.string("oif")?);
    let net = |key: &str| o.string(key)?.map(|t| args::net_or_host(&t)).transpose();
    let (src, dst) = (net("src")?, net("dst")?);
    fw(b, &ns.0, FwOp::ForwardAccept(ForwardAccept { iif: in_iface(&o)?, oif, src, dst }))?;
    Ok(())
}

// ---- processes ----

fn exec_map(out: Outcome) -> Map {
    let mut m = Map::new();
    if let Outcome::Exec(out) = out {
        m.insert("code".into(), out.code.into());
        m.insert("stdout".into(), out.stdout.into());
        m.insert("stderr".into(), out.stderr.into());
    }
    m
}

pub(super) fn exec_timeout(b: &Shared, ns: &Netns, cmd: Dynamic, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("exec", opts, &["timeout"])?;
    let cmd = command_of("exec", cmd)?;
    let timeout_ms = o.int("timeout")?.map(|t| ms("exec", "timeout", t)).transpose()?;
    Ok(exec_map(apply(b, Op::Exec(Exec { ns: ns.0.clone(), cmd, timeout_ms }))?))
}

fn spawn(b: &Shared, ns: Netns, cmd: Dynamic, opts: &Map) -> RhaiResult<i64> {
    let o = Opts::new("spawn", opts, &["listen", "wait"])?;
    let cmd = command_of("spawn", cmd)?;
    let listen = match opts.get("listen").filter(|v| !v.is_unit()) {
        Some(v) => Some(port("spawn", "listen port", v)?),
        None => None,
    };
    let wait_ms = match o.int("wait")? {
        Some(w) => ms("spawn", "wait", w)?,
        None => 3000,
    };
    match apply(b, Op::Spawn(Spawn { ns: ns.0, cmd, listen, wait_ms }))? {
        Outcome::Spawned { pid } => Ok(i64::from(pid)),
        _ => Ok(0),
    }
}

// ---- DHCP ----

/// A string of an option (or of an array in it), for `func`'s error.
pub(super) fn text(func: &str, what: &str, v: &Dynamic) -> RhaiResult<String> {
    v.clone()
        .into_immutable_string()
        .map(|s| s.to_string())
        .map_err(|ty| fail(Error::new(Code::BadValue, format!("{func}(): {what} must be strings, not {ty}"))))
}

/// `[first, last]` of IPv4 addresses.
fn ipv4_pair(func: &str, v: &Dynamic, example: &str) -> RhaiResult<(Ipv4Addr, Ipv4Addr)> {
    let pair = v.clone().try_cast::<Array>().filter(|a| a.len() == 2).ok_or_else(|| {
        fail(Error::new(Code::BadValue, format!("{func}(): a range is [first, last]")).help(format!("e.g. {func}(ns, #{{ {example} }})")))
    })?;
    Ok((ipv4(func, "range", &text(func, "range addresses", &pair[0])?)?, ipv4(func, "range", &text(func, "range addresses", &pair[1])?)?))
}

/// An address or an array of them.
pub(super) fn addresses(func: &str, key: &str, v: &Dynamic) -> RhaiResult<Vec<String>> {
    if v.is_string() {
        return Ok(vec![text(func, key, v)?]);
    }
    match v.clone().try_cast::<Array>() {
        Some(a) => a.iter().map(|d| text(func, key, d)).collect(),
        None => Err(fail(Error::new(Code::BadValue, format!("{func}(): {key} must be an address or an array of addresses")))),
    }
}

fn dhcp_server(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<i64> {
    const F: &str = "dhcp_server";
    let o = Opts::new(F, opts, &["iface", "range", "ranges", "router", "dns", "hosts", "lease", "domain"])?;
    let example = "iface: \"eth0\", range: [\"10.0.0.151\", \"10.0.0.160\"], router: \"10.0.0.254\"";
    let iface = required(&o, F, "iface", example)?;
    let mut ranges = Vec::new();
    if let Some(v) = opts.get("range").filter(|v| !v.is_unit()) {
        ranges.push(ipv4_pair(F, v, example)?);
    }
    if let Some(v) = opts.get("ranges").filter(|v| !v.is_unit()) {
        let all = v
            .clone()
            .try_cast::<Array>()
            .ok_or_else(|| fail(Error::new(Code::BadValue, "dhcp_server(): ranges is an array of [first, last]")))?;
        for r in &all {
            ranges.push(ipv4_pair(F, r, example)?);
        }
    }
    if ranges.is_empty() {
        return Err(fail(
            Error::new(Code::MissingOption, "dhcp_server() needs range: [first, last] (or ranges: [[first, last], ...])")
                .help(format!("e.g. dhcp_server(ns, #{{ {example} }})")),
        ));
    }
    let router = o.string("router")?.map(|r| ipv4(F, "router", &r)).transpose()?;
    let dns = match opts.get("dns").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(v) => addresses(F, "dns", v)?.iter().map(|d| ipv4(F, "dns", d)).collect::<RhaiResult<Vec<_>>>()?,
    };
    let mut hosts = Vec::new();
    if let Some(v) = opts.get("hosts").filter(|v| !v.is_unit()) {
        let all = v.clone().try_cast::<Array>().ok_or_else(|| {
            fail(
                Error::new(Code::BadValue, "dhcp_server(): hosts is an array of #{ mac, ip, name? }")
                    .help("hosts: [#{ mac: \"02:00:00:00:00:10\", ip: \"10.0.0.10\" }]"),
            )
        })?;
        for h in all {
            let map = h
                .try_cast::<Map>()
                .ok_or_else(|| fail(Error::new(Code::BadValue, "dhcp_server(): each of hosts is #{ mac, ip, name? }")))?;
            let ho = Opts::new(F, &map, &["mac", "ip", "name"])?;
            let mac = args::mac(&required(&ho, F, "mac", "hosts: [#{ mac: \"02:00:00:00:00:10\", ip: \"10.0.0.10\" }]")?)?;
            let ip = ipv4(F, "ip", &required(&ho, F, "ip", "hosts: [#{ mac: \"02:00:00:00:00:10\", ip: \"10.0.0.10\" }]")?)?;
            hosts.push(FixedHost { mac, ip, name: ho.string("name")? });
        }
    }
    let op = DhcpServer { ns: ns.0, iface, ranges, router, dns, hosts, lease: o.string("lease")?, domain: o.string("domain")? };
    match apply(b, Op::DhcpServer(op))? {
        Outcome::Spawned { pid } => Ok(i64::from(pid)),
        _ => Ok(0),
    }
}

/// Obtain a lease, then apply it as ordinary ops: the address, and the router as the
/// default route.
pub fn dhcp_client(b: &mut dyn Backend, ns: &NsRef, iface: &str, timeout_ms: u32) -> crate::error::Result<Lease> {
    let lease = match b.apply(Op::DhcpLease(DhcpLease { ns: ns.clone(), iface: iface.to_string(), timeout_ms }))? {
        Outcome::Lease(l) => l,
        _ => return Err(Error::new(Code::NoLease, format!("no DHCP lease for {iface} in {ns}")).why("the backend gave no lease")),
    };
    let addr = IpNetwork::new(IpAddr::V4(lease.addr), lease.prefix).map_err(|e| {
        Error::new(Code::NoLease, format!("the DHCP server offered a bad address {}/{}", lease.addr, lease.prefix)).why(e.to_string())
    })?;
    b.apply(Op::AddAddr(AddAddr { ns: ns.clone(), link: iface.to_string(), addr }))?;
    if let Some(r) = lease.router {
        b.apply(Op::AddRoute(AddRoute::new(ns.clone(), None, RouteVia::Gateway(IpAddr::V4(r)))))?;
    }
    Ok(lease)
}

fn dhcp_client_fn(b: &Shared, ns: Netns, iface: &str, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("dhcp_client", opts, &["timeout"])?;
    let timeout = match o.int("timeout")? {
        Some(t) => ms("dhcp_client", "timeout", t)?,
        None => 3000,
    };
    let lease = dhcp_client(&mut *b.borrow_mut(), &ns.0, iface, timeout).map_err(fail)?;
    let opt = |v: Option<Ipv4Addr>| v.map(|a| Dynamic::from(a.to_string())).unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("addr".into(), lease.addr.to_string().into());
    m.insert("prefix".into(), i64::from(lease.prefix).into());
    m.insert("router".into(), opt(lease.router));
    m.insert("server".into(), opt(lease.server));
    m.insert("dns".into(), lease.dns.into_iter().map(Dynamic::from).collect::<Array>().into());
    m.insert("domain".into(), lease.domain.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    m.insert("lease".into(), lease.lease_secs.map(|s| Dynamic::from(i64::from(s))).unwrap_or(Dynamic::UNIT));
    m.insert("ms".into(), (lease.ms as i64).into());
    Ok(m)
}

// ---- reachability ----

fn ping_op(b: &Shared, ns: &NsRef, addr: IpAddr, spec: PingSpec) -> RhaiResult<PingResult> {
    match apply(b, Op::Ping(Ping { ns: ns.clone(), addr, spec }))? {
        Outcome::Ping(r) => Ok(r),
        _ => Ok(PingResult { sent: 0, received: 0, rtt_ms: None, waited_ms: 0, unsent: None }),
    }
}

fn ping(b: &Shared, ns: Netns, addr: &str, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("ping", opts, &["count", "interval", "timeout"])?;
    let addr = args::ip(addr)?;
    let count = o.int("count")?.map(|c| args::u32_in("ping(): count", c, 1, 10_000)).transpose()?.unwrap_or(3);
    let interval_ms = o.int("interval")?.map(|i| ms("ping", "interval", i)).transpose()?.unwrap_or(100);
    let wait_ms = o.int("timeout")?.map(|t| ms("ping", "timeout", t)).transpose()?.unwrap_or(1000);
    let r = ping_op(b, &ns.0, addr, PingSpec { count, interval_ms, wait_ms, stop_on_reply: false })?;
    let mut m = Map::new();
    m.insert("ok".into(), (r.received > 0).into());
    m.insert("sent".into(), i64::from(r.sent).into());
    m.insert("received".into(), i64::from(r.received).into());
    m.insert("rtt_ms".into(), r.rtt_ms.map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    m.insert("ms".into(), (r.waited_ms as i64).into());
    // Why nothing was sent (no route, the link down...), in the kernel's words.
    m.insert("error".into(), r.unsent.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    Ok(m)
}

fn assert_reach(b: &Shared, ns: Netns, addr: &str, opts: &Map, expect: bool) -> RhaiResult<()> {
    let func = if expect { "assert_ping" } else { "assert_no_ping" };
    let o = Opts::new(func, opts, &["timeout", "interval"])?;
    let target = args::ip(addr)?;
    let window = o.int("timeout")?.map(|t| ms(func, "timeout", t)).transpose()?.unwrap_or(if expect { 2000 } else { 1000 });
    let interval_ms = o.int("interval")?.map(|i| ms(func, "interval", i)).transpose()?.unwrap_or(100).min(window);
    let count = (window / interval_ms).max(1);
    let name = format!("{func}({}, \"{target}\")", ns.0.name().unwrap_or("host()"));
    super::suite::assertion(|| name, || reach(b, &ns, addr, target, (count, interval_ms), expect))
}

fn reach(b: &Shared, ns: &Netns, addr: &str, target: IpAddr, (count, interval_ms): (u32, u32), expect: bool) -> RhaiResult<()> {
    let func = if expect { "assert_ping" } else { "assert_no_ping" };
    let r = ping_op(b, &ns.0, target, PingSpec { count, interval_ms, wait_ms: interval_ms, stop_on_reply: true })?;
    if (r.received > 0) == expect {
        return Ok(());
    }
    if b.borrow().checks_are_advisory() {
        crate::warnings::warning!("plan: not checked (needs the real lab): {func}({}, {addr:?})", ns.0.name().unwrap_or("host()"));
        return Ok(());
    }
    let routes = match apply(b, Op::Query(Query::Routes(ns.0.clone())))? {
        Outcome::Routes(r) => r,
        _ => Vec::new(),
    };
    let src = &ns.0;
    let route = route_words(src, &routes, target);
    let err = if expect {
        let sent = match (r.sent, &r.unsent) {
            (0, Some(why)) => format!("no echo request could be sent: {why}"),
            (0, None) => "no echo request could be sent".to_string(),
            (n, _) => format!("{n} echo request(s) sent, no reply"),
        };
        Error::new(Code::PingFailed, format!("{target} does not answer a ping from {src}"))
            .why(format!("waited {} ms: {sent}", r.waited_ms))
            .help(format!("{route}; check each hop's addresses and routes, forwarding on routers, NAT for addresses the far side cannot route back to, and FORWARD rules; a longer window: {func}(ns, addr, #{{ timeout: ms }}){}", super::packets::failure_trace(b, &ns.0, target).map(|t| format!("\n{t}")).unwrap_or_default()))
    } else {
        Error::new(Code::PingFailed, format!("{target} answers a ping from {src}, which was expected to fail"))
            .why(format!("a reply came after {} ms (round trip {:.2} ms)", r.waited_ms, r.rtt_ms.unwrap_or(0.0)))
            .help(route)
    };
    Err(fail(err))
}

/// `spawn` is a reserved keyword in Rhai, so no function may take the name: the call
/// `spawn(ns, cmd)` / `spawn(ns, cmd, opts)` is a custom syntax that reads exactly
/// like one.
fn register_spawn(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    let parse =
        |symbols: &[rhai::ImmutableString], look_ahead: &str, _: &mut Dynamic| -> Result<Option<rhai::ImmutableString>, rhai::ParseError> {
            let next = match symbols.len() {
                1 => "(",
                2 | 4 => "$expr$",
                3 => ",",
                5 if look_ahead == "," => ",",
                5 => ")",
                6 if symbols[5].as_str() == ")" => return Ok(None),
                6 => "$expr$",
                7 => ")",
                _ => return Ok(None),
            };
            Ok(Some(next.into()))
        };
    r.syntax("spawn", parse, false, move |ctx: &mut rhai::EvalContext, exprs: &[rhai::Expression], _: &Dynamic| -> RhaiResult<Dynamic> {
        // Errors point at `spawn` (just before its first argument).
        let at = exprs[0].position();
        let at = match (at.line(), at.position()) {
            (Some(l), Some(c)) if c > 6 => rhai::Position::new(l as u16, (c - 6) as u16),
            _ => at,
        };
        let located = |mut e: Box<rhai::EvalAltResult>| {
            if e.position().is_none() {
                e.set_position(at);
            }
            e
        };
        let ns = ctx.eval_expression_tree(&exprs[0])?;
        let ty = ns.type_name();
        let ns = ns.try_cast::<Netns>().ok_or_else(|| {
            located(fail(
                Error::new(Code::BadValue, format!("spawn(): the first argument must be a namespace, not {ty}"))
                    .help("spawn(netns(\"vm1\"), \"sleep 60\")"),
            ))
        })?;
        let cmd = ctx.eval_expression_tree(&exprs[1])?;
        let opts = match exprs.get(2) {
            Some(e) => {
                let v = ctx.eval_expression_tree(e)?;
                let ty = v.type_name();
                v.try_cast::<Map>().ok_or_else(|| {
                    located(fail(
                        Error::new(Code::BadValue, format!("spawn(): options must be a map, not {ty}")).help("e.g. #{ listen: 80 }"),
                    ))
                })?
            }
            None => Map::new(),
        };
        spawn(&b, ns, cmd, &opts).map(Dynamic::from).map_err(located)
    });
}

/// The router-lab functions, in the order of the reference (`exec` with options is
/// registered with the other `exec`s, in the namespace family).
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "snat",
        "snat(ns, #{ src, to, out?, dst?, not_dst? })",
        "iptables -t nat POSTROUTING -s SRC [-d DST | ! -d NOT_DST] [-o OUT] -j SNAT --to-source TO, added once",
    ),
    FnDoc::new(
        "masquerade",
        "masquerade(ns, #{ src, out, not_dst? })",
        "iptables -t nat POSTROUTING -s SRC -o OUT -j MASQUERADE, added once",
    ),
    FnDoc::new(
        "dnat",
        r#"dnat(ns, #{ proto, dport, to: "IP:PORT" | ["IP:PORT", ...], "in"? | iif?, dst? })"#,
        "forward a port of ns's own addresses (or of dst) to IP:PORT (PREROUTING and OUTPUT, so ns itself reaches it too); several back ends share the connections evenly (-m statistic --mode nth)",
    ),
    FnDoc::new(
        "forward_accept",
        r#"forward_accept(ns, #{ "in"? | iif?, out? | oif?, src?, dst? })"#,
        "iptables -A FORWARD [-s SRC] [-d DST] [-i IN] [-o OUT] -j ACCEPT, added once",
    ),
    FnDoc::new(
        "iptables",
        r#"iptables(ns, "args") -> String"#,
        "any iptables command inside ns; -A/-I/-P/-N are added once and undone at down, others run as given (returns the output)",
    ),
    FnDoc::new(
        "spawn",
        "spawn(ns, cmd: String | Array, #{ listen?, wait? }) -> pid",
        "start a background process inside ns, stopped at down (or when a --sandbox run ends); listen: wait until that TCP port listens",
    ),
    FnDoc::new(
        "dhcp_server",
        "dhcp_server(ns, #{ iface, range: [first, last] | ranges: [[first, last], ...], router?, dns?, hosts?, lease?, domain? }) -> pid",
        "run dnsmasq as DHCP server on iface inside ns (no ping delay), stopped at down; ranges outside iface's subnet serve relayed clients where ns routes to them; hosts: [#{ mac, ip, name? }] fixed leases",
    ),
    FnDoc::new(
        "dhcp_client",
        "dhcp_client(ns, iface, #{ timeout? }) -> #{ addr, prefix, router, server, dns, domain, lease, ms }",
        "obtain a DHCP lease on iface, add the address and the default route via the router (never touches /etc/resolv.conf)",
    ),
    FnDoc::new(
        "ping",
        "ping(ns, addr, #{ count?, interval?, timeout? }) -> #{ ok, sent, received, rtt_ms, ms, error }",
        "ICMP echo sent natively from inside ns (no ping process)",
    ),
    FnDoc::new(
        "assert_ping",
        "assert_ping(ns, addr, #{ timeout?, interval? })",
        "fail unless addr answers a ping from ns within the window (default 2000 ms); the report names the route used",
    ),
    FnDoc::new(
        "assert_no_ping",
        "assert_no_ping(ns, addr, #{ timeout?, interval? })",
        "fail if addr answers a ping from ns within the window (default 1000 ms)",
    ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("snat", move |ns: Netns, opts: Map| snat(&b, ns, &opts));
    let b = backend.clone();
    r.func("masquerade", move |ns: Netns, opts: Map| masquerade(&b, ns, &opts));
    let b = backend.clone();
    r.func("dnat", move |ns: Netns, opts: Map| dnat(&b, ns, &opts));
    let b = backend.clone();
    r.func("forward_accept", move |ns: Netns, opts: Map| forward_accept(&b, ns, &opts));
    let b = backend.clone();
    r.func("forward_accept", move |ns: Netns| forward_accept(&b, ns, &Map::new()));
    let b = backend.clone();
    r.func("iptables", move |ns: Netns, text: &str| -> RhaiResult<String> {
        let op = firewall::parse(text).map_err(fail)?;
        match fw(&b, &ns.0, op)? {
            Outcome::Text(t) => Ok(t),
            _ => Ok(String::new()),
        }
    });

    register_spawn(r, backend);

    let b = backend.clone();
    r.func("dhcp_server", move |ns: Netns, opts: Map| dhcp_server(&b, ns, &opts));
    let b = backend.clone();
    r.func("dhcp_client", move |ns: Netns, iface: &str| dhcp_client_fn(&b, ns, iface, &Map::new()));
    let b = backend.clone();
    r.func("dhcp_client", move |ns: Netns, iface: &str, opts: Map| dhcp_client_fn(&b, ns, iface, &opts));

    let b = backend.clone();
    r.func("ping", move |ns: Netns, addr: &str| ping(&b, ns, addr, &Map::new()));
    let b = backend.clone();
    r.func("ping", move |ns: Netns, addr: &str, opts: Map| ping(&b, ns, addr, &opts));
    let b = backend.clone();
    r.func("assert_ping", move |ns: Netns, addr: &str| assert_reach(&b, ns, addr, &Map::new(), true));
    let b = backend.clone();
    r.func("assert_ping", move |ns: Netns, addr: &str, opts: Map| assert_reach(&b, ns, addr, &opts, true));
    let b = backend.clone();
    r.func("assert_no_ping", move |ns: Netns, addr: &str| assert_reach(&b, ns, addr, &Map::new(), false));
    let b = backend.clone();
    r.func("assert_no_ping", move |ns: Netns, addr: &str, opts: Map| assert_reach(&b, ns, addr, &opts, false));
}
