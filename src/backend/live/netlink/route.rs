//! Route messages: `ip route add`, its undo, listing a table, and `ip route get`.

use super::decode;
use super::{acked, Netlink};
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::query::{RouteInfo, Tables};
use crate::ops::route::{AddRoute, RouteAnswer, RouteQuery, RouteVia, TABLE_MAIN};
use crate::ops::NsRef;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteType};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn malformed(what: &str, e: impl ToString) -> Error {
    Error::new(Code::MalformedAddress, format!("invalid {what}")).why(e.to_string())
}

/// The table a route message is in: RTA_TABLE where the header's byte cannot hold it.
pub(super) fn table_of(m: &RouteMessage) -> u32 {
    m.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table))
}

impl<K: Kernel> Netlink<K> {
    /// The message of a route, for adding it and for deleting it again: built from the
    /// same fields, a delete names the same route (table, metric and all).
    fn route_message(&mut self, op: &AddRoute) -> Result<RouteMessage> {
        let dest = op.dest_or_default();
        let mut builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dest.network(), dest.prefix())
            .map_err(|e| malformed("route destination", e))?;
        if let RouteVia::Gateway(gw) = &op.via {
            builder = builder.gateway(*gw).map_err(|e| malformed("gateway", e))?;
        }
        if let Some(dev) = op.device() {
            let index = self.require_link(&op.ns, dev)?;
            builder = builder.output_interface(index);
        }
        if let Some(src) = op.src {
            builder = builder.pref_source(src).map_err(|e| malformed("source address", e))?;
        }
        builder = builder.table_id(op.table_id());
        if let Some(m) = op.metric {
            builder = builder.priority(m);
        }
        if op.onlink {
            builder = builder.onlink();
        }
        let mut msg = builder.build();
        if let Some(mtu) = op.mtu {
            msg.attributes.push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        Ok(msg)
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
        self.routes_in(ns, Tables::One(TABLE_MAIN))
    }

    /// The unicast routes of `tables`: what `ip route show table T|all` shows, without
    /// the kernel's local and broadcast routes.
    pub fn routes_in(&mut self, ns: &NsRef, tables: Tables) -> Result<Vec<RouteInfo>> {
        let names = decode::names_by_index(&self.dump_links(ns)?);
        let mut out = Vec::new();
        for v6 in [false, true] {
            let query = if v6 { RouteMessageBuilder::<Ipv6Addr>::new().build() } else { RouteMessageBuilder::<Ipv4Addr>::new().build() };
            let msgs = self.dump(ns, RouteNetlinkMessage::GetRoute(query), || format!("cannot list routes in {ns}"))?;
            for m in msgs {
                let RouteNetlinkMessage::NewRoute(m) = m else { continue };
                let table = table_of(&m);
                // Cached exceptions (a path MTU learnt) come in the dump too, as
                // host routes: they are not routes of the table (`ip route` hides them).
                if !tables.holds(table) || m.header.kind != RouteType::Unicast || m.header.flags.contains(RouteFlags::Cloned) {
                    continue;
                }
                let (mut dest, mut via, mut dev, mut metric, mut src) = (None, None, None, 0, None);
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(addr) => dest = decode::route_addr(addr),
                        RouteAttribute::Gateway(addr) => via = decode::route_addr(addr),
                        RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
                        RouteAttribute::Priority(p) => metric = *p,
                        RouteAttribute::PrefSource(addr) => src = decode::route_addr(addr),
                        _ => {}
                    }
                }
                let dest = match dest {
                    Some(d) if m.header.destination_prefix_length > 0 => format!("{d}/{}", m.header.destination_prefix_length),
                    Some(d) => d.to_string(),
                    None => "default".to_string(),
                };
                out.push(RouteInfo {
                    dest,
                    via: via.map(|v| v.to_string()),
                    dev,
                    family: if v6 { 6 } else { 4 },
                    table,
                    metric,
                    src: src.map(|s| s.to_string()),
                });
            }
        }
        Ok(out)
    }

    /// `ip route get DST [from FROM] [iif IIF] [mark FWMARK]`, asked over netlink: the
    /// route the kernel would use (rules and tables included), or why there is none.
    pub fn route_get(&mut self, ns: &NsRef, q: &RouteQuery) -> Result<RouteAnswer> {
        q.validate()?;
        let full = if q.dst.is_ipv4() { 32 } else { 128 };
        let mut msg = RouteMessageBuilder::<IpAddr>::new().destination_prefix(q.dst, full).map_err(|e| malformed("destination", e))?;
        if let Some(from) = q.from {
            msg = msg.source_prefix(from, full).map_err(|e| malformed("source address", e))?;
        }
        if let Some(iif) = &q.iif {
            msg = msg.input_interface(self.require_link(ns, iif)?);
        }
        if let Some(mark) = q.fwmark {
            msg = msg.mark(mark);
        }
        let mut msg = msg.build();
        // A question, not a route: no protocol, scope or type of ours; and the answer
        // should name the table it came from.
        msg.header.table = 0;
        msg.header.protocol = Default::default();
        msg.header.scope = Default::default();
        msg.header.kind = Default::default();
        msg.header.flags = RouteFlags::LookupTable;
        self.flush()?;
        let answer = self.exchange(ns, vec![acked(RouteNetlinkMessage::GetRoute(msg), 0)])?.pop().unwrap_or_default();
        if let Some(errno) = answer.errno {
            return Err(q.refused(ns, errno));
        }
        let route = answer.route.ok_or_else(|| {
            Error::new(Code::KernelRefused, format!("cannot ask for the route to {} in {ns}", q.describe()))
                .why("the kernel acknowledged the question without answering it")
        })?;
        let mut out = RouteAnswer { dev: None, via: None, src: None, table: table_of(&route) };
        let (mut oif, mut source) = (None, None);
        for a in &route.attributes {
            match a {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(g) => out.via = decode::route_addr(g),
                RouteAttribute::PrefSource(s) => out.src = decode::route_addr(s),
                RouteAttribute::Source(RouteAddress::Inet(s)) => source = Some(IpAddr::V4(*s)),
                RouteAttribute::Source(RouteAddress::Inet6(s)) => source = Some(IpAddr::V6(*s)),
                _ => {}
            }
        }
        // Asked with from, the kernel keeps the source given (as `ip route get` prints it).
        out.src = out.src.or(source);
        if let Some(index) = oif {
            out.dev = self.link_name(ns, index)?;
        }
        Ok(out)
    }
}
