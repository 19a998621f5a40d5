//! The recording backend: runs a lab script without root and without touching the
//! kernel. Every op updates a model of the lab (namespaces, links, addresses, routes,
//! sysctls, rules) and is written down as the shell command that does the same thing
//! (`ip`, `bridge`, `sysctl`, `iptables`, `tc`, `dnsmasq`). Queries answer from the
//! model, so `links(ns)` in plan mode returns what the plan created.
//!
//! `nsscript plan` prints [`PlanBackend::script`]; `nsscript graph` draws
//! [`PlanBackend::model`].

use crate::backend::Backend;
use crate::error::{Code, Error, Result};
use crate::op::*;
use ipnetwork::IpNetwork;
use std::fmt::Write as _;
use std::net::IpAddr;

/// A link in the model. `id` is stable across renames and moves.
#[derive(Clone, Debug, PartialEq)]
pub struct PLink {
    pub id: usize,
    pub ns: NsRef,
    pub name: String,
    /// `veth`, `bridge`, `vxlan`, `vlan`, `macvlan`, `tap`, `loopback`.
    pub kind: String,
    pub up: bool,
    pub mtu: u32,
    pub mac: Option<String>,
    pub master: Option<String>,
    /// The other end of a veth.
    pub peer: Option<usize>,
    /// A vxlan's remote (or group) address.
    pub remote: Option<IpAddr>,
    /// A vlan's or macvlan's parent (same namespace).
    pub parent: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PAddr {
    pub ns: NsRef,
    pub link: String,
    pub addr: IpNetwork,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PRoute {
    pub ns: NsRef,
    pub dest: Option<IpNetwork>,
    pub via: RouteVia,
}

/// What the lab holds once the script has run.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Named namespaces, in creation order.
    pub netns: Vec<String>,
    pub links: Vec<PLink>,
    pub addrs: Vec<PAddr>,
    pub routes: Vec<PRoute>,
    pub sysctls: Vec<(NsRef, String, String)>,
    pub fdb: Vec<(NsRef, FdbEntry)>,
    /// iptables rules as `-t TABLE -A CHAIN RULE`, per namespace.
    pub rules: Vec<(NsRef, String)>,
    pub dhcp: Vec<(NsRef, DhcpServerSpec)>,
    /// Namespaces in which the plan runs or starts programs (exec, spawn, dnsmasq): some
    /// may still run when the lab is taken down.
    pub ran_in: Vec<NsRef>,
    /// Programs started in the background in the host's namespace (spawn).
    pub host_background: usize,
    /// Firewall policies the lab set in the host's namespace, as `TABLE CHAIN`.
    pub host_policies: Vec<String>,
    next_id: usize,
}

impl Model {
    fn new() -> Self {
        let mut m = Model::default();
        m.add_link(NsRef::Host, "lo", "loopback", true, 65536);
        m
    }

    fn add_link(&mut self, ns: NsRef, name: &str, kind: &str, up: bool, mtu: u32) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        self.links.push(PLink {
            id,
            ns,
            name: name.to_string(),
            kind: kind.to_string(),
            up,
            mtu,
            mac: None,
            master: None,
            peer: None,
            remote: None,
            parent: None,
        });
        id
    }

    pub fn link(&self, ns: &NsRef, name: &str) -> Option<&PLink> {
        self.links.iter().find(|l| &l.ns == ns && l.name == name)
    }

    fn link_mut(&mut self, ns: &NsRef, name: &str) -> Option<&mut PLink> {
        self.links.iter_mut().find(|l| &l.ns == ns && l.name == name)
    }

    pub fn by_id(&self, id: usize) -> Option<&PLink> {
        self.links.iter().find(|l| l.id == id)
    }

    pub fn has_ns(&self, ns: &NsRef) -> bool {
        match ns {
            NsRef::Host => true,
            NsRef::Named(n) => self.netns.iter().any(|x| x == n),
        }
    }

    /// Every namespace of the model, the host first.
    pub fn namespaces(&self) -> Vec<NsRef> {
        std::iter::once(NsRef::Host).chain(self.netns.iter().map(|n| NsRef::named(n))).collect()
    }

    pub fn links_in(&self, ns: &NsRef) -> Vec<&PLink> {
        self.links.iter().filter(|l| &l.ns == ns).collect()
    }

    pub fn addrs_of(&self, ns: &NsRef, link: &str) -> Vec<IpNetwork> {
        self.addrs.iter().filter(|a| &a.ns == ns && a.link == link).map(|a| a.addr).collect()
    }

    /// Connected routes (of up links with addresses) and the routes the script added.
    fn routes_in(&self, ns: &NsRef) -> Vec<RouteInfo> {
        let mut out = Vec::new();
        for a in self.addrs.iter().filter(|a| &a.ns == ns) {
            if self.link(ns, &a.link).is_some_and(|l| l.up) && a.addr.prefix() < if a.addr.is_ipv4() { 32 } else { 128 } {
                let net = IpNetwork::new(a.addr.network(), a.addr.prefix()).unwrap_or(a.addr);
                out.push(RouteInfo { dest: net.to_string(), via: None, dev: Some(a.link.clone()), family: family(&a.addr.ip()) });
            }
        }
        for r in self.routes.iter().filter(|r| &r.ns == ns) {
            let (via, dev, fam) = match &r.via {
                RouteVia::Gateway(gw) => (Some(gw.to_string()), self.dev_for(ns, gw), family(gw)),
                RouteVia::Device(d) => (None, Some(d.clone()), r.dest.map(|d| family(&d.ip())).unwrap_or(4)),
            };
            out.push(RouteInfo { dest: r.dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into()), via, dev, family: fam });
        }
        out
    }

    /// The link whose subnet holds `gw`.
    fn dev_for(&self, ns: &NsRef, gw: &IpAddr) -> Option<String> {
        self.addrs.iter().find(|a| &a.ns == ns && a.addr.contains(*gw)).map(|a| a.link.clone())
    }

    /// Which namespace holds `ip` as an interface address.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<(&NsRef, &str)> {
        self.addrs.iter().find(|a| a.addr.ip() == *ip).map(|a| (&a.ns, a.link.as_str()))
    }

    fn remove_link(&mut self, id: usize) {
        let Some(l) = self.by_id(id).cloned() else { return };
        self.links.retain(|x| x.id != id);
        self.addrs.retain(|a| !(a.ns == l.ns && a.link == l.name));
        self.routes.retain(|r| !(r.ns == l.ns && r.via == RouteVia::Device(l.name.clone())));
        for other in self.links.iter_mut().filter(|x| x.ns == l.ns && x.master.as_deref() == Some(&l.name)) {
            other.master = None;
        }
    }
}

fn norm(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The words after `flag` in a rule (`-s`, `-o`, `--to-source`...), and whether a `!` precedes it.
fn rule_arg<'a>(words: &[&'a str], flag: &str) -> Option<(bool, &'a str)> {
    let i = words.iter().position(|w| *w == flag)?;
    Some((i > 0 && words[i - 1] == "!", words.get(i + 1)?))
}

/// The rule a raw `iptables [-t TABLE] -D CHAIN RULE` deletes, as the model keeps rules
/// (`-t TABLE -A CHAIN RULE`); None for other commands.
fn deleted_rule(args: &[String]) -> Option<String> {
    let i = args.iter().position(|a| a == "-D" || a == "--delete")?;
    let chain = args.get(i + 1)?;
    let t = args.iter().position(|a| a == "-t" || a == "--table");
    let table = t.and_then(|t| args.get(t + 1)).map_or("filter", |t| t.as_str());
    let skipped = |k: usize| k == i || k == i + 1 || t.is_some_and(|t| k == t || k == t + 1);
    let rest: Vec<&str> = args.iter().enumerate().filter(|(k, _)| !skipped(*k)).map(|(_, a)| a.as_str()).collect();
    Some(format!("-t {table} -A {chain} {}", rest.join(" ")))
}

fn net_holds(net: &str, ip: IpAddr) -> bool {
    net.parse::<IpNetwork>().map(|n| n.contains(ip)).unwrap_or_else(|_| net.parse::<IpAddr>().is_ok_and(|a| a == ip))
}

impl Model {
    /// Longest-prefix match in ns: (gateway, device).
    fn lookup(&self, ns: &NsRef, dst: IpAddr) -> Option<(Option<IpAddr>, Option<String>)> {
        let mut best: Option<(u8, Option<IpAddr>, Option<String>)> = None;
        for r in self.routes_in(ns) {
            let (net, prefix) = if r.dest == "default" {
                (None, 0)
            } else {
                match r.dest.parse::<IpNetwork>() {
                    Ok(n) if n.contains(dst) => (Some(n), n.prefix()),
                    _ => continue,
                }
            };
            if net.is_none() && family(&dst) != r.family {
                continue;
            }
            if best.as_ref().is_none_or(|(p, _, _)| prefix > *p) {
                best = Some((prefix, r.via.as_deref().and_then(|v| v.parse().ok()), r.dev.clone()));
            }
        }
        best.map(|(_, via, dev)| (via, dev))
    }

    fn forwards(&self, ns: &NsRef) -> bool {
        self.sysctls.iter().any(|(n, k, v)| n == ns && k == "net.ipv4.ip_forward" && v == "1")
    }

    /// Follow routes from ns (source address src) to dst, hop by hop, applying source NAT
    /// on the way. Some(the source address dst sees) when it gets there.
    fn deliver(&self, from: &NsRef, mut src: Option<IpAddr>, dst: IpAddr) -> Option<IpAddr> {
        let mut cur = from.clone();
        for hop in 0..16 {
            if self.addrs.iter().any(|a| a.ns == cur && a.addr.ip() == dst) || (dst.is_loopback() && hop == 0) {
                return src.or(Some(dst));
            }
            if hop > 0 && !self.forwards(&cur) {
                return None;
            }
            let (via, dev) = self.lookup(&cur, dst)?;
            let dev = dev?;
            if src.is_none() {
                src = self.addrs.iter().find(|a| a.ns == cur && a.link == dev && a.addr.is_ipv4() == dst.is_ipv4()).map(|a| a.addr.ip());
            }
            // Source NAT on the way out of dev.
            for (_, rule) in self.rules.iter().filter(|(n, r)| n == &cur && r.contains("-A POSTROUTING")) {
                let w: Vec<&str> = rule.split_whitespace().collect();
                let s = src?;
                let src_ok = rule_arg(&w, "-s").is_none_or(|(neg, net)| net_holds(net, s) != neg);
                let dst_ok = rule_arg(&w, "-d").is_none_or(|(neg, net)| net_holds(net, dst) != neg);
                let out_ok = rule_arg(&w, "-o").is_none_or(|(neg, o)| (o == dev) != neg);
                if !(src_ok && dst_ok && out_ok) {
                    continue;
                }
                match rule_arg(&w, "-j").map(|(_, t)| t) {
                    Some("SNAT") => src = rule_arg(&w, "--to-source").and_then(|(_, a)| a.split(':').next()?.parse().ok()),
                    Some("MASQUERADE") => {
                        src = self.addrs.iter().find(|a| a.ns == cur && a.link == dev && a.addr.is_ipv4()).map(|a| a.addr.ip())
                    }
                    _ => {}
                }
                break;
            }
            let next = via.unwrap_or(dst);
            let (ns, _) = self.owner_of(&next)?;
            if *ns == cur {
                return None;
            }
            cur = ns.clone();
        }
        None
    }

    /// Whether a ping from ns to dst would be answered, judged from the model: there
    /// and back by the routes, through namespaces that forward, with source NAT.
    pub fn reaches(&self, ns: &NsRef, dst: IpAddr) -> bool {
        let Some(seen_src) = self.deliver(ns, None, dst) else { return false };
        let Some((dst_ns, _)) = self.owner_of(&dst) else { return false };
        let dst_ns = dst_ns.clone();
        self.deliver(&dst_ns, Some(dst), seen_src).is_some()
    }
}

/// 4 or 6, as the live backend and the script's `family` fields say it.
fn family(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        4
    } else {
        6
    }
}

/// Quote a word for the shell only when it needs it.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `ip` with `-n NS` for a named namespace.
fn ip(ns: &NsRef) -> String {
    match ns {
        NsRef::Host => "ip".into(),
        NsRef::Named(n) => format!("ip -n {}", sh_quote(n)),
    }
}

/// A program run inside ns (`ip netns exec NS ...`).
fn inside(ns: &NsRef, cmd: &str) -> String {
    match ns {
        NsRef::Host => cmd.to_string(),
        NsRef::Named(n) => format!("ip netns exec {} {cmd}", sh_quote(n)),
    }
}

/// `netns NAME` for a named namespace; the script's own (`$$`) for the host's.
fn netns_arg(ns: &NsRef) -> String {
    match ns {
        NsRef::Host => "\"$$\"".into(),
        NsRef::Named(n) => sh_quote(n),
    }
}

fn command_text(cmd: &Command) -> String {
    match cmd {
        Command::Shell(line) => format!("sh -c {}", sh_quote(line)),
        Command::Argv(argv) => argv.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" "),
    }
}

fn mac_text(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// A planned reachability check: one probe that shows it, never a failure of the
/// walkthrough (a plan checks nothing; the real run retries and decides). A probe the
/// model expects to go unanswered waits 0.2 s, not a whole second: on a lab's veths and
/// bridges an answer takes well under a millisecond.
fn planned_ping(ns: &NsRef, addr: IpAddr, expect_answer: bool) -> String {
    let wait = if expect_answer { "1" } else { "0.2" };
    format!("{} || true", inside(ns, &format!("ping -c 1 -W {wait} {addr}")))
}

/// One step of the walkthrough: the op in words and its commands.
#[derive(Clone, Debug)]
pub struct Step {
    pub comment: Option<String>,
    pub commands: Vec<String>,
}

pub struct PlanBackend {
    lab: String,
    source: String,
    model: Model,
    steps: Vec<Step>,
}

impl PlanBackend {
    pub fn new(lab: &str, source: &str) -> Self {
        PlanBackend { lab: lab.to_string(), source: source.to_string(), model: Model::new(), steps: Vec::new() }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The walkthrough as a bash script.
    pub fn script(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "#!/bin/bash");
        let _ = writeln!(out, "# Lab {} as shell commands (nsscript plan {}).", self.lab, self.source);
        let _ = writeln!(out, "# Run it as root; it builds the same namespaces, links, addresses, routes and rules.");
        let _ = writeln!(out, "set -e");
        for step in &self.steps {
            if let Some(c) = &step.comment {
                let _ = writeln!(out, "\n# {c}");
            }
            for cmd in &step.commands {
                let _ = writeln!(out, "{cmd}");
            }
        }
        let undo = self.undo();
        if !undo.is_empty() {
            let _ = writeln!(out, "\n# To take it down again:");
            for u in undo {
                let _ = writeln!(out, "#   {u}");
            }
        }
        out
    }

    /// Where the host's background programs write their pids.
    fn host_pid_file(&self) -> String {
        format!("/run/nsscript-plan-{}.pids", self.lab)
    }

    /// The commands that take the lab down, from what it holds at the end: programs
    /// first (a namespace with a process in it outlives `ip netns del`), then the host's
    /// links and rules, then the namespaces with everything inside them.
    fn undo(&self) -> Vec<String> {
        let m = &self.model;
        let mut out = Vec::new();
        let named: Vec<&str> = m.netns.iter().filter(|n| m.ran_in.contains(&NsRef::named(n))).map(|n| n.as_str()).collect();
        if !named.is_empty() {
            let list = named.iter().map(|n| sh_quote(n)).collect::<Vec<_>>().join(" ");
            out.push(format!("for ns in {list}; do ip netns pids \"$ns\" | xargs -r kill; done   # what the lab left running"));
        }
        if m.dhcp.iter().any(|(ns, _)| *ns == NsRef::Host) {
            out.push("kill $(cat /run/dnsmasq-host.pid)".to_string());
        }
        if m.host_background > 0 {
            out.push(format!("kill $(cat {})", self.host_pid_file()));
        }
        let host_links = m.links_in(&NsRef::Host);
        for l in host_links.iter().rev().filter(|l| l.kind != "loopback") {
            // Deleting one end of a veth pair deletes the other: the newer end goes first.
            let peer_gone_first = l.peer.and_then(|p| m.by_id(p)).is_some_and(|p| p.ns == NsRef::Host && p.id > l.id);
            if !peer_gone_first {
                out.push(format!("ip link del {}", sh_quote(&l.name)));
            }
        }
        for (_, rule) in m.rules.iter().filter(|(ns, _)| *ns == NsRef::Host).rev() {
            out.push(format!("iptables {}", rule.replacen(" -A ", " -D ", 1)));
        }
        // What they were before is not known to a plan.
        let mut changed: Vec<String> = m.sysctls.iter().filter(|(ns, _, _)| *ns == NsRef::Host).map(|(_, k, _)| k.clone()).collect();
        changed.extend(m.host_policies.iter().map(|p| format!("iptables policy of {p}")));
        if !changed.is_empty() {
            out.push(format!("# the host's {} changed: set back by hand what it was before", changed.join(", ")));
        }
        for n in m.netns.iter().rev() {
            out.push(format!("ip netns del {}", sh_quote(n)));
        }
        out
    }

    fn step(&mut self, comment: impl Into<String>, commands: Vec<String>) {
        let comment = Some(comment.into());
        match self.steps.last_mut() {
            // Runs of the same kind of step read better under one comment.
            Some(last) if last.comment == comment => last.commands.extend(commands),
            _ => self.steps.push(Step { comment, commands }),
        }
    }

    fn more(&mut self, commands: Vec<String>) {
        match self.steps.last_mut() {
            Some(s) => s.commands.extend(commands),
            None => self.steps.push(Step { comment: None, commands }),
        }
    }

    /// Remember that programs ran in ns (the undo stops what is left of them).
    fn ran_in(&mut self, ns: &NsRef) {
        if !self.model.ran_in.contains(ns) {
            self.model.ran_in.push(ns.clone());
        }
    }

    fn require_ns(&self, ns: &NsRef) -> Result<()> {
        if self.model.has_ns(ns) {
            return Ok(());
        }
        let name = ns.name().unwrap_or("");
        Err(Error::new(Code::UnknownNamespace, format!("unknown namespace {name:?}"))
            .why(format!("/run/netns/{name} does not exist"))
            .help("create it first with netns(\"NAME\"), or check `ip netns list`"))
    }

    fn require_link(&self, ns: &NsRef, name: &str) -> Result<&PLink> {
        self.require_ns(ns)?;
        self.model.link(ns, name).ok_or_else(|| {
            Error::new(Code::UnknownLink, format!("unknown link {name:?} in {ns}"))
                .why("no such device (ENODEV)")
                .help(format!("check the name with links({}) or `ip link`", ns.name().unwrap_or("host()")))
        })
    }

    fn require_free(&self, ns: &NsRef, name: &str, what: String) -> Result<()> {
        crate::backend::live::netlink::validate_ifname(name)?;
        self.require_ns(ns)?;
        if self.model.link(ns, name).is_some() {
            return Err(Error::new(Code::NameTaken, what)
                .errno(libc::EEXIST)
                .help(format!("a link named {name} already exists and does not belong to this lab: choose another name")));
        }
        Ok(())
    }

    fn create_netns(&mut self, name: &str) -> Result<Outcome> {
        crate::nsexec::validate_netns_name(name)?;
        if self.model.netns.iter().any(|n| n == name) {
            return Ok(Outcome::Done);
        }
        self.model.netns.push(name.to_string());
        self.model.add_link(NsRef::named(name), "lo", "loopback", true, 65536);
        let q = sh_quote(name);
        self.step(format!("namespace {name}"), vec![format!("ip netns add {q}"), format!("ip -n {q} link set lo up")]);
        Ok(Outcome::Done)
    }

    fn create_bridge(&mut self, ns: NsRef, name: String) -> Result<Outcome> {
        if self.model.link(&ns, &name).is_some_and(|l| l.kind == "bridge") {
            return Ok(Outcome::Done);
        }
        self.require_free(&ns, &name, format!("cannot create bridge {name:?} in {ns}"))?;
        self.model.add_link(ns.clone(), &name, "bridge", true, 1500);
        let q = sh_quote(&name);
        self.step(
            format!("bridge {name} in {ns}"),
            vec![format!("{} link add {q} type bridge", ip(&ns)), format!("{} link set {q} up", ip(&ns))],
        );
        Ok(Outcome::Done)
    }

    fn create_veth(&mut self, s: VethSpec) -> Result<Outcome> {
        let what = format!("cannot create veth pair {:?} / {:?}", s.name, s.peer);
        if s.ns == s.peer_ns && s.name == s.peer {
            return Err(Error::new(Code::BadWiring, what).help("the two ends need different names"));
        }
        self.require_free(&s.ns, &s.name, what.clone())?;
        self.require_free(&s.peer_ns, &s.peer, what)?;
        if let Some(br) = &s.master {
            self.require_link(&s.ns, br)?;
        }
        let mtu = s.mtu.unwrap_or(1500);
        let a = self.model.add_link(s.ns.clone(), &s.name, "veth", s.up, mtu);
        let b = self.model.add_link(s.peer_ns.clone(), &s.peer, "veth", s.up, mtu);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(l) = self.model.links.iter_mut().find(|l| l.id == x) {
                l.peer = Some(y);
                if x == a {
                    l.master = s.master.clone();
                }
            }
        }
        let mtu_arg = s.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
        let peer_ns = if s.peer_ns != s.ns { format!(" netns {}", netns_arg(&s.peer_ns)) } else { String::new() };
        let mut cmds = vec![format!(
            "{} link add {}{mtu_arg} type veth peer name {}{mtu_arg}{peer_ns}",
            ip(&s.ns),
            sh_quote(&s.name),
            sh_quote(&s.peer)
        )];
        if let Some(br) = &s.master {
            cmds.push(format!("{} link set {} master {}", ip(&s.ns), sh_quote(&s.name), sh_quote(br)));
        }
        if s.up {
            cmds.push(format!("{} link set {} up", ip(&s.ns), sh_quote(&s.name)));
            cmds.push(format!("{} link set {} up", ip(&s.peer_ns), sh_quote(&s.peer)));
        }
        let place = |ns: &NsRef| ns.name().map(|n| format!(" ({n})")).unwrap_or_default();
        self.step(format!("veth pair {}{} <-> {}{}", s.name, place(&s.ns), s.peer, place(&s.peer_ns)), cmds);
        Ok(Outcome::Done)
    }

    fn set_link(&mut self, ns: NsRef, name: String, change: LinkChange) -> Result<Outcome> {
        let link = self.require_link(&ns, &name)?.clone();
        let dev = format!("{} link set {}", ip(&ns), sh_quote(&name));
        let refused = |why: &str, errno: i32| {
            Error::new(Code::LinkChangeRefused, format!("cannot change link {name:?} in {ns}")).errno(errno).help(why.to_string())
        };
        let cmd = match &change {
            LinkChange::Up => {
                self.model.link_mut(&ns, &name).expect("checked").up = true;
                format!("{dev} up")
            }
            LinkChange::Down => {
                self.model.link_mut(&ns, &name).expect("checked").up = false;
                format!("{dev} down")
            }
            LinkChange::Mtu(m) => {
                self.model.link_mut(&ns, &name).expect("checked").mtu = *m;
                format!("{dev} mtu {m}")
            }
            LinkChange::Mac(m) => {
                self.model.link_mut(&ns, &name).expect("checked").mac = Some(mac_text(m));
                format!("{dev} address {}", mac_text(m))
            }
            LinkChange::Master(br) => {
                let is_bridge = self.require_link(&ns, br)?.kind == "bridge";
                if !is_bridge {
                    return Err(refused("the master must be a bridge in the same namespace as the link", libc::EOPNOTSUPP));
                }
                self.model.link_mut(&ns, &name).expect("checked").master = Some(br.clone());
                format!("{dev} master {}", sh_quote(br))
            }
            LinkChange::NoMaster => {
                self.model.link_mut(&ns, &name).expect("checked").master = None;
                format!("{dev} nomaster")
            }
            LinkChange::Rename(new) => {
                crate::backend::live::netlink::validate_ifname(new)?;
                if self.model.link(&ns, new).is_some() {
                    return Err(refused(&format!("a link named {new:?} already exists there"), libc::EEXIST));
                }
                for a in self.model.addrs.iter_mut().filter(|a| a.ns == ns && a.link == name) {
                    a.link = new.clone();
                }
                for r in self.model.routes.iter_mut().filter(|r| r.ns == ns && r.via == RouteVia::Device(name.clone())) {
                    r.via = RouteVia::Device(new.clone());
                }
                for l in self.model.links.iter_mut().filter(|l| l.ns == ns) {
                    if l.master.as_deref() == Some(&name) {
                        l.master = Some(new.clone());
                    }
                    if l.parent.as_deref() == Some(&name) {
                        l.parent = Some(new.clone());
                    }
                }
                self.model.link_mut(&ns, &name).expect("checked").name = new.clone();
                format!("{dev} name {}", sh_quote(new))
            }
            LinkChange::MoveTo(target) => {
                self.require_ns(target)?;
                if self.model.link(target, &name).is_some() {
                    return Err(refused(&format!("{target} already has a link named {name:?}: rename one of them first"), libc::EEXIST));
                }
                // Like the kernel: a moved link arrives down, without addresses or master.
                self.model.addrs.retain(|a| !(a.ns == ns && a.link == name));
                self.model.routes.retain(|r| !(r.ns == ns && r.via == RouteVia::Device(name.clone())));
                let l = self.model.link_mut(&ns, &name).expect("checked");
                l.ns = target.clone();
                l.up = false;
                l.master = None;
                format!("{dev} netns {}", netns_arg(target))
            }
        };
        let words = match &change {
            LinkChange::MoveTo(t) => format!("move {name} into {t}"),
            LinkChange::Rename(n) => format!("rename {name} to {n}"),
            LinkChange::Master(b) => format!("enslave {name} to {b}"),
            _ => String::new(),
        };
        if words.is_empty() {
            self.more(vec![cmd]);
        } else {
            self.step(words, vec![cmd]);
        }
        let _ = link;
        match change {
            LinkChange::Rename(n) => Ok(Outcome::Link { ns, name: n }),
            LinkChange::MoveTo(t) => Ok(Outcome::Link { ns: t, name }),
            _ => Ok(Outcome::Done),
        }
    }

    fn delete_link(&mut self, ns: NsRef, name: String) -> Result<Outcome> {
        let l = self.require_link(&ns, &name)?.clone();
        self.model.remove_link(l.id);
        if let Some(p) = l.peer {
            self.model.remove_link(p);
        }
        self.step(format!("delete {name}"), vec![format!("{} link del {}", ip(&ns), sh_quote(&name))]);
        Ok(Outcome::Done)
    }

    fn add_addr(&mut self, ns: NsRef, link: String, addr: IpNetwork) -> Result<Outcome> {
        self.require_link(&ns, &link)?;
        if self.model.addrs.iter().any(|a| a.ns == ns && a.link == link && a.addr == addr) {
            return Err(Error::new(Code::AddressRefused, format!("cannot add address {addr} to {link:?} in {ns}"))
                .errno(libc::EEXIST)
                .help(format!("{link} already has {addr}")));
        }
        self.model.addrs.push(PAddr { ns: ns.clone(), link: link.clone(), addr });
        let nodad = if addr.is_ipv6() { " nodad" } else { "" };
        self.more(vec![format!("{} addr add {addr} dev {}{nodad}", ip(&ns), sh_quote(&link))]);
        Ok(Outcome::Done)
    }

    fn add_route(&mut self, ns: NsRef, dest: Option<IpNetwork>, via: RouteVia) -> Result<Outcome> {
        self.require_ns(&ns)?;
        let shown = crate::backend::live::netlink::describe_route(dest, &via);
        let d = dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into());
        let cmd = match &via {
            RouteVia::Gateway(gw) => {
                let reachable = self.model.addrs.iter().any(|a| a.ns == ns && a.addr.contains(*gw));
                if !reachable {
                    return Err(Error::new(Code::GatewayUnreachable, format!("cannot add route {shown} in {ns}")).errno(libc::ENETUNREACH).help(
                        "the gateway is not on any connected subnet of this namespace: add an address on its subnet (and bring the link up) first",
                    ));
                }
                let six = if gw.is_ipv6() { " -6" } else { "" };
                format!("{}{six} route add {d} via {gw} proto static", ip(&ns))
            }
            RouteVia::Device(dev) => {
                self.require_link(&ns, dev)?;
                let six = if dest.is_some_and(|d| d.is_ipv6()) { " -6" } else { "" };
                format!("{}{six} route add {d} dev {} proto static", ip(&ns), sh_quote(dev))
            }
        };
        if self.model.routes.iter().any(|r| r.ns == ns && r.dest == dest) {
            return Err(Error::new(Code::RouteRefused, format!("cannot add route {shown} in {ns}"))
                .errno(libc::EEXIST)
                .help("a route to this destination already exists"));
        }
        self.model.routes.push(PRoute { ns: ns.clone(), dest, via });
        self.step(format!("route {shown} in {ns}"), vec![cmd]);
        Ok(Outcome::Done)
    }

    fn sysctl(&mut self, ns: NsRef, key: String, value: String) -> Result<Outcome> {
        self.require_ns(&ns)?;
        self.model.sysctls.retain(|(n, k, _)| !(n == &ns && k == &key));
        self.model.sysctls.push((ns.clone(), key.clone(), value.clone()));
        self.step(format!("sysctl in {ns}"), vec![inside(&ns, &format!("sysctl -qw {}", sh_quote(&format!("{key}={value}"))))]);
        Ok(Outcome::Done)
    }

    fn create_link(&mut self, spec: LinkSpec) -> Result<Outcome> {
        let kind = spec.kind.kind_name();
        self.require_free(&spec.ns, &spec.name, format!("cannot create {kind} link {:?} in {}", spec.name, spec.ns))?;
        let name = sh_quote(&spec.name);
        let mtu = spec.mtu.map(|m| format!(" mtu {m}")).unwrap_or_default();
        let mut cmds = Vec::new();
        let (mut remote, mut parent) = (None, None);
        // Without an explicit MTU the kernel derives one from the lower device: a vlan or
        // macvlan takes its parent's, a vxlan its underlay's less the encapsulation.
        let mut derived_mtu = None;
        match &spec.kind {
            LinkKind::Vxlan(v) => {
                let mut c = format!("{} link add {name}{mtu} type vxlan id {}", ip(&spec.ns), v.id);
                if let Some(r) = v.remote {
                    let _ = write!(c, " remote {r}");
                }
                if let Some(g) = v.group {
                    let _ = write!(c, " group {g}");
                }
                if let Some(l) = v.local {
                    let _ = write!(c, " local {l}");
                }
                if let Some(d) = &v.dev {
                    let underlay = self.require_link(&spec.ns, d)?.mtu;
                    let v6 = [v.remote, v.group, v.local].iter().flatten().any(|a| a.is_ipv6());
                    derived_mtu = Some(underlay.saturating_sub(if v6 { 70 } else { 50 }).max(68));
                    let _ = write!(c, " dev {}", sh_quote(d));
                }
                let _ = write!(c, " dstport {}", v.dstport);
                cmds.push(c);
                remote = v.remote.or(v.group);
            }
            LinkKind::Vlan { parent: p, id } => {
                derived_mtu = Some(self.require_link(&spec.ns, p)?.mtu);
                cmds.push(format!("{} link add link {} name {name}{mtu} type vlan id {id}", ip(&spec.ns), sh_quote(p)));
                parent = Some(p.clone());
            }
            LinkKind::Macvlan { parent: p, mode } => {
                derived_mtu = Some(self.require_link(&spec.ns, p)?.mtu);
                let mode = match mode {
                    MacvlanMode::Private => "private",
                    MacvlanMode::Vepa => "vepa",
                    MacvlanMode::Bridge => "bridge",
                    MacvlanMode::Passthru => "passthru",
                };
                cmds.push(format!("{} link add link {} name {name}{mtu} type macvlan mode {mode}", ip(&spec.ns), sh_quote(p)));
                parent = Some(p.clone());
            }
            LinkKind::Tap { owner, group } => {
                let mut c = format!("{} tuntap add dev {name} mode tap", ip(&spec.ns));
                if let Some(u) = owner {
                    let _ = write!(c, " user {u}");
                }
                if let Some(g) = group {
                    let _ = write!(c, " group {g}");
                }
                cmds.push(c);
                if let Some(m) = spec.mtu {
                    cmds.push(format!("{} link set {name} mtu {m}", ip(&spec.ns)));
                }
            }
        }
        if spec.up {
            cmds.push(format!("{} link set {name} up", ip(&spec.ns)));
        }
        let id = self.model.add_link(spec.ns.clone(), &spec.name, kind, spec.up, spec.mtu.or(derived_mtu).unwrap_or(1500));
        if let Some(l) = self.model.links.iter_mut().find(|l| l.id == id) {
            l.remote = remote;
            l.parent = parent;
        }
        self.step(format!("{kind} link {} in {}", spec.name, spec.ns), cmds);
        Ok(Outcome::Link { ns: spec.ns, name: spec.name })
    }

    fn shape(&mut self, ns: NsRef, link: String, shape: Option<Shape>) -> Result<Outcome> {
        self.require_link(&ns, &link)?;
        let dev = sh_quote(&link);
        let cmd = match shape {
            None => format!("tc qdisc del dev {dev} root 2>/dev/null || true"),
            Some(s) if s.delay_us.is_some() || s.loss_pct.is_some() => {
                let mut c = format!("tc qdisc replace dev {dev} root netem");
                if let Some(d) = s.delay_us {
                    let _ = write!(c, " delay {d}us");
                }
                if let Some(l) = s.loss_pct {
                    let _ = write!(c, " loss {l}%");
                }
                if let Some(r) = s.rate {
                    let _ = write!(c, " rate {r}bit");
                }
                // Kernels without sch_netem refuse it; nsscript then fails the call, which a
                // script may catch (shaping.rhai does). The walkthrough cannot know whether
                // it would, so it says so and goes on.
                let _ = write!(
                    c,
                    " || echo 'tc refused netem (does this kernel have sch_netem?): no delay or loss on {}' >&2",
                    link.replace('\'', "")
                );
                c
            }
            Some(s) => {
                let rate = s.rate.unwrap_or(0);
                let burst = s.burst.unwrap_or_else(|| ((rate / 8 / 250) as u32).max(1600));
                format!("tc qdisc replace dev {dev} root tbf rate {rate}bit burst {burst} latency {}us", s.latency_us.unwrap_or(50_000))
            }
        };
        self.step(format!("shape {link} in {ns}"), vec![inside(&ns, &cmd)]);
        Ok(Outcome::Done)
    }

    fn fw(&mut self, ns: NsRef, op: FwOp) -> Result<Outcome> {
        self.require_ns(&ns)?;
        let (args, rule) = match &op {
            FwOp::Append { table, chain, rule } => (format!("-t {table} -A {chain} {rule}"), Some(format!("-t {table} -A {chain} {rule}"))),
            FwOp::Insert { table, chain, rule, pos } => {
                (format!("-t {table} -I {chain} {pos} {rule}"), Some(format!("-t {table} -A {chain} {rule}")))
            }
            FwOp::Policy { table, chain, policy } => (format!("-t {table} -P {chain} {policy}"), None),
            FwOp::Raw { args } => (args.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" "), None),
        };
        if let FwOp::Raw { args } = &op {
            // `-D CHAIN RULE` takes a rule out of the model (appends, inserts and policies
            // come as their own ops).
            if let Some(gone) = deleted_rule(args) {
                self.model.rules.retain(|(n, x)| !(n == &ns && norm(x) == norm(&gone)));
            }
        }
        if let FwOp::Policy { table, chain, .. } = &op {
            let p = format!("{table} {chain}");
            if ns == NsRef::Host && !self.model.host_policies.contains(&p) {
                self.model.host_policies.push(p);
            }
        }
        if let Some(r) = rule {
            if self.model.rules.iter().any(|(n, x)| n == &ns && *x == r) {
                return Ok(Outcome::Done);
            }
            self.model.rules.push((ns.clone(), r));
        }
        self.step(format!("iptables in {ns}"), vec![inside(&ns, &format!("iptables {args}"))]);
        Ok(match op {
            FwOp::Raw { .. } => Outcome::Text(String::new()),
            _ => Outcome::Done,
        })
    }

    fn dhcp_server(&mut self, ns: NsRef, spec: DhcpServerSpec) -> Result<Outcome> {
        self.require_link(&ns, &spec.iface)?;
        let mut c = format!(
            "dnsmasq --no-resolv --no-hosts --bind-interfaces --interface={} --except-interface=lo --dhcp-range={},{} --pid-file=/run/dnsmasq-{}.pid",
            sh_quote(&spec.iface),
            spec.first,
            spec.last,
            sh_quote(ns.name().unwrap_or("host"))
        );
        if let Some(r) = spec.router {
            let _ = write!(c, " --dhcp-option=option:router,{r}");
        }
        if !spec.dns.is_empty() {
            let _ = write!(c, " --dhcp-option=option:dns-server,{}", spec.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","));
        }
        self.step(format!("DHCP server on {} in {ns}", spec.iface), vec![inside(&ns, &c)]);
        self.ran_in(&ns);
        self.model.dhcp.push((ns, spec));
        Ok(Outcome::Done)
    }

    /// The lease a client would get: the first free address of the first server's range.
    fn dhcp_lease(&mut self, ns: NsRef, iface: String) -> Result<Outcome> {
        self.require_link(&ns, &iface)?;
        let Some((sns, spec)) = self.model.dhcp.first().cloned() else {
            return Err(Error::new(Code::NoLease, format!("no DHCP lease for {iface} in {ns}"))
                .why("no DHCP server in this plan answers")
                .help("start one first with dhcp_server(ns, #{ iface, range, router })"));
        };
        let prefix = self
            .model
            .addrs
            .iter()
            .find(|a| a.ns == sns && a.link == spec.iface && a.addr.contains(IpAddr::V4(spec.first)))
            .map(|a| a.addr.prefix())
            .unwrap_or(24);
        let taken: Vec<IpAddr> = self.model.addrs.iter().map(|a| a.addr.ip()).collect();
        let addr = (u32::from(spec.first)..=u32::from(spec.last))
            .map(std::net::Ipv4Addr::from)
            .find(|a| !taken.contains(&IpAddr::V4(*a)))
            .unwrap_or(spec.first);
        let server = self.model.addrs.iter().find(|a| a.ns == sns && a.link == spec.iface && a.addr.is_ipv4()).map(|a| a.addr.ip());
        self.step(
            format!("DHCP client on {iface} in {ns}: nsscript's own client; the plan assumes the first free lease"),
            vec![format!("# {}", inside(&ns, &format!("dhclient -1 {}", sh_quote(&iface))))],
        );
        let server = match server {
            Some(IpAddr::V4(s)) => Some(s),
            _ => None,
        };
        Ok(Outcome::Lease(Lease {
            addr,
            prefix,
            // Without a router option dnsmasq offers its own address as the router.
            router: spec.router.or(server),
            server,
            dns: spec.dns.iter().map(|d| d.to_string()).collect(),
            lease_secs: Some(3600),
            ms: 0,
        }))
    }
}

impl Backend for PlanBackend {
    fn apply(&mut self, op: Op) -> Result<Outcome> {
        match op {
            Op::CreateNetns { name } => self.create_netns(&name),
            Op::CreateBridge { ns, name } => self.create_bridge(ns, name),
            Op::CreateVeth(spec) => self.create_veth(spec),
            Op::SetLink { ns, name, change } => self.set_link(ns, name, change),
            Op::DeleteLink { ns, name } => self.delete_link(ns, name),
            Op::AddAddr { ns, link, addr } => self.add_addr(ns, link, addr),
            Op::AddRoute { ns, dest, via } => self.add_route(ns, dest, via),
            Op::Sysctl { ns, key, value } => self.sysctl(ns, key, value),
            Op::Exec { ns, cmd } => {
                self.require_ns(&ns)?;
                self.ran_in(&ns);
                self.step(
                    format!("run in {ns} (the script checks the result)"),
                    vec![format!("{} || true", inside(&ns, &command_text(&cmd)))],
                );
                Ok(Outcome::Exec(ExecOutput::default()))
            }
            Op::ExecTimeout { ns, cmd, timeout_ms } => {
                self.require_ns(&ns)?;
                self.ran_in(&ns);
                let secs = f64::from(timeout_ms) / 1000.0;
                self.step(
                    format!("run in {ns} for at most {secs} s"),
                    vec![format!("timeout {secs} {} || true", inside(&ns, &command_text(&cmd)))],
                );
                Ok(Outcome::Exec(ExecOutput::default()))
            }
            Op::Spawn { ns, cmd, listen, wait_ms: _ } => {
                self.require_ns(&ns)?;
                let mut cmds = vec![format!("{} &", inside(&ns, &command_text(&cmd)))];
                if let Some(port) = listen {
                    cmds.push(format!("until {} | grep -q ':{port} '; do sleep 0.1; done", inside(&ns, "ss -Hltn")));
                }
                if ns == NsRef::Host {
                    cmds.insert(1, format!("echo $! >> {}", self.host_pid_file()));
                    self.model.host_background += 1;
                }
                self.ran_in(&ns);
                self.step(format!("start in the background in {ns}"), cmds);
                Ok(Outcome::Spawned { pid: 0 })
            }
            Op::Links { ns } => {
                self.require_ns(&ns)?;
                let links = self
                    .model
                    .links_in(&ns)
                    .into_iter()
                    .map(|l| LinkInfo {
                        name: l.name.clone(),
                        index: l.id as u32 + 1,
                        kind: if l.kind == "loopback" { String::new() } else { l.kind.clone() },
                        up: l.up,
                        state: if l.kind == "loopback" {
                            "UNKNOWN"
                        } else if l.up {
                            "UP"
                        } else {
                            "DOWN"
                        }
                        .to_string(),
                        mtu: l.mtu,
                        mac: l.mac.clone().unwrap_or_default(),
                        master: l.master.clone(),
                    })
                    .collect();
                Ok(Outcome::Links(links))
            }
            Op::Addrs { ns } => {
                self.require_ns(&ns)?;
                let mut addrs: Vec<AddrInfo> = Vec::new();
                if ns != NsRef::Host || self.model.link(&ns, "lo").is_some() {
                    addrs.push(AddrInfo { link: "lo".into(), addr: "127.0.0.1/8".into(), family: 4 });
                }
                addrs.extend(self.model.addrs.iter().filter(|a| a.ns == ns).map(|a| AddrInfo {
                    link: a.link.clone(),
                    addr: a.addr.to_string(),
                    family: family(&a.addr.ip()),
                }));
                Ok(Outcome::Addrs(addrs))
            }
            Op::Routes { ns } => {
                self.require_ns(&ns)?;
                Ok(Outcome::Routes(self.model.routes_in(&ns)))
            }
            Op::VethPeer { ns, name } => {
                let l = self.require_link(&ns, &name)?;
                match l.peer.and_then(|p| self.model.by_id(p)) {
                    Some(p) => Ok(Outcome::Link { ns: p.ns.clone(), name: p.name.clone() }),
                    None => Err(Error::new(Code::NoPeer, format!("cannot find the peer of {name:?} in {ns}"))
                        .why(format!("it is a {} link, not a veth", l.kind))
                        .help(".peer() works on veth links")),
                }
            }
            Op::CreateLink(spec) => self.create_link(spec),
            Op::FdbAppend { ns, link, mac, dst } => {
                self.require_link(&ns, &link)?;
                let m = mac_text(&mac);
                self.model.fdb.push((
                    ns.clone(),
                    FdbEntry {
                        mac: m.clone(),
                        dev: link.clone(),
                        master: None,
                        dst: Some(dst.to_string()),
                        vlan: None,
                        vni: None,
                        state: "permanent".into(),
                        is_self: true,
                    },
                ));
                self.step(
                    format!("forwarding entry on {link} in {ns}"),
                    vec![inside(&ns, &format!("bridge fdb append {m} dev {} dst {dst}", sh_quote(&link)))],
                );
                Ok(Outcome::Done)
            }
            Op::Fdb { ns } => {
                self.require_ns(&ns)?;
                Ok(Outcome::Fdb(self.model.fdb.iter().filter(|(n, _)| n == &ns).map(|(_, e)| e.clone()).collect()))
            }
            Op::Shape { ns, link, shape } => self.shape(ns, link, shape),
            Op::BridgeVlanFiltering { ns, bridge, on } => {
                self.require_link(&ns, &bridge)?;
                self.step(
                    format!("VLAN filtering on {bridge}"),
                    vec![format!("{} link set {} type bridge vlan_filtering {}", ip(&ns), sh_quote(&bridge), u8::from(on))],
                );
                Ok(Outcome::Done)
            }
            Op::BridgeVlan { ns, port, vid, pvid, untagged } => {
                self.require_link(&ns, &port)?;
                let flags = format!("{}{}", if pvid { " pvid" } else { "" }, if untagged { " untagged" } else { "" });
                self.more(vec![inside(&ns, &format!("bridge vlan add vid {vid} dev {}{flags}", sh_quote(&port)))]);
                Ok(Outcome::Done)
            }
            Op::Fw { ns, op } => self.fw(ns, op),
            Op::DhcpServer { ns, spec } => self.dhcp_server(ns, spec),
            Op::DhcpLease { ns, iface, timeout_ms: _ } => self.dhcp_lease(ns, iface),
            Op::Ping { ns, addr, spec } => {
                self.require_ns(&ns)?;
                let ok = self.model.reaches(&ns, addr);
                let words = if ok { "an answer" } else { "no answer" };
                self.step(format!("ping {addr} from {ns} (the plan expects {words})"), vec![planned_ping(&ns, addr, ok)]);
                let received = if ok { spec.count.max(1) } else { 0 };
                Ok(Outcome::Ping(PingResult { sent: spec.count.max(1), received, rtt_ms: ok.then_some(0.0), waited_ms: 0 }))
            }
            Op::PingAll(spec) => {
                let mut rtt_ms = Vec::new();
                let mut lines = Vec::new();
                for (i, src) in spec.nodes.iter().enumerate() {
                    self.require_ns(&src.ns)?;
                    let mut row = Vec::new();
                    for (j, dst) in spec.nodes.iter().enumerate() {
                        let ok = i != j && self.model.reaches(&src.ns, dst.addr);
                        if i != j {
                            lines.push(planned_ping(&src.ns, dst.addr, ok));
                        }
                        row.push(ok.then_some(0.0));
                    }
                    rtt_ms.push(row);
                }
                let answered = rtt_ms.iter().flatten().filter(|r| r.is_some()).count();
                let pairs = spec.nodes.len() * spec.nodes.len().saturating_sub(1);
                self.step(
                    format!("pingall: {} nodes, every ordered pair (the plan expects answers in {answered} of {pairs})", spec.nodes.len()),
                    lines,
                );
                Ok(Outcome::PingAll(crate::op::PingAllResult { rtt_ms, elapsed_ms: 0.0 }))
            }
        }
    }

    fn lab_name(&self) -> String {
        self.lab.clone()
    }

    fn checks_are_advisory(&self) -> bool {
        true
    }

    fn set_lab_name(&mut self, name: &str) -> Result<()> {
        crate::lab::validate_lab_name(name)?;
        if !self.steps.is_empty() {
            return Err(Error::new(Code::LateLabName, format!("cannot rename lab {:?} to {name:?}", self.lab))
                .why("it has already created objects")
                .help("call lab(\"NAME\") at the top of the script, before anything is created"));
        }
        self.lab = name.to_string();
        Ok(())
    }
}
