//! What the page draws: namespaces and bridges as boxes, veth pairs, VXLAN tunnels and
//! other cross-namespace links as edges, each interface with its state, MTU and
//! addresses, and MTU mismatches marked. One builder serves both sources: the kernel
//! (the live view) and the plan's model (`nsscript graph -f html`), so the two pages
//! draw the same thing the same way. Node ids are those of `crate::graph`.

use crate::backend::plan::Model;
use crate::ops::NsRef;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// A link, from whichever source.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub ns: NsRef,
    pub name: String,
    /// `veth`, `bridge`, `vxlan`, `macvlan`, `tun`, `loopback`, "" for a NIC...
    pub kind: String,
    pub up: bool,
    /// The kernel's operational state (`UP`, `DOWN`, `LOWERLAYERDOWN`, `UNKNOWN`);
    /// None in a plan.
    pub oper: Option<String>,
    /// Whether it has a carrier; None in a plan.
    pub carrier: Option<bool>,
    pub mtu: u32,
    pub mac: String,
    pub master: Option<String>,
    /// The other end of a veth: an index into the same list.
    pub peer: Option<usize>,
    /// A macvlan's or VLAN's parent in another namespace: an index into the list.
    pub parent_elsewhere: Option<usize>,
    /// A VXLAN's remote (or group) address.
    pub remote: Option<IpAddr>,
    pub addrs: Vec<String>,
}

/// One interface as the page shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Iface {
    pub name: String,
    pub kind: String,
    /// `up`, `down` (set down), `no-carrier` (up, but its other end is down or it has
    /// no port), or `planned` in a plan's drawing.
    pub state: String,
    /// The kernel's word for it (`LOWERLAYERDOWN`...), empty in a plan.
    pub oper: String,
    pub mtu: u32,
    pub mac: String,
    pub master: Option<String>,
    pub addrs: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Node {
    /// `ns:NAME`, `host`, `br:NAME`, `br:NS/NAME`, `ext:IP` (as `crate::graph`).
    pub id: String,
    /// `netns`, `host`, `bridge`, `external`.
    pub kind: String,
    pub title: String,
    /// The namespace it lives in (`host` for nsscript's own), for the details panel.
    pub ns: Option<String>,
    /// A namespace's own interfaces (not bridge ports); a bridge's: itself, then its ports.
    pub ifaces: Vec<Iface>,
    /// Why the box is marked (a bridge whose ports do not agree on the MTU).
    pub mtu_mismatch: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct End {
    pub ns: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Edge {
    /// Stable while both ends exist: `KIND:NS/NAME|NS/NAME`.
    pub id: String,
    pub a: String,
    pub b: String,
    /// `veth`, `vxlan`, `macvlan`.
    pub kind: String,
    pub label: String,
    /// The interfaces at each end (one for a tunnel to an address outside the lab).
    pub ends: Vec<End>,
    /// `up`, `down` (an end is set down), `no-carrier`, `planned`.
    pub state: String,
    pub mtu_mismatch: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct View {
    pub lab: String,
    /// From the kernel (true) or from the plan's model.
    pub live: bool,
    /// Whether the lab is up (a live view of a lab taken down shows that).
    pub up: bool,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

pub fn ns_name(ns: &NsRef) -> String {
    ns.name().unwrap_or("host").to_string()
}

fn ns_id(ns: &NsRef) -> String {
    match ns {
        NsRef::Host => "host".into(),
        NsRef::Named(n) => format!("ns:{n}"),
    }
}

fn bridge_id(ns: &NsRef, name: &str) -> String {
    match ns {
        NsRef::Host => format!("br:{name}"),
        NsRef::Named(n) => format!("br:{n}/{name}"),
    }
}

/// The box a link is drawn in: its bridge's for a port or a bridge, else its namespace's.
fn node_of(l: &Link) -> String {
    if l.kind == "bridge" {
        return bridge_id(&l.ns, &l.name);
    }
    match &l.master {
        Some(br) => bridge_id(&l.ns, br),
        None => ns_id(&l.ns),
    }
}

fn state_of(l: &Link) -> &'static str {
    match (l.up, l.carrier) {
        (_, None) => "planned",
        (false, _) => "down",
        (true, Some(false)) => "no-carrier",
        (true, Some(true)) => "up",
    }
}

fn iface(l: &Link) -> Iface {
    Iface {
        name: l.name.clone(),
        kind: l.kind.clone(),
        state: state_of(l).into(),
        oper: l.oper.clone().unwrap_or_default(),
        mtu: l.mtu,
        mac: l.mac.clone(),
        master: l.master.clone(),
        addrs: l.addrs.clone(),
    }
}

fn end(l: &Link) -> End {
    End { ns: ns_name(&l.ns), name: l.name.clone() }
}

/// The state of an edge from its ends': down if either is set down, without a
/// carrier if either has none, up when both are.
fn edge_state(ends: &[&Link]) -> String {
    let states: Vec<&str> = ends.iter().map(|l| state_of(l)).collect();
    for s in ["planned", "down", "no-carrier"] {
        if states.contains(&s) {
            return s.into();
        }
    }
    "up".into()
}

/// The drawing of `links` in `namespaces` (the host's box only when it holds links).
pub fn build(lab: &str, live: bool, namespaces: &[NsRef], links: &[Link]) -> View {
    let mut v = View { lab: lab.to_string(), live, up: true, ..View::default() };
    let drawn = |l: &Link| l.kind != "loopback" && l.name != "lo";
    for ns in namespaces {
        let here: Vec<&Link> = links.iter().filter(|l| &l.ns == ns && drawn(l)).collect();
        let own: Vec<Iface> = here.iter().filter(|l| l.kind != "bridge" && l.master.is_none()).map(|l| iface(l)).collect();
        if *ns != NsRef::Host || !own.is_empty() {
            v.nodes.push(Node {
                id: ns_id(ns),
                kind: if *ns == NsRef::Host { "host" } else { "netns" }.into(),
                title: ns_name(ns),
                ns: Some(ns_name(ns)),
                ifaces: own,
                mtu_mismatch: None,
            });
        }
        for br in here.iter().filter(|l| l.kind == "bridge") {
            let ports: Vec<&&Link> = here.iter().filter(|p| p.master.as_deref() == Some(&br.name)).collect();
            let mut ifaces = vec![iface(br)];
            ifaces.extend(ports.iter().map(|p| iface(p)));
            let mtus: BTreeSet<u32> = ports.iter().map(|p| p.mtu).collect();
            // The kernel gives a bridge the smallest MTU of its ports: ports that
            // differ mean frames one port accepts are too big for another.
            let mtu_mismatch = (mtus.len() > 1).then(|| {
                let each: Vec<String> = ports.iter().map(|p| format!("{} {}", p.name, p.mtu)).collect();
                format!("ports differ in MTU: {}", each.join(", "))
            });
            let title = match ns {
                NsRef::Host => br.name.clone(),
                NsRef::Named(n) => format!("{} (in {n})", br.name),
            };
            v.nodes.push(Node { id: bridge_id(ns, &br.name), kind: "bridge".into(), title, ns: Some(ns_name(ns)), ifaces, mtu_mismatch });
        }
    }
    let known: BTreeSet<String> = v.nodes.iter().map(|n| n.id.clone()).collect();
    let bridge_mtu: HashMap<(NsRef, &str), u32> =
        links.iter().filter(|l| l.kind == "bridge").map(|l| ((l.ns.clone(), l.name.as_str()), l.mtu)).collect();
    // A bridge port whose MTU is not its bridge's.
    let port_mismatch = |l: &Link| -> Option<String> {
        let br = l.master.as_deref()?;
        let mtu = *bridge_mtu.get(&(l.ns.clone(), br))?;
        (l.mtu != mtu).then(|| format!("{} MTU {} but bridge {br} MTU {mtu}", l.name, l.mtu))
    };
    let mut seen = BTreeSet::new();
    // Tunnels towards addresses: the link that holds each address in the lab.
    let owner: HashMap<IpAddr, usize> = links
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.addrs.iter().filter_map(move |a| Some((a.split('/').next()?.parse().ok()?, i))))
        .collect();
    let mut externals: BTreeMap<String, Node> = BTreeMap::new();
    for (i, l) in links.iter().enumerate() {
        if !known.contains(&node_of(l)) {
            continue;
        }
        if l.kind == "veth" {
            let Some(j) = l.peer else { continue };
            let p = &links[j];
            if !known.contains(&node_of(p)) || !seen.insert((i.min(j), i.max(j))) {
                continue;
            }
            let (x, y) = if (ns_name(&l.ns), &l.name) <= (ns_name(&p.ns), &p.name) { (l, p) } else { (p, l) };
            let mtu_mismatch = if x.mtu != y.mtu {
                Some(format!("MTU {} ({}) ≠ {} ({})", x.mtu, x.name, y.mtu, y.name))
            } else {
                port_mismatch(x).or_else(|| port_mismatch(y))
            };
            v.edges.push(Edge {
                id: format!("veth:{}/{}|{}/{}", ns_name(&x.ns), x.name, ns_name(&y.ns), y.name),
                a: node_of(x),
                b: node_of(y),
                kind: "veth".into(),
                label: format!("{} -- {}", x.name, y.name),
                ends: vec![end(x), end(y)],
                state: edge_state(&[x, y]),
                mtu_mismatch,
            });
        }
        if let (Some(remote), "vxlan") = (l.remote, l.kind.as_str()) {
            let a = node_of(l);
            let b = match owner.get(&remote).map(|&j| &links[j]) {
                Some(t) if known.contains(&node_of(t)) => node_of(t),
                _ => {
                    let id = format!("ext:{remote}");
                    externals.entry(id.clone()).or_insert_with(|| Node {
                        id: id.clone(),
                        kind: "external".into(),
                        title: remote.to_string(),
                        ns: None,
                        ifaces: vec![],
                        mtu_mismatch: None,
                    });
                    id
                }
            };
            // Two VXLAN ends pointing at each other make one tunnel.
            if let Some(e) = v.edges.iter_mut().find(|e| e.kind == "vxlan" && e.a == b && e.b == a) {
                e.label = format!("{} == {}", e.label, l.name);
                e.ends.push(end(l));
                continue;
            }
            v.edges.push(Edge {
                id: format!("vxlan:{}/{}|{remote}", ns_name(&l.ns), l.name),
                a,
                b,
                kind: "vxlan".into(),
                label: format!("{} (remote {remote})", l.name),
                ends: vec![end(l)],
                state: edge_state(&[l]),
                mtu_mismatch: port_mismatch(l),
            });
        }
        if let Some(j) = l.parent_elsewhere {
            let p = &links[j];
            if !known.contains(&node_of(p)) {
                continue;
            }
            v.edges.push(Edge {
                id: format!("{}:{}/{}|{}/{}", l.kind, ns_name(&l.ns), l.name, ns_name(&p.ns), p.name),
                a: node_of(l),
                b: node_of(p),
                kind: if l.kind.is_empty() { "link".into() } else { l.kind.clone() },
                label: format!("{} on {}", l.name, p.name),
                ends: vec![end(l), end(p)],
                state: edge_state(&[l, p]),
                mtu_mismatch: None,
            });
        }
    }
    v.nodes.extend(externals.into_values());
    v
}

/// The drawing of a plan's model (`nsscript graph -f html`).
pub fn from_plan(lab: &str, m: &Model) -> View {
    let position: HashMap<usize, usize> = m.links.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
    let links: Vec<Link> = m
        .links
        .iter()
        .map(|l| Link {
            ns: l.ns.clone(),
            name: l.name.clone(),
            kind: l.kind.clone(),
            up: l.up,
            oper: None,
            carrier: None,
            mtu: l.mtu,
            mac: l.mac.clone().unwrap_or_default(),
            master: l.master.clone(),
            peer: l.peer.and_then(|p| position.get(&p).copied()),
            parent_elsewhere: None,
            remote: l.remote,
            addrs: m.addrs_of(&l.ns, &l.name).iter().map(|a| a.to_string()).collect(),
        })
        .collect();
    build(lab, false, &m.namespaces(), &links)
}

/// A change from one drawing to the next, by id: what the page applies without
/// drawing everything again.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Patch {
    pub up: bool,
    pub nodes_set: Vec<Node>,
    pub nodes_del: Vec<String>,
    pub edges_set: Vec<Edge>,
    pub edges_del: Vec<String>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.nodes_set.is_empty() && self.nodes_del.is_empty() && self.edges_set.is_empty() && self.edges_del.is_empty()
    }
}

pub fn diff(old: &View, new: &View) -> Patch {
    let old_nodes: HashMap<&str, &Node> = old.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let new_nodes: BTreeSet<&str> = new.nodes.iter().map(|n| n.id.as_str()).collect();
    let old_edges: HashMap<&str, &Edge> = old.edges.iter().map(|e| (e.id.as_str(), e)).collect();
    let new_edges: BTreeSet<&str> = new.edges.iter().map(|e| e.id.as_str()).collect();
    Patch {
        up: new.up,
        nodes_set: new.nodes.iter().filter(|n| old_nodes.get(n.id.as_str()) != Some(n)).cloned().collect(),
        nodes_del: old.nodes.iter().filter(|n| !new_nodes.contains(n.id.as_str())).map(|n| n.id.clone()).collect(),
        edges_set: new.edges.iter().filter(|e| old_edges.get(e.id.as_str()) != Some(e)).cloned().collect(),
        edges_del: old.edges.iter().filter(|e| !new_edges.contains(e.id.as_str())).map(|e| e.id.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ns: &str, name: &str, kind: &str) -> Link {
        Link {
            ns: if ns == "host" { NsRef::Host } else { NsRef::named(ns) },
            name: name.into(),
            kind: kind.into(),
            up: true,
            oper: Some("UP".into()),
            carrier: Some(true),
            mtu: 1500,
            mac: String::new(),
            master: None,
            peer: None,
            parent_elsewhere: None,
            remote: None,
            addrs: vec![],
        }
    }

    /// Two namespaces on a bridge, one of them with a veth end set down and an MTU of
    /// 1450 on the other's pair.
    fn lab() -> (Vec<NsRef>, Vec<Link>) {
        let mut links = vec![
            link("host", "br0", "bridge"),
            link("host", "h1", "veth"),
            link("a", "eth0", "veth"),
            link("host", "h2", "veth"),
            link("b", "eth0", "veth"),
        ];
        links[1].master = Some("br0".into());
        links[3].master = Some("br0".into());
        (links[1].peer, links[2].peer, links[3].peer, links[4].peer) = (Some(2), Some(1), Some(4), Some(3));
        links[2].addrs = vec!["10.0.0.2/24".into()];
        links[2].up = false;
        links[1].carrier = Some(false);
        links[4].mtu = 1450;
        (vec![NsRef::Host, NsRef::named("a"), NsRef::named("b")], links)
    }

    #[test]
    fn boxes_edges_states_and_mtus() {
        let (ns, links) = lab();
        let v = build("t", true, &ns, &links);
        let ids: Vec<&str> = v.nodes.iter().map(|n| n.id.as_str()).collect();
        // The host holds only a bridge and its ports: no host box.
        assert_eq!(ids, ["br:br0", "ns:a", "ns:b"]);
        let e: HashMap<&str, &Edge> = v.edges.iter().map(|e| (e.id.as_str(), e)).collect();
        let down = e["veth:a/eth0|host/h1"];
        assert_eq!((down.a.as_str(), down.b.as_str(), down.state.as_str()), ("ns:a", "br:br0", "down"));
        let small = e["veth:b/eth0|host/h2"];
        assert_eq!(small.state, "up");
        assert_eq!(small.mtu_mismatch.as_deref(), Some("MTU 1450 (eth0) ≠ 1500 (h2)"));
        assert_eq!(down.mtu_mismatch, None);
        let a = &v.nodes[1];
        assert_eq!((a.ifaces[0].state.as_str(), a.ifaces[0].addrs.clone()), ("down", vec!["10.0.0.2/24".to_string()]));
    }

    #[test]
    fn bridge_ports_that_differ_are_marked() {
        let (ns, mut links) = lab();
        links[3].mtu = 9000;
        let v = build("t", true, &ns, &links);
        assert_eq!(v.nodes[0].mtu_mismatch.as_deref(), Some("ports differ in MTU: h1 1500, h2 9000"));
    }

    #[test]
    fn vxlan_to_a_lab_address_or_outside() {
        let mut links = vec![link("a", "vx0", "vxlan"), link("b", "eth0", ""), link("b", "vx0", "vxlan")];
        links[1].addrs = vec!["192.0.2.2/24".into()];
        links[0].remote = Some("192.0.2.2".parse().unwrap());
        links[2].remote = Some("198.51.100.7".parse().unwrap());
        let v = build("t", true, &[NsRef::named("a"), NsRef::named("b")], &links);
        let pairs: Vec<(&str, &str)> = v.edges.iter().map(|e| (e.a.as_str(), e.b.as_str())).collect();
        assert_eq!(pairs, [("ns:a", "ns:b"), ("ns:b", "ext:198.51.100.7")]);
        assert_eq!(v.nodes.last().unwrap().kind, "external");
    }

    #[test]
    fn a_patch_carries_only_what_changed() {
        let (ns, links) = lab();
        let before = build("t", true, &ns, &links);
        let mut changed = links.clone();
        changed[2].up = true;
        let after = build("t", true, &ns, &changed);
        let p = diff(&before, &after);
        assert_eq!(p.nodes_set.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["ns:a"]);
        assert_eq!(p.edges_set.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["veth:a/eth0|host/h1"]);
        assert!(p.nodes_del.is_empty() && p.edges_del.is_empty());
        assert!(diff(&after, &after).is_empty());
        let gone = build("t", true, &ns[..2], &changed);
        assert_eq!(diff(&after, &gone).nodes_del, ["ns:b"]);
    }
}
