//! Link messages: creating bridges, veth pairs and other kinds, changing and deleting
//! links, and looking them up.

use super::decode::{self, kind_of, name_of};
use super::{acked, Netlink};
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::link::{self as ops_link, CreateBridge, CreateVeth, LinkChange, SetLink};
use crate::ops::overlay::{CreateLink, LinkKind, MacvlanMode};
use crate::ops::query::LinkInfo;
use crate::ops::NsRef;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage, MacVlanMode as NlMode};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};
use std::net::IpAddr;

impl<K: Kernel> Netlink<K> {
    /// Create a link now and return the kernel's echo of it (its ifindex, and for a
    /// veth IFLA_LINK, the peer's ifindex): one round trip, no lookups. Queued requests
    /// stay queued: they only change links that exist, never what a creation needs.
    fn create_echo(&mut self, ns: &NsRef, msg: LinkMessage, refused: impl FnOnce(i32) -> Error) -> Result<Option<LinkMessage>> {
        self.unsettled.insert(ns.clone());
        let request = acked(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO);
        let answer = self.exchange(ns, vec![request])?.pop().unwrap_or_default();
        match answer.errno {
            Some(errno) => Err(refused(errno)),
            None => Ok(answer.echo),
        }
    }

    /// The message of the link `name` in `ns`, or None.
    fn get_link(&mut self, ns: &NsRef, name: &str) -> Result<Option<LinkMessage>> {
        let mut query = LinkMessage::default();
        query.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answer = self.exchange(ns, vec![acked(RouteNetlinkMessage::GetLink(query), 0)])?.pop().unwrap_or_default();
        match answer.errno {
            None => Ok(answer.echo),
            Some(libc::ENODEV) => Ok(None),
            Some(errno) => Err(Error::new(Code::KernelRefused, format!("cannot look up link {name:?} in {ns}")).errno(errno)),
        }
    }

    pub fn link_index(&mut self, ns: &NsRef, name: &str) -> Result<Option<u32>> {
        Ok(self.link_identity(ns, name)?.map(|(index, _)| index))
    }

    /// The index and kind (see [`Netlink::link_kind`]) of the link `name`, in one lookup.
    pub fn link_identity(&mut self, ns: &NsRef, name: &str) -> Result<Option<(u32, String)>> {
        let found = self.get_link(ns, name)?.map(|m| (m.header.index, kind_of(&m)));
        match &found {
            Some((i, _)) => self.index.insert((ns.clone(), name.to_string()), *i),
            None => self.index.remove(&(ns.clone(), name.to_string())),
        };
        Ok(found)
    }

    /// The index of a link that must exist.
    pub fn require_link(&mut self, ns: &NsRef, name: &str) -> Result<u32> {
        if let Some(i) = self.index.get(&(ns.clone(), name.to_string())) {
            return Ok(*i);
        }
        self.link_index(ns, name)?.ok_or_else(|| ops_link::unknown(ns, name))
    }

    /// The kind of a link (`veth`, `bridge`, ...), or "" for kinds without one (lo, a NIC).
    pub fn link_kind(&mut self, ns: &NsRef, name: &str) -> Result<Option<String>> {
        Ok(self.get_link(ns, name)?.map(|m| kind_of(&m)))
    }

    /// Remember a created link's index (from its echo, or one lookup).
    fn learn(&mut self, ns: &NsRef, name: &str, index: Option<u32>) -> Result<u32> {
        match index {
            Some(i) if i > 0 => {
                self.index.insert((ns.clone(), name.to_string()), i);
                Ok(i)
            }
            _ => self.require_link(ns, name),
        }
    }

    /// `index`: the ifindex to create it with (None: the kernel's choice).
    pub fn create_bridge(&mut self, op: &CreateBridge, index: Option<u32>) -> Result<u32> {
        let mut msg = LinkBridge::new(&op.name).up().build();
        msg.header.index = index.unwrap_or(0);
        let echo = self.create_echo(&op.ns, msg, |errno| op.refused(errno))?;
        self.learn(&op.ns, &op.name, echo.map(|m| m.header.index))
    }

    /// One request: the near end in `op.ns` (optionally enslaved and up), its peer
    /// created directly in `op.peer_ns` (no move: moving costs ~17 ms in the kernel).
    /// `indexes`: the ifindexes to create the two ends with (None: the kernel's choice).
    pub fn create_veth(&mut self, op: &CreateVeth, indexes: (Option<u32>, Option<u32>)) -> Result<(u32, u32)> {
        let master = match &op.master {
            Some(br) => Some(self.require_link(&op.ns, br)?),
            None => None,
        };
        let peer_fd = if op.peer_ns != op.ns { Some(self.k.ns_fd(&op.peer_ns)?) } else { None };
        let mut peer = LinkMessageBuilder::<LinkUnspec>::default().name(op.peer.clone());
        if let Some(fd) = peer_fd {
            peer = peer.setns_by_fd(fd);
        }
        if let Some(mtu) = op.mtu {
            peer = peer.mtu(mtu);
        }
        let mut peer = peer.build();
        peer.header.index = indexes.1.unwrap_or(0);
        let mut near = LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(op.name.clone())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
        if let Some(mtu) = op.mtu {
            near = near.mtu(mtu);
        }
        if let Some(m) = master {
            near = near.controller(m);
        }
        if op.up {
            near = near.up();
        }
        let mut near = near.build();
        near.header.index = indexes.0.unwrap_or(0);
        let echo = self.create_echo(&op.ns, near, |errno| op.refused(errno))?;
        let peer_index = echo.as_ref().and_then(decode::peer_index);
        let a = self.learn(&op.ns, &op.name, echo.map(|m| m.header.index))?;
        let b = self.learn(&op.peer_ns, &op.peer, peer_index)?;
        if op.up {
            // The kernel refuses IFF_UP in the peer's ifinfomsg when the peer is created in
            // another namespace (ENOTCONN, `ip` too): bring the peer up in a second request,
            // queued with whatever follows on that namespace's socket.
            let up = SetLink { ns: op.peer_ns.clone(), name: op.peer.clone(), change: LinkChange::Up };
            let msg = LinkUnspec::new_with_index(b).up().build();
            self.queue(&op.peer_ns, RouteNetlinkMessage::SetLink(msg), 0, Box::new(move |errno| up.refused(errno)));
        }
        Ok((a, b))
    }

    /// `ip link set`, sent now (renames and moves: what comes next needs them done).
    pub fn set_link(&mut self, op: &SetLink) -> Result<()> {
        self.queue_set_link(op)?;
        self.flush()?;
        if !op.keeps_identity() {
            self.index.remove(&(op.ns.clone(), op.name.clone()));
        }
        Ok(())
    }

    /// `ip link set`, queued: its ack comes with the next flush.
    pub fn queue_set_link(&mut self, op: &SetLink) -> Result<()> {
        let index = self.require_link(&op.ns, &op.name)?;
        let base = LinkUnspec::new_with_index(index);
        let msg = match &op.change {
            LinkChange::Up => base.up().build(),
            LinkChange::Down => base.down().build(),
            LinkChange::Mtu(mtu) => base.mtu(*mtu).build(),
            LinkChange::Mac(mac) => base.address(mac.to_vec()).build(),
            LinkChange::Master(bridge) => {
                let m = self.require_link(&op.ns, bridge)?;
                base.controller(m).build()
            }
            LinkChange::NoMaster => base.nocontroller().build(),
            LinkChange::Rename(new) => base.name(new.clone()).build(),
            LinkChange::MoveTo(target) => base.setns_by_fd(self.k.ns_fd(target)?).build(),
        };
        let op = op.clone();
        self.queue(&op.ns.clone(), RouteNetlinkMessage::SetLink(msg), 0, Box::new(move |errno| op.refused(errno)));
        Ok(())
    }

    /// Bring up lo (ifindex 1 in every namespace), queued: in a new namespace it goes up
    /// in the namespace's first burst, not in a round trip of its own.
    pub fn queue_lo_up(&mut self, ns: &NsRef) {
        let msg = LinkUnspec::new_with_index(1).up().build();
        let ns2 = ns.clone();
        self.queue(
            ns,
            RouteNetlinkMessage::SetLink(msg),
            0,
            Box::new(move |errno| Error::new(Code::KernelRefused, format!("cannot bring lo up in {ns2}")).errno(errno)),
        );
    }

    pub fn delete_link(&mut self, ns: &NsRef, name: &str) -> Result<()> {
        self.flush()?;
        let index = self.require_link(ns, name)?;
        self.index.remove(&(ns.clone(), name.to_string()));
        self.delete_index(ns, index).map_err(|e| Error { what: format!("cannot delete link {name:?} in {ns}"), ..e })
    }

    /// Delete by index; ENODEV (already gone) counts as done.
    pub fn delete_index(&mut self, ns: &NsRef, index: u32) -> Result<()> {
        let msg = RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build());
        match self
            .request_now(ns, msg, 0, |errno| Error::new(Code::KernelRefused, format!("cannot delete link #{index} in {ns}")).errno(errno))
        {
            Err(e) if e.is_errno(libc::ENODEV) => Ok(()),
            other => other,
        }
    }

    pub(super) fn dump_links(&mut self, ns: &NsRef) -> Result<Vec<LinkMessage>> {
        let messages = self.dump(ns, RouteNetlinkMessage::GetLink(LinkMessage::default()), || format!("cannot list links in {ns}"))?;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })
            .collect())
    }

    pub fn links(&mut self, ns: &NsRef) -> Result<Vec<LinkInfo>> {
        let msgs = self.dump_links(ns)?;
        let names = decode::names_by_index(&msgs);
        Ok(msgs.iter().map(|m| decode::link_info(m, &names)).collect())
    }

    /// The peer of a veth in the same namespace (IFLA_LINK without a link-netnsid).
    pub fn local_veth_peer(&mut self, ns: &NsRef, name: &str) -> Result<Option<String>> {
        let Some(msg) = self.get_link(ns, name)? else { return Ok(None) };
        if decode::peer_elsewhere(&msg) {
            return Ok(None);
        }
        let Some(peer) = decode::peer_index(&msg) else { return Ok(None) };
        Ok(self.dump_links(ns)?.iter().find(|m| m.header.index == peer).map(name_of))
    }

    /// A vxlan, vlan or macvlan link (taps are made by the kernel's tap call), with the
    /// ifindex `index` if given. Returns its index.
    pub fn create_link(&mut self, op: &CreateLink, index: Option<u32>) -> Result<u32> {
        let ns = &op.ns;
        let lower = match op.kind.lower() {
            Some(l) => Some(self.require_link(ns, l).map_err(|e| op.needing(e))?),
            None => None,
        };
        let mut msg = match &op.kind {
            LinkKind::Vxlan(v) => {
                let mut b = rtnetlink::LinkVxlan::new(&op.name, v.id).port(v.dstport);
                if let Some(idx) = lower {
                    b = b.dev(idx);
                }
                match v.remote.or(v.group) {
                    Some(IpAddr::V4(a)) => b = b.remote(a),
                    Some(IpAddr::V6(a)) => b = b.remote6(a),
                    None => {}
                }
                match v.local {
                    Some(IpAddr::V4(a)) => b = b.local(a),
                    Some(IpAddr::V6(a)) => b = b.local6(a),
                    None => {}
                }
                if let Some(m) = op.mtu {
                    b = b.mtu(m);
                }
                if op.up {
                    b = b.up();
                }
                b.build()
            }
            LinkKind::Vlan { id, .. } => {
                let mut b = rtnetlink::LinkVlan::new(&op.name, lower.expect("a vlan has a parent"), *id);
                if let Some(m) = op.mtu {
                    b = b.mtu(m);
                }
                if op.up {
                    b = b.up();
                }
                b.build()
            }
            LinkKind::Macvlan { mode, .. } => {
                let mode = match mode {
                    MacvlanMode::Private => NlMode::Private,
                    MacvlanMode::Vepa => NlMode::Vepa,
                    MacvlanMode::Bridge => NlMode::Bridge,
                    MacvlanMode::Passthru => NlMode::Passthrough,
                };
                let mut b = rtnetlink::LinkMacVlan::new(&op.name, lower.expect("a macvlan has a parent"), mode);
                if let Some(m) = op.mtu {
                    b = b.mtu(m);
                }
                if op.up {
                    b = b.up();
                }
                b.build()
            }
            LinkKind::Tap { .. } => {
                return Err(Error::new(Code::Internal, format!("cannot create tap {:?} over netlink", op.name))
                    .why("taps are created with the TUNSETIFF ioctl, not netlink"))
            }
        };
        // Keep the message as built (the builders fill IFLA_LINKINFO).
        msg.header.index = index.unwrap_or(0);
        self.request_now(ns, RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL, |errno| op.refused(errno))?;
        self.require_link(ns, &op.name)
    }
}
