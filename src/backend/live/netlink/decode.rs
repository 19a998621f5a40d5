//! Reading the kernel's answers: rtnetlink messages into the views scripts get.

use crate::ops::link::format_mac;
use crate::ops::query::LinkInfo;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage};
use rtnetlink::packet_route::route::RouteAddress;
use std::collections::HashMap;
use std::net::IpAddr;

pub fn name_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The kind of a link (`veth`, `bridge`, ...), or "" for kinds without one (lo, a NIC).
pub fn kind_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                NlLinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

/// A veth's IFLA_LINK: its peer's ifindex (in the peer's namespace).
pub fn peer_index(m: &LinkMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

/// Whether the link's peer is in another namespace (IFLA_LINK_NETNSID is set).
pub fn peer_elsewhere(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)))
}

pub fn names_by_index(msgs: &[LinkMessage]) -> HashMap<u32, String> {
    msgs.iter().map(|m| (m.header.index, name_of(m))).collect()
}

/// A link as scripts see it; `names` gives the master's name.
pub fn link_info(m: &LinkMessage, names: &HashMap<u32, String>) -> LinkInfo {
    let mut info = LinkInfo {
        name: name_of(m),
        index: m.header.index,
        kind: kind_of(m),
        up: m.header.flags.contains(LinkFlags::Up),
        state: String::new(),
        mtu: 0,
        mac: String::new(),
        master: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::OperState(s) => info.state = format!("{s:?}").to_uppercase(),
            LinkAttribute::Mtu(v) => info.mtu = *v,
            LinkAttribute::Address(mac) => info.mac = format_mac(mac),
            LinkAttribute::Controller(i) => info.master = names.get(i).cloned(),
            _ => {}
        }
    }
    info
}

pub fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Like `bridge fdb`: permanent wins over static (the kernel reports 0x82 for both).
pub fn state_name(s: rtnetlink::packet_route::neighbour::NeighbourState) -> String {
    let bits = u16::from(s);
    let names = [
        (0x80, "permanent"),
        (0x40, "static"),
        (0x02, "reachable"),
        (0x04, "stale"),
        (0x08, "delay"),
        (0x10, "probe"),
        (0x20, "failed"),
        (0x01, "incomplete"),
    ];
    names.iter().find(|(b, _)| bits & b != 0).map(|(_, n)| n.to_string()).unwrap_or_else(|| {
        if bits == 0 {
            "none".into()
        } else {
            format!("0x{bits:x}")
        }
    })
}

/// Up, with a carrier, but perhaps not yet seen by the kernel's link-watch work, which
/// is what activates its transmit queue (until then what is sent is dropped) and sets
/// its operational state. The carrier flag changes at once, the state only when that
/// work runs: veths and bridges start at "unknown", and a veth brought up before its
/// peer stays "lowerlayerdown" (or "down") after the peer comes up. Any state but "up"
/// with the carrier on may be waiting.
pub fn may_await_activation(link: &LinkMessage) -> bool {
    use rtnetlink::packet_route::link::State;
    link.header.flags.contains(LinkFlags::Up | LinkFlags::LowerUp)
        && matches!(kind_of(link).as_str(), "veth" | "bridge")
        && !link.attributes.iter().any(|a| matches!(a, LinkAttribute::OperState(State::Up)))
}
