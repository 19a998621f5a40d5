//! The plan's model of a lab: what the walkthrough builds, kept so that queries answer
//! from it and a reachability check can be judged without running anything.

use crate::ops::address::AddAddr;
use crate::ops::dhcp::DhcpServer;
use crate::ops::firewall::{Rule, SourceNat};
use crate::ops::query::{family, FdbEntry, RouteInfo};
use crate::ops::route::{AddRoute, RouteVia};
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
}

/// An iptables rule in the model, with what it means to a packet's source if the
/// plan knows (rules from the typed NAT ops; raw rules are not simulated).
#[derive(Clone, Debug, PartialEq)]
pub struct PRule {
    pub ns: NsRef,
    pub rule: Rule,
    pub source_nat: Option<SourceNat>,
}

/// What the lab holds once the script has run.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// Named namespaces, in creation order.
    pub netns: Vec<String>,
    pub links: Vec<PLink>,
    pub addrs: Vec<AddAddr>,
    pub routes: Vec<AddRoute>,
    pub sysctls: Vec<(NsRef, String, String)>,
    pub fdb: Vec<(NsRef, FdbEntry)>,
    pub rules: Vec<PRule>,
    /// Chain policies set, as (namespace, table, chain, policy).
    pub policies: Vec<(NsRef, String, String, String)>,
    pub dhcp: Vec<DhcpServer>,
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

    /// Connected routes (of up links with addresses) and the routes the script added.
    pub fn routes_in(&self, ns: &NsRef) -> Vec<RouteInfo> {
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
        self.addrs.retain(|a| !(a.ns == l.ns && a.link == l.name));
        self.routes.retain(|r| !(r.ns == l.ns && r.via == RouteVia::Device(l.name.clone())));
        for other in self.links.iter_mut().filter(|x| x.ns == l.ns && x.master.as_deref() == Some(&l.name)) {
            other.master = None;
        }
    }

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
