//! Issue 4 in the live backend: vxlan, vlan, macvlan and tap links (ledgered like any
//! link), forwarding tables, bridge VLANs, shaping, and the VXLAN MTU check.

use super::{netlink, set_index, tap, tc, LiveBackend};
use crate::error::{Code, Error, Result};
use crate::lab::{Entry, Phase};
use crate::nsexec;
use crate::op::{LinkChange, LinkKind, LinkSpec, NsRef, Op, Outcome, Shape};
use std::net::IpAddr;

/// The (namespace, bridge, port) an op enslaves, if it does: after it, the MTU check runs.
pub fn enslaving(op: &Op) -> Option<(NsRef, String, String)> {
    match op {
        Op::SetLink { ns, name, change: LinkChange::Master(br) } => Some((ns.clone(), br.clone(), name.clone())),
        Op::CreateVeth(spec) => spec.master.clone().map(|br| (spec.ns.clone(), br, spec.name.clone())),
        _ => None,
    }
}

impl LiveBackend {
    pub(super) fn create_link(&mut self, spec: LinkSpec) -> Result<Outcome> {
        netlink::validate_ifname(&spec.name)?;
        let kind = spec.kind.kind_name();
        let done = Outcome::Link { ns: spec.ns.clone(), name: spec.name.clone() };
        if self.state.link(&spec.ns, &spec.name).is_some_and(|l| l.kind == kind) {
            return Ok(done);
        }
        if self.nl.link_index(&spec.ns, &spec.name)?.is_some() {
            return Err(Error::new(Code::NameTaken, format!("cannot create {kind} link {:?} in {}", spec.name, spec.ns))
                .errno(libc::EEXIST)
                .help(format!("a link named {:?} already exists there and does not belong to this lab: choose another name", spec.name)));
        }
        let id = self.state.new_id();
        let intent = Entry::Link {
            id,
            phase: Phase::Intent,
            ns: spec.ns.clone(),
            name: spec.name.clone(),
            kind: kind.into(),
            index: None,
            pair: None,
        };
        self.created(intent, |b| b.make_link(&spec), |index, e| set_index(e, *index))?;
        Ok(done)
    }

    fn make_link(&mut self, spec: &LinkSpec) -> Result<u32> {
        let LinkKind::Tap { owner, group } = spec.kind else {
            return self.nl.create_link(spec);
        };
        let fd = self.nl.ns_fd(&spec.ns)?;
        let name = spec.name.clone();
        nsexec::in_netns(fd, move || tap::create(&name, owner, group))?;
        let index = self.nl.require_link(&spec.ns, &spec.name)?;
        if let Some(mtu) = spec.mtu {
            self.nl.set_link(&spec.ns, &spec.name, &LinkChange::Mtu(mtu))?;
        }
        if spec.up {
            self.nl.set_link(&spec.ns, &spec.name, &LinkChange::Up)?;
        }
        Ok(index)
    }

    pub(super) fn fdb_append(&mut self, ns: NsRef, link: String, mac: [u8; 6], dst: IpAddr) -> Result<Outcome> {
        self.require_owned_link(&ns, &link, "change the forwarding table of")?;
        self.nl.fdb_append(&ns, &link, mac, dst)?;
        Ok(Outcome::Done)
    }

    pub(super) fn shape(&mut self, ns: NsRef, link: String, shape: Option<Shape>) -> Result<Outcome> {
        self.require_owned_link(&ns, &link, "shape")?;
        match shape {
            None => self.nl.delete_root_qdisc(&ns, &link)?,
            Some(s) => {
                let (kind, options) = tc::qdisc_for(&s)?;
                self.nl.replace_root_qdisc(&ns, &link, kind, options).map_err(|e| tc::lacks_qdisc(e, kind))?;
            }
        }
        Ok(Outcome::Done)
    }

    pub(super) fn bridge_vlan_filtering(&mut self, ns: NsRef, bridge: String, on: bool) -> Result<Outcome> {
        self.require_owned_link(&ns, &bridge, "change")?;
        self.nl.bridge_vlan_filtering(&ns, &bridge, on)?;
        Ok(Outcome::Done)
    }

    pub(super) fn bridge_vlan(&mut self, ns: NsRef, port: String, vid: u16, pvid: bool, untagged: bool) -> Result<Outcome> {
        self.require_owned_link(&ns, &port, "change")?;
        self.nl.bridge_vlan(&ns, &port, vid, pvid, untagged)?;
        Ok(Outcome::Done)
    }

    /// After `port` joined `bridge`: when the bridge also holds a VXLAN port whose MTU
    /// is below another port's, full-size frames from that port would be dropped
    /// silently at the VXLAN port. Say so on stderr, with what to do.
    pub(super) fn warn_overlay_mtu(&mut self, watch: Option<(NsRef, String, String)>) -> Result<()> {
        let Some((ns, bridge, port)) = watch else { return Ok(()) };
        // Only labs with a VXLAN of their own pay for the link dump (big star labs do not).
        if !self.state.links.iter().any(|l| l.kind == "vxlan" && l.ns == ns) {
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
