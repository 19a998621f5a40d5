//! Overlays and more link kinds in the live backend: vxlan, vlan, macvlan and tap links
//! (ledgered like any link), forwarding tables, shaping (ledgered on links that outlive
//! the lab), and the VXLAN MTU check.

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::lab::{Entry, Object, Phase};
use crate::ops::link::{self as ops_link, LinkChange, LinkRecord, SetLink};
use crate::ops::overlay::{CreateLink, FdbAppend, LinkKind};
use crate::ops::qdisc::{foreign_root, handle_text, QdiscRecord, SetHtb, SetShape};
use crate::ops::{NsRef, Outcome};

impl<K: Kernel> LiveBackend<K> {
    pub(super) fn create_link(&mut self, op: CreateLink) -> Result<Outcome> {
        op.validate()?;
        let kind = op.kind.kind_name();
        let done = Outcome::Link { ns: op.ns.clone(), name: op.name.clone() };
        if self.state.link(&op.ns, &op.name).is_some_and(|(_, l)| l.kind == kind) {
            return Ok(done);
        }
        if self.nl.link_index(&op.ns, &op.name)?.is_some() {
            return Err(self.name_taken_by_us(op.name_taken(), &[(&op.ns, &op.name)]));
        }
        let is_tap = matches!(op.kind, LinkKind::Tap { .. });
        for attempt in 0.. {
            // A tap cannot be given an ifindex (TUNSETIFF picks it): it stays
            // non-persistent, gone with nsscript, until the ledger holds its ifindex.
            let index = if is_tap { None } else { self.outside_index(&op.ns) };
            let record = LinkRecord { ns: op.ns.clone(), name: op.name.clone(), kind: kind.into(), index, pair: None };
            match self.created(Object::Link(record), |b| b.make_link(&op, index), super::with_index) {
                Err(e) if attempt < 3 && self.index_clash(&e, &op.ns, &[&op.name], index.is_some()) => continue,
                other => other?,
            };
            break;
        }
        if is_tap {
            self.nl.kernel().persist_tap(&op.ns, &op.name)?;
        }
        Ok(done)
    }

    fn make_link(&mut self, op: &CreateLink, index: Option<u32>) -> Result<u32> {
        let LinkKind::Tap { owner, group } = op.kind else {
            return self.nl.create_link(op, index);
        };
        self.nl.kernel().create_tap(&op.ns, &op.name, owner, group)?;
        let index = self.nl.require_link(&op.ns, &op.name)?;
        if let Some(mtu) = op.mtu {
            self.nl.set_link(&SetLink { ns: op.ns.clone(), name: op.name.clone(), change: LinkChange::Mtu(mtu) })?;
        }
        if op.up {
            self.nl.set_link(&SetLink { ns: op.ns.clone(), name: op.name.clone(), change: LinkChange::Up })?;
        }
        Ok(index)
    }

    pub(super) fn fdb_append(&mut self, op: FdbAppend) -> Result<Outcome> {
        self.require_owned_link(&op.ns, &op.link, "change the forwarding table of")?;
        self.nl.fdb_append(&op)?;
        Ok(Outcome::Done)
    }

    pub(super) fn shape(&mut self, op: SetShape) -> Result<Outcome> {
        op.validate()?;
        if self.state.owns_link(&op.ns, &op.link) {
            self.nl.shape(&op)?;
            return Ok(Outcome::Done);
        }
        match &op.shape {
            Some(shape) => {
                let kind = shape.qdisc()?.kind();
                self.outside_qdisc(&op.ns, &op.link, kind, "shape", |b| b.nl.shape(&op))?
            }
            None => self.outside_unshape(&op.ns, &op.link)?,
        }
        Ok(Outcome::Done)
    }

    pub(super) fn htb(&mut self, op: SetHtb) -> Result<Outcome> {
        op.validate()?;
        if self.state.owns_link(&op.ns, &op.link) {
            self.nl.htb(&op)?;
            return Ok(Outcome::Done);
        }
        self.outside_qdisc(&op.ns, &op.link, "htb", "shape", |b| b.nl.htb(&op))?;
        Ok(Outcome::Done)
    }

    /// The ledger's qdisc entries for this link (by place and ifindex): ids and kinds.
    fn qdiscs_on(&self, ns: &NsRef, link: &str, index: u32) -> Vec<(u64, String)> {
        self.state
            .qdiscs()
            .filter(|(_, q)| q.ns == *ns && q.link == link && q.index == index)
            .map(|(e, q)| (e.id, q.kind.clone()))
            .collect()
    }

    /// The link's ifindex now (asked of the kernel, not remembered) and its root qdisc,
    /// refused when that qdisc is neither the kernel's default nor one this lab set.
    fn outside_root(&mut self, ns: &NsRef, link: &str, action: &str) -> Result<(u32, Option<(String, u16)>)> {
        let index = self.nl.link_index(ns, link)?.ok_or_else(|| ops_link::unknown(ns, link))?;
        let root = self.nl.root_qdisc(ns, index)?.filter(|(_, h)| h.major != 0);
        if let Some((kind, handle)) = &root {
            let ours = handle.major == 1 && handle.minor == 0 && self.qdiscs_on(ns, link, index).iter().any(|(_, k)| k == kind);
            if !ours {
                return Err(foreign_root(ns, link, action, kind, &handle_text(handle.major, handle.minor), &self.lab));
            }
        }
        Ok((index, root.map(|(k, h)| (k, h.major))))
    }

    /// A root qdisc on a link that outlives the lab: its record (the link's ifindex, and
    /// the namespace's cookie when it is the lab's first change there) goes into the
    /// ledger before the change, for `down` to take it back.
    fn outside_qdisc(
        &mut self,
        ns: &NsRef,
        link: &str,
        kind: &str,
        action: &str,
        change: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let (index, _) = self.outside_root(ns, link, action)?;
        let record = QdiscRecord { ns: ns.clone(), link: link.to_string(), index, kind: kind.to_string() };
        self.created(Object::Qdisc(record), change, |_, o| o)
    }

    /// `unshape()` on a link that outlives the lab: only a qdisc this lab set there goes
    /// (the kernel checks kind and handle in the deletion itself); its entries go with it.
    fn outside_unshape(&mut self, ns: &NsRef, link: &str) -> Result<()> {
        let (index, root) = self.outside_root(ns, link, "unshape")?;
        if let Some((kind, _)) = root {
            let what = QdiscRecord { ns: ns.clone(), link: link.to_string(), index, kind: kind.clone() }.describe();
            self.nl.delete_root_qdisc(ns, index, &kind, &what)?;
        }
        for (id, _) in self.qdiscs_on(ns, link, index) {
            self.record(Entry { id, phase: Phase::Done, object: Object::QdiscGone })?;
        }
        Ok(())
    }

    /// After `port` joined `bridge`: when the bridge also holds a VXLAN port whose MTU
    /// is below another port's, full-size frames from that port would be dropped
    /// silently at the VXLAN port. Say so on stderr, with what to do.
    pub(super) fn warn_overlay_mtu(&mut self, watch: Option<(NsRef, String, String)>) -> Result<()> {
        let Some((ns, bridge, port)) = watch else { return Ok(()) };
        // Only labs with a VXLAN of their own pay for the link dump (big star labs do not).
        if !self.state.links().any(|(_, l)| l.kind == "vxlan" && l.ns == ns) {
            return Ok(());
        }
        let links = self.nl.links(&ns)?;
        let ports: Vec<_> = links.iter().filter(|l| l.master.as_deref() == Some(bridge.as_str())).collect();
        let Some(vx) = ports.iter().filter(|l| l.kind == "vxlan").min_by_key(|l| l.mtu) else { return Ok(()) };
        let newcomer_is_vxlan = ports.iter().any(|l| l.name == port && l.kind == "vxlan");
        for p in ports.iter().filter(|l| l.kind != "vxlan" && l.mtu > vx.mtu && (newcomer_is_vxlan || l.name == port)) {
            crate::warnings::warning!(
                "warning: bridge {bridge} in {ns}: port {} has MTU {} but VXLAN port {} carries at most {}: full-size frames from {} \
                 are dropped silently.\n  help: give the links feeding the bridge MTU {} (connect(ns, br, #{{ mtu: {} }}), or \
                 .mtu({}) on both ends of the veth), or give the underlay MTU {} and the VXLAN MTU {} so it carries full frames",
                p.name,
                p.mtu,
                vx.name,
                vx.mtu,
                p.name,
                vx.mtu,
                vx.mtu,
                vx.mtu,
                p.mtu + 50,
                p.mtu
            );
        }
        Ok(())
    }
}
