//! A recording test double of the [`Kernel`]: a small model of namespaces, links,
//! addresses, sysctls, rules and processes that answers the requests the live backend
//! sends, records every call in order, and refuses on demand. With it the ledger,
//! rollback, request batching and teardown order are unit-tested without root.

use super::kernel::{Answer, Aside, Exit, Kernel, NetnsAt, NsProcess, Ready, Request, Started};
use crate::error::{Code, Error, Result};
use crate::nsexec::Marker;
use crate::ops::check::{PingResult, PingSpec};
use crate::ops::firewall::Rule;
use crate::ops::process::{Command, ExecOutput};
use crate::ops::trace::Conntrack;
use crate::ops::NsRef;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::packet_route::rule::RuleAttribute;
use rtnetlink::packet_route::RouteNetlinkMessage;
use std::collections::HashMap;
use std::os::fd::{OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// One thing the backend asked of the kernel, in words a test can compare.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    CreateNetns(String),
    DeleteNetns(String),
    /// One exchange: the namespace and each request in words (`newlink veth a`,
    /// `setlink #2 up`, `newaddr #2 10.0.0.1/24`...).
    Burst(NsRef, Vec<String>),
    /// Exchanges sent aside (bridge deletions).
    Aside(NsRef, Vec<String>),
    Dump(NsRef, &'static str),
    SysctlWrite(NsRef, String, String),
    RuleAdd(NsRef, String),
    RuleDelete(NsRef, String),
    SetPolicy(NsRef, String, String),
    /// A chain made (`-N`) or emptied and deleted (`-F`, `-X`): "table chain".
    ChainAdd(NsRef, String),
    ChainDelete(NsRef, String),
    Start(NsRef, String),
    Release(u32),
    Kill(u32, String),
    /// A process found in a lab namespace, signalled through its pidfd.
    Signal(u32, String),
    PersistTap(String),
}

#[derive(Clone, Debug)]
struct DLink {
    ns: NsRef,
    name: String,
    index: u32,
    kind: String,
    up: bool,
    master: Option<u32>,
    /// A veth's other end: its namespace and index.
    peer: Option<(NsRef, u32)>,
}

#[derive(Default)]
pub struct Double {
    pub calls: Vec<Call>,
    /// Named namespaces by name: their cookies.
    netns: HashMap<String, u64>,
    /// Files at /run/netns/NAME that are no namespace (what a killed run leaves).
    placeholders: HashMap<String, Option<Marker>>,
    next_cookie: u64,
    prepared: Option<u64>,
    links: Vec<DLink>,
    next_index: HashMap<NsRef, u32>,
    addrs: Vec<(NsRef, u32, IpNetwork)>,
    sysctls: HashMap<(NsRef, String), String>,
    rules: Vec<(NsRef, Rule)>,
    policies: HashMap<(NsRef, String, String), String>,
    chains: Vec<(NsRef, String, String)>,
    /// pid -> (state, start time, the lab namespace it is in)
    procs: HashMap<u32, (char, u64, Option<String>)>,
    next_pid: u32,
    /// Requests refused: (words the request starts with, errno).
    refusals: Vec<(String, i32)>,
    /// A ledger to look at when a process is released: whether it held its pid by then.
    pub watch_ledger: Option<std::path::PathBuf>,
    pub released_after_record: Vec<bool>,
}

impl Double {
    pub fn new() -> Self {
        Double { next_cookie: 4096, next_pid: 1000, ..Default::default() }
    }

    /// Refuse the next request whose words start with `words` (e.g. "newlink veth x").
    pub fn refuse(&mut self, words: &str, errno: i32) {
        self.refusals.push((words.to_string(), errno));
    }

    /// Someone replaced namespace `name` by another (a new identity under the name), or
    /// made one of that name.
    pub fn replace_netns(&mut self, name: &str) {
        self.next_cookie += 1;
        self.placeholders.remove(name);
        self.netns.insert(name.to_string(), self.next_cookie);
    }

    /// A file at /run/netns/NAME that is no namespace: a marker, or an empty one.
    pub fn put_placeholder(&mut self, name: &str, marker: Option<Marker>) {
        self.netns.remove(name);
        self.placeholders.insert(name.to_string(), marker);
    }

    /// A process someone started inside namespace `ns` (not through the lab).
    pub fn add_process_in(&mut self, ns: &str) -> u32 {
        self.next_pid += 1;
        self.procs.insert(self.next_pid, ('S', u64::from(self.next_pid) * 10, Some(ns.to_string())));
        self.next_pid
    }

    pub fn alive(&self, pid: u32) -> bool {
        self.procs.contains_key(&pid)
    }

    /// A link someone made, not the lab.
    pub fn add_foreign_link(&mut self, ns: &NsRef, name: &str, kind: &str) {
        let index = self.new_index(ns);
        self.add_foreign_link_at(ns, name, kind, index);
    }

    /// A link someone made, with this ifindex.
    pub fn add_foreign_link_at(&mut self, ns: &NsRef, name: &str, kind: &str, index: u32) {
        self.links.push(DLink { ns: ns.clone(), name: name.into(), index, kind: kind.into(), up: false, master: None, peer: None });
    }

    /// The ifindex of the link `name` in `ns`.
    pub fn index_of(&self, ns: &NsRef, name: &str) -> Option<u32> {
        self.link_named(ns, name).map(|i| self.links[i].index)
    }

    pub fn set_sysctl(&mut self, ns: &NsRef, key: &str, value: &str) {
        self.sysctls.insert((ns.clone(), key.to_string()), value.to_string());
    }

    pub fn has_netns(&self, name: &str) -> bool {
        self.netns.contains_key(name)
    }

    pub fn link_names(&self, ns: &NsRef) -> Vec<String> {
        self.links.iter().filter(|l| &l.ns == ns).map(|l| l.name.clone()).collect()
    }

    pub fn rules(&self, ns: &NsRef) -> Vec<String> {
        self.rules.iter().filter(|(n, _)| n == ns).map(|(_, r)| format!("-t {} -A {} {}", r.table, r.chain, r.text())).collect()
    }

    pub fn has_chain(&self, ns: &NsRef, table: &str, chain: &str) -> bool {
        self.chains.contains(&(ns.clone(), table.into(), chain.into()))
    }

    /// The bursts sent to `ns`, in order.
    pub fn bursts(&self, ns: &NsRef) -> Vec<Vec<String>> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Burst(n, r) if n == ns => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn new_index(&mut self, ns: &NsRef) -> u32 {
        let next = self.next_index.entry(ns.clone()).or_insert(2);
        *next += 1;
        *next - 1
    }

    fn fd_of(ns: &NsRef) -> RawFd {
        // A stand-in handle number per namespace, mapped back by [`Double::ns_of_fd`].
        match ns {
            NsRef::Host => 3,
            NsRef::Named(n) => 1000 + n.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)) % 100_000) as RawFd,
        }
    }

    fn ns_of_fd(&self, fd: RawFd) -> NsRef {
        self.netns.keys().map(|n| NsRef::named(n)).find(|ns| Self::fd_of(ns) == fd).unwrap_or(NsRef::Host)
    }

    fn link_at(&self, ns: &NsRef, index: u32) -> Option<usize> {
        self.links.iter().position(|l| &l.ns == ns && l.index == index)
    }

    fn link_named(&self, ns: &NsRef, name: &str) -> Option<usize> {
        self.links.iter().position(|l| &l.ns == ns && l.name == name)
    }

    fn message(&self, l: &DLink) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = l.index;
        if l.up {
            m.header.flags = LinkFlags::Up | LinkFlags::LowerUp | LinkFlags::Running;
        }
        m.attributes.push(LinkAttribute::IfName(l.name.clone()));
        m.attributes.push(LinkAttribute::OperState(if l.up { State::Up } else { State::Down }));
        if !l.kind.is_empty() {
            m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::from(l.kind.as_str()))]));
        }
        if let Some(m2) = l.master {
            m.attributes.push(LinkAttribute::Controller(m2));
        }
        if let Some((_, p)) = &l.peer {
            m.attributes.push(LinkAttribute::Link(*p));
        }
        m
    }

    /// One request: its words, and the answer.
    fn answer(&mut self, ns: &NsRef, request: &Request) -> (String, Answer) {
        let creating = request.header.flags & rtnetlink::packet_core::NLM_F_CREATE != 0;
        let NetlinkPayload::InnerMessage(msg) = &request.payload else { return ("?".into(), Answer::default()) };
        let words = describe(msg);
        if let Some(at) = self.refusals.iter().position(|(w, _)| words.starts_with(w.as_str())) {
            let (_, errno) = self.refusals.remove(at);
            return (words, Answer { errno: Some(errno), ..Default::default() });
        }
        let ok = Answer::default();
        let refuse = |errno| Answer { errno: Some(errno), ..Default::default() };
        let answer = match msg {
            RouteNetlinkMessage::NewLink(m) if m.header.index != 0 && !creating => ok, // changelink
            RouteNetlinkMessage::NewLink(m) => {
                let name = ifname(m).unwrap_or_default();
                if self.link_named(ns, &name).is_some() {
                    return (words, refuse(libc::EEXIST));
                }
                // An ifindex asked for: refused (EEXIST, as the kernel does) when taken.
                if m.header.index != 0 && self.link_at(ns, m.header.index).is_some() {
                    return (words, refuse(libc::EEXIST));
                }
                let kind = link_kind(m).unwrap_or_default();
                let index = if m.header.index != 0 { m.header.index } else { self.new_index(ns) };
                let up = m.header.flags.contains(LinkFlags::Up);
                let master = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Controller(i) => Some(*i),
                    _ => None,
                });
                let mut link = DLink { ns: ns.clone(), name, index, kind: kind.clone(), up, master, peer: None };
                if let Some(peer) = veth_peer(m) {
                    let peer_ns = peer
                        .attributes
                        .iter()
                        .find_map(|a| match a {
                            LinkAttribute::NetNsFd(fd) => Some(self.ns_of_fd(*fd)),
                            _ => None,
                        })
                        .unwrap_or_else(|| ns.clone());
                    let peer_name = ifname(peer).unwrap_or_default();
                    if self.link_named(&peer_ns, &peer_name).is_some() {
                        return (words, refuse(libc::EEXIST));
                    }
                    if peer.header.index != 0 && self.link_at(&peer_ns, peer.header.index).is_some() {
                        return (words, refuse(libc::EEXIST));
                    }
                    let pi = if peer.header.index != 0 { peer.header.index } else { self.new_index(&peer_ns) };
                    link.peer = Some((peer_ns.clone(), pi));
                    self.links.push(DLink {
                        ns: peer_ns,
                        name: peer_name,
                        index: pi,
                        kind: kind.clone(),
                        up: false,
                        master: None,
                        peer: Some((ns.clone(), index)),
                    });
                }
                let echo = self.message(&link);
                self.links.push(link);
                Answer { echo: Some(echo), ..Default::default() }
            }
            RouteNetlinkMessage::GetLink(m) => match ifname(m).and_then(|n| self.link_named(ns, &n)) {
                Some(i) => Answer { echo: Some(self.message(&self.links[i])), ..Default::default() },
                None => refuse(libc::ENODEV),
            },
            RouteNetlinkMessage::SetLink(m) => {
                if m.header.index == 1 {
                    return (words, ok); // lo
                }
                let Some(i) = self.link_at(ns, m.header.index) else { return (words, refuse(libc::ENODEV)) };
                if m.header.change_mask.contains(LinkFlags::Up) {
                    self.links[i].up = m.header.flags.contains(LinkFlags::Up);
                }
                for a in &m.attributes {
                    match a {
                        LinkAttribute::IfName(n) => self.links[i].name = n.clone(),
                        LinkAttribute::Controller(c) => self.links[i].master = (*c != 0).then_some(*c),
                        LinkAttribute::NetNsFd(fd) => {
                            let to = self.ns_of_fd(*fd);
                            let index = self.new_index(&to);
                            let l = &mut self.links[i];
                            l.ns = to;
                            l.index = index;
                            l.up = false;
                        }
                        _ => {}
                    }
                }
                ok
            }
            RouteNetlinkMessage::DelLink(m) => match self.link_at(ns, m.header.index) {
                Some(i) => {
                    let gone = self.links.remove(i);
                    if let Some((pns, pi)) = gone.peer {
                        self.links.retain(|l| !(l.ns == pns && l.index == pi));
                    }
                    ok
                }
                None => refuse(libc::ENODEV),
            },
            RouteNetlinkMessage::NewAddress(m) => {
                let Some(addr) = address(m) else { return (words, refuse(libc::EINVAL)) };
                if self.addrs.iter().any(|(n, i, a)| n == ns && *i == m.header.index && *a == addr) {
                    return (words, refuse(libc::EEXIST));
                }
                self.addrs.push((ns.clone(), m.header.index, addr));
                ok
            }
            RouteNetlinkMessage::DelAddress(m) => {
                let addr = address(m);
                self.addrs.retain(|(n, i, a)| !(n == ns && *i == m.header.index && Some(*a) == addr));
                ok
            }
            _ => ok,
        };
        (words, answer)
    }
}

fn ifname(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn link_kind(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

fn veth_peer(m: &LinkMessage) -> Option<&LinkMessage> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p),
            _ => None,
        }),
        _ => None,
    })
}

fn address(m: &AddressMessage) -> Option<IpNetwork> {
    let ip = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) | AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    })?;
    IpNetwork::new(ip, m.header.prefix_len).ok()
}

fn route_words(m: &rtnetlink::packet_route::route::RouteMessage) -> String {
    let mut dest = "default".to_string();
    let mut via = String::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => dest = format!("{d}/{}", m.header.destination_prefix_length),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => via = format!(" via {g}"),
            RouteAttribute::Oif(i) => via = format!(" dev #{i}"),
            _ => {}
        }
    }
    format!("{dest}{via}")
}

/// A request in words.
fn describe(msg: &RouteNetlinkMessage) -> String {
    match msg {
        RouteNetlinkMessage::NewLink(m) if m.header.index != 0 => format!("changelink #{}", m.header.index),
        RouteNetlinkMessage::NewLink(m) => {
            format!("newlink {} {}", link_kind(m).unwrap_or_default(), ifname(m).unwrap_or_default())
        }
        RouteNetlinkMessage::GetLink(m) => format!("getlink {}", ifname(m).unwrap_or_default()),
        RouteNetlinkMessage::SetLink(m) => {
            let mut w = format!("setlink #{}", m.header.index);
            if m.header.change_mask.contains(LinkFlags::Up) {
                w.push_str(if m.header.flags.contains(LinkFlags::Up) { " up" } else { " down" });
            }
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => w.push_str(&format!(" name {n}")),
                    LinkAttribute::Controller(c) => w.push_str(&format!(" master #{c}")),
                    LinkAttribute::NetNsFd(_) => w.push_str(" netns"),
                    LinkAttribute::Mtu(mtu) => w.push_str(&format!(" mtu {mtu}")),
                    _ => {}
                }
            }
            w
        }
        RouteNetlinkMessage::DelLink(m) => format!("dellink #{}", m.header.index),
        RouteNetlinkMessage::NewAddress(m) => {
            format!("newaddr #{} {}", m.header.index, address(m).map(|a| a.to_string()).unwrap_or_default())
        }
        RouteNetlinkMessage::DelAddress(m) => {
            format!("deladdr #{} {}", m.header.index, address(m).map(|a| a.to_string()).unwrap_or_default())
        }
        RouteNetlinkMessage::NewRoute(m) => format!("newroute {}", route_words(m)),
        RouteNetlinkMessage::DelRoute(m) => format!("delroute {}", route_words(m)),
        RouteNetlinkMessage::NewRule(m) | RouteNetlinkMessage::DelRule(m) => {
            let verb = if matches!(msg, RouteNetlinkMessage::NewRule(_)) { "newrule" } else { "delrule" };
            let mut w = verb.to_string();
            for a in &m.attributes {
                match a {
                    RuleAttribute::Source(ip) => w.push_str(&format!(" from {ip}/{}", m.header.src_len)),
                    RuleAttribute::Table(t) => w.push_str(&format!(" table {t}")),
                    RuleAttribute::Priority(p) => w.push_str(&format!(" pref {p}")),
                    _ => {}
                }
            }
            w
        }
        RouteNetlinkMessage::NewNeighbour(_) => "newneigh".into(),
        RouteNetlinkMessage::NewQueueDiscipline(_) => "newqdisc".into(),
        RouteNetlinkMessage::DelQueueDiscipline(_) => "delqdisc".into(),
        other => format!("{other:?}").chars().take(40).collect(),
    }
}

impl Kernel for Double {
    fn prepare_netns(&mut self) -> Result<u64> {
        if self.prepared.is_none() {
            self.next_cookie += 1;
            self.prepared = Some(self.next_cookie);
        }
        Ok(self.prepared.expect("just made"))
    }

    fn create_netns(&mut self, name: &str, _lab: &str) -> Result<()> {
        self.calls.push(Call::CreateNetns(name.into()));
        let cookie = self.prepare_netns()?;
        if let Some(at) = self.refusals.iter().position(|(w, _)| w == &format!("netns {name}")) {
            let (_, errno) = self.refusals.remove(at);
            self.prepared = None;
            return Err(Error::new(Code::NameTaken, format!("cannot create namespace {name:?}")).errno(errno));
        }
        if self.netns.contains_key(name) || self.placeholders.contains_key(name) {
            self.prepared = None;
            return Err(Error::new(Code::NameTaken, format!("cannot create namespace {name:?}")).errno(libc::EEXIST));
        }
        self.prepared = None;
        self.netns.insert(name.into(), cookie);
        Ok(())
    }

    fn netns_at(&mut self, name: &str) -> NetnsAt {
        match (self.netns.get(name), self.placeholders.get(name)) {
            (Some(c), _) => NetnsAt::Namespace(*c),
            (None, Some(m)) => NetnsAt::Placeholder(m.clone()),
            (None, None) => NetnsAt::Nothing,
        }
    }

    fn delete_netns(&mut self, name: &str) -> Result<()> {
        self.calls.push(Call::DeleteNetns(name.into()));
        self.netns.remove(name);
        let ns = NsRef::named(name);
        // The kernel frees the links inside, and the other ends of their veths.
        let peers: Vec<(NsRef, u32)> = self.links.iter().filter(|l| l.ns == ns).filter_map(|l| l.peer.clone()).collect();
        self.links.retain(|l| l.ns != ns && !peers.contains(&(l.ns.clone(), l.index)));
        Ok(())
    }

    fn remove_netns_placeholder(&mut self, name: &str, cookie: u64) -> Result<bool> {
        match self.placeholders.get(name) {
            Some(Some(m)) if m.cookie == cookie => {
                self.calls.push(Call::DeleteNetns(format!("placeholder {name}")));
                self.placeholders.remove(name);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn netns_cookie(&mut self, ns: &NsRef) -> Result<u64> {
        match ns {
            NsRef::Host => Ok(1),
            NsRef::Named(n) => self.netns.get(n).copied().ok_or_else(|| crate::ops::netns::unknown(n)),
        }
    }

    fn open_netns(&mut self, name: &str) -> Result<()> {
        if self.netns.contains_key(name) {
            Ok(())
        } else {
            Err(crate::ops::netns::unknown(name))
        }
    }

    fn ns_fd(&mut self, ns: &NsRef) -> Result<RawFd> {
        if let NsRef::Named(n) = ns {
            self.open_netns(n)?;
        }
        Ok(Self::fd_of(ns))
    }

    fn forget(&mut self, _ns: &NsRef) {}

    fn forget_all(&mut self) {}

    fn exchange(&mut self, ns: &NsRef, requests: Vec<Request>) -> Result<Vec<Answer>> {
        let (words, answers): (Vec<String>, Vec<Answer>) = requests.iter().map(|r| self.answer(ns, r)).unzip();
        // Lookups are not interesting to a test of what was changed.
        if !words.iter().all(|w| w.starts_with("getlink")) {
            self.calls.push(Call::Burst(ns.clone(), words));
        }
        Ok(answers)
    }

    fn dump(&mut self, ns: &NsRef, request: RouteNetlinkMessage) -> Result<std::result::Result<Vec<RouteNetlinkMessage>, i32>> {
        let (what, out) = match request {
            RouteNetlinkMessage::GetLink(_) => {
                ("links", self.links.iter().filter(|l| &l.ns == ns).map(|l| RouteNetlinkMessage::NewLink(self.message(l))).collect())
            }
            RouteNetlinkMessage::GetAddress(_) => (
                "addrs",
                self.addrs
                    .iter()
                    .filter(|(n, ..)| n == ns)
                    .map(|(_, i, a)| {
                        let mut m = AddressMessage::default();
                        m.header.index = *i;
                        m.header.prefix_len = a.prefix();
                        m.attributes.push(AddressAttribute::Local(a.ip()));
                        RouteNetlinkMessage::NewAddress(m)
                    })
                    .collect(),
            ),
            _ => ("other", Vec::new()),
        };
        self.calls.push(Call::Dump(ns.clone(), what));
        Ok(Ok(out))
    }

    fn exchange_aside(&mut self, jobs: Vec<(NsRef, Vec<Request>)>) -> Result<Aside> {
        let mut out = Vec::new();
        for (ns, requests) in jobs {
            let (words, answers): (Vec<String>, Vec<Answer>) = requests.iter().map(|r| self.answer(&ns, r)).unzip();
            self.calls.push(Call::Aside(ns, words));
            out.push(Ok(answers));
        }
        Ok(Box::new(move || out))
    }

    fn sysctl_read(&mut self, ns: &NsRef, key: &str) -> Result<String> {
        Ok(self.sysctls.get(&(ns.clone(), key.to_string())).cloned().unwrap_or_else(|| "0".into()))
    }

    fn sysctl_write(&mut self, ns: &NsRef, key: &str, value: &str) -> Result<()> {
        self.calls.push(Call::SysctlWrite(ns.clone(), key.into(), value.into()));
        self.sysctls.insert((ns.clone(), key.into()), value.into());
        Ok(())
    }

    fn rule_exists(&mut self, ns: &NsRef, rule: &Rule) -> Result<bool> {
        Ok(self.rules.iter().any(|(n, r)| n == ns && r.same(rule)))
    }

    fn rule_add(&mut self, ns: &NsRef, rule: &Rule, _pos: Option<u32>) -> Result<()> {
        self.calls.push(Call::RuleAdd(ns.clone(), rule.text()));
        self.rules.push((ns.clone(), rule.clone()));
        Ok(())
    }

    fn rule_delete(&mut self, ns: &NsRef, rule: &Rule) -> Result<()> {
        self.calls.push(Call::RuleDelete(ns.clone(), rule.text()));
        self.rules.retain(|(n, r)| !(n == ns && r.same(rule)));
        Ok(())
    }

    fn chain_policy(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<String> {
        Ok(self.policies.get(&(ns.clone(), table.into(), chain.into())).cloned().unwrap_or_else(|| "ACCEPT".into()))
    }

    fn set_chain_policy(&mut self, ns: &NsRef, table: &str, chain: &str, policy: &str) -> Result<()> {
        self.calls.push(Call::SetPolicy(ns.clone(), format!("{table} {chain}"), policy.into()));
        self.policies.insert((ns.clone(), table.into(), chain.into()), policy.into());
        Ok(())
    }

    fn chain_exists(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<bool> {
        Ok(self.chains.contains(&(ns.clone(), table.into(), chain.into())))
    }

    fn chain_add(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()> {
        self.calls.push(Call::ChainAdd(ns.clone(), format!("{table} {chain}")));
        self.chains.push((ns.clone(), table.into(), chain.into()));
        Ok(())
    }

    fn chain_delete(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()> {
        self.calls.push(Call::ChainDelete(ns.clone(), format!("{table} {chain}")));
        // Like iptables -X: a chain a rule still jumps to cannot go.
        if self.rules.iter().any(|(n, r)| n == ns && r.table == table && r.words.windows(2).any(|w| w[0] == "-j" && w[1] == chain)) {
            return Err(Error::new(Code::IptablesRefused, format!("cannot delete the chain {chain}")).why("Too many links"));
        }
        self.chains.retain(|c| c != &(ns.clone(), table.to_string(), chain.to_string()));
        Ok(())
    }

    fn iptables(&mut self, _ns: &NsRef, _args: &[String]) -> Result<String> {
        Ok(String::new())
    }

    fn forward_drops(&mut self, ns: &NsRef) -> bool {
        self.policies.get(&(ns.clone(), "filter".into(), "FORWARD".into())).is_some_and(|p| p == "DROP")
    }

    fn run(&mut self, _ns: &NsRef, _cmd: &Command, _timeout: Option<Duration>) -> Result<ExecOutput> {
        Ok(ExecOutput::default())
    }

    fn start(&mut self, ns: &NsRef, cmd: &Command, _log: &Path, _tied: bool) -> Result<Started> {
        self.calls.push(Call::Start(ns.clone(), cmd.short()));
        self.next_pid += 1;
        let start = u64::from(self.next_pid) * 10;
        self.procs.insert(self.next_pid, ('S', start, ns.name().map(String::from)));
        Ok(Started { pid: self.next_pid, start })
    }

    fn release(&mut self, pid: u32) -> Result<()> {
        self.calls.push(Call::Release(pid));
        if let Some(path) = &self.watch_ledger {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let recorded = text.lines().any(|l| l.contains("\"phase\":\"done\"") && l.contains(&format!("\"pid\":{pid},\"start\":")));
            self.released_after_record.push(recorded);
        }
        Ok(())
    }

    fn process(&mut self, pid: u32) -> Option<(char, u64)> {
        self.procs.get(&pid).map(|(state, start, _)| (*state, *start))
    }

    fn reap(&mut self, _pid: u32) -> Option<Exit> {
        None
    }

    fn listening(&mut self, _pid: u32, _ready: Ready) -> bool {
        true
    }

    fn kill_group(&mut self, pgid: u32, signal: nix::sys::signal::Signal) {
        self.calls.push(Call::Kill(pgid, format!("{signal:?}")));
        self.procs.remove(&pgid);
    }

    fn processes_in(&mut self, names: &[String]) -> Vec<NsProcess> {
        let mut found: Vec<NsProcess> = self
            .procs
            .iter()
            .filter_map(|(pid, (_, start, ns))| {
                let ns = ns.as_ref().filter(|n| names.contains(n))?;
                Some(NsProcess { ns: ns.clone(), pid: *pid, start: *start, comm: "proc".into() })
            })
            .collect();
        found.sort_by_key(|p| p.pid);
        found
    }

    fn signal(&mut self, pid: u32, start: u64, signal: nix::sys::signal::Signal) -> bool {
        if self.procs.get(&pid).map(|p| p.1) != Some(start) {
            return false;
        }
        self.calls.push(Call::Signal(pid, format!("{signal:?}")));
        self.procs.remove(&pid);
        true
    }

    fn create_tap(&mut self, ns: &NsRef, name: &str, _owner: Option<u32>, _group: Option<u32>) -> Result<()> {
        self.add_foreign_link(ns, name, "tun");
        Ok(())
    }

    fn persist_tap(&mut self, _ns: &NsRef, name: &str) -> Result<()> {
        self.calls.push(Call::PersistTap(name.into()));
        Ok(())
    }

    fn ping(&mut self, _ns: &NsRef, _addr: std::net::IpAddr, spec: &PingSpec) -> Result<PingResult> {
        Ok(PingResult { sent: spec.count, received: 0, rtt_ms: None, waited_ms: 0, unsent: None })
    }

    fn icmp_socket(&mut self, _ns: &NsRef) -> Result<OwnedFd> {
        Err(Error::new(Code::Internal, "the test double has no sockets"))
    }

    /// A real socket of the test's own namespace (loopback servers answer it).
    fn socket_in(&mut self, _ns: &NsRef, domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd> {
        super::linux::socket(domain, ty, protocol, "a socket")
    }

    fn packet_socket(&mut self, _ns: &NsRef, _ifindex: u32) -> Result<OwnedFd> {
        Err(Error::new(Code::Internal, "the test double has no sockets"))
    }

    fn raw_socket(&mut self, _ns: &NsRef, _protocol: i32) -> Result<OwnedFd> {
        Err(Error::new(Code::Internal, "the test double has no sockets"))
    }

    fn conntrack(&mut self, _ns: &NsRef) -> Result<Vec<Conntrack>> {
        Ok(Vec::new())
    }

    fn filter_counters(&mut self, _ns: &NsRef) -> Result<Option<String>> {
        Ok(None)
    }
}
