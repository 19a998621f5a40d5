//! `trace`: one probe from a namespace, captured on every link of the lab at once, and
//! each hop explained from the kernel: a bridge's forwarding table (forwarded to a
//! learned port, or flooded), the route a router used (RTM_GETROUTE, as the packet came
//! in), the NAT rewrite (the packet before and after the router, and its conntrack
//! entry), ARP where it happens. Where the packet stops, the reason is what the kernel
//! says: the route lookup's refusal (no route, forwarding off, reverse-path filter),
//! a firewall counter that moved, an unanswered ARP request, an ICMP error or a RST.
//!
//! A library API: [`trace`] returns steps as data (`ops::trace::TraceResult`); the
//! script layer, the CLI and the REPL print them. Nothing here knows Rhai.

use super::capture::decode::{decode, Decoded};
use super::capture::{Capture, Frame, Options, Tap};
use super::kernel::Kernel;
use super::netlink::Netlink;
use super::pingall::{checksum, send_to};
use crate::error::Result;
use crate::lab::LabState;
use crate::ops::capture::{Dir, Target};
use crate::ops::link::format_mac;
use crate::ops::query::{route_used, FdbEntry, LinkInfo};
use crate::ops::route::RouteQuery;
use crate::ops::trace::{Conntrack, Probe, Step, Trace, TraceResult};
use crate::ops::NsRef;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

/// A link of the lab, as the trace needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct LabLink {
    pub target: Target,
    pub info: LinkInfo,
}

/// Every link of the lab but loopbacks: all links of its namespaces, and the links it
/// created in namespaces it does not own (the host's bridges and veth ends), as the
/// kernel lists them now.
pub fn lab_links<K: Kernel>(nl: &mut Netlink<K>, state: &LabState) -> Result<Vec<LabLink>> {
    let mut out = Vec::new();
    for name in state.netns_names() {
        let ns = NsRef::Named(name);
        for info in nl.links(&ns)? {
            if info.name != "lo" {
                out.push(LabLink { target: Target { ns: ns.clone(), link: info.name.clone() }, info });
            }
        }
    }
    let mut foreign: BTreeMap<NsRef, Vec<String>> = BTreeMap::new();
    for (_, l) in state.links().filter(|(_, l)| !state.owns_ns(&l.ns)) {
        foreign.entry(l.ns.clone()).or_default().push(l.name.clone());
    }
    for (ns, names) in foreign {
        for info in nl.links(&ns)?.into_iter().filter(|i| names.contains(&i.name)) {
            out.push(LabLink { target: Target { ns: ns.clone(), link: info.name.clone() }, info });
        }
    }
    Ok(out)
}

/// What part of the probe's exchange a frame is.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Request,
    Reply,
    /// An ICMP error about the probe: its type and code.
    Error(u8, u8),
    /// ARP: request or reply, sender and target.
    Arp(bool, Ipv4Addr, Ipv4Addr),
}

/// One frame of the exchange, seen on one link.
#[derive(Clone, Debug)]
struct Obs {
    time_ns: u64,
    link: usize,
    dir: Dir,
    kind: Kind,
    /// The frame (for VXLAN, the outer one).
    frame: Decoded,
    /// The frame a VXLAN packet carries: outer frames are matched with outer frames.
    outer: bool,
    consumed: bool,
}

impl Obs {
    fn inner(&self) -> &Decoded {
        self.frame.innermost()
    }
}

/// What identifies the probe's frames.
struct Probe0 {
    probe: Probe,
    token: Vec<u8>,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    ident: u16,
}

impl Probe0 {
    fn kind(&self, raw: &[u8], d: &Decoded) -> Option<Kind> {
        let inner = d.innermost();
        if let Some(arp) = &inner.arp {
            return Some(Kind::Arp(arp.request, arp.sender, arp.target));
        }
        let carries_token = raw.windows(self.token.len()).any(|w| w == self.token.as_slice());
        if let Some(icmp) = &inner.icmp {
            if matches!(icmp.kind, 3 | 11) {
                let quoted = icmp.quoted.as_deref()?;
                let ours = carries_token
                    || (matches!(self.probe, Probe::Tcp(_)) && quoted.proto == "tcp" && quoted.sport == Some(self.sport))
                    || (quoted.proto == "icmp" && quoted.icmp.as_ref().is_some_and(|q| q.id == self.ident));
                return ours.then_some(Kind::Error(icmp.kind, icmp.code));
            }
        }
        match self.probe {
            Probe::Icmp => match &inner.icmp {
                Some(i) if carries_token && i.kind == 8 => Some(Kind::Request),
                Some(i) if carries_token && i.kind == 0 => Some(Kind::Reply),
                _ => None,
            },
            Probe::Udp(_) => (carries_token && inner.proto == "udp").then_some(Kind::Request),
            Probe::Tcp(port) => {
                let (flags, _) = inner.tcp?;
                if inner.sport == Some(self.sport) && inner.dport == Some(port) && flags & 0x04 == 0 {
                    Some(Kind::Request)
                } else if inner.sport == Some(port) && inner.dport == Some(self.sport) {
                    Some(Kind::Reply)
                } else {
                    None
                }
            }
        }
    }
}

/// A chain's policy and its rules' counters (`iptables -L -v -x -n`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// chain -> (policy, packets it decided)
    pub policies: HashMap<String, (String, u64)>,
    /// (chain, rule number, packets, target, the rule as listed)
    pub rules: Vec<(String, usize, u64, String, String)>,
}

pub fn parse_counters(text: &str) -> Counters {
    let mut c = Counters::default();
    let mut chain = String::new();
    let mut n = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"Chain") && words.len() >= 2 {
            chain = words[1].to_string();
            n = 0;
            // Chain FORWARD (policy DROP 3 packets, 252 bytes)
            if words.get(2) == Some(&"(policy") {
                let policy = words.get(3).unwrap_or(&"").to_string();
                let pkts = words.get(4).and_then(|p| p.parse().ok()).unwrap_or(0);
                c.policies.insert(chain.clone(), (policy, pkts));
            }
            continue;
        }
        let Some(pkts) = words.first().and_then(|p| p.parse::<u64>().ok()) else { continue };
        n += 1;
        let target = words.get(2).unwrap_or(&"").to_string();
        c.rules.push((chain.clone(), n, pkts, target, words[2..].join(" ")));
    }
    c
}

/// What moved between two readings: a DROP policy or a DROP/REJECT rule that decided
/// packets in between, in words.
pub fn drops_between(before: &Counters, after: &Counters) -> Option<String> {
    for (chain, n, pkts, target, text) in &after.rules {
        if !matches!(target.as_str(), "DROP" | "REJECT") {
            continue;
        }
        let was = before.rules.iter().find(|(c, m, ..)| c == chain && m == n).map(|r| r.2).unwrap_or(0);
        if *pkts > was {
            return Some(format!("rule {n} of {chain} (`{text}`, its counter went {was} -> {pkts})"));
        }
    }
    for (chain, (policy, pkts)) in &after.policies {
        let was = before.policies.get(chain).map(|p| p.1).unwrap_or(0);
        if policy == "DROP" && *pkts > was {
            return Some(format!("the {chain} policy DROP (its counter went {was} -> {pkts})"));
        }
    }
    None
}

/// A random-enough number for probe ids and tokens (no crate for it: the clock's
/// nanoseconds and our pid).
fn nonce() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15
}

/// The probe's bytes (the kernel adds the IP header).
fn probe_bytes(p: &Probe0) -> Vec<u8> {
    match p.probe {
        Probe::Icmp => {
            let mut pkt = vec![8, 0, 0, 0];
            pkt.extend(p.ident.to_be_bytes());
            pkt.extend(1u16.to_be_bytes());
            pkt.extend(&p.token);
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
            pkt
        }
        Probe::Udp(port) => {
            let mut pkt = p.sport.to_be_bytes().to_vec();
            pkt.extend(port.to_be_bytes());
            pkt.extend(((8 + p.token.len()) as u16).to_be_bytes());
            pkt.extend([0, 0]); // no checksum (allowed over IPv4)
            pkt.extend(&p.token);
            pkt
        }
        Probe::Tcp(port) => {
            let mut seg = p.sport.to_be_bytes().to_vec();
            seg.extend(port.to_be_bytes());
            seg.extend((nonce() as u32).to_be_bytes());
            seg.extend([0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
            // The checksum covers a pseudo header with both addresses.
            let (IpAddr::V4(s), IpAddr::V4(d)) = (p.src, p.dst) else { return seg };
            let mut pseudo = s.octets().to_vec();
            pseudo.extend(d.octets());
            pseudo.extend([0, 6]);
            pseudo.extend((seg.len() as u16).to_be_bytes());
            pseudo.extend(&seg);
            let c = checksum(&pseudo);
            seg[16..18].copy_from_slice(&c.to_be_bytes());
            seg
        }
    }
}

/// What the trace reads of the lab before the probe (and again after it).
struct Snapshot {
    fdb: HashMap<NsRef, Vec<FdbEntry>>,
    counters: HashMap<NsRef, Counters>,
}

fn snapshot<K: Kernel>(nl: &mut Netlink<K>, spaces: &[NsRef], bridges: &HashSet<NsRef>) -> Result<Snapshot> {
    let mut s = Snapshot { fdb: HashMap::new(), counters: HashMap::new() };
    for ns in spaces {
        if bridges.contains(ns) {
            s.fdb.insert(ns.clone(), nl.fdb(ns)?);
        }
        if let Some(text) = nl.kernel().filter_counters(ns)? {
            s.counters.insert(ns.clone(), parse_counters(&text));
        }
    }
    Ok(s)
}

/// The whole trace: probe, capture, explanation.
pub fn trace<K: Kernel>(nl: &mut Netlink<K>, state: &LabState, spec: &Trace) -> Result<TraceResult> {
    spec.validate()?;
    let links = lab_links(nl, state)?;
    let mut spaces: Vec<NsRef> = links.iter().map(|l| l.target.ns.clone()).collect();
    spaces.push(spec.ns.clone());
    spaces.sort();
    spaces.dedup();
    let bridges: HashSet<NsRef> = links.iter().filter(|l| l.info.kind == "bridge").map(|l| l.target.ns.clone()).collect();
    let mut addrs: HashMap<NsRef, Vec<IpAddr>> = HashMap::new();
    for ns in &spaces {
        let list = nl.addrs(ns)?.iter().filter_map(|a| a.addr.split('/').next()?.parse().ok()).collect();
        addrs.insert(ns.clone(), list);
    }
    // The source address the kernel picks, and whether ns has a route at all.
    let first = match nl.route_get(&spec.ns, &RouteQuery { dst: spec.dst, from: None, iif: None, fwmark: None }) {
        Ok(a) => a,
        Err(e) => {
            let words = e.why.clone().unwrap_or_default();
            return Ok(TraceResult {
                stopped_at: Some((spec.ns.clone(), String::new())),
                reason: Some(format!("{} has no route to {}: the kernel's lookup says {words}", spec.ns, spec.dst)),
                help: Some(format!(
                    "add a route, e.g. {}.route(\"default\", GATEWAY) or a route to {}'s network",
                    spec.ns.in_script(),
                    spec.dst
                )),
                ..Default::default()
            });
        }
    };
    let src = first.src.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let n = nonce();
    let probe = Probe0 {
        probe: spec.probe,
        token: format!("nsscript-trace-{:08x}", n as u32).into_bytes(),
        src,
        dst: spec.dst,
        sport: 32768 + (n >> 40) as u16 % 28000,
        ident: (n >> 16) as u16,
    };
    let before = snapshot(nl, &spaces, &bridges)?;
    let taps: Vec<Tap> = links.iter().map(|l| Tap { target: l.target.clone(), index: l.info.index }).collect();
    let (tx, rx) = std::sync::mpsc::channel::<Frame>();
    let mut capture =
        Capture::start(nl.kernel(), &taps, Options { live: Some(tx), latency_ms: 1, ring_bytes: Some(512 << 10), ..Default::default() })?;
    let protocol = match spec.probe {
        Probe::Icmp => libc::IPPROTO_ICMP,
        Probe::Tcp(_) => libc::IPPROTO_TCP,
        Probe::Udp(_) => libc::IPPROTO_UDP,
    };
    let socket = nl.kernel().raw_socket(&spec.ns, protocol)?;
    let sent = send_to(&socket, &probe_bytes(&probe), spec.dst);
    let source_links: HashSet<usize> = links.iter().enumerate().filter(|(_, l)| l.target.ns == spec.ns).map(|(i, _)| i).collect();
    let mut frames: Vec<Frame> = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(u64::from(spec.timeout_ms));
    let mut answered = false;
    while sent.is_ok() && !answered {
        let Some(wait) = deadline.checked_duration_since(Instant::now()) else { break };
        let Ok(f) = rx.recv_timeout(wait) else { break };
        if f.dir == Dir::In && source_links.contains(&f.tap) {
            let d = decode(&f.data);
            answered = matches!(probe.kind(&f.data, &d), Some(Kind::Reply | Kind::Error(..)));
        }
        frames.push(f);
    }
    drop(socket);
    capture.stop()?;
    frames.extend(rx.try_iter());
    let (_, lost) = capture.counts();
    let after = snapshot(nl, &spaces, &bridges)?;
    let e = Explainer {
        nl,
        links: &links,
        addrs: &addrs,
        probe: &probe,
        before,
        after,
        spec,
        steps: Vec::new(),
        conntrack: HashMap::new(),
        learning: HashMap::new(),
    };
    if let Err(err) = sent {
        let words = crate::error::errno_words(err.raw_os_error().unwrap_or(0));
        return Ok(TraceResult {
            stopped_at: Some((spec.ns.clone(), first.dev.unwrap_or_default())),
            reason: Some(format!("{} could not send it: {words}", spec.ns)),
            help: Some(match err.raw_os_error() {
                Some(libc::EPERM) => format!("the firewall of {} refuses to send it (its OUTPUT chain)", spec.ns),
                _ => "check the source namespace's addresses and routes".to_string(),
            }),
            ..Default::default()
        });
    }
    let mut result = e.explain(frames)?;
    if lost > 0 {
        // (what is missing may be where it stopped: the reason could be wrong)
        result.steps.push(Step {
            ns: spec.ns.clone(),
            link: String::new(),
            text: format!("(the kernel dropped {lost} packet(s) the capture could not take in time: steps may be missing)"),
        });
    }
    Ok(result)
}

struct Explainer<'a, K: Kernel> {
    nl: &'a mut Netlink<K>,
    links: &'a [LabLink],
    addrs: &'a HashMap<NsRef, Vec<IpAddr>>,
    probe: &'a Probe0,
    before: Snapshot,
    after: Snapshot,
    spec: &'a Trace,
    steps: Vec<Step>,
    conntrack: HashMap<NsRef, Vec<Conntrack>>,
    /// Each bridge's table as the frames of the trace teach it: MAC -> port.
    learning: HashMap<(NsRef, String), HashMap<String, String>>,
}

/// The same frame at two places of one layer-2 segment (a bridge does not change it).
fn same_frame(a: &Obs, b: &Obs) -> bool {
    a.kind == b.kind
        && a.outer == b.outer
        && a.frame.eth_dst == b.frame.eth_dst
        && a.frame.ttl == b.frame.ttl
        && a.frame.summary == b.frame.summary
}

/// The same packet before and after a router (one hop less, maybe rewritten by NAT).
fn routed(a: &Obs, b: &Obs) -> bool {
    a.kind == b.kind && a.outer == b.outer && b.frame.ttl.is_some() && a.frame.ttl.map(|t| t.saturating_sub(1)) == b.frame.ttl
}

impl<K: Kernel> Explainer<'_, K> {
    fn target(&self, o: &Obs) -> &Target {
        &self.links[o.link].target
    }

    fn info(&self, o: &Obs) -> &LinkInfo {
        &self.links[o.link].info
    }

    fn step(&mut self, at: &Target, text: String) {
        self.steps.push(Step { ns: at.ns.clone(), link: at.link.clone(), text });
    }

    fn is_local(&self, ns: &NsRef, addr: Option<IpAddr>) -> bool {
        addr.is_some_and(|a| a.is_multicast() || a == IpAddr::V4(Ipv4Addr::BROADCAST) || self.addrs.get(ns).is_some_and(|l| l.contains(&a)))
    }

    fn conntrack_of(&mut self, ns: &NsRef) -> Vec<Conntrack> {
        if !self.conntrack.contains_key(ns) {
            let entries = self.nl.kernel().conntrack(ns).unwrap_or_default();
            self.conntrack.insert(ns.clone(), entries);
        }
        self.conntrack[ns].clone()
    }

    fn explain(mut self, frames: Vec<Frame>) -> Result<TraceResult> {
        let mut obs: Vec<Obs> = frames
            .iter()
            .filter_map(|f| {
                let d = decode(&f.data);
                let kind = self.probe.kind(&f.data, &d)?;
                let outer = d.vxlan.is_some();
                Some(Obs { time_ns: f.time_ns, link: f.tap, dir: f.dir, kind, frame: d, outer, consumed: false })
            })
            .collect();
        // In order of the kernel's clock; a frame seen coming in precedes its copies
        // going out at the same instant.
        obs.sort_by_key(|o| (o.time_ns, o.dir == Dir::Out));
        let mut stop: Option<(Target, Stop)> = None;
        let mut ok = false;
        for i in 0..obs.len() {
            if obs[i].consumed {
                continue;
            }
            obs[i].consumed = true;
            let o = obs[i].clone();
            let at = self.target(&o).clone();
            let master = self.info(&o).master.clone();
            let kind = self.info(&o).kind.clone();
            match (o.dir, master) {
                (Dir::In, Some(bridge)) => {
                    if let Some(s) = self.bridge(&mut obs, i, &bridge) {
                        stop = Some((at, s));
                    }
                }
                (Dir::Out, _) if kind == "bridge" => {
                    let ports: Vec<String> = (i + 1..obs.len())
                        .filter(|&j| {
                            let (p, t) = (&obs[j], self.target(&obs[j]));
                            !p.consumed
                                && p.dir == Dir::Out
                                && t.ns == at.ns
                                && self.info(p).master.as_deref() == Some(at.link.as_str())
                                && same_frame(&o, p)
                        })
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|j| {
                            obs[j].consumed = true;
                            self.target(&obs[j]).link.clone()
                        })
                        .collect();
                    self.step(
                        &at,
                        format!(
                            "{} -> out via {}: {}",
                            at.place(),
                            if ports.is_empty() { "no port".to_string() } else { ports.join(", ") },
                            o.inner().summary
                        ),
                    );
                }
                (Dir::In, None) => {
                    if o.kind == Kind::Reply && at.ns == self.spec.ns {
                        self.step(&at, format!("{} in: {} (back at {})", at.place(), o.inner().summary, ns_name(&at.ns)));
                        ok = true;
                        continue;
                    }
                    if let Some(s) = self.arrive(&mut obs, i) {
                        stop = Some((at, s));
                    }
                }
                (Dir::Out, _) => {
                    if o.outer {
                        let f = &o.frame;
                        let vni = f.vxlan.as_ref().map(|v| v.0).unwrap_or(0);
                        self.step(
                            &at,
                            format!(
                                "{} out: VXLAN VNI {vni}, outer {}:{} > {}:{} (carrying {})",
                                at.place(),
                                opt(f.src),
                                f.sport.unwrap_or(0),
                                opt(f.dst),
                                f.dport.unwrap_or(0),
                                o.inner().summary
                            ),
                        );
                        stop = Some((at, Stop::Vxlan(f.dst)));
                    } else {
                        self.step(&at, format!("{} -> out: {}", at.place(), o.inner().summary));
                        if matches!(o.kind, Kind::Request | Kind::Reply) {
                            stop = Some((at, Stop::Sent));
                        }
                    }
                }
            }
        }
        let udp_delivered = matches!(self.spec.probe, Probe::Udp(_))
            && obs.iter().any(|o| {
                o.kind == Kind::Request
                    && o.dir == Dir::In
                    && self.is_local(&self.target(o).ns, o.inner().dst)
                    && self.target(o).ns != self.spec.ns
            });
        let error = obs.iter().find(|o| matches!(o.kind, Kind::Error(..)) && o.dir == Dir::Out).cloned();
        let rst = obs.iter().find(|o| o.kind == Kind::Reply && o.inner().tcp.is_some_and(|(f, _)| f & 0x04 != 0)).cloned();
        let mut result = TraceResult {
            ok: (ok && rst.is_none()) || (udp_delivered && error.is_none()),
            steps: std::mem::take(&mut self.steps),
            ..Default::default()
        };
        if result.ok {
            return Ok(result);
        }
        let (at, why, help) = if let Some(o) = error {
            self.icmp_error(&o)
        } else if let Some(o) = rst {
            let t = self.target(&o).clone();
            (
                t.clone(),
                format!(
                    "nothing listens on {} port {}: {} answered with a TCP RST",
                    self.spec.dst,
                    port_of(self.spec.probe),
                    ns_name(&t.ns)
                ),
                format!(
                    "start a server there, e.g. spawn({}, \"socat TCP-LISTEN:{},fork,reuseaddr -\")",
                    t.ns.in_script(),
                    port_of(self.spec.probe)
                ),
            )
        } else if let Some((at, s)) = stop {
            self.why_stopped(&obs, at, s)?
        } else {
            let at = Target { ns: self.spec.ns.clone(), link: String::new() };
            let arp = self.unanswered_arp(&obs, &self.spec.ns.clone());
            let refused = arp.as_ref().and_then(|(_, addr)| self.arp_refused(&obs, *addr));
            match arp {
                Some(_) if refused.is_some() => refused.expect("just seen"),
                Some((link, addr)) => (
                    Target { ns: self.spec.ns.clone(), link: link.clone() },
                    format!(
                        "no ARP reply for {addr} on {}: nothing on that link answers for that address",
                        Target { ns: self.spec.ns.clone(), link }.place()
                    ),
                    format!("is {addr} up, with that address, on the same bridge or veth as {}?", ns_name(&self.spec.ns)),
                ),
                None => (
                    at,
                    format!("the probe was never seen on a link of the lab (sent by {})", ns_name(&self.spec.ns)),
                    "is the route out of the source namespace on a link of this lab?".to_string(),
                ),
            }
        };
        result.stopped_at = Some((at.ns, at.link));
        result.reason = Some(why);
        result.help = Some(help);
        Ok(result)
    }

    /// A frame came in on a bridge port: where the bridge sent it.
    fn bridge(&mut self, obs: &mut [Obs], i: usize, bridge: &str) -> Option<Stop> {
        let o = obs[i].clone();
        let at = self.target(&o).clone();
        let mut ports = Vec::new();
        let mut to_self = false;
        for p in obs.iter_mut().skip(i + 1) {
            let t = self.target(p).clone();
            if p.consumed || t.ns != at.ns || !same_frame(&o, p) {
                continue;
            }
            if p.dir == Dir::Out && self.info(p).master.as_deref() == Some(bridge) && t.link != at.link {
                p.consumed = true;
                ports.push(t.link);
            } else if p.dir == Dir::In && t.link == bridge {
                // Up to the bridge's own stack: it goes on as a frame arriving there.
                to_self = true;
            }
        }
        let br = Target { ns: at.ns.clone(), link: bridge.to_string() };
        let mac = o.frame.eth_dst;
        // What the bridge knows at this moment: its table before the probe, and the
        // source of every frame that came in on a port since (the bridge learns it).
        let before = &self.before.fdb;
        let table = self.learning.entry((at.ns.clone(), bridge.to_string())).or_insert_with(|| {
            before
                .get(&at.ns)
                .map(|f| f.iter().filter(|e| e.master.as_deref() == Some(bridge)).map(|e| (e.mac.clone(), e.dev.clone())).collect())
                .unwrap_or_default()
        });
        let known = table.get(&format_mac(&mac)).cloned();
        let src = format_mac(&o.frame.eth_src);
        let learns = table.get(&src) != Some(&at.link);
        table.insert(src.clone(), at.link.clone());
        // Said only when the kernel's table has it afterwards.
        let learned = learns
            && self
                .after
                .fdb
                .get(&at.ns)
                .is_some_and(|f| f.iter().any(|e| e.mac == src && e.dev == at.link && e.master.as_deref() == Some(bridge)));
        let multicast = mac[0] & 1 == 1;
        let text = match (ports.as_slice(), to_self) {
            ([], false) => {
                self.step(&br, format!("{}: {} (came in on {}, not forwarded)", br.place(), o.inner().summary, at.link));
                return Some(Stop::Bridge(bridge.to_string()));
            }
            ([], true) => format!("{}: {} -> {} itself (to its own address)", br.place(), at.link, bridge),
            ([one], false) if !multicast && known.as_deref() == Some(one.as_str()) => {
                format!("{}: forwarded {} -> {one} (MAC {} learned on {one})", br.place(), at.link, format_mac(&mac))
            }
            (many, _) => {
                let why = if multicast { "broadcast".to_string() } else { format!("{} not learned yet", format_mac(&mac)) };
                let mut to: Vec<String> = many.to_vec();
                if to_self {
                    to.push(format!("{bridge} itself"));
                }
                format!("{}: flooded {} -> {} ({why})", br.place(), at.link, to.join(", "))
            }
        };
        let text = if learned { format!("{text}; learned {src} on {}", at.link) } else { text };
        self.step(&br, text);
        // Sent into a VXLAN: if nothing is seen after it, its remote did not answer.
        let into_vxlan =
            ports.iter().any(|p| self.links.iter().any(|l| l.target.ns == at.ns && l.target.link == *p && l.info.kind == "vxlan"));
        into_vxlan.then_some(Stop::Vxlan(None))
    }

    /// A frame came in on a link that is no bridge port (or on a bridge itself): it is
    /// for this namespace, decapsulated, or routed on.
    fn arrive(&mut self, obs: &mut [Obs], i: usize) -> Option<Stop> {
        let o = obs[i].clone();
        let at = self.target(&o).clone();
        let f = o.frame.clone();
        if o.outer && self.is_local(&at.ns, f.dst) {
            let vxlan = self
                .links
                .iter()
                .find(|l| l.target.ns == at.ns && l.info.kind == "vxlan")
                .map(|l| l.target.link.clone())
                .unwrap_or_default();
            let vni = f.vxlan.as_ref().map(|v| v.0).unwrap_or(0);
            self.step(&at, format!("{} in: VXLAN VNI {vni} from {}, decapsulated by {vxlan}", at.place(), opt(f.src)));
            return None;
        }
        if let Kind::Arp(request, _, target) = o.kind {
            if self.is_local(&at.ns, Some(target.into())) {
                let then = if request { " (its own address: it answers)" } else { "" };
                self.step(&at, format!("{} in: {}{then}", at.place(), o.inner().summary));
            }
            return None;
        }
        // Routed on: the same packet leaving this namespace by another link (also one
        // addressed to it that NAT sends on: the reply of a source NAT).
        let next = (i + 1..obs.len()).find(|&j| {
            let p = &obs[j];
            let t = self.target(p);
            !p.consumed && p.dir == Dir::Out && t.ns == at.ns && t.link != at.link && routed(&o, p)
        });
        let Some(j) = next else {
            if self.is_local(&at.ns, o.inner().dst) {
                self.step(&at, format!("{} in: {} (delivered: {} is its own)", at.place(), o.inner().summary, opt(o.inner().dst)));
                return Some(Stop::Delivered);
            }
            self.step(&at, format!("{} in: {}", at.place(), o.inner().summary));
            return Some(Stop::Router);
        };
        obs[j].consumed = true;
        let out = obs[j].clone();
        let out_link = self.target(&out).link.clone();
        let (a, b) = (o.inner().clone(), out.inner().clone());
        let q = RouteQuery { dst: b.dst.unwrap_or(self.spec.dst), from: a.src, iif: Some(at.link.clone()), fwmark: None };
        let route = self.nl.route_get(&at.ns, &q);
        let routes = self.nl.routes(&at.ns).unwrap_or_default();
        let mut text = format!("{} {} -> {out_link}: routed", ns_name(&at.ns), at.link);
        if let Ok(r) = &route {
            match r.via {
                Some(v) => text.push_str(&format!(" via {v}")),
                None => text.push_str(&format!(" to {} on-link", opt(b.dst))),
            }
        }
        if let Some(r) = route_used(&routes, q.dst) {
            text.push_str(&format!(" (route {r})"));
        }
        let mut nat = Vec::new();
        if a.src != b.src || a.sport != b.sport {
            let verb = if o.kind == Kind::Request { "source NAT" } else { "source rewritten back (un-NAT)" };
            nat.push(format!("{verb} {} -> {}", endpoint(&a, true), endpoint(&b, true)));
        }
        if a.dst != b.dst || a.dport != b.dport {
            let verb = if o.kind == Kind::Request { "destination NAT" } else { "destination rewritten back (un-NAT)" };
            nat.push(format!("{verb} {} -> {}", endpoint(&a, false), endpoint(&b, false)));
        }
        if !nat.is_empty() {
            text.push_str(&format!(", {}", nat.join(", ")));
            let ct = self.conntrack_of(&at.ns);
            // The entry of this very packet: its addresses and ports (the echo id for
            // ICMP) on the side it came in, in the original or the reply direction.
            let same = |t: &crate::ops::trace::Tuple, d: &Decoded| {
                Some(t.src) == d.src && Some(t.dst) == d.dst && d.sport.is_none_or(|p| p == t.sport) && d.dport.is_none_or(|p| p == t.dport)
            };
            // An ICMP error belongs to the entry of the packet it quotes (the probe's
            // protocol: conntrack calls it RELATED), not to an ICMP entry of the same
            // addresses an earlier ping left.
            let proto = match (o.kind, a.proto) {
                (Kind::Error(..), _) => match self.spec.probe {
                    Probe::Icmp => 1,
                    Probe::Tcp(_) => 6,
                    Probe::Udp(_) => 17,
                },
                (_, "tcp") => 6,
                (_, "udp") => 17,
                _ => 1,
            };
            let entry = ct.iter().find(|c| c.proto == proto && (same(&c.orig, &a) || same(&c.reply, &a)));
            if let Some(c) = entry {
                text.push_str(&format!(" [conntrack: {c}]"));
            }
        }
        self.step(&at, text);
        None
    }

    fn icmp_error(&mut self, o: &Obs) -> (Target, String, String) {
        let t = self.target(o).clone();
        let Kind::Error(kind, code) = o.kind else { unreachable!("an error") };
        let from = ns_name(&t.ns);
        match (kind, code) {
            (11, _) => (
                t.clone(),
                format!(
                    "TTL exceeded in {from}: the packet went round until its TTL ran out (a routing loop; {from} sent ICMP time exceeded)"
                ),
                "check the routes along the path: two routers send this destination to each other".to_string(),
            ),
            (3, 3) => (
                t.clone(),
                format!("nothing listens on {} port {}: {from} answered ICMP port unreachable", self.spec.dst, port_of(self.spec.probe)),
                format!("start a server there, e.g. spawn({}, \"socat UDP-LISTEN:{},fork -\")", t.ns.in_script(), port_of(self.spec.probe)),
            ),
            (3, 0) => {
                let words = self
                    .nl
                    .route_get(&t.ns, &RouteQuery { dst: self.spec.dst, from: None, iif: None, fwmark: None })
                    .err()
                    .and_then(|e| e.why)
                    .unwrap_or_else(|| "no route".into());
                (
                    t.clone(),
                    format!("no route to {} in {from}: the kernel's lookup says {words} (it answered ICMP net unreachable)", self.spec.dst),
                    format!("add a route in {from}: {}.route(\"NETWORK\", GATEWAY)", t.ns.in_script()),
                )
            }
            (3, 13) | (3, 9) | (3, 10) => {
                let rule = self.moved(&t.ns).unwrap_or_else(|| "a REJECT rule".to_string());
                (
                    t.clone(),
                    format!("rejected by the firewall of {from}: {rule}"),
                    format!("allow it in {from}: forward_accept({}, #{{ ... }}) or remove the rule", t.ns.in_script()),
                )
            }
            _ => (t.clone(), format!("{from} answered: {}", o.inner().summary), "the ICMP error names what went wrong".to_string()),
        }
    }

    fn moved(&self, ns: &NsRef) -> Option<String> {
        drops_between(self.before.counters.get(ns)?, self.after.counters.get(ns)?)
    }

    /// The default destination of a VXLAN in `ns` (its all-zero forwarding entry, `bridge
    /// fdb`: `00:00:00:00:00:00 dev vx0 dst REMOTE self permanent`).
    fn vxlan_remote(&self, ns: &NsRef) -> Option<IpAddr> {
        let fdb = self.after.fdb.get(ns)?;
        fdb.iter().find(|e| e.is_self && e.mac == "00:00:00:00:00:00" && e.dst.is_some())?.dst.as_ref()?.parse().ok()
    }

    /// The next hop from `ns` towards `dst` when the kernel could not resolve it: (link,
    /// next hop, `incomplete` or `failed`), from the route lookup and `ip neigh`.
    fn unresolved_next_hop(&mut self, ns: &NsRef, dst: IpAddr) -> Option<(String, IpAddr, String)> {
        let r = self.nl.route_get(ns, &RouteQuery { dst, from: None, iif: None, fwmark: None }).ok()?;
        let hop = r.via.unwrap_or(dst);
        let dev = r.dev?;
        let entries = self.nl.neighbours(ns).ok()?;
        entries.into_iter().find(|(link, a, state)| *link == dev && *a == hop && (state == "incomplete" || state == "failed"))
    }

    /// ARP requests sent in `ns` that nobody answered: (link, the address asked for).
    fn unanswered_arp(&self, obs: &[Obs], ns: &NsRef) -> Option<(String, Ipv4Addr)> {
        self.unanswered_arp_where(obs, ns, |_| true)
    }

    /// The same, on the links of ns that `on` accepts.
    fn unanswered_arp_where(&self, obs: &[Obs], ns: &NsRef, on: impl Fn(&LinkInfo) -> bool) -> Option<(String, Ipv4Addr)> {
        obs.iter().filter(|o| o.dir == Dir::Out && self.target(o).ns == *ns && on(self.info(o))).find_map(|o| match o.kind {
            Kind::Arp(true, sender, target) => {
                let answered = obs.iter().any(|r| matches!(r.kind, Kind::Arp(false, s, t) if s == target && t == sender));
                (!answered).then(|| (self.target(o).link.clone(), target))
            }
            _ => None,
        })
    }

    /// An ARP request for `addr` that reached the namespace owning it and got no
    /// answer: the kernel answers only what its input route lookup accepts, so a
    /// reverse-path filter that refuses the asker's address drops the request.
    fn arp_refused(&mut self, obs: &[Obs], addr: Ipv4Addr) -> Option<(Target, String, String)> {
        let o = obs.iter().find(|o| {
            o.dir == Dir::In && matches!(o.kind, Kind::Arp(true, _, t) if t == addr) && self.is_local(&self.target(o).ns, Some(addr.into()))
        })?;
        let Kind::Arp(_, sender, _) = o.kind else { return None };
        let at = self.target(o).clone();
        let q = RouteQuery { dst: addr.into(), from: Some(sender.into()), iif: Some(at.link.clone()), fwmark: None };
        let e = self.nl.route_get(&at.ns, &q).err().filter(refused_source)?;
        Some(self.rp_filter(&at, Some(sender.into()), e))
    }

    /// The reverse-path filter refused a packet from `src` arriving at `at`.
    fn rp_filter(&mut self, at: &Target, src: Option<IpAddr>, e: crate::error::Error) -> (Target, String, String) {
        let (name, script) = (ns_name(&at.ns), at.ns.in_script());
        let rp = self.nl.kernel().sysctl_read(&at.ns, &format!("net.ipv4.conf.{}.rp_filter", at.link)).unwrap_or_default();
        let all = self.nl.kernel().sysctl_read(&at.ns, "net.ipv4.conf.all.rp_filter").unwrap_or_default();
        (
            at.clone(),
            format!(
                "reverse-path filtering dropped it in {name}: rp_filter is {} on {} ({} for all), and the route back to {} does not leave by {} (the kernel's lookup says {})",
                rp.trim(), at.link, all.trim(), opt(src), at.link, e.why.unwrap_or_default()
            ),
            format!("add a route back to {} via {} in {name}, or turn the filter off: {script}.sysctl(\"net.ipv4.conf.{}.rp_filter\", 0) (and conf.all)", opt(src), at.link, at.link),
        )
    }

    fn why_stopped(&mut self, obs: &[Obs], at: Target, stop: Stop) -> Result<(Target, String, String)> {
        let name = ns_name(&at.ns);
        let script = at.ns.in_script();
        if let Some(rule) = self.moved(&at.ns) {
            let help = match &stop {
                Stop::Bridge(br) => format!("FORWARD drops bridged traffic in {name} (bridge-nf-call-iptables is 1): forward_accept({script}, #{{ \"in\": \"{br}\" }}), or {script}.sysctl(\"net.bridge.bridge-nf-call-iptables\", 0)"),
                _ => format!("allow it: forward_accept({script}, #{{ \"in\": \"{}\" }}), or remove the rule", at.link),
            };
            return Ok((at.clone(), format!("dropped by the firewall of {name}: {rule}"), help));
        }
        match stop {
            Stop::Router => {
                let o = obs.iter().rev().find(|o| self.target(o) == &at && o.dir == Dir::In && !matches!(o.kind, Kind::Arp(..))).cloned();
                let (src, dst) =
                    o.as_ref().map(|o| (o.inner().src, o.inner().dst.unwrap_or(self.spec.dst))).unwrap_or((None, self.spec.dst));
                let q = RouteQuery { dst, from: src, iif: Some(at.link.clone()), fwmark: None };
                match self.nl.route_get(&at.ns, &q) {
                    Err(e) if refused_source(&e) => Ok(self.rp_filter(&at, src, e)),
                    Err(e)
                        if e.is_errno(libc::EHOSTUNREACH)
                            && self.nl.kernel().sysctl_read(&at.ns, "net.ipv4.ip_forward").is_ok_and(|v| v.trim() == "0") =>
                    {
                        Ok((
                            at.clone(),
                            format!(
                                "{name} does not forward: net.ipv4.ip_forward is 0 (the kernel's lookup says {})",
                                e.why.unwrap_or_default()
                            ),
                            format!("turn forwarding on: {script}.forward(true)"),
                        ))
                    }
                    Err(e) => Ok((
                        at.clone(),
                        format!("no route to {dst} in {name}: the kernel's lookup says {}", e.why.unwrap_or_default()),
                        format!("add a route in {name}: {script}.route(\"NETWORK\", GATEWAY) (or a default route)"),
                    )),
                    Ok(r) => {
                        let nh = r.via.unwrap_or(dst);
                        if let Some((link, addr)) = self.unanswered_arp(obs, &at.ns) {
                            let place = Target { ns: at.ns.clone(), link }.place();
                            return Ok((
                                at.clone(),
                                format!("no ARP reply for {addr} on {place}: the next hop does not answer"),
                                format!("is {addr} up and on {place}'s subnet?"),
                            ));
                        }
                        Ok((
                            at.clone(),
                            format!("{name} would route it via {nh} dev {}, but it never left", r.dev.unwrap_or_default()),
                            "look at the firewall of that namespace (iptables -L -v) and the link's state".to_string(),
                        ))
                    }
                }
            }
            Stop::Delivered => {
                // Delivered, no answer: can the destination answer the source it saw?
                let o = obs.iter().rev().find(|o| self.target(o) == &at && o.dir == Dir::In && o.kind == Kind::Request).cloned();
                let back = o.and_then(|o| o.inner().src).unwrap_or(self.probe.src);
                match self.nl.route_get(&at.ns, &RouteQuery { dst: back, from: None, iif: None, fwmark: None }) {
                    Err(e) => Ok((at.clone(), format!("{name} got it but has no route back to {back}: the kernel's lookup says {}", e.why.unwrap_or_default()), format!("add a route back from {name} to {back}'s network ({script}.route(\"NETWORK\", GATEWAY)), or source NAT on the router in between"))),
                    Ok(_) => {
                        if let Some((link, addr)) = self.unanswered_arp(obs, &at.ns) {
                            let place = Target { ns: at.ns.clone(), link }.place();
                            return Ok((at.clone(), format!("{name} got it, but its answer waits for an ARP reply for {addr} on {place} that never came"), format!("is {addr} up and on {place}'s subnet?")));
                        }
                        Ok((at.clone(), format!("{name} got it and did not answer"), "is something there to answer (a listening socket, ICMP echo not ignored: net.ipv4.icmp_echo_ignore_all)?".to_string()))
                    }
                }
            }
            Stop::Bridge(br) => Ok((
                at.clone(),
                format!("the bridge {br} in {name} did not forward it"),
                "check the bridge's ports (up, not blocking) and its forwarding table: fdb(ns)".to_string(),
            )),
            Stop::Vxlan(remote) => {
                // The underlay's ARP for the remote: not the overlay's own (on the VXLAN
                // or a bridge port), which waits for the same remote.
                let unanswered = self.unanswered_arp_where(obs, &at.ns, |l| l.kind != "vxlan" && l.master.is_none());
                let remote = remote.or_else(|| self.vxlan_remote(&at.ns)).or(unanswered.as_ref().map(|(_, a)| IpAddr::V4(*a)));
                let arp = match unanswered {
                    Some((link, a)) => format!(" (no ARP reply for {a} on {link})"),
                    // Its ARP went out before this probe (the entry was already waiting):
                    // the kernel's neighbour entry for the next hop says the same.
                    None => remote
                        .and_then(|r| self.unresolved_next_hop(&at.ns, r))
                        .map(|(link, a, state)| format!(" (no ARP reply for {a} on {link}: its neighbour entry is {state})"))
                        .unwrap_or_default(),
                };
                let remote = opt(remote);
                Ok((at.clone(), format!("the VXLAN remote {remote} never answered{arp}"), format!("check that {remote} is up, reachable from {name} over the underlay, and has a VXLAN with the same VNI on the same UDP port")))
            }
            Stop::Sent => {
                if let Some((link, addr)) = self.unanswered_arp(obs, &at.ns) {
                    let place = Target { ns: at.ns.clone(), link }.place();
                    return Ok((
                        at.clone(),
                        format!("no ARP reply for {addr} on {place}: nothing answers for that address"),
                        format!("is {addr} up and on {place}'s subnet?"),
                    ));
                }
                Ok((
                    at.clone(),
                    format!("it left {} and was not seen again", at.place()),
                    "the link's other end may be outside the lab, or down".to_string(),
                ))
            }
        }
    }
}

/// Where a trace stopped, as the steps found it.
#[derive(Clone, Debug, PartialEq)]
enum Stop {
    /// Came into a namespace that neither owns the address nor sent it on.
    Router,
    /// Came into a bridge and went to no port.
    Bridge(String),
    /// Delivered to its destination, which did not answer.
    Delivered,
    /// Left by a link and was seen nowhere after.
    Sent,
    /// Encapsulated towards this VXLAN remote, and not seen again.
    Vxlan(Option<IpAddr>),
}

/// How an input route lookup (with `from` and `iif`) refuses a source the reverse-path
/// filter rejects: "martian source", EINVAL (EXDEV in older kernels).
fn refused_source(e: &crate::error::Error) -> bool {
    e.is_errno(libc::EINVAL) || e.is_errno(libc::EXDEV)
}

fn ns_name(ns: &NsRef) -> String {
    ns.name().unwrap_or("host").to_string()
}

fn opt(a: Option<IpAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "?".into())
}

fn port_of(p: Probe) -> u16 {
    match p {
        Probe::Icmp => 0,
        Probe::Tcp(p) | Probe::Udp(p) => p,
    }
}

/// An address, with its port where the protocol has one (not for ICMP).
fn endpoint(d: &Decoded, source: bool) -> String {
    let (addr, port) = if source { (d.src, d.sport) } else { (d.dst, d.dport) };
    match (d.proto, port) {
        ("tcp" | "udp", Some(p)) => format!("{}:{p}", opt(addr)),
        _ => opt(addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "Chain INPUT (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination

Chain FORWARD (policy DROP 2 packets, 168 bytes)
    pkts      bytes target     prot opt in     out     source               destination
       5      420 ACCEPT     all  --  eth0   *       0.0.0.0/0            0.0.0.0/0
       1       84 DROP       icmp --  *      *       10.0.0.1             0.0.0.0/0
";

    #[test]
    fn counters_that_moved_name_the_rule_or_the_policy() {
        let before = parse_counters(LISTING);
        assert_eq!(before.policies["FORWARD"], ("DROP".to_string(), 2));
        assert_eq!(before.rules.len(), 2);
        assert_eq!(drops_between(&before, &before), None);
        let rule = parse_counters(&LISTING.replace("       1       84 DROP", "       2      168 DROP"));
        assert_eq!(
            drops_between(&before, &rule).unwrap(),
            "rule 2 of FORWARD (`DROP icmp -- * * 10.0.0.1 0.0.0.0/0`, its counter went 1 -> 2)"
        );
        let policy = parse_counters(&LISTING.replace("policy DROP 2 packets", "policy DROP 3 packets"));
        assert_eq!(drops_between(&before, &policy).unwrap(), "the FORWARD policy DROP (its counter went 2 -> 3)");
    }

    #[test]
    fn a_tcp_probe_carries_a_valid_checksum() {
        let p = Probe0 {
            probe: Probe::Tcp(80),
            token: b"t".to_vec(),
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 40000,
            ident: 1,
        };
        let seg = probe_bytes(&p);
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, seg.len() as u8];
        pseudo.extend(&seg);
        assert_eq!(checksum(&pseudo), 0, "a segment with its checksum sums to zero");
    }
}
