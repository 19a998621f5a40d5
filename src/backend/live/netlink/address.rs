//! Address messages: `ip addr add`, its undo, and listing.

use super::decode;
use super::Netlink;
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::address::AddAddr;
use crate::ops::query::AddrInfo;
use crate::ops::NsRef;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope};
use rtnetlink::packet_route::RouteNetlinkMessage;
use std::net::{Ipv4Addr, Ipv6Addr};

impl<K: Kernel> Netlink<K> {
    pub fn add_addr(&mut self, op: &AddAddr) -> Result<()> {
        self.queue_add_addr(op)?;
        self.flush()
    }

    /// `ip addr add`, queued. IPv6 addresses skip DAD: labs want them usable now.
    pub fn queue_add_addr(&mut self, op: &AddAddr) -> Result<()> {
        let index = self.require_link(&op.ns, &op.link)?;
        let msg = match op.addr {
            IpNetwork::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(a.ip(), a.prefix()).build(),
            IpNetwork::V6(a) => {
                let mut m = rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new().index(index).address(a.ip(), a.prefix()).build();
                m.header.flags |= AddressHeaderFlags::Nodad;
                m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                m
            }
        };
        let op = op.clone();
        self.queue(
            &op.ns.clone(),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
            Box::new(move |errno| op.refused(errno)),
        );
        Ok(())
    }

    /// `ip addr del`; an address (or link) already gone counts as done.
    pub fn del_addr(&mut self, op: &AddAddr) -> Result<()> {
        let (ns, addr) = (&op.ns, op.addr);
        let Some(index) = self.link_index(ns, &op.link)? else { return Ok(()) };
        let what = || format!("cannot remove address {addr} from {:?} in {ns}", op.link);
        let found = self.address_messages(ns, what)?.into_iter().find(|m| {
            m.header.index == index
                && m.header.prefix_len == addr.prefix()
                && m.attributes.iter().any(|a| matches!(a, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == addr.ip()))
        });
        match found {
            Some(m) => {
                self.request_now(ns, RouteNetlinkMessage::DelAddress(m), 0, |errno| Error::new(Code::KernelRefused, what()).errno(errno))
            }
            None => Ok(()),
        }
    }

    fn address_messages(&mut self, ns: &NsRef, what: impl FnOnce() -> String) -> Result<Vec<AddressMessage>> {
        Ok(self
            .dump(ns, RouteNetlinkMessage::GetAddress(Default::default()), what)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    pub fn addrs(&mut self, ns: &NsRef) -> Result<Vec<AddrInfo>> {
        let names = decode::names_by_index(&self.dump_links(ns)?);
        let msgs = self.address_messages(ns, || format!("cannot list addresses in {ns}"))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let local = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = local.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                // IFA_FLAGS holds all 32 flag bits; the header's 8 where it is missing.
                let flags = m
                    .attributes
                    .iter()
                    .find_map(|a| match a {
                        AddressAttribute::Flags(f) => Some(f.bits()),
                        _ => None,
                    })
                    .unwrap_or(u32::from(m.header.flags.bits()));
                let scope = match m.header.scope {
                    AddressScope::Universe => "global".to_string(),
                    AddressScope::Site => "site".into(),
                    AddressScope::Link => "link".into(),
                    AddressScope::Host => "host".into(),
                    AddressScope::Nowhere => "nowhere".into(),
                    other => u8::from(other).to_string(),
                };
                Some(AddrInfo {
                    link: names.get(&m.header.index).cloned().unwrap_or_default(),
                    addr: format!("{ip}/{}", m.header.prefix_len),
                    family: if ip.is_ipv4() { 4 } else { 6 },
                    tentative: flags & AddressFlags::Tentative.bits() != 0,
                    scope,
                    dynamic: flags & AddressFlags::Permanent.bits() == 0,
                })
            })
            .collect())
    }
}
