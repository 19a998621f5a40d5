//! Overlays and more link kinds in the live backend: vxlan, vlan, macvlan and tap links
//! (ledgered like any link), forwarding tables, shaping, and the VXLAN MTU check.

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::lab::Object;
use crate::ops::link::{LinkChange, LinkRecord, SetLink};
use crate::ops::overlay::{CreateLink, FdbAppend, LinkKind};
use crate::ops::qdisc::SetShape;
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
        self.require_owned_link(&op.ns, &op.link, "shape")?;
        self.nl.shape(&op)?;
        Ok(Outcome::Done)
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
