//! Reading a running lab from the kernel: each namespace's links (with counters),
//! addresses and routes through the backend's netlink library, and the veth pairs
//! found across namespaces. Synchronous: the server calls it off its async threads.

use super::view::{self, Link};
use crate::backend::live::linux::Linux;
use crate::backend::live::netlink::observe::ObservedLink;
use crate::backend::live::netlink::Netlink;
use crate::error::Result;
use crate::ops::query::AddrInfo;
use crate::ops::NsRef;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What was last read of one namespace.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub links: Vec<ObservedLink>,
    pub addrs: Vec<AddrInfo>,
}

/// The netlink sockets of the namespaces watched (opened inside each, kept), and what
/// has been learnt of how namespaces number each other.
pub struct Reader {
    nl: Netlink<Linux>,
    /// (namespace, a netnsid it uses) -> the namespace that netnsid is.
    netnsids: HashMap<(NsRef, i32), NsRef>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader { nl: Netlink::new(Linux::default()), netnsids: HashMap::new() }
    }
}

impl Reader {
    pub fn links(&mut self, ns: &NsRef) -> Result<Vec<ObservedLink>> {
        self.nl.observe_links(ns)
    }

    pub fn snapshot(&mut self, ns: &NsRef) -> Result<Snapshot> {
        Ok(Snapshot { links: self.nl.observe_links(ns)?, addrs: self.nl.addrs(ns)? })
    }

    /// What the REPL's `:show NS` prints, then the namespace's firewall (as
    /// `iptables-save` and `ip6tables-save` print it: only tables that exist, so
    /// asking creates none).
    pub fn details(&mut self, ns: &NsRef) -> Result<String> {
        let links = self.nl.links(ns)?;
        let addrs = self.nl.addrs(ns)?;
        let routes = self.nl.routes(ns)?;
        let mut text = crate::ops::query::show(&links, &addrs, &routes);
        for program in ["iptables-save", "ip6tables-save"] {
            let cmd = crate::ops::process::Command::Argv(vec![program.to_string()]);
            use crate::backend::live::kernel::Kernel;
            let rules = match self.nl.kernel().run(ns, &cmd, Some(std::time::Duration::from_secs(5))) {
                Ok(out) if out.code == 0 => out.stdout.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"),
                Ok(out) => format!("({program} failed: {})", out.stderr.trim()),
                Err(e) => format!("({program}: {e})"),
            };
            if !rules.trim().is_empty() {
                text.push_str(&format!("\n{program}:\n{}\n", rules.trim_end()));
            }
        }
        Ok(text)
    }

    /// Drop the sockets and handles held for `ns` (they keep a deleted namespace alive).
    pub fn forget(&mut self, ns: &NsRef) {
        self.nl.forget(ns);
        self.netnsids.retain(|(a, _), b| a != ns && b != ns);
    }

    /// The links of the lab, ready to draw: every link of its own namespaces, and of
    /// the host's those the lab made (`host_links`, from its ledger), those whose veth
    /// peer is in a lab namespace, and the bridges they are ports of. Veth ends are
    /// paired across namespaces by ifindex (IFLA_LINK); where two candidates would fit,
    /// the kernel is asked which one the netnsid names.
    pub fn links_for_view(&mut self, snaps: &BTreeMap<NsRef, Snapshot>, host_links: &BTreeSet<String>) -> Vec<Link> {
        // Every link that could be drawn, by (namespace, ifindex).
        let mut at: HashMap<(NsRef, u32), &ObservedLink> = HashMap::new();
        for (ns, s) in snaps {
            for l in &s.links {
                at.insert((ns.clone(), l.info.index), l);
            }
        }
        // Each veth's other end.
        let mut peer_of: HashMap<(NsRef, u32), (NsRef, u32)> = HashMap::new();
        for (ns, s) in snaps {
            for l in s.links.iter().filter(|l| l.info.kind == "veth") {
                let Some(p) = l.link else { continue };
                let found = match l.link_netnsid {
                    None => at.contains_key(&(ns.clone(), p)).then(|| ns.clone()),
                    Some(id) => self.which_namespace(ns, id, l, p, snaps),
                };
                if let Some(other) = found {
                    peer_of.insert((ns.clone(), l.info.index), (other, p));
                }
            }
        }
        let in_lab = |ns: &NsRef| *ns != NsRef::Host;
        // The host's links that belong in the drawing.
        let mut host_keep: BTreeSet<u32> = BTreeSet::new();
        if let Some(host) = snaps.get(&NsRef::Host) {
            for l in &host.links {
                let peered_in = peer_of.get(&(NsRef::Host, l.info.index)).is_some_and(|(o, _)| in_lab(o));
                if host_links.contains(&l.info.name) || peered_in {
                    host_keep.insert(l.info.index);
                }
            }
            let masters: BTreeSet<String> =
                host.links.iter().filter(|l| host_keep.contains(&l.info.index)).filter_map(|l| l.info.master.clone()).collect();
            for l in host.links.iter().filter(|l| masters.contains(&l.info.name)) {
                host_keep.insert(l.info.index);
            }
        }
        let mut position: HashMap<(NsRef, u32), usize> = HashMap::new();
        let mut out = Vec::new();
        for (ns, s) in snaps {
            for l in &s.links {
                if *ns == NsRef::Host && !host_keep.contains(&l.info.index) {
                    continue;
                }
                position.insert((ns.clone(), l.info.index), out.len());
                let addrs = s
                    .addrs
                    .iter()
                    .filter(|a| a.link == l.info.name)
                    // Every interface has its fe80:: address: it says nothing in a drawing.
                    .filter(|a| !a.addr.to_ascii_lowercase().starts_with("fe80:"))
                    .map(|a| a.addr.clone())
                    .collect();
                out.push(Link {
                    ns: ns.clone(),
                    name: l.info.name.clone(),
                    kind: l.info.kind.clone(),
                    up: l.info.up,
                    oper: Some(l.info.state.clone()),
                    carrier: Some(l.lower_up),
                    mtu: l.info.mtu,
                    mac: l.info.mac.clone(),
                    master: l.info.master.clone(),
                    peer: None,
                    parent_elsewhere: None,
                    remote: l.vxlan_remote,
                    addrs,
                });
            }
        }
        for (key, &i) in &position {
            if let Some(other) = peer_of.get(key) {
                out[i].peer = position.get(other).copied();
            }
        }
        // A macvlan or VLAN whose parent is in another lab namespace.
        for (ns, s) in snaps {
            for l in s.links.iter().filter(|l| l.info.kind != "veth") {
                let (Some(p), Some(id)) = (l.link, l.link_netnsid) else { continue };
                let Some(&i) = position.get(&(ns.clone(), l.info.index)) else { continue };
                if let Some(other) = self.netnsids.get(&(ns.clone(), id)).cloned() {
                    out[i].parent_elsewhere = position.get(&(other, p)).copied();
                }
            }
        }
        out
    }

    /// The namespace that `ns` numbers `netnsid`, for the veth `l` whose peer has
    /// ifindex `p` there: of the namespaces with a veth at `p` pointing back at `l`
    /// (point-to-point labs have many: every end is eth0 at the same index), the one
    /// whose link at `p` is the link the kernel gives for (netnsid, p).
    fn which_namespace(&mut self, ns: &NsRef, netnsid: i32, l: &ObservedLink, p: u32, snaps: &BTreeMap<NsRef, Snapshot>) -> Option<NsRef> {
        if let Some(known) = self.netnsids.get(&(ns.clone(), netnsid)) {
            return Some(known.clone());
        }
        let candidates: Vec<(&NsRef, &ObservedLink)> = snaps
            .iter()
            .filter(|(other, _)| *other != ns)
            .filter_map(|(other, s)| {
                s.links
                    .iter()
                    .find(|w| w.info.index == p && w.info.kind == "veth" && w.link == Some(l.info.index) && w.link_netnsid.is_some())
                    .map(|w| (other, w))
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        // The kernel says which link (netnsid, p) is; its name, kind and MAC pick the
        // candidate (a veth's MAC is random). Asked once per netnsid, then remembered.
        let found = match self.nl.link_in_netnsid(ns, netnsid, p) {
            Ok(Some((name, kind, mac))) => {
                candidates.iter().find(|(_, w)| w.info.name == name && w.info.kind == kind && w.info.mac == mac).map(|(o, _)| (*o).clone())
            }
            // A kernel that cannot be asked (before 4.20): a single candidate is it.
            _ if candidates.len() == 1 => Some(candidates[0].0.clone()),
            _ => None,
        }?;
        self.netnsids.insert((ns.clone(), netnsid), found.clone());
        Some(found)
    }
}

/// The drawing of what was read.
pub fn view(lab: &str, reader: &mut Reader, snaps: &BTreeMap<NsRef, Snapshot>, host_links: &BTreeSet<String>) -> view::View {
    let links = reader.links_for_view(snaps, host_links);
    let namespaces: Vec<NsRef> = snaps.keys().cloned().collect();
    view::build(lab, true, &namespaces, &links)
}
