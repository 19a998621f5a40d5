//! The plan's model of a lab: what the walkthrough builds, kept so that queries answer
//! from it and a reachability check can be judged without running anything.

use crate::ops::address::AddAddr;
use crate::ops::firewall::{Carried, Chain, FilterRule, ProbePacket, Rule, SourceNat};
use crate::ops::qdisc::{handle_text, Htb, Qdisc, QdiscInfo};
use crate::ops::query::{family, AddrInfo, FdbEntry, RouteInfo, Tables};
use crate::ops::route::{AddRoute, RouteAnswer, RouteQuery, RouteVia, TABLE_LOCAL, TABLE_MAIN};
use crate::ops::rule::{kernel_rules, selector, AddRule, RuleInfo};
use crate::ops::NsRef;
use ipnetwork::IpNetwork;
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
    /// A bridge running STP.
    pub stp: bool,
}

/// An iptables rule in the model, with what it means to a packet if the plan knows:
/// to its source (the typed NAT ops) or whether it passes (the typed filter ops). Raw
/// rules are not simulated: a packet that meets one in a filter chain has a fate the
/// plan cannot tell.
#[derive(Clone, Debug, PartialEq)]
pub struct PRule {
    pub ns: NsRef,
    pub rule: Rule,
    pub source_nat: Option<SourceNat>,
    pub filter: Option<FilterRule>,
}

/// What the model says of a ping.
#[derive(Clone, Debug, PartialEq)]
pub enum Reach {
    Yes,
    /// No answer, and why (None: no way there or back by the routes).
    No(Option<String>),
    /// It depends on what the model does not simulate (a raw iptables rule...): why.
    Unknown(String),
}

/// How far a packet got: there (with the source address the far end sees, and the
/// source NATs on the way as (namespace, before, after)), or stopped.
enum Trip {
    There(IpAddr, Vec<(NsRef, IpAddr, IpAddr)>),
    Lost,
    Dropped(String),
    Unknown(String),
}

/// A filter chain's verdict on a packet.
enum Verdict {
    Pass,
    Dropped(String),
    Unknown(String),
}

/// A link's root qdisc as the script set it.
#[derive(Clone, Debug, PartialEq)]
pub enum RootQdisc {
    Shape(Qdisc),
    Htb(Htb),
}

/// What the lab holds once the script has run.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Named namespaces, in creation order.
    pub netns: Vec<String>,
    pub links: Vec<PLink>,
    pub addrs: Vec<AddAddr>,
    pub routes: Vec<AddRoute>,
    /// Policy rules the script added, each with its priority (the kernel's when the
    /// script gave none), in the order the kernel keeps them.
    pub ip_rules: Vec<AddRule>,
    pub sysctls: Vec<(NsRef, String, String)>,
    pub fdb: Vec<(NsRef, FdbEntry)>,
    pub rules: Vec<PRule>,
    /// Chain policies set, as (namespace, table, chain, policy).
    pub policies: Vec<(NsRef, String, String, String)>,
    /// The root qdiscs the script gave links: (namespace, link, qdisc).
    pub qdiscs: Vec<(NsRef, String, RootQdisc)>,
    /// Addresses the kernel forms from router advertisements (also in `addrs`): no
    /// command of the plan adds them.
    pub slaac: Vec<AddAddr>,
    /// Chains of the lab's own (`-N`), as (namespace, table, chain).
    pub chains: Vec<(NsRef, String, String)>,
    /// The lab's dnsmasqs (DHCP, relays, DNS, router advertisements).
    pub services: Vec<super::PService>,
    /// The DNS servers the DHCP leases named, by namespace (resolve's default).
    pub leased_dns: Vec<(NsRef, Vec<IpAddr>)>,
    /// Namespaces in which the plan runs or starts programs (exec, spawn, dnsmasq): some
    /// may still run when the lab is taken down.
    pub ran_in: Vec<NsRef>,
    /// Programs started in the background in the host's namespace (spawn).
    pub host_background: usize,
    next_id: usize,
}

impl Model {
    pub fn new() -> Self {
        let mut m = Model::default();
        m.add_link(NsRef::Host, "lo", "loopback", true, 65536);
        m
    }

    pub fn add_link(&mut self, ns: NsRef, name: &str, kind: &str, up: bool, mtu: u32) -> usize {
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
            stp: false,
        });
        id
    }

    pub fn link(&self, ns: &NsRef, name: &str) -> Option<&PLink> {
        self.links.iter().find(|l| &l.ns == ns && l.name == name)
    }

    pub fn link_mut(&mut self, ns: &NsRef, name: &str) -> Option<&mut PLink> {
        self.links.iter_mut().find(|l| &l.ns == ns && l.name == name)
    }

    pub fn by_id(&self, id: usize) -> Option<&PLink> {
        self.links.iter().find(|l| l.id == id)
    }

    pub fn by_id_mut(&mut self, id: usize) -> Option<&mut PLink> {
        self.links.iter_mut().find(|l| l.id == id)
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

    /// The addresses of ns as a query answers them (those SLAAC forms are dynamic).
    pub fn addrs_in(&self, ns: &NsRef) -> Vec<AddrInfo> {
        self.addrs
            .iter()
            .filter(|a| &a.ns == ns)
            .map(|a| AddrInfo { dynamic: self.slaac.contains(a), ..AddrInfo::permanent(&a.link, a.addr) })
            .collect()
    }

    pub fn addrs_of(&self, ns: &NsRef, link: &str) -> Vec<IpNetwork> {
        self.addrs.iter().filter(|a| &a.ns == ns && a.link == link).map(|a| a.addr).collect()
    }

    /// The chain's policy as the lab left it (ACCEPT unless it set another).
    pub fn policy(&self, ns: &NsRef, table: &str, chain: &str) -> &str {
        self.policies.iter().rev().find(|(n, t, c, _)| n == ns && t == table && c == chain).map(|(.., p)| p.as_str()).unwrap_or("ACCEPT")
    }

    /// The main table: connected routes (of up links with addresses) and the routes the
    /// script added there.
    pub fn routes_in(&self, ns: &NsRef) -> Vec<RouteInfo> {
        self.routes_of(ns, Tables::One(TABLE_MAIN))
    }

    /// The routes of `tables`, as the kernel lists them (connected routes in main, with
    /// their source address; IPv6 ones with metric 256).
    pub fn routes_of(&self, ns: &NsRef, tables: Tables) -> Vec<RouteInfo> {
        let mut out = Vec::new();
        for a in self.addrs.iter().filter(|a| &a.ns == ns && tables.holds(TABLE_MAIN)) {
            if self.link(ns, &a.link).is_some_and(|l| l.up) && a.addr.prefix() < if a.addr.is_ipv4() { 32 } else { 128 } {
                let net = IpNetwork::new(a.addr.network(), a.addr.prefix()).unwrap_or(a.addr);
                out.push(RouteInfo {
                    dest: net.to_string(),
                    via: None,
                    dev: Some(a.link.clone()),
                    family: family(&a.addr.ip()),
                    table: TABLE_MAIN,
                    metric: if a.addr.is_ipv4() { 0 } else { 256 },
                    src: a.addr.is_ipv4().then(|| a.addr.ip().to_string()),
                });
            }
        }
        for r in self.routes.iter().filter(|r| &r.ns == ns && tables.holds(r.table_id())) {
            let (via, dev) = match &r.via {
                RouteVia::Gateway(gw) => (Some(gw.to_string()), r.dev.clone().or_else(|| self.dev_for(ns, gw))),
                RouteVia::Device(d) => (None, Some(d.clone())),
            };
            out.push(RouteInfo {
                dest: r.dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into()),
                via,
                dev,
                family: if r.is_ipv6() { 6 } else { 4 },
                table: r.table_id(),
                metric: r.metric_or_default(),
                src: r.src.map(|s| s.to_string()),
            });
        }
        out
    }

    /// The route of `table` for `dst`: the longest prefix, then the lowest metric.
    fn pick(&self, ns: &NsRef, table: u32, dst: IpAddr) -> Option<RouteInfo> {
        let mut best: Option<(u8, u32, RouteInfo)> = None;
        for r in self.routes_of(ns, Tables::One(table)) {
            if r.family != family(&dst) {
                continue;
            }
            let prefix = if r.dest == "default" {
                0
            } else {
                match r.dest.parse::<IpNetwork>() {
                    Ok(n) if n.contains(dst) => n.prefix(),
                    _ => continue,
                }
            };
            if best.as_ref().is_none_or(|(p, m, _)| prefix > *p || (prefix == *p && r.metric < *m)) {
                best = Some((prefix, r.metric, r));
            }
        }
        best.map(|(_, _, r)| r)
    }

    /// What `ip route get` would answer in ns, from the model; Err(errno) as the kernel
    /// refuses.
    pub fn route_get(&self, ns: &NsRef, q: &RouteQuery) -> Result<RouteAnswer, i32> {
        if self.addrs.iter().any(|a| &a.ns == ns && a.addr.ip() == q.dst) {
            // Until a namespace has rules of its own, the kernel keeps IPv4's local table
            // merged into main, and says main.
            let table = if q.dst.is_ipv4() && !self.has_own_rules(ns, 4) { TABLE_MAIN } else { TABLE_LOCAL };
            return Ok(RouteAnswer { dev: Some("lo".into()), via: None, src: Some(q.dst), table });
        }
        if q.iif.is_some() && !self.forwards(ns) {
            return Err(libc::EHOSTUNREACH);
        }
        let iif = q.iif.as_deref().unwrap_or("lo");
        let (table, r) = self.route_for(ns, q.dst, q.from, iif, q.fwmark.unwrap_or(0)).ok_or(libc::ENETUNREACH)?;
        let dev = r.dev.clone();
        let src = r.src.as_deref().and_then(|s| s.parse().ok()).or(q.from).or_else(|| {
            let dev = dev.as_deref()?;
            self.addrs.iter().find(|a| &a.ns == ns && a.link == dev && a.addr.is_ipv4() == q.dst.is_ipv4()).map(|a| a.addr.ip())
        });
        Ok(RouteAnswer { dev, via: r.via.as_deref().and_then(|v| v.parse().ok()), src, table })
    }

    /// Whether ns has policy rules beyond the kernel's own (of family 4 or 6).
    fn has_own_rules(&self, ns: &NsRef, family: u8) -> bool {
        self.ip_rules.iter().any(|r| &r.ns == ns && r.family() == family)
    }

    /// The rules of ns of one family in the order they apply: the kernel's own and the
    /// script's, each as (pref, rule).
    fn rules_of(&self, ns: &NsRef, v6: bool) -> Vec<AddRule> {
        let own = kernel_rules(v6).iter().map(|(pref, table)| AddRule {
            ns: ns.clone(),
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            table: *table,
            pref: Some(*pref),
        });
        let mut all: Vec<AddRule> = own.chain(self.ip_rules.iter().filter(|r| &r.ns == ns && r.is_ipv6() == v6).cloned()).collect();
        // Stable: a rule goes after those of its priority that came before it.
        all.sort_by_key(|r| r.pref.unwrap_or(0));
        all
    }

    /// The priority the kernel gives a rule added without one: one less than that of
    /// the second rule of its family (the one after the local rule).
    pub fn next_rule_pref(&self, ns: &NsRef, v6: bool) -> u32 {
        self.rules_of(ns, v6).get(1).and_then(|r| r.pref).filter(|p| *p > 0).map(|p| p - 1).unwrap_or(0)
    }

    /// `rules(ns)` from the model, both families.
    pub fn rule_infos(&self, ns: &NsRef) -> Vec<RuleInfo> {
        [false, true]
            .into_iter()
            .flat_map(|v6| self.rules_of(ns, v6))
            .map(|r| RuleInfo {
                family: r.family(),
                pref: r.pref.unwrap_or(0),
                from: selector(r.from),
                to: selector(r.to),
                iif: r.iif.clone(),
                oif: r.oif.clone(),
                fwmark: r.fwmark,
                table: r.table,
            })
            .collect()
    }

    /// The table and route a packet takes: the rules in order, and in the first table
    /// they lead to that has a route, that route. `src` None: ns sends it and has not
    /// chosen a source yet; `iif` "lo" for what ns sends itself.
    fn route_for(&self, ns: &NsRef, dst: IpAddr, src: Option<IpAddr>, iif: &str, mark: u32) -> Option<(u32, RouteInfo)> {
        self.rules_of(ns, dst.is_ipv6())
            .iter()
            .filter(|r| r.matches(src, dst, iif, None, mark))
            .find_map(|r| self.pick(ns, r.table, dst).map(|route| (r.table, route)))
    }

    /// `qdiscs(ns)` from the model: each link's root qdisc (noqueue, or noop while it was
    /// never up, unless the script set one) and the classes of its HTB.
    pub fn qdisc_infos(&self, ns: &NsRef) -> Vec<QdiscInfo> {
        let mut out = Vec::new();
        for l in self.links_in(ns) {
            let info = |kind: &str, handle: String, parent: &str, class: bool, rate, ceil| QdiscInfo {
                link: l.name.clone(),
                kind: kind.into(),
                handle,
                parent: parent.into(),
                class,
                rate,
                ceil,
            };
            match self.qdiscs.iter().find(|(n, name, _)| n == ns && *name == l.name).map(|(_, _, q)| q) {
                None => out.push(info(if l.up { "noqueue" } else { "noop" }, "0:".into(), "root", false, None, None)),
                Some(RootQdisc::Shape(q)) => {
                    let rate = match q {
                        Qdisc::Tbf(t) => Some(t.rate_bits),
                        Qdisc::Netem(_) => None,
                    };
                    out.push(info(q.kind(), "1:".into(), "root", false, rate, None));
                }
                Some(RootQdisc::Htb(h)) => {
                    out.push(info("htb", "1:".into(), "root", false, None, None));
                    for c in &h.classes {
                        let parent = handle_text(1, c.parent);
                        out.push(info("htb", handle_text(1, c.minor), &parent, true, Some(c.rate_bits), Some(c.ceil_bits)));
                    }
                }
            }
        }
        out
    }

    /// The link whose subnet holds `gw`.
    pub fn dev_for(&self, ns: &NsRef, gw: &IpAddr) -> Option<String> {
        self.addrs.iter().find(|a| &a.ns == ns && a.addr.contains(*gw)).map(|a| a.link.clone())
    }

    /// Which namespace holds `ip` as an interface address.
    pub fn owner_of(&self, ip: &IpAddr) -> Option<(&NsRef, &str)> {
        self.addrs.iter().find(|a| a.addr.ip() == *ip).map(|a| (&a.ns, a.link.as_str()))
    }

    pub fn remove_link(&mut self, id: usize) {
        let Some(l) = self.by_id(id).cloned() else { return };
        self.links.retain(|x| x.id != id);
        self.qdiscs.retain(|(ns, name, _)| !(*ns == l.ns && *name == l.name));
        self.addrs.retain(|a| !(a.ns == l.ns && a.link == l.name));
        self.routes.retain(|r| !(r.ns == l.ns && r.via == RouteVia::Device(l.name.clone())));
        for other in self.links.iter_mut().filter(|x| x.ns == l.ns && x.master.as_deref() == Some(&l.name)) {
            other.master = None;
        }
    }

    /// The next hop from ns for a packet that arrived on `iif` ("lo": ns sends it):
    /// (gateway, device).
    fn lookup(&self, ns: &NsRef, dst: IpAddr, src: Option<IpAddr>, iif: &str) -> Option<(Option<IpAddr>, Option<String>)> {
        let (_, r) = self.route_for(ns, dst, src, iif, 0)?;
        Some((r.via.as_deref().and_then(|v| v.parse().ok()), r.dev))
    }

    fn forwards(&self, ns: &NsRef) -> bool {
        self.sysctls.iter().any(|(n, k, v)| n == ns && k == "net.ipv4.ip_forward" && v == "1")
    }

    fn sysctl(&self, ns: &NsRef, key: &str) -> Option<&str> {
        self.sysctls.iter().rev().find(|(n, k, _)| n == ns && k == key).map(|(.., v)| v.as_str())
    }

    /// A rule, appended, or inserted at `pos` (1-based) of its chain as `-I` does.
    pub fn add_rule(&mut self, rule: PRule, pos: Option<u32>) {
        let same_chain = |r: &PRule| {
            r.ns == rule.ns && r.rule.table == rule.rule.table && r.rule.chain == rule.rule.chain && r.rule.ipv6 == rule.rule.ipv6
        };
        let at = pos
            .and_then(|p| self.rules.iter().enumerate().filter(|(_, r)| same_chain(r)).nth(p.saturating_sub(1) as usize).map(|(i, _)| i));
        match at {
            Some(i) => self.rules.insert(i, rule),
            None => self.rules.push(rule),
        }
    }

    /// What the filter chain of ns does to a probe's packet: its rules in order, then
    /// its policy. A raw rule on the way, or one whose match turns on a port the plan
    /// cannot know, makes the verdict unknown.
    fn filter(&self, ns: &NsRef, chain: Chain, p: &ProbePacket) -> Verdict {
        let v6 = p.dst.is_ipv6();
        for r in self.rules.iter().filter(|r| &r.ns == ns && r.rule.table == "filter" && r.rule.chain == chain.name() && r.rule.ipv6 == v6)
        {
            let Some(f) = &r.filter else {
                return Verdict::Unknown(format!("{} in {ns} is a rule the plan does not simulate", r.rule.describe()));
            };
            match f.matches(p) {
                Some(true) => {
                    return match f.action {
                        crate::ops::firewall::Action::Accept => Verdict::Pass,
                        _ => Verdict::Dropped(format!("{} in {ns} drops it", r.rule.describe())),
                    };
                }
                Some(false) => {}
                None => {
                    return Verdict::Unknown(format!("{} in {ns} matches on a port the kernel picks when the lab runs", r.rule.describe()))
                }
            }
        }
        // ip6tables policies are never set by a lab (policy() and iptables() are IPv4).
        if !v6 && self.policy(ns, "filter", chain.name()) == "DROP" {
            return Verdict::Dropped(format!("the {} policy of {ns} is DROP", chain.name()));
        }
        Verdict::Pass
    }

    /// The bridge a frame from `dev` in ns crosses to reach `to` (a link in another
    /// place), if any: (the bridge's namespace, the bridge). A frame sent by the bridge
    /// device itself, or for the bridge's own address, is not bridged.
    fn bridge_between(&self, ns: &NsRef, dev: &str, to: (&NsRef, &str)) -> Option<(NsRef, String)> {
        let out = self.link(ns, dev)?;
        let port = out.peer.and_then(|p| self.by_id(p))?;
        let br = port.master.clone()?;
        (to != (&port.ns, br.as_str())).then(|| (port.ns.clone(), br))
    }

    /// A bridged frame meets the FORWARD chain of the bridge's namespace (-i BR -o BR)
    /// when br_netfilter is loaded there (net.bridge.bridge-nf-call-iptables is 1): the
    /// plan knows only what the lab set.
    fn bridged(&self, (ns, br): (NsRef, String), p: &ProbePacket) -> Verdict {
        let key = if p.dst.is_ipv6() { "net.bridge.bridge-nf-call-ip6tables" } else { "net.bridge.bridge-nf-call-iptables" };
        let call = self.sysctl(&ns, key);
        if call == Some("0") {
            return Verdict::Pass;
        }
        let at_bridge = ProbePacket { iif: Some(&br), oif: Some(&br), ..*p };
        match self.filter(&ns, Chain::Forward, &at_bridge) {
            Verdict::Dropped(why) if call != Some("1") => {
                Verdict::Unknown(format!("bridged through {br}, where {why} if br_netfilter is loaded ({key} is 1 there)"))
            }
            v => v,
        }
    }

    /// Follow routes from ns (source address src) to dst, hop by hop, through the filter
    /// chains (OUTPUT where it starts, FORWARD where it is routed or bridged, INPUT where
    /// it arrives), applying source NAT on the way. A reply (`reply`) is conntrack's
    /// ESTABLISHED, and the NAT of its request (`nats`) is undone where it was done.
    fn deliver(
        &self,
        from: &NsRef,
        mut src: Option<IpAddr>,
        mut dst: IpAddr,
        (reply, carried): (bool, Carried),
        nats: &[(NsRef, IpAddr, IpAddr)],
    ) -> Trip {
        let mut cur = from.clone();
        let mut came_in: Option<String> = None;
        let mut done = Vec::new();
        macro_rules! pass {
            ($v:expr) => {
                match $v {
                    Verdict::Pass => {}
                    Verdict::Dropped(why) => return Trip::Dropped(why),
                    Verdict::Unknown(why) => return Trip::Unknown(why),
                }
            };
        }
        for hop in 0..16 {
            let origin = hop == 0;
            if !origin {
                if let Some((_, before, _)) = nats.iter().find(|(n, _, after)| *n == cur && *after == dst) {
                    dst = *before;
                }
            }
            if self.addrs.iter().any(|a| a.ns == cur && a.addr.ip() == dst) || (origin && dst.is_loopback()) {
                let seen = src.unwrap_or(dst);
                let p = ProbePacket { src: seen, dst, iif: came_in.as_deref(), oif: None, reply, carried };
                if origin {
                    pass!(self.filter(&cur, Chain::Output, &ProbePacket { iif: None, oif: Some("lo"), ..p }));
                    pass!(self.filter(&cur, Chain::Input, &ProbePacket { iif: Some("lo"), ..p }));
                } else {
                    pass!(self.filter(&cur, Chain::Input, &p));
                }
                return Trip::There(seen, done);
            }
            let Some((via, Some(dev))) = self.lookup(&cur, dst, src, came_in.as_deref().unwrap_or("lo")) else { return Trip::Lost };
            if src.is_none() {
                src = self.addrs.iter().find(|a| a.ns == cur && a.link == dev && a.addr.is_ipv4() == dst.is_ipv4()).map(|a| a.addr.ip());
            }
            let Some(s) = src else { return Trip::Lost };
            let p = ProbePacket { src: s, dst, iif: if origin { None } else { came_in.as_deref() }, oif: Some(&dev), reply, carried };
            pass!(self.filter(&cur, if origin { Chain::Output } else { Chain::Forward }, &p));
            let next = via.unwrap_or(dst);
            let Some((next_ns, next_link)) = self.owner_of(&next) else { return Trip::Lost };
            if *next_ns == cur {
                return Trip::Lost;
            }
            if let Some(bridge) = self.bridge_between(&cur, &dev, (next_ns, next_link)) {
                pass!(self.bridged(bridge, &p));
            }
            // Source NAT on the way out of dev (POSTROUTING, after the filter): the first
            // rule that applies. A reply's source is conntrack's business, not the rules'.
            if !reply {
                if let Some(nat) =
                    self.rules.iter().filter(|r| r.ns == cur).filter_map(|r| r.source_nat.as_ref()).find(|n| n.applies(s, dst, &dev))
                {
                    let to = match nat.to {
                        Some(to) => Some(IpAddr::V4(to)),
                        None => self.addrs.iter().find(|a| a.ns == cur && a.link == dev && a.addr.is_ipv4()).map(|a| a.addr.ip()),
                    };
                    if let Some(to) = to.filter(|t| *t != s) {
                        done.push((cur.clone(), s, to));
                        src = Some(to);
                    }
                }
            }
            came_in = Some(next_link.to_string());
            cur = next_ns.clone();
        }
        Trip::Lost
    }

    /// Whether a probe from ns to dst (a ping, or a TCP or UDP exchange with a port)
    /// would be answered, judged from the model: there and back by the routes, through
    /// namespaces that forward, with source NAT, and through the filter rules the lab
    /// added with the typed ops (the request is a new connection, the reply an
    /// established one). Whether a server listens there is not the model's to say.
    pub fn reaches(&self, ns: &NsRef, dst: IpAddr, carried: Carried) -> Reach {
        let back = |trip: Trip| match trip {
            Trip::There(..) => Reach::Yes,
            Trip::Lost => Reach::No(None),
            Trip::Dropped(why) => Reach::No(Some(why)),
            Trip::Unknown(why) => Reach::Unknown(why),
        };
        let (seen_src, nats) = match self.deliver(ns, None, dst, (false, carried), &[]) {
            Trip::There(seen, nats) => (seen, nats),
            other => return back(other),
        };
        let dst_ns = if dst.is_loopback() {
            ns.clone()
        } else {
            match self.owner_of(&dst) {
                Some((n, _)) => n.clone(),
                None => return Reach::No(None),
            }
        };
        back(self.deliver(&dst_ns, Some(dst), seen_src, (true, carried), &nats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::firewall::{parse, Action, CtState, FilterRule, FwOp};

    /// client (10.1.0.2) -- rt (10.1.0.1 | 10.2.0.1, forwards) -- server (10.2.0.2),
    /// and a bridge br0 in rt with two namespaces on it (10.3.0.2, 10.3.0.3).
    fn lab() -> Model {
        let mut m = Model::new();
        let ns = |n: &str| NsRef::named(n);
        for n in ["client", "rt", "server", "p1", "p2"] {
            m.netns.push(n.into());
        }
        let pair = |m: &mut Model, a: (&str, &str, &str), b: (&str, &str, &str)| {
            let x = m.add_link(ns(a.0), a.1, "veth", true, 1500);
            let y = m.add_link(ns(b.0), b.1, "veth", true, 1500);
            m.by_id_mut(x).unwrap().peer = Some(y);
            m.by_id_mut(y).unwrap().peer = Some(x);
            for (n, link, addr) in [a, b] {
                if !addr.is_empty() {
                    m.addrs.push(AddAddr { ns: ns(n), link: link.into(), addr: addr.parse().unwrap() });
                }
            }
            (x, y)
        };
        pair(&mut m, ("client", "eth0", "10.1.0.2/24"), ("rt", "eth0", "10.1.0.1/24"));
        pair(&mut m, ("server", "eth0", "10.2.0.2/24"), ("rt", "eth1", "10.2.0.1/24"));
        m.add_link(ns("rt"), "br0", "bridge", true, 1500);
        m.addrs.push(AddAddr { ns: ns("rt"), link: "br0".into(), addr: "10.3.0.1/24".parse().unwrap() });
        for (i, p) in ["p1", "p2"].iter().enumerate() {
            let (_, port) = pair(&mut m, (p, "eth0", &format!("10.3.0.{}/24", i + 2)), ("rt", &format!("{p}-port"), ""));
            m.by_id_mut(port).unwrap().master = Some("br0".into());
        }
        for (n, gw) in [("client", "10.1.0.1"), ("server", "10.2.0.1")] {
            m.routes.push(AddRoute::new(ns(n), None, RouteVia::Gateway(gw.parse().unwrap())));
        }
        m.sysctls.push((ns("rt"), "net.ipv4.ip_forward".into(), "1".into()));
        m
    }

    fn fw(m: &mut Model, ns: &str, op: FwOp) {
        let op = crate::ops::firewall::Firewall { ns: NsRef::named(ns), op };
        for rule in op.rules().unwrap_or_default() {
            m.add_rule(PRule { ns: op.ns.clone(), rule, source_nat: op.source_nat(), filter: op.filter() }, None);
        }
        if let FwOp::Policy { table, chain, policy } = &op.op {
            m.policies.push((op.ns.clone(), table.clone(), chain.clone(), policy.clone()));
        }
    }

    fn reach(m: &Model, from: &str, to: &str) -> Reach {
        m.reaches(&NsRef::named(from), to.parse().unwrap(), Carried::Ping)
    }

    #[test]
    fn forward_drop_and_accept_rules_decide_a_routed_ping() {
        let mut m = lab();
        assert_eq!(reach(&m, "client", "10.2.0.2"), Reach::Yes);
        fw(&mut m, "rt", parse("-P FORWARD DROP").unwrap());
        assert!(matches!(reach(&m, "client", "10.2.0.2"), Reach::No(Some(why)) if why.contains("FORWARD policy of namespace rt is DROP")));
        // The router's own address is INPUT, not FORWARD.
        assert_eq!(reach(&m, "client", "10.1.0.1"), Reach::Yes);
        let accept = |iif: &str| FilterRule { iif: Some(iif.into()), ..FilterRule::new(Chain::Forward, Action::Accept) };
        fw(&mut m, "rt", FwOp::Filter(accept("eth0")));
        // The request passes, the reply (in by eth1) does not.
        assert!(matches!(reach(&m, "client", "10.2.0.2"), Reach::No(Some(_))));
        fw(&mut m, "rt", FwOp::Filter(FilterRule { state: vec![CtState::Established], ..FilterRule::new(Chain::Forward, Action::Accept) }));
        assert_eq!(reach(&m, "client", "10.2.0.2"), Reach::Yes);
        // The far side may not start a connection.
        assert!(matches!(reach(&m, "server", "10.1.0.2"), Reach::No(Some(_))));
    }

    #[test]
    fn a_stateful_host_answers_nobody_but_gets_its_replies() {
        let mut m = lab();
        fw(&mut m, "server", parse("-P INPUT DROP").unwrap());
        fw(
            &mut m,
            "server",
            FwOp::Filter(FilterRule {
                state: vec![CtState::Established, CtState::Related],
                ..FilterRule::new(Chain::Input, Action::Accept)
            }),
        );
        assert!(matches!(reach(&m, "client", "10.2.0.2"), Reach::No(Some(_))));
        assert_eq!(reach(&m, "server", "10.1.0.2"), Reach::Yes);
        assert!(matches!(reach(&m, "server", "127.0.0.1"), Reach::No(Some(_))), "lo is dropped too, until the lab lets it in");
        fw(&mut m, "server", FwOp::Filter(FilterRule { iif: Some("lo".into()), ..FilterRule::new(Chain::Input, Action::Accept) }));
        assert_eq!(reach(&m, "server", "127.0.0.1"), Reach::Yes);
    }

    #[test]
    fn what_the_model_does_not_simulate_it_does_not_claim() {
        let mut m = lab();
        fw(&mut m, "rt", parse("-A FORWARD -m length --length 0:100 -j DROP").unwrap());
        assert!(matches!(reach(&m, "client", "10.2.0.2"), Reach::Unknown(why) if why.contains("--length")));
        // Bridged traffic meets rt's FORWARD chain only with br_netfilter.
        let mut m = lab();
        assert_eq!(reach(&m, "p1", "10.3.0.3"), Reach::Yes);
        fw(&mut m, "rt", parse("-P FORWARD DROP").unwrap());
        assert!(matches!(reach(&m, "p1", "10.3.0.3"), Reach::Unknown(why) if why.contains("br_netfilter")));
        assert_eq!(reach(&m, "p1", "10.3.0.1"), Reach::Yes, "the bridge's own address is not bridged");
        m.sysctls.push((NsRef::named("rt"), "net.bridge.bridge-nf-call-iptables".into(), "1".into()));
        assert!(matches!(reach(&m, "p1", "10.3.0.3"), Reach::No(Some(_))));
        fw(
            &mut m,
            "rt",
            FwOp::ForwardAccept(crate::ops::firewall::ForwardAccept {
                iif: Some("br0".into()),
                oif: Some("br0".into()),
                src: None,
                dst: None,
            }),
        );
        assert_eq!(reach(&m, "p1", "10.3.0.3"), Reach::Yes);
    }

    #[test]
    fn a_reply_to_a_natted_request_is_undone_by_the_router_and_filtered_as_forwarded() {
        let mut m = lab();
        // The server knows no way back to the client's network: only the SNAT gets it there.
        m.routes.retain(|r| r.ns != NsRef::named("server"));
        assert_eq!(reach(&m, "client", "10.2.0.2"), Reach::No(None));
        fw(&mut m, "rt", parse("-t nat -A POSTROUTING -s 10.1.0.0/24 -j MASQUERADE").unwrap());
        assert!(matches!(reach(&m, "client", "10.2.0.2"), Reach::No(None)), "a raw rule has no NAT meaning");
        fw(
            &mut m,
            "rt",
            FwOp::Masquerade(crate::ops::firewall::Masquerade { src: "10.1.0.0/24".parse().unwrap(), out: "eth1".into(), not_dst: None }),
        );
        assert_eq!(reach(&m, "client", "10.2.0.2"), Reach::Yes);
        // The router drops in INPUT: the reply is forwarded, not delivered, so it passes.
        fw(&mut m, "rt", parse("-P INPUT DROP").unwrap());
        assert_eq!(reach(&m, "client", "10.2.0.2"), Reach::Yes);
    }
}
