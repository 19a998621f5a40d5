//! Bridge and VXLAN messages: forwarding tables, VLAN filtering, and deleting bridges
//! while the caller goes on.

use super::decode;
use super::{acked, Netlink};
use crate::backend::live::kernel::{Aside, Kernel};
use crate::error::{Code, Error, Result};
use crate::ops::bridge::{options_refused, port_state_name, BridgeOpts, BridgePortInfo, SetBridgePort};
use crate::ops::link::format_mac;
use crate::ops::overlay::{BridgeVlan, FdbAppend, VlanFiltering};
use crate::ops::query::FdbEntry;
use crate::ops::NsRef;
use rtnetlink::packet_core::{DefaultNla, Emitable, Nla, NlaBuffer, Parseable, NLM_F_APPEND, NLM_F_CREATE};
use rtnetlink::packet_route::link::{
    BridgeStpState, BridgeVlanInfoFlags, InfoBridge, InfoBridgePort, InfoData, InfoKind, LinkAttribute, LinkMessage, LinkProtoInfoBridge,
};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IFLA_INFO_DATA of a bridge: the options in the kernel's units (hundredths of a second).
pub(super) fn bridge_info(o: &BridgeOpts) -> Vec<InfoBridge> {
    let cs = |ms: u64| (ms / 10) as u32;
    let mut v = Vec::new();
    if let Some(ms) = o.forward_delay_ms {
        v.push(InfoBridge::ForwardDelay(cs(ms)));
    }
    if let Some(ms) = o.hello_time_ms {
        v.push(InfoBridge::HelloTime(cs(ms)));
    }
    if let Some(ms) = o.max_age_ms {
        v.push(InfoBridge::MaxAge(cs(ms)));
    }
    if let Some(ms) = o.ageing_ms {
        v.push(InfoBridge::AgeingTime(cs(ms)));
    }
    if let Some(on) = o.stp {
        v.push(InfoBridge::StpState(if on { BridgeStpState::KernelStp } else { BridgeStpState::Disabled }));
    }
    if let Some(p) = o.priority {
        v.push(InfoBridge::Priority(p));
    }
    if let Some(on) = o.mcast_snooping {
        v.push(InfoBridge::MulticastSnooping(on));
    }
    v
}

/// Bridge deletions under way (see [`Netlink::delete_bridges_aside`]): each one's label.
pub struct Deletions {
    aside: Aside,
    labels: Vec<String>,
}

impl<K: Kernel> Netlink<K> {
    /// `bridge fdb append MAC dev LINK dst IP`: appended, so several destinations can
    /// share one MAC (00:00:00:00:00:00 is the VXLAN flood list).
    pub fn fdb_append(&mut self, op: &FdbAppend) -> Result<()> {
        let index = self.require_link(&op.ns, &op.link)?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(op.mac.to_vec()));
        msg.attributes.push(NeighbourAttribute::Destination(match op.dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        self.request_now(&op.ns, RouteNetlinkMessage::NewNeighbour(msg), NLM_F_CREATE | NLM_F_APPEND, |errno| op.refused(errno))
    }

    /// The forwarding table of every bridge and VXLAN link in `ns` (`bridge fdb show`).
    pub fn fdb(&mut self, ns: &NsRef) -> Result<Vec<FdbEntry>> {
        let names = decode::names_by_index(&self.dump_links(ns)?);
        let mut query = NeighbourMessage::default();
        query.header.family = AddressFamily::Bridge;
        let msgs: Vec<_> = self
            .dump(ns, RouteNetlinkMessage::GetNeighbour(query), || format!("cannot read the forwarding table of {ns}"))?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => Some(n),
                _ => None,
            })
            .collect();
        Ok(msgs
            .iter()
            .map(|m| {
                let mut e = FdbEntry {
                    mac: String::new(),
                    dev: names.get(&m.header.ifindex).cloned().unwrap_or_else(|| format!("#{}", m.header.ifindex)),
                    master: None,
                    dst: None,
                    vlan: None,
                    vni: None,
                    state: decode::state_name(m.header.state),
                    is_self: m.header.flags.contains(NeighbourFlags::Own),
                };
                for a in &m.attributes {
                    match a {
                        NeighbourAttribute::LinkLayerAddress(mac) => e.mac = format_mac(mac),
                        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => e.dst = Some(ip.to_string()),
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => e.dst = Some(ip.to_string()),
                        // AF_BRIDGE entries carry the VTEP address as raw bytes.
                        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                            e.dst = match b.len() {
                                4 => Some(Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()),
                                16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(|a| Ipv6Addr::from(a).to_string()),
                                _ => None,
                            }
                        }
                        NeighbourAttribute::Vlan(v) => e.vlan = Some(*v),
                        NeighbourAttribute::Vni(v) => e.vni = Some(*v),
                        NeighbourAttribute::Controller(i) => e.master = names.get(i).cloned(),
                        _ => {}
                    }
                }
                e
            })
            .collect())
    }

    /// `ip link set BRIDGE type bridge vlan_filtering 0|1`
    pub fn bridge_vlan_filtering(&mut self, op: &VlanFiltering) -> Result<()> {
        let index = self.require_link(&op.ns, &op.bridge)?;
        let msg = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge)
            .index(index)
            .set_info_data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(op.on)]))
            .build();
        // RTM_NEWLINK on the existing bridge (changelink), as `ip link set .. type bridge` does:
        // RTM_SETLINK ignores IFLA_LINKINFO.
        self.request_now(&op.ns, RouteNetlinkMessage::NewLink(msg), 0, |errno| op.refused(errno))
    }

    /// `ip link set BRIDGE type bridge OPTIONS` on a bridge that exists: RTM_NEWLINK on its
    /// index (a changelink, as for vlan_filtering).
    pub fn bridge_options(&mut self, ns: &NsRef, bridge: &str, opts: &BridgeOpts) -> Result<()> {
        let index = self.require_link(ns, bridge)?;
        let msg = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge)
            .index(index)
            .set_info_data(InfoData::Bridge(bridge_info(opts)))
            .build();
        self.request_now(ns, RouteNetlinkMessage::NewLink(msg), 0, |errno| options_refused(ns, bridge, opts, errno))
    }

    /// `bridge link set dev PORT ...`: RTM_SETLINK for AF_BRIDGE with a nested
    /// IFLA_PROTINFO of IFLA_BRPORT_* attributes, on the port's index.
    pub fn set_bridge_port(&mut self, op: &SetBridgePort) -> Result<()> {
        let index = self.require_link(&op.ns, &op.port)?;
        let mut attrs = Vec::new();
        if let Some(c) = op.cost {
            attrs.push(InfoBridgePort::Cost(c));
        }
        if let Some(p) = op.priority {
            attrs.push(InfoBridgePort::Priority(p));
        }
        if let Some(l) = op.learning {
            attrs.push(InfoBridgePort::Learning(l));
        }
        if let Some(f) = op.flood {
            attrs.push(InfoBridgePort::UnicastFlood(f));
        }
        if let Some(h) = op.hairpin {
            attrs.push(InfoBridgePort::HairpinMode(h));
        }
        // netlink-packet-route types IFLA_PROTINFO of AF_BRIDGE with one variant only:
        // the IFLA_BRPORT_* attributes go in as the attributes they emit.
        let protinfo = attrs
            .iter()
            .map(|a| {
                let mut value = vec![0u8; a.value_len()];
                a.emit_value(&mut value);
                LinkProtoInfoBridge::Other(DefaultNla::new(a.kind(), value))
            })
            .collect();
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(protinfo));
        self.request_now(&op.ns, RouteNetlinkMessage::SetLink(msg), 0, |errno| op.refused(errno))
    }

    /// The ports of `bridge` with their STP state, cost and priority: a dump of AF_BRIDGE
    /// links (what `bridge link` shows), each port's IFLA_PROTINFO.
    pub fn bridge_ports(&mut self, ns: &NsRef, bridge: &str) -> Result<Vec<BridgePortInfo>> {
        let br = self.require_link(ns, bridge)?;
        let mut query = LinkMessage::default();
        query.header.interface_family = AddressFamily::Bridge;
        let msgs = self.dump(ns, RouteNetlinkMessage::GetLink(query), || format!("cannot list the ports of bridge {bridge:?} in {ns}"))?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewLink(m) = m else { continue };
            if !m.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(i) if *i == br)) {
                continue;
            }
            let mut port = BridgePortInfo { name: decode::name_of(&m), state: String::new(), cost: 0, priority: 0 };
            for a in &m.attributes {
                let LinkAttribute::ProtoInfoBridge(infos) = a else { continue };
                for info in infos {
                    let LinkProtoInfoBridge::Other(nla) = info else { continue };
                    let mut bytes = vec![0u8; nla.buffer_len()];
                    nla.emit(&mut bytes);
                    match NlaBuffer::new_checked(&bytes[..]).ok().and_then(|buf| InfoBridgePort::parse(&buf).ok()) {
                        Some(InfoBridgePort::State(s)) => port.state = port_state_name(u8::from(s)),
                        Some(InfoBridgePort::Cost(c)) => port.cost = c,
                        Some(InfoBridgePort::Priority(p)) => port.priority = p,
                        _ => {}
                    }
                }
            }
            out.push(port);
        }
        Ok(out)
    }

    /// `bridge vlan add vid VID dev PORT [pvid] [untagged]`
    pub fn bridge_vlan(&mut self, op: &BridgeVlan) -> Result<()> {
        let index = self.require_link(&op.ns, &op.port)?;
        let mut flags = BridgeVlanInfoFlags::empty();
        if op.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if op.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let msg = rtnetlink::LinkBridgeVlan::new(index).vlan(op.vid, flags).build();
        self.request_now(&op.ns, RouteNetlinkMessage::SetLink(msg), 0, |errno| op.refused(errno))
    }

    /// Delete bridges (by namespace and ifindex, each with a label) while the caller
    /// goes on: the kernel spends ~0.25 ms of CPU per port of a bridge in that request
    /// (~48 ms for star(200)'s bridge), time the caller uses to remove the namespaces.
    pub fn delete_bridges_aside(&mut self, bridges: Vec<(NsRef, u32, String)>) -> Result<Deletions> {
        self.flush()?;
        let mut labels = Vec::new();
        let jobs = bridges
            .into_iter()
            .map(|(ns, index, label)| {
                labels.push(label);
                // Down first: each port a running bridge loses makes it re-select the
                // state of every remaining port (multicast timers included); a bridge
                // that is down skips that. star(200): 67.8 -> 58.3 ms (30 runs each).
                // The deletion's answer decides; one left down by a refusal is
                // still recorded and deleted at the next `down`.
                let requests = vec![
                    acked(RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).down().build()), 0),
                    acked(RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build()), 0),
                ];
                (ns, requests)
            })
            .collect();
        Ok(Deletions { aside: self.k.exchange_aside(jobs)?, labels })
    }

    /// Wait for [`Netlink::delete_bridges_aside`]: each bridge's label and outcome. A
    /// bridge already gone counts as deleted.
    pub fn deletions_done(&mut self, deletions: Deletions) -> Vec<(String, Result<()>)> {
        let outcomes = (deletions.aside)();
        deletions
            .labels
            .into_iter()
            .zip(outcomes)
            .map(|(what, answers)| {
                let outcome = match answers.map(|mut a| a.pop().unwrap_or_default().errno) {
                    Ok(None) | Ok(Some(libc::ENODEV)) => Ok(()),
                    Ok(Some(errno)) => Err(Error::new(Code::KernelRefused, format!("cannot delete {what}")).errno(errno)),
                    Err(e) => Err(e),
                };
                (what, outcome)
            })
            .collect()
    }
}
