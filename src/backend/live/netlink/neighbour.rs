//! Neighbour messages: permanent entries for pingall (they do not count against the
//! kernel's shared neighbour table limit), and the table as `ip neigh` shows it.

use super::{acked, decode, Netlink};
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::NsRef;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use std::net::IpAddr;

impl<K: Kernel> Netlink<K> {
    /// `ip neigh replace ADDR lladdr MAC dev IFINDEX nud permanent`, all sent at once.
    pub fn add_permanent_neighbours(&mut self, ns: &NsRef, entries: &[(u32, IpAddr, [u8; 6])]) -> Result<()> {
        self.flush()?;
        let requests = entries.iter().map(|(index, ip, mac)| {
            let mut msg = NeighbourMessage::default();
            msg.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
            msg.header.ifindex = *index;
            msg.header.state = NeighbourState::Permanent;
            msg.attributes.push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(a) => NeighbourAddress::Inet(*a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(*a),
            }));
            msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
            acked(RouteNetlinkMessage::NewNeighbour(msg), NLM_F_CREATE | NLM_F_REPLACE)
        });
        let answers = self.exchange(ns, requests.collect())?;
        match answers.iter().zip(entries).find_map(|(a, (_, ip, _))| a.errno.map(|e| (e, ip))) {
            Some((errno, ip)) => {
                Err(Error::new(Code::KernelRefused, format!("cannot add a permanent neighbour entry for {ip} in {ns}")).errno(errno))
            }
            None => Ok(()),
        }
    }

    /// The IPv4 and IPv6 neighbour entries of `ns` (`ip neigh show`): (link, address,
    /// state as `ip neigh` names it: `reachable`, `incomplete`, `failed`...).
    pub fn neighbours(&mut self, ns: &NsRef) -> Result<Vec<(String, IpAddr, String)>> {
        let names = decode::names_by_index(&self.dump_links(ns)?);
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut query = NeighbourMessage::default();
            query.header.family = family;
            let msgs = self.dump(ns, RouteNetlinkMessage::GetNeighbour(query), || format!("cannot read the neighbour table of {ns}"))?;
            for m in msgs {
                let RouteNetlinkMessage::NewNeighbour(n) = m else { continue };
                let addr = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                    _ => None,
                });
                let Some(addr) = addr else { continue };
                let dev = names.get(&n.header.ifindex).cloned().unwrap_or_else(|| format!("#{}", n.header.ifindex));
                out.push((dev, addr, decode::state_name(n.header.state)));
            }
        }
        Ok(out)
    }
}
