//! Service checks: `assert_tcp`, `assert_no_tcp`, `tcp_probe`, `assert_udp`,
//! `http_get`, `assert_http`, `assert_dns`, `path_mtu`, `throughput`, and `serve` (a
//! responder to check against). What the probes and their failures mean is in
//! `ops::probe`; this file turns a call into the op and the answer into Rhai values.

use super::args::Opts;
use super::registrar::{FnDoc, Registrar};
use super::router::{ms, port};
use super::suite;
use super::types::Netns;
use super::{apply, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::probe::{
    parse_target, DnsQuery, Exchange, ExchangeResult, Failure, HttpGet, HttpResult, PathMtu, Probe, ProbeOutcome, Proto, Report, Serve,
    ServeProto, StreamTo, Throughput, Url,
};
use crate::ops::query::{route_words, Query};
use crate::ops::{NsRef, Op, Outcome};
use rhai::{Array, Dynamic, Map};
use std::net::{IpAddr, SocketAddr};

/// How a check's case names a namespace: its name, or `host()`.
fn label(ns: &NsRef) -> String {
    ns.name().unwrap_or("host()").to_string()
}

fn probe(b: &Shared, p: Probe) -> RhaiResult<ProbeOutcome> {
    match apply(b, Op::Probe(p))? {
        Outcome::Probe(o) => Ok(o),
        other => unreachable!("a probe answers a probe outcome, not {other:?}"),
    }
}

fn exchange(b: &Shared, x: Exchange) -> RhaiResult<ExchangeResult> {
    match probe(b, Probe::Exchange(x))? {
        ProbeOutcome::Exchange(r) => Ok(r),
        other => unreachable!("an exchange answers an exchange, not {other:?}"),
    }
}

/// The route the source would use, in a failure's words.
fn report<'a>(b: &Shared, src: &'a NsRef, target: IpAddr, waited_ms: f64) -> RhaiResult<Report<'a>> {
    let routes = match apply(b, Op::Query(Query::Routes(src.clone())))? {
        Outcome::Routes(r) => r,
        _ => Vec::new(),
    };
    Ok(Report { src, route: route_words(src, &routes, target), waited_ms })
}

/// A check that did not hold: its error, or in a plan (which runs nothing) a warning.
fn failed(b: &Shared, call: &str, err: Error) -> RhaiResult<()> {
    if b.borrow().checks_are_advisory() {
        crate::warnings::warning!("plan: not checked (needs the real lab): {call}");
        return Ok(());
    }
    Err(fail(err))
}

fn timeout(func: &str, o: &Opts, default: u32) -> RhaiResult<u32> {
    Ok(o.int("timeout")?.map(|t| ms(func, "timeout", t)).transpose()?.unwrap_or(default))
}

fn target(func: &str, text: &str) -> RhaiResult<SocketAddr> {
    parse_target(func, text).map_err(fail)
}

fn bytes_of(func: &str, key: &str, v: Option<&Dynamic>) -> RhaiResult<Option<Vec<u8>>> {
    match v.filter(|v| !v.is_unit()) {
        None => Ok(None),
        Some(v) => match v.clone().into_immutable_string() {
            Ok(s) => Ok(Some(s.as_bytes().to_vec())),
            Err(ty) => Err(fail(Error::new(Code::BadValue, format!("option {key:?} of {func}() must be a string, not {ty}")))),
        },
    }
}

fn failure_map(m: &mut Map, failure: Option<&Failure>, proto: Proto, target: SocketAddr) {
    m.insert("ok".into(), failure.is_none().into());
    m.insert("error".into(), failure.map(|f| Dynamic::from(f.short().to_string())).unwrap_or(Dynamic::UNIT));
    m.insert("why".into(), failure.map(|f| Dynamic::from(f.words(proto, target))).unwrap_or(Dynamic::UNIT));
}

// ---- TCP and UDP ----

fn assert_tcp(b: &Shared, ns: Netns, to: &str, opts: &Map, accept: bool) -> RhaiResult<()> {
    let func = if accept { "assert_tcp" } else { "assert_no_tcp" };
    let o = Opts::new(func, opts, &["timeout"])?;
    let target = target(func, to)?;
    let timeout_ms = timeout(func, &o, if accept { 2000 } else { 1000 })?;
    let call = format!("{func}({}, \"{target}\")", label(&ns.0));
    suite::assertion(
        || call.clone(),
        || {
            let x = Exchange { ns: ns.0.clone(), proto: Proto::Tcp, target, timeout_ms, send: None, expect: None };
            let r = exchange(b, x.clone())?;
            if r.failure.is_none() == accept {
                return Ok(());
            }
            let err = report(b, &ns.0, target.ip(), r.ms)?.exchange(&x, &r, accept);
            failed(b, &call, err)
        },
    )
}

fn tcp_probe(b: &Shared, ns: Netns, to: &str, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("tcp_probe", opts, &["timeout", "send", "expect"])?;
    let target = target("tcp_probe", to)?;
    let x = Exchange {
        ns: ns.0,
        proto: Proto::Tcp,
        target,
        timeout_ms: timeout("tcp_probe", &o, 2000)?,
        send: bytes_of("tcp_probe", "send", opts.get("send"))?,
        expect: o.string("expect")?,
    };
    let r = exchange(b, x)?;
    let mut m = Map::new();
    failure_map(&mut m, r.failure.as_ref(), Proto::Tcp, target);
    m.insert("ms".into(), r.ms.into());
    m.insert("reply".into(), String::from_utf8_lossy(&r.reply).into_owned().into());
    Ok(m)
}

fn assert_udp(b: &Shared, ns: Netns, to: &str, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("assert_udp", opts, &["send", "expect", "timeout"])?;
    let target = target("assert_udp", to)?;
    let send = bytes_of("assert_udp", "send", opts.get("send"))?.ok_or_else(|| {
        fail(
            Error::new(Code::MissingOption, "assert_udp() needs the option \"send\"")
                .help("UDP has no connection to check: send a datagram and wait for its reply, e.g. #{ send: \"ping\", expect: \"ping\" }"),
        )
    })?;
    let x = Exchange {
        ns: ns.0.clone(),
        proto: Proto::Udp,
        target,
        timeout_ms: timeout("assert_udp", &o, 2000)?,
        send: Some(send),
        expect: o.string("expect")?,
    };
    let call = format!("assert_udp({}, \"{target}\")", label(&ns.0));
    suite::assertion(
        || call.clone(),
        || {
            let r = exchange(b, x.clone())?;
            if r.failure.is_none() {
                return Ok(());
            }
            let err = report(b, &ns.0, target.ip(), r.ms)?.exchange(&x, &r, true);
            failed(b, &call, err)
        },
    )
}

// ---- HTTP ----

fn http(b: &Shared, ns: &NsRef, url: &str, timeout_ms: u32, headers: Vec<(String, String)>) -> RhaiResult<(HttpGet, HttpResult)> {
    let get = HttpGet { ns: ns.clone(), url: Url::parse(url).map_err(fail)?, headers, timeout_ms };
    match probe(b, Probe::Http(get.clone()))? {
        ProbeOutcome::Http(r) => Ok((get, r)),
        other => unreachable!("a GET answers an HTTP result, not {other:?}"),
    }
}

fn http_get(b: &Shared, ns: Netns, url: &str, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("http_get", opts, &["timeout", "headers"])?;
    let headers = match opts.get("headers").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(v) => {
            let ty = v.type_name();
            let map = v.clone().try_cast::<Map>().ok_or_else(|| {
                fail(
                    Error::new(Code::BadValue, format!("option \"headers\" of http_get() must be a map, not {ty}"))
                        .help("e.g. #{ headers: #{ Host: \"web.lab\" } }"),
                )
            })?;
            map.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        }
    };
    let (get, r) = http(b, &ns.0, url, timeout("http_get", &o, 2000)?, headers)?;
    let mut m = Map::new();
    m.insert("ms".into(), r.ms.into());
    match &r.response {
        Ok(resp) => {
            failure_map(&mut m, None, Proto::Tcp, get.url.addr);
            m.insert("status".into(), i64::from(resp.status).into());
            m.insert("body".into(), String::from_utf8_lossy(&resp.body).into_owned().into());
            let headers: Map = resp.headers.iter().map(|(k, v)| (k.to_ascii_lowercase().into(), Dynamic::from(v.clone()))).collect();
            m.insert("headers".into(), headers.into());
        }
        Err(f) => {
            failure_map(&mut m, Some(f), Proto::Tcp, get.url.addr);
            m.insert("status".into(), 0_i64.into());
            m.insert("body".into(), "".into());
            m.insert("headers".into(), Map::new().into());
        }
    }
    Ok(m)
}

fn assert_http(b: &Shared, ns: Netns, url: &str, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("assert_http", opts, &["status", "contains", "timeout"])?;
    let want = match o.int("status")? {
        Some(s) => Some(super::args::u32_in("assert_http(): status", s, 100, 999)? as u16),
        None => None,
    };
    let contains = o.string("contains")?;
    let timeout_ms = timeout("assert_http", &o, 2000)?;
    let call = format!("assert_http({}, \"{url}\")", label(&ns.0));
    suite::assertion(
        || call.clone(),
        || {
            let (get, r) = http(b, &ns.0, url, timeout_ms, Vec::new())?;
            let holds = match &r.response {
                Ok(resp) => {
                    let status_ok = match want {
                        Some(w) => resp.status == w,
                        None => resp.status == 200,
                    };
                    status_ok && contains.as_deref().is_none_or(|c| String::from_utf8_lossy(&resp.body).contains(c))
                }
                Err(_) => false,
            };
            if holds {
                return Ok(());
            }
            let err = report(b, &ns.0, get.url.addr.ip(), r.ms)?.http(&get, &r, Some(want.unwrap_or(200)), contains.as_deref());
            failed(b, &call, err)
        },
    )
}

// ---- DNS ----

fn assert_dns(b: &Shared, ns: Netns, name: &str, expected: Dynamic, opts: &Map) -> RhaiResult<()> {
    let o = Opts::new("assert_dns", opts, &["server", "timeout"])?;
    let texts: Vec<String> = if expected.is_string() {
        vec![expected.to_string()]
    } else {
        let ty = expected.type_name();
        let list = expected.try_cast::<Array>().ok_or_else(|| {
            fail(
                Error::new(Code::BadValue, format!("assert_dns(): the expected addresses are a string or an array, not {ty}"))
                    .help("e.g. assert_dns(ns, \"web.lab\", \"10.0.0.1\")"),
            )
        })?;
        list.into_iter().map(|v| v.to_string()).collect()
    };
    let expected: Vec<IpAddr> = texts.iter().map(|t| super::args::ip(t)).collect::<RhaiResult<_>>()?;
    if expected.is_empty() {
        return Err(fail(Error::new(Code::MissingOption, "assert_dns() needs at least one expected address")));
    }
    let server = match o.string("server")? {
        None => None,
        Some(s) => Some(match s.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, 53),
            Err(_) => target("assert_dns", &s)?,
        }),
    };
    let timeout_ms = timeout("assert_dns", &o, 2000)?;
    let call = format!("assert_dns({}, \"{name}\")", label(&ns.0));
    suite::assertion(
        || call.clone(),
        || {
            // One question per family the expected addresses are in.
            for ipv6 in [false, true] {
                let want: Vec<IpAddr> = expected.iter().copied().filter(|a| a.is_ipv6() == ipv6).collect();
                if want.is_empty() {
                    continue;
                }
                let q = DnsQuery { ns: ns.0.clone(), name: name.to_string(), server, ipv6, timeout_ms };
                let r = match probe(b, Probe::Dns(q.clone()))? {
                    ProbeOutcome::Dns(r) => r,
                    other => unreachable!("a DNS query answers a DNS result, not {other:?}"),
                };
                let holds = r.answer.as_ref().is_ok_and(|a| want.iter().all(|w| a.addrs.contains(w)));
                if !holds {
                    let target = r.server.map(|s| s.ip()).unwrap_or(want[0]);
                    let err = report(b, &ns.0, target, r.ms)?.dns(&q, &r, &want);
                    return failed(b, &call, err);
                }
            }
            Ok(())
        },
    )
}

// ---- path MTU and throughput ----

fn path_mtu(b: &Shared, ns: Netns, dst: &str, opts: &Map) -> RhaiResult<i64> {
    let o = Opts::new("path_mtu", opts, &["timeout"])?;
    let m = PathMtu { ns: ns.0.clone(), dst: super::args::ip(dst)?, timeout_ms: timeout("path_mtu", &o, 500)? };
    let r = match probe(b, Probe::PathMtu(m.clone()))? {
        ProbeOutcome::Mtu(r) => r,
        other => unreachable!("path_mtu answers an MTU, not {other:?}"),
    };
    match r.mtu {
        Some(mtu) => Ok(i64::from(mtu)),
        None if b.borrow().checks_are_advisory() => Ok(0),
        None => Err(fail(report(b, &ns.0, m.dst, r.ms)?.mtu(&m, &r))),
    }
}

fn throughput(b: &Shared, from: Netns, to: Dynamic, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("throughput", opts, &["seconds", "proto"])?;
    let seconds = match opts.get("seconds").filter(|v| !v.is_unit()) {
        None => 2.0,
        Some(v) => v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|ty| fail(Error::new(Code::BadValue, format!("option \"seconds\" of throughput() must be a number, not {ty}"))))?,
    };
    if !(0.05..=600.0).contains(&seconds) {
        return Err(fail(
            Error::new(Code::BadValue, format!("throughput(): seconds {seconds} is out of range")).help("use a value from 0.05 to 600"),
        ));
    }
    let proto = match o.string("proto")? {
        Some(p) => Proto::parse("throughput", &p).map_err(fail)?,
        None => Proto::Tcp,
    };
    let to = if let Some(ns) = to.clone().try_cast::<Netns>() {
        StreamTo::Netns { addr: super::check::first_ipv4(b, &ns.0)?, ns: ns.0 }
    } else if let Some(m) = to.clone().try_cast::<Map>() {
        let ns = m.get("ns").and_then(|v| v.clone().try_cast::<Netns>()).ok_or_else(|| {
            fail(
                Error::new(Code::BadValue, "throughput(): a receiver map needs ns (a namespace)")
                    .help("e.g. #{ ns: b, addr: \"10.0.0.2\" }"),
            )
        })?;
        let addr = match m.get("addr").filter(|v| !v.is_unit()) {
            Some(a) => super::args::ip(a.to_string().split('/').next().unwrap_or(""))?,
            None => super::check::first_ipv4(b, &ns.0)?,
        };
        StreamTo::Netns { ns: ns.0, addr }
    } else if to.is_string() {
        StreamTo::Listener(target("throughput", &to.to_string())?)
    } else {
        return Err(fail(
            Error::new(
                Code::BadValue,
                format!("throughput(): `to` is a namespace, #{{ ns, addr }} or \"IP:PORT\", not {}", to.type_name()),
            )
            .help("e.g. throughput(a, b) or throughput(a, \"10.0.0.2:5001\")"),
        ));
    };
    let t = Throughput { from: from.0.clone(), to, ms: (seconds * 1000.0) as u32, proto };
    let r = match probe(b, Probe::Throughput(t.clone()))? {
        ProbeOutcome::Throughput(r) => r,
        other => unreachable!("throughput answers a throughput, not {other:?}"),
    };
    if r.failure.is_some() && !b.borrow().checks_are_advisory() {
        return Err(fail(report(b, &from.0, t.target(), r.seconds * 1000.0)?.throughput(&t, &r)));
    }
    let mut m = Map::new();
    m.insert("bits_per_s".into(), r.bits_per_s().into());
    m.insert("bytes".into(), (r.bytes as i64).into());
    m.insert("seconds".into(), r.seconds.into());
    m.insert("sent".into(), (r.sent as i64).into());
    Ok(m)
}

// ---- serve ----

fn serve(b: &Shared, ns: Netns, port_value: Dynamic, opts: &Map) -> RhaiResult<i64> {
    let o = Opts::new("serve", opts, &["proto", "reply"])?;
    let port = port("serve", "port", &port_value)?;
    let proto = match o.string("proto")? {
        Some(p) => ServeProto::parse(&p).map_err(fail)?,
        None => ServeProto::Tcp,
    };
    match apply(b, Op::Serve(Serve { ns: ns.0, port, proto, reply: o.string("reply")? }))? {
        Outcome::Spawned { pid } => Ok(i64::from(pid)),
        _ => Ok(0),
    }
}

/// The service checks, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "assert_tcp",
        r#"assert_tcp(ns, "IP:PORT", #{ timeout? })"#,
        "fail unless a TCP connection from ns to IP:PORT is accepted within the window (default 2000 ms); the report says why not: refused (RST), timeout, no route",
    ),
    FnDoc::new(
        "assert_no_tcp",
        r#"assert_no_tcp(ns, "IP:PORT", #{ timeout? })"#,
        "fail if a TCP connection from ns to IP:PORT is accepted (refused, unanswered within the window of 1000 ms, or unroutable all pass)",
    ),
    FnDoc::new(
        "tcp_probe",
        r#"tcp_probe(ns, "IP:PORT", #{ timeout?, send?, expect? }) -> #{ ok, ms, reply, error, why }"#,
        "connect from ns, send bytes, wait for a reply containing expect; error is refused, timeout, no route, unreachable, closed or unexpected reply",
    ),
    FnDoc::new(
        "assert_udp",
        r#"assert_udp(ns, "IP:PORT", #{ send, expect?, timeout? })"#,
        "fail unless a datagram sent from ns gets a reply (containing expect) within the window (default 2000 ms)",
    ),
    FnDoc::new(
        "http_get",
        "http_get(ns, url, #{ timeout?, headers? }) -> #{ status, body, ms, headers, ok, error }",
        "an HTTP/1.1 GET from inside ns (url: http://ADDRESS[:PORT]/PATH); status 0 and error when no answer came",
    ),
    FnDoc::new(
        "assert_http",
        "assert_http(ns, url, #{ status?, contains?, timeout? })",
        "fail unless a GET from ns answers with status (default 200) and a body containing contains",
    ),
    FnDoc::new(
        "assert_dns",
        "assert_dns(ns, name, expected, #{ server?, timeout? })",
        "fail unless a DNS query from ns for name (A, and AAAA for IPv6 addresses) answers every expected address; server: IP[:PORT], default the namespace's resolv.conf",
    ),
    FnDoc::new(
        "path_mtu",
        "path_mtu(ns, dst, #{ timeout? }) -> i64",
        "the path MTU from ns to dst, probed with DF-set pings (routers' fragmentation-needed answers, then bisection); timeout per probe, default 500 ms",
    ),
    FnDoc::new(
        "throughput",
        r#"throughput(from, to, #{ seconds?, proto? }) -> #{ bits_per_s, bytes, seconds, sent }"#,
        "a bulk TCP (or UDP) stream from a namespace for seconds (default 2) to a namespace (nsscript receives there), #{ ns, addr } or a listener \"IP:PORT\"",
    ),
    FnDoc::new(
        "serve",
        "serve(ns, port, #{ proto?, reply? }) -> pid",
        "nsscript's own responder in ns, stopped at down: tcp (reply, or echo), udp (reply, or echo) or http (200 with reply as the body)",
    ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    for accept in [true, false] {
        let name = if accept { "assert_tcp" } else { "assert_no_tcp" };
        let b = backend.clone();
        r.func(name, move |ns: Netns, to: &str| assert_tcp(&b, ns, to, &Map::new(), accept));
        let b = backend.clone();
        r.func(name, move |ns: Netns, to: &str, opts: Map| assert_tcp(&b, ns, to, &opts, accept));
    }
    let b = backend.clone();
    r.func("tcp_probe", move |ns: Netns, to: &str| tcp_probe(&b, ns, to, &Map::new()));
    let b = backend.clone();
    r.func("tcp_probe", move |ns: Netns, to: &str, opts: Map| tcp_probe(&b, ns, to, &opts));
    let b = backend.clone();
    r.func("assert_udp", move |ns: Netns, to: &str, opts: Map| assert_udp(&b, ns, to, &opts));
    let b = backend.clone();
    r.func("http_get", move |ns: Netns, url: &str| http_get(&b, ns, url, &Map::new()));
    let b = backend.clone();
    r.func("http_get", move |ns: Netns, url: &str, opts: Map| http_get(&b, ns, url, &opts));
    let b = backend.clone();
    r.func("assert_http", move |ns: Netns, url: &str| assert_http(&b, ns, url, &Map::new()));
    let b = backend.clone();
    r.func("assert_http", move |ns: Netns, url: &str, opts: Map| assert_http(&b, ns, url, &opts));
    let b = backend.clone();
    r.func("assert_dns", move |ns: Netns, name: &str, expected: Dynamic| assert_dns(&b, ns, name, expected, &Map::new()));
    let b = backend.clone();
    r.func("assert_dns", move |ns: Netns, name: &str, expected: Dynamic, opts: Map| assert_dns(&b, ns, name, expected, &opts));
    let b = backend.clone();
    r.func("path_mtu", move |ns: Netns, dst: &str| path_mtu(&b, ns, dst, &Map::new()));
    let b = backend.clone();
    r.func("path_mtu", move |ns: Netns, dst: &str, opts: Map| path_mtu(&b, ns, dst, &opts));
    let b = backend.clone();
    r.func("throughput", move |from: Netns, to: Dynamic| throughput(&b, from, to, &Map::new()));
    let b = backend.clone();
    r.func("throughput", move |from: Netns, to: Dynamic, opts: Map| throughput(&b, from, to, &opts));
    let b = backend.clone();
    r.func("serve", move |ns: Netns, port: Dynamic| serve(&b, ns, port, &Map::new()));
    let b = backend.clone();
    r.func("serve", move |ns: Netns, port: Dynamic, opts: Map| serve(&b, ns, port, &opts));
}
