//! The plan's model of a lab: what the walkthrough builds, kept so that queries answer
//! from it and a reachability check can be judged without running anything.

use crate::ops::address::AddAddr;
use crate::ops::dhcp::DhcpServer;
use crate::ops::firewall::{Rule, SourceNat};
use crate::ops::qdisc::{handle_text, Htb, Qdisc, QdiscInfo};
use crate::ops::query::{family, FdbEntry, RouteInfo, Tables};
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

/// An iptables rule in the model, with what it means to a packet's source if the
/// plan knows (rules from the typed NAT ops; raw rules are not simulated).
#[derive(Clone, Debug, PartialEq)]
pub struct PRule {
    pub ns: NsRef,
    pub rule: Rule,
    pub source_nat: Option<SourceNat>,
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
    pub dhcp: Vec<DhcpServer>,
    /// The root qdiscs the script gave links: (namespace, link, qdisc).
    pub qdiscs: Vec<(NsRef, String, RootQdisc)>,
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

    /// Follow routes from ns (source address src) to dst, hop by hop, applying source NAT
    /// on the way. Some(the source address dst sees) when it gets there.
    fn deliver(&self, from: &NsRef, mut src: Option<IpAddr>, dst: IpAddr) -> Option<IpAddr> {
        let mut cur = from.clone();
        let mut iif = "lo".to_string();
        for hop in 0..16 {
            if self.addrs.iter().any(|a| a.ns == cur && a.addr.ip() == dst) || (dst.is_loopback() && hop == 0) {
                return src.or(Some(dst));
            }
            if hop > 0 && !self.forwards(&cur) {
                return None;
            }
            let (via, dev) = self.lookup(&cur, dst, src, &iif)?;
            let dev = dev?;
            if src.is_none() {
                src = self.addrs.iter().find(|a| a.ns == cur && a.link == dev && a.addr.is_ipv4() == dst.is_ipv4()).map(|a| a.addr.ip());
            }
            // Source NAT on the way out of dev: the first rule that applies.
            let s = src?;
            if let Some(nat) =
                self.rules.iter().filter(|r| r.ns == cur).filter_map(|r| r.source_nat.as_ref()).find(|n| n.applies(s, dst, &dev))
            {
                src = match nat.to {
                    Some(to) => Some(IpAddr::V4(to)),
                    None => self.addrs.iter().find(|a| a.ns == cur && a.link == dev && a.addr.is_ipv4()).map(|a| a.addr.ip()),
                };
            }
            let next = via.unwrap_or(dst);
            let (ns, link) = self.owner_of(&next)?;
            if *ns == cur {
                return None;
            }
            cur = ns.clone();
            iif = link.to_string();
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
