//! Seeing the packets: `capture(target, opts)` with its handle's `stop()` and
//! `packets()`, and `trace(ns, dst, opts)`. Thin: targets and options become the ops
//! of `ops::capture` / `ops::trace`; the engines are in the live backend.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::types::{Link, Netns};
use super::{apply, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::capture::{CaptureOp, Packet, StartCapture, Target, DEFAULT_SNAPLEN};
use crate::ops::query::Query;
use crate::ops::trace::{Probe, Trace, TraceResult, DEFAULT_TIMEOUT_MS};
use crate::ops::{NsRef, Op, Outcome};
use rhai::{Array, Dynamic, Map};
use std::fmt;
use std::net::IpAddr;

/// A capture running in the background: `cap.stop()`, `cap.packets()`.
#[derive(Clone, Debug, PartialEq)]
pub struct Capture {
    id: u64,
    links: usize,
}

impl fmt::Display for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "capture #{} on {} link(s)", self.id, self.links)
    }
}

/// A link, every link of a namespace (but lo), or an array of them.
fn targets(b: &Shared, target: Dynamic, out: &mut Vec<Target>) -> RhaiResult<()> {
    if let Some(l) = target.clone().try_cast::<Link>() {
        out.push(Target { ns: l.ns, link: l.name });
    } else if let Some(ns) = target.clone().try_cast::<Netns>() {
        let Outcome::Links(links) = apply(b, Op::Query(Query::Links(ns.0.clone())))? else { unreachable!("Links answers Links") };
        out.extend(links.into_iter().filter(|l| l.name != "lo").map(|l| Target { ns: ns.0.clone(), link: l.name }));
    } else if let Some(items) = target.clone().try_cast::<Array>() {
        for item in items {
            targets(b, item, out)?;
        }
    } else {
        return Err(fail(
            Error::new(
                Code::BadValue,
                format!("capture() captures on a link, a namespace or an array of them, not {}", target.type_name()),
            )
            .help("e.g. capture(link(rt, \"eth1\"), #{}) or capture([vm1, rt], #{ filter: \"icmp\" })"),
        ));
    }
    Ok(())
}

fn capture(b: &Shared, target: Dynamic, opts: &Map) -> RhaiResult<Capture> {
    let o = Opts::new("capture", opts, &["filter", "count", "snaplen", "file"])?;
    let mut list = Vec::new();
    targets(b, target, &mut list)?;
    list.sort();
    list.dedup();
    let start = StartCapture {
        count: o.int("count")?.map(|c| c.max(0) as u64),
        snaplen: args::u32_in("capture(): snaplen", o.int("snaplen")?.unwrap_or(i64::from(DEFAULT_SNAPLEN)), 1, i64::from(u32::MAX))?,
        file: o.string("file")?.map(Into::into),
        filter: o.string("filter")?,
        targets: list,
    };
    let links = start.targets.len();
    let Outcome::Capture(id) = apply(b, Op::Capture(CaptureOp::Start(start)))? else { unreachable!("Start answers Capture") };
    Ok(Capture { id, links })
}

pub fn packet_map(p: &Packet) -> Map {
    let opt = |v: &Option<String>| v.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let port = |v: Option<u16>| v.map(|p| Dynamic::from(i64::from(p))).unwrap_or(Dynamic::UNIT);
    let mut m = Map::new();
    m.insert("time".into(), p.time.into());
    m.insert("ns".into(), p.target.ns.name().unwrap_or("host").into());
    m.insert("link".into(), p.target.link.clone().into());
    m.insert("dir".into(), p.dir.as_str().into());
    m.insert("len".into(), i64::from(p.len).into());
    m.insert("proto".into(), p.proto.clone().into());
    m.insert("src".into(), opt(&p.src));
    m.insert("dst".into(), opt(&p.dst));
    m.insert("sport".into(), port(p.sport));
    m.insert("dport".into(), port(p.dport));
    m.insert("summary".into(), p.summary.clone().into());
    m
}

fn stop(b: &Shared, cap: &Capture) -> RhaiResult<Map> {
    let Outcome::CaptureStats(s) = apply(b, Op::Capture(CaptureOp::Stop(cap.id)))? else { unreachable!("Stop answers CaptureStats") };
    let mut m = Map::new();
    m.insert("packets".into(), (s.packets as i64).into());
    m.insert("dropped".into(), (s.dropped as i64).into());
    m.insert("file".into(), s.file.map(|f| Dynamic::from(f.display().to_string())).unwrap_or(Dynamic::UNIT));
    Ok(m)
}

fn packets(b: &Shared, cap: &Capture) -> RhaiResult<Array> {
    let Outcome::Packets(list) = apply(b, Op::Capture(CaptureOp::Packets(cap.id)))? else { unreachable!("Packets answers Packets") };
    Ok(list.iter().map(|p| Dynamic::from(packet_map(p))).collect())
}

fn trace_op(b: &Shared, ns: &NsRef, dst: IpAddr, opts: &Map) -> RhaiResult<TraceResult> {
    let o = Opts::new("trace", opts, &["proto", "port", "timeout"])?;
    let probe = Probe::parse(o.string("proto")?.as_deref(), o.int("port")?).map_err(fail)?;
    let timeout_ms = args::u32_in("trace(): timeout", o.int("timeout")?.unwrap_or(i64::from(DEFAULT_TIMEOUT_MS)), 10, 60_000)?;
    let Outcome::Trace(r) = apply(b, Op::Trace(Trace { ns: ns.clone(), dst, probe, timeout_ms }))? else {
        unreachable!("Trace answers Trace")
    };
    Ok(r)
}

fn trace(b: &Shared, ns: Netns, dst: &str, opts: &Map) -> RhaiResult<Map> {
    let r = trace_op(b, &ns.0, args::ip(dst)?, opts)?;
    if b.borrow().checks_are_advisory() {
        crate::warnings::warning!("plan: not checked (needs the real lab): trace({}, {dst:?})", ns.0.name().unwrap_or("host()"));
    }
    let mut m = Map::new();
    m.insert("ok".into(), r.ok.into());
    m.insert("steps".into(), r.steps.iter().map(|s| Dynamic::from(s.text.clone())).collect::<Array>().into());
    let stopped = r.stopped_at.as_ref().map(|(ns, link)| {
        let mut at = Map::new();
        at.insert("ns".into(), ns.name().unwrap_or("host").into());
        at.insert("link".into(), link.clone().into());
        Dynamic::from(at)
    });
    m.insert("stopped_at".into(), stopped.unwrap_or(Dynamic::UNIT));
    m.insert("reason".into(), r.reason.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    m.insert("help".into(), r.help.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT));
    m.insert("text".into(), r.text().into());
    Ok(m)
}

/// The trace of one failing pair, for a check's report (None in a plan, or when the
/// trace itself could not run): what `assert_ping` and `pingall` add when they fail.
pub fn failure_trace(b: &Shared, ns: &NsRef, dst: IpAddr) -> Option<String> {
    if b.borrow().checks_are_advisory() || dst.is_ipv6() {
        return None;
    }
    trace_op(b, ns, dst, &Map::new()).ok().map(|r| format!("trace from {} to {dst}:\n{}", ns.name().unwrap_or("host"), r.text()))
}

/// Seeing the packets, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "capture",
        "capture(target, #{ filter?, count?, snaplen?, file? }) -> Capture",
        "capture packets in the background on a link, every link of a namespace, or an array of them (filter: tcpdump syntax; file: pcapng, one interface per link named NS/LINK)",
    )
    .details(
        "Starts at once and runs until cap.stop() (or count packets). One packet socket per link, opened inside its namespace, one thread for all; the filter is compiled by libpcap as tcpdump would.",
        "let cap = capture([vm1, rt], #{ filter: \"icmp\", file: \"lab.pcapng\" });\nping(vm1, \"203.0.113.1\");\nprint(cap.stop());\nfor p in cap.packets() { print(`${p.ns}:${p.link} ${p.dir} ${p.summary}`); }",
    ),
    FnDoc::new("stop", "cap.stop() -> #{ packets, dropped, file }", "stop a capture: how many packets it kept, how many the kernel dropped, the pcapng it wrote"),
    FnDoc::new(
        "packets",
        "cap.packets() -> [#{ time, ns, link, dir, len, proto, src, dst, sport, dport, summary }]",
        "the packets a capture has seen, in time order (dir \"in\"/\"out\"; summary as tcpdump prints it)",
    ),
    FnDoc::new(
        "trace",
        "trace(ns, dst, #{ proto?, port?, timeout? }) -> #{ ok, steps, stopped_at?, reason?, help?, text }",
        "send one probe (ICMP echo, or a TCP SYN / UDP datagram to port) and explain its path and the reply's hop by hop; where it stops, why, from the kernel",
    )
    .details(
        "Captures on every link of the lab at once. Each step names the namespace and link: a bridge forwarding or flooding, the route a router used, a NAT rewrite with its conntrack entry, ARP, VXLAN. A stop names its reason: no route, no ARP reply, a firewall rule whose counter moved, reverse-path filtering, TTL exceeded, a closed port, a VXLAN remote that never answers.",
        "let t = trace(vm1, \"203.0.113.1\");\nprint(t.text);\nassert(t.ok, t.reason);",
    ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    r.handle::<Capture>("Capture");
    let b = backend.clone();
    r.func("capture", move |target: Dynamic, opts: Map| capture(&b, target, &opts));
    let b = backend.clone();
    r.func("capture", move |target: Dynamic| capture(&b, target, &Map::new()));
    let b = backend.clone();
    r.func("stop", move |cap: &mut Capture| stop(&b, cap));
    let b = backend.clone();
    r.func("packets", move |cap: &mut Capture| packets(&b, cap));
    let b = backend.clone();
    r.func("trace", move |ns: Netns, dst: &str, opts: Map| trace(&b, ns, dst, &opts));
    let b = backend.clone();
    r.func("trace", move |ns: Netns, dst: &str| trace(&b, ns, dst, &Map::new()));
}
