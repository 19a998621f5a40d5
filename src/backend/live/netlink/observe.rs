//! Watching links without changing them: what the live view (`nsscript ui`) reads of
//! each namespace, one dump at a time. Everything here is a question; nothing is queued
//! or sent that changes the kernel.

use super::decode::{self, kind_of, name_of};
use super::{acked, Netlink};
use crate::backend::live::kernel::Kernel;
use crate::error::Result;
use crate::ops::query::LinkInfo;
use crate::ops::NsRef;
use rtnetlink::packet_route::link::{InfoData, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use serde::Serialize;
use std::net::IpAddr;

/// A link's counters (IFLA_STATS64), as `ip -s link` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_dropped: u64,
}

/// One link as the kernel has it now: what scripts see of it, plus what the view needs
/// to draw it (where its other end is, its carrier, its counters, a tunnel's remote).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedLink {
    pub info: LinkInfo,
    /// IFF_LOWER_UP: the link has a carrier (a veth whose peer is down has none).
    pub lower_up: bool,
    /// IFLA_LINK: a veth's peer, or a macvlan's or VLAN's parent (an ifindex in the
    /// namespace `link_netnsid` names, or in this one).
    pub link: Option<u32>,
    /// IFLA_LINK_NETNSID: the namespace of `link`, as this namespace numbers it.
    pub link_netnsid: Option<i32>,
    pub counters: Option<Counters>,
    /// A VXLAN's remote or group address, and its VNI.
    pub vxlan_remote: Option<IpAddr>,
    pub vxlan_id: Option<u32>,
}

pub fn observed(m: &LinkMessage, names: &std::collections::HashMap<u32, String>) -> ObservedLink {
    let mut o = ObservedLink {
        info: decode::link_info(m, names),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        link: None,
        link_netnsid: None,
        counters: None,
        vxlan_remote: None,
        vxlan_id: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::Link(i) => o.link = Some(*i),
            LinkAttribute::LinkNetNsId(id) => o.link_netnsid = Some(*id),
            LinkAttribute::Stats64(s) => {
                o.counters = Some(Counters {
                    rx_packets: s.rx_packets,
                    tx_packets: s.tx_packets,
                    rx_bytes: s.rx_bytes,
                    tx_bytes: s.tx_bytes,
                    rx_dropped: s.rx_dropped,
                    tx_dropped: s.tx_dropped,
                })
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Data(InfoData::Vxlan(v)) = i {
                        for x in v {
                            match x {
                                InfoVxlan::Id(id) => o.vxlan_id = Some(*id),
                                InfoVxlan::Group(ip) => o.vxlan_remote = Some(IpAddr::V4(*ip)),
                                InfoVxlan::Group6(ip) => o.vxlan_remote = Some(IpAddr::V6(*ip)),
                                _ => {}
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // A kind the kernel does not name (lo, a NIC) keeps "" like `links()`.
    if o.info.kind.is_empty() && o.info.name == "lo" {
        o.info.kind = "loopback".into();
    }
    o
}

impl<K: Kernel> Netlink<K> {
    /// Every link of `ns` with its counters and where its other end is.
    pub fn observe_links(&mut self, ns: &NsRef) -> Result<Vec<ObservedLink>> {
        let msgs = self.dump_links(ns)?;
        let names = decode::names_by_index(&msgs);
        Ok(msgs.iter().map(|m| observed(m, &names)).collect())
    }

    /// The link `index` of the namespace that `ns` numbers `netnsid`
    /// (RTM_GETLINK with IFLA_TARGET_NETNSID): its name, kind and MAC tell two
    /// candidate namespaces apart when ifindexes alone do not say which one holds a
    /// veth's other end. None when the kernel has no such link there.
    pub fn link_in_netnsid(&mut self, ns: &NsRef, netnsid: i32, index: u32) -> Result<Option<(String, String, String)>> {
        let mut query = LinkMessage::default();
        query.header.index = index;
        query.attributes.push(LinkAttribute::IfNetnsId(netnsid));
        let answer = self.exchange(ns, vec![acked(RouteNetlinkMessage::GetLink(query), 0)])?.pop().unwrap_or_default();
        Ok(match (answer.errno, answer.echo) {
            (None, Some(m)) => {
                let mac = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        LinkAttribute::Address(mac) => Some(crate::ops::link::format_mac(mac)),
                        _ => None,
                    })
                    .unwrap_or_default();
                Some((name_of(&m), kind_of(&m), mac))
            }
            _ => None,
        })
    }
}
