//! Route messages: `ip route add`, its undo, and listing the main table.

use super::decode;
use super::Netlink;
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::query::RouteInfo;
use crate::ops::route::{AddRoute, RouteAnswer, RouteQuery, RouteVia};
use crate::ops::NsRef;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl<K: Kernel> Netlink<K> {
    /// The message of a route, for adding it and for deleting it again.
    fn route_message(&mut self, op: &AddRoute) -> Result<RouteMessage> {
        let dest = op.dest_or_default();
        let builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dest.network(), dest.prefix())
            .map_err(|e| Error::new(Code::MalformedAddress, "invalid route destination").why(e.to_string()))?;
        let builder = match &op.via {
            RouteVia::Gateway(gw) => {
                builder.gateway(*gw).map_err(|e| Error::new(Code::MalformedAddress, "invalid gateway").why(e.to_string()))?
            }
            RouteVia::Device(dev) => {
                let index = self.require_link(&op.ns, dev)?;
                builder.output_interface(index)
            }
        };
        Ok(builder.build())
    }

    pub fn add_route(&mut self, op: &AddRoute) -> Result<()> {
        self.queue_add_route(op)?;
        self.flush()
    }

    /// `ip route add`, queued.
    pub fn queue_add_route(&mut self, op: &AddRoute) -> Result<()> {
        let msg = self.route_message(op)?;
        let op = op.clone();
        self.queue(&op.ns.clone(), RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL, Box::new(move |errno| op.refused(errno)));
        Ok(())
    }

    /// `ip route del`; a route already gone counts as done.
    pub fn del_route(&mut self, op: &AddRoute) -> Result<()> {
        let msg = self.route_message(op)?;
        let what = || format!("cannot remove route {} in {}", op.describe(), op.ns);
        match self.request_now(&op.ns, RouteNetlinkMessage::DelRoute(msg), 0, |errno| Error::new(Code::KernelRefused, what()).errno(errno))
        {
            Err(e) if e.is_errno(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The main table's unicast routes: what `ip route` shows.
    pub fn routes(&mut self, ns: &NsRef) -> Result<Vec<RouteInfo>> {
        let names = decode::names_by_index(&self.dump_links(ns)?);
        let mut out = Vec::new();
        for v6 in [false, true] {
            let query = if v6 { RouteMessageBuilder::<Ipv6Addr>::new().build() } else { RouteMessageBuilder::<Ipv4Addr>::new().build() };
            let msgs = self.dump(ns, RouteNetlinkMessage::GetRoute(query), || format!("cannot list routes in {ns}"))?;
            for m in msgs {
                let RouteNetlinkMessage::NewRoute(m) = m else { continue };
                if m.header.table != 254 || m.header.kind != RouteType::Unicast {
                    continue;
                }
                let (mut dest, mut via, mut dev) = (None, None, None);
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(addr) => dest = decode::route_addr(addr),
                        RouteAttribute::Gateway(addr) => via = decode::route_addr(addr),
                        RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
                        _ => {}
                    }
                }
                let dest = match dest {
                    Some(d) if m.header.destination_prefix_length > 0 => format!("{d}/{}", m.header.destination_prefix_length),
                    Some(d) => d.to_string(),
                    None => "default".to_string(),
                };
                out.push(RouteInfo { dest, via: via.map(|v| v.to_string()), dev, family: if v6 { 6 } else { 4 } });
            }
        }
        Ok(out)
    }

    /// `ip route get`: the route the kernel would use for `q` in `ns` (RTM_GETROUTE, so
    /// policy rules, marks and the input checks of `iif` all apply). A lookup the kernel
    /// refuses (no route: ENETUNREACH; forwarding off: EHOSTUNREACH; reverse-path
    /// filter, a martian source: EINVAL) is an error carrying that errno.
    pub fn route_get(&mut self, ns: &NsRef, q: &RouteQuery) -> Result<RouteAnswer> {
        let full = if q.dst.is_ipv4() { 32 } else { 128 };
        let what = || format!("no route to {} in {ns}", q.dst);
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(q.dst, full)
            .map_err(|e| Error::new(Code::MalformedAddress, what()).why(e.to_string()))?;
        if let Some(from) = q.from {
            b = b.source_prefix(from, full).map_err(|e| Error::new(Code::MalformedAddress, what()).why(e.to_string()))?;
        }
        if let Some(iif) = &q.iif {
            b = b.input_interface(self.require_link(ns, iif)?);
        }
        if let Some(mark) = q.fwmark {
            b = b.mark(mark);
        }
        self.flush()?;
        let answer = match self.k.ask(ns, RouteNetlinkMessage::GetRoute(b.build()))? {
            Ok(RouteNetlinkMessage::NewRoute(m)) => m,
            Ok(_) => return Err(Error::new(Code::KernelRefused, what()).why("the kernel answered with something else than a route")),
            Err(errno) => return Err(Error::new(Code::KernelRefused, what()).errno(errno)),
        };
        let names = decode::names_by_index(&self.dump_links(ns)?);
        let mut out = RouteAnswer { dev: None, via: None, src: None, table: u32::from(answer.header.table) };
        for a in &answer.attributes {
            match a {
                RouteAttribute::Oif(i) => out.dev = names.get(i).cloned(),
                RouteAttribute::Gateway(addr) => out.via = decode::route_addr(addr),
                RouteAttribute::PrefSource(addr) => out.src = decode::route_addr(addr),
                RouteAttribute::Table(t) => out.table = *t,
                _ => {}
            }
        }
        Ok(out)
    }
}
