//! Everything that speaks rtnetlink: one socket per namespace, opened inside it once
//! and reused (see wire.rs). This is the only module that imports rtnetlink's builders;
//! rtnetlink provides the messages, our synchronous sockets carry them.

use super::wire::Wire;
use crate::error::{Code, Error, Origin, Result};
use crate::nsexec;
use crate::op::{AddrInfo, LinkChange, LinkInfo, NsRef, RouteInfo, RouteVia, VethSpec};
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Netlink sockets, one synchronous [`Wire`] per namespace for every request and dump.
///
/// Requests that answer only with an ack (link up, address, route) are *queued*: kept
/// until [`Netlink::flush`], which sends each namespace's requests as one burst, in the
/// order they were made (the kernel applies one socket's messages in order, so a link
/// can go up, get an address and a route in one sendmsg). Holding them back until the
/// lab's links exist is also what keeps a big lab quick: links brought up early start
/// IPv6 DAD/MLD chatter that a bridge floods to every port while the build goes on.
pub struct Netlink {
    wires: HashMap<NsRef, Wire>,
    ns_files: HashMap<String, File>,
    /// ifindex by (namespace, name): filled by creation echoes and lookups, dropped on
    /// rename/move/delete, and cleared after anything else may have changed links.
    index: HashMap<(NsRef, String), u32>,
    queued: Vec<Queued>,
    /// Namespaces whose links may have come up since the last [`Netlink::settle`].
    unsettled: std::collections::HashSet<NsRef>,
    answer_buf: Vec<u8>,
    /// The script call being served: kept with each queued request, so a refusal that
    /// arrives at a later flush still points at the line that asked for it.
    pub origin: Option<Origin>,
}

/// A request waiting for the next flush, and how to explain its refusal.
struct Queued {
    ns: NsRef,
    request: NetlinkMessage<RouteNetlinkMessage>,
    explain: Box<dyn FnOnce(Error) -> Error>,
    origin: Option<Origin>,
}

/// A request the kernel answers with an ack (or a refusal), plus `flags`.
fn acked(msg: RouteNetlinkMessage, flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut request = NetlinkMessage::from(msg);
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    request
}

pub const IFNAMSIZ: usize = 16;

/// Link names follow the kernel's rules (IFNAMSIZ, no '/', ':' or white space).
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::new(Code::InvalidName, format!("invalid interface name {name:?}"))
            .why(why)
            .help("interface names are 1 to 15 bytes without '/', ':' or white space, e.g. \"veth0\""))
    };
    if name.is_empty() {
        return bad("the name is empty".into());
    }
    if name.len() >= IFNAMSIZ {
        return bad(format!("it is {} bytes long; the kernel allows at most 15 (IFNAMSIZ)", name.len()));
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not names".into());
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        return bad("it contains '/', ':' or white space".into());
    }
    Ok(())
}

impl Netlink {
    pub fn new() -> Self {
        Netlink {
            wires: HashMap::new(),
            ns_files: HashMap::new(),
            index: HashMap::new(),
            queued: Vec::new(),
            unsettled: Default::default(),
            answer_buf: vec![0; super::wire::ANSWER_BUF],
            origin: None,
        }
    }

    /// Send this namespace's requests over a socket that was created inside it.
    pub fn adopt_socket(&mut self, ns: NsRef, socket: rtnetlink::sys::Socket) {
        self.wires.insert(ns, Wire::new(socket));
    }

    /// A new NETLINK_ROUTE socket bound to `ns`.
    fn socket_in(&mut self, ns: &NsRef) -> Result<rtnetlink::sys::Socket> {
        match ns {
            NsRef::Host => nsexec::route_socket(),
            NsRef::Named(_) => nsexec::route_socket_in(self.ns_fd(ns)?),
        }
    }

    fn open_wire(&mut self, ns: &NsRef) -> Result<()> {
        if !self.wires.contains_key(ns) {
            let socket = self.socket_in(ns)?;
            self.adopt_socket(ns.clone(), socket);
        }
        Ok(())
    }

    /// Send `requests` to `ns` now, in order, and return the kernel's answers.
    fn exchange(&mut self, ns: &NsRef, requests: Vec<NetlinkMessage<RouteNetlinkMessage>>) -> Result<Vec<super::wire::Answer>> {
        self.open_wire(ns)?;
        self.wires.get_mut(ns).expect("just opened").exchange(requests, &mut self.answer_buf)
    }

    /// Dump `request`'s objects in `ns` (links, addresses, routes). Queued requests go
    /// first: a dump shows the lab as the script built it.
    fn dump(&mut self, ns: &NsRef, request: RouteNetlinkMessage, what: impl FnOnce() -> String) -> Result<Vec<RouteNetlinkMessage>> {
        self.flush()?;
        self.open_wire(ns)?;
        match self.wires.get_mut(ns).expect("just opened").dump(request, &mut self.answer_buf)? {
            Ok(messages) => Ok(messages),
            Err(errno) => Err(Error::new(Code::KernelRefused, what()).errno(errno)),
        }
    }

    /// Send one request to `ns` now (after the queued ones) and wait for its ack; a
    /// refusal becomes `what` with the kernel's errno in words.
    fn request_now(&mut self, ns: &NsRef, msg: RouteNetlinkMessage, flags: u16, what: impl FnOnce() -> String) -> Result<()> {
        self.flush()?;
        match self.exchange(ns, vec![acked(msg, flags)])?.pop().unwrap_or_default().errno {
            None => Ok(()),
            Some(errno) => Err(Error::new(Code::KernelRefused, what()).errno(errno)),
        }
    }

    /// Keep the handle of a namespace we just created (no need to open its file again).
    pub fn adopt_ns_handle(&mut self, name: &str, handle: File) {
        self.ns_files.insert(name.to_string(), handle);
    }

    /// The open handle of a named namespace (`/run/netns/NAME`), kept for the run.
    pub fn ns_fd(&mut self, ns: &NsRef) -> Result<BorrowedFd<'_>> {
        match ns {
            NsRef::Host => Ok(nsexec::host_ns()),
            NsRef::Named(name) => {
                if !self.ns_files.contains_key(name) {
                    let f = nsexec::open_netns(name)?;
                    self.ns_files.insert(name.clone(), f);
                }
                Ok(self.ns_files[name].as_fd())
            }
        }
    }

    /// Forget everything held for a namespace (its socket pins it in the kernel).
    pub fn forget(&mut self, ns: &NsRef) {
        self.index.retain(|(n, _), _| n != ns);
        self.wires.remove(ns);
        self.queued.retain(|q| &q.ns != ns);
        self.unsettled.remove(ns);
        if let NsRef::Named(name) = ns {
            self.ns_files.remove(name);
        }
    }

    /// Links may have changed behind our back (a user's `exec`): look them up again.
    pub fn forget_indexes(&mut self) {
        self.index.clear();
    }

    /// Keep a request for the next [`Netlink::flush`].
    fn queue(&mut self, ns: &NsRef, msg: RouteNetlinkMessage, flags: u16, explain: Box<dyn FnOnce(Error) -> Error>) {
        self.queued.push(Queued { ns: ns.clone(), request: acked(msg, flags), explain, origin: self.origin.clone() });
    }

    /// Send every queued request, one burst per namespace (in the order each namespace
    /// was first asked for something; requests keep their order within it). The first
    /// refusal is the error; the namespaces after it are not sent to.
    pub fn flush(&mut self) -> Result<()> {
        let mut order: Vec<NsRef> = Vec::new();
        let mut bursts: HashMap<NsRef, Vec<Queued>> = HashMap::new();
        for q in std::mem::take(&mut self.queued) {
            bursts
                .entry(q.ns.clone())
                .or_insert_with(|| {
                    order.push(q.ns.clone());
                    Vec::new()
                })
                .push(q);
        }
        for ns in order {
            let burst = bursts.remove(&ns).expect("one burst per namespace");
            let origin = burst[0].origin.clone();
            let (requests, explains): (Vec<_>, Vec<_>) = burst.into_iter().map(|q| (q.request, (q.explain, q.origin))).unzip();
            self.mark_unsettled(&ns);
            let answers = self.exchange(&ns, requests).map_err(|e| e.made_at(origin))?;
            for (answer, (explain, origin)) in answers.into_iter().zip(explains) {
                if let Some(errno) = answer.errno {
                    return Err(explain(Error::new(Code::KernelRefused, "").errno(errno)).made_at(origin));
                }
            }
        }
        Ok(())
    }

    /// Bring up lo (ifindex 1 in every namespace), queued: in a new namespace it goes up
    /// in the namespace's first burst, not in a round trip of its own.
    pub fn queue_lo_up(&mut self, ns: &NsRef) {
        let msg = LinkUnspec::new_with_index(1).up().build();
        self.queue(ns, RouteNetlinkMessage::SetLink(msg), 0, Box::new(|e| Error { what: "cannot bring lo up".into(), ..e }));
    }

    fn mark_unsettled(&mut self, ns: &NsRef) {
        if !self.unsettled.contains(ns) {
            self.unsettled.insert(ns.clone());
        }
    }

    /// Wait (at most 2 s) until every link that is up with a carrier, in the namespaces
    /// whose links changed since the last call, can carry packets. The kernel activates
    /// a link's transmit queue only when its link-watch work runs after the carrier
    /// comes up, and drops what is sent before: a check right after a build could find a
    /// healthy lab broken (seen: a whole 1 s `assert_no_ping` window, while the kernel
    /// was still busy making namespaces).
    pub fn settle(&mut self) -> Result<()> {
        self.flush()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut pending: Vec<NsRef> = std::mem::take(&mut self.unsettled).into_iter().collect();
        while !pending.is_empty() {
            // A namespace that cannot be listed any more has nothing to wait for.
            pending.retain(|ns| self.dump_links(ns).is_ok_and(|links| links.iter().any(awaits_activation)));
            if pending.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    }

    /// Forget queued requests unsent (the lab is being rolled back).
    pub fn discard_queued(&mut self) {
        self.queued.clear();
    }

    /// Create a link now and return the kernel's echo of it (its ifindex, and for a
    /// veth IFLA_LINK, the peer's ifindex): one round trip, no lookups. Queued requests
    /// stay queued: they only change links that exist, never what a creation needs.
    fn create_echo(&mut self, ns: &NsRef, msg: LinkMessage, explain: impl FnOnce(Error) -> Error) -> Result<Option<LinkMessage>> {
        self.mark_unsettled(ns);
        let request = acked(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO);
        let answer = self.exchange(ns, vec![request])?.pop().unwrap_or_default();
        match answer.errno {
            Some(errno) => Err(explain(Error::new(Code::LinkCreateRefused, "").errno(errno))),
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
        self.link_index(ns, name)?.ok_or_else(|| {
            Error::new(Code::UnknownLink, format!("unknown link {name:?} in {ns}"))
                .why("no such device (ENODEV)")
                .help(format!("check the name with links({}) or `ip link`", ns.name().unwrap_or("host()")))
        })
    }

    /// The kind of a link (`veth`, `bridge`, ...), or "" for kinds without one (lo, a NIC).
    pub fn link_kind(&mut self, ns: &NsRef, name: &str) -> Result<Option<String>> {
        Ok(self.get_link(ns, name)?.map(|m| kind_of(&m)))
    }

    pub fn create_bridge(&mut self, ns: &NsRef, name: &str) -> Result<u32> {
        validate_ifname(name)?;
        let msg = LinkBridge::new(name).up().build();
        let what = format!("cannot create bridge {name:?} in {ns}");
        let echo = self.create_echo(ns, msg, |e| link_create_help(Error { what, ..e }, name))?;
        self.learn(ns, name, echo.map(|m| m.header.index))
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

    /// One request: the near end in `spec.ns` (optionally enslaved and up), its peer
    /// created directly in `spec.peer_ns` (no move: moving costs ~17 ms in the kernel).
    pub fn create_veth(&mut self, spec: &VethSpec) -> Result<(u32, u32)> {
        validate_ifname(&spec.name)?;
        validate_ifname(&spec.peer)?;
        let master = match &spec.master {
            Some(br) => Some(self.require_link(&spec.ns, br)?),
            None => None,
        };
        let peer_fd = if spec.peer_ns != spec.ns { Some(self.ns_fd(&spec.peer_ns)?.as_raw_fd()) } else { None };
        let mut peer = LinkMessageBuilder::<LinkUnspec>::default().name(spec.peer.clone());
        if let Some(fd) = peer_fd {
            peer = peer.setns_by_fd(fd);
        }
        if let Some(mtu) = spec.mtu {
            peer = peer.mtu(mtu);
        }
        let mut near = LinkMessageBuilder::<rtnetlink::LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(spec.name.clone())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())));
        if let Some(mtu) = spec.mtu {
            near = near.mtu(mtu);
        }
        if let Some(m) = master {
            near = near.controller(m);
        }
        if spec.up {
            near = near.up();
        }
        let what = format!("cannot create veth pair {:?} / {:?}", spec.name, spec.peer);
        let taken = if spec.peer_ns == spec.ns {
            format!("{} or {}", spec.name, spec.peer)
        } else {
            format!("{} in {} or {} in {}", spec.name, spec.ns, spec.peer, spec.peer_ns)
        };
        let echo = self.create_echo(&spec.ns, near.build(), |e| link_create_help(Error { what, ..e }, &taken))?;
        let peer_index = echo.as_ref().and_then(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::Link(i) => Some(*i),
                _ => None,
            })
        });
        let a = self.learn(&spec.ns, &spec.name, echo.map(|m| m.header.index))?;
        let b = self.learn(&spec.peer_ns, &spec.peer, peer_index)?;
        if spec.up {
            // The kernel refuses IFF_UP in the peer's ifinfomsg when the peer is created in
            // another namespace (ENOTCONN, `ip` too): bring the peer up in a second request,
            // queued with whatever follows on that namespace's socket.
            let msg = LinkUnspec::new_with_index(b).up().build();
            let peer = spec.peer.clone();
            self.queue(
                &spec.peer_ns,
                RouteNetlinkMessage::SetLink(msg),
                0,
                Box::new(move |e| Error { code: Code::LinkChangeRefused, what: format!("cannot bring {peer:?} up"), ..e }),
            );
        }
        Ok((a, b))
    }

    pub fn set_link(&mut self, ns: &NsRef, name: &str, change: &LinkChange) -> Result<()> {
        self.queue_set_link(ns, name, change)?;
        self.flush()?;
        match change {
            LinkChange::Rename(_) | LinkChange::MoveTo(_) => {
                self.index.remove(&(ns.clone(), name.to_string()));
            }
            _ => {}
        }
        Ok(())
    }

    /// `ip link set`, queued: its ack comes with the next flush.
    pub fn queue_set_link(&mut self, ns: &NsRef, name: &str, change: &LinkChange) -> Result<()> {
        let index = self.require_link(ns, name)?;
        let base = LinkUnspec::new_with_index(index);
        let msg = match change {
            LinkChange::Up => base.up().build(),
            LinkChange::Down => base.down().build(),
            LinkChange::Mtu(mtu) => base.mtu(*mtu).build(),
            LinkChange::Mac(mac) => base.address(mac.to_vec()).build(),
            LinkChange::Master(bridge) => {
                let m = self.require_link(ns, bridge)?;
                base.controller(m).build()
            }
            LinkChange::NoMaster => base.nocontroller().build(),
            LinkChange::Rename(new) => {
                validate_ifname(new)?;
                base.name(new.clone()).build()
            }
            LinkChange::MoveTo(target) => {
                let fd = self.ns_fd(target)?.as_raw_fd();
                base.setns_by_fd(fd).build()
            }
        };
        let what = format!("cannot change link {name:?} in {ns} ({})", describe_change(change));
        let (change, name) = (change.clone(), name.to_string());
        let explain = move |err: Error| {
            let err = Error { code: Code::LinkChangeRefused, what, ..err };
            match (&change, err.errno) {
                (LinkChange::Rename(new), Some(libc::EEXIST)) => err.help(format!("a link named {new:?} already exists there")),
                (LinkChange::Rename(_), Some(libc::EBUSY)) => err.help("a link must be down to be renamed: call .down() first"),
                (LinkChange::MoveTo(t), Some(libc::EEXIST)) => {
                    err.help(format!("{t} already has a link named {name:?}: rename one of them first"))
                }
                (LinkChange::Mtu(_), Some(libc::EINVAL)) => {
                    err.help("the MTU is outside what this kind of link accepts (68..65535 for veth)")
                }
                (LinkChange::Master(_), _) => err.help("the master must be a bridge in the same namespace as the link"),
                _ => err,
            }
        };
        self.queue(ns, RouteNetlinkMessage::SetLink(msg), 0, Box::new(explain));
        Ok(())
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
        match self.request_now(ns, msg, 0, || format!("cannot delete link #{index} in {ns}")) {
            Err(e) if e.is_errno(libc::ENODEV) => Ok(()),
            other => other,
        }
    }

    pub fn add_addr(&mut self, ns: &NsRef, link: &str, addr: IpNetwork) -> Result<()> {
        self.queue_add_addr(ns, link, addr)?;
        self.flush()
    }

    /// `ip addr add`, queued. IPv6 addresses skip DAD: labs want them usable now.
    pub fn queue_add_addr(&mut self, ns: &NsRef, link: &str, addr: IpNetwork) -> Result<()> {
        let index = self.require_link(ns, link)?;
        let msg = match addr {
            IpNetwork::V4(a) => rtnetlink::AddressMessageBuilder::<Ipv4Addr>::new().index(index).address(a.ip(), a.prefix()).build(),
            IpNetwork::V6(a) => {
                let mut m = rtnetlink::AddressMessageBuilder::<Ipv6Addr>::new().index(index).address(a.ip(), a.prefix()).build();
                m.header.flags |= AddressHeaderFlags::Nodad;
                m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
                m
            }
        };
        let what = format!("cannot add address {addr} to {link:?} in {ns}");
        let link = link.to_string();
        let explain = move |err: Error| {
            let err = Error { code: Code::AddressRefused, what, ..err };
            if err.is_errno(libc::EEXIST) {
                err.help(format!("{link} already has {addr}"))
            } else {
                err
            }
        };
        self.queue(ns, RouteNetlinkMessage::NewAddress(msg), NLM_F_CREATE | NLM_F_EXCL, Box::new(explain));
        Ok(())
    }

    pub fn del_addr(&mut self, ns: &NsRef, link: &str, addr: IpNetwork) -> Result<()> {
        let Some(index) = self.link_index(ns, link)? else { return Ok(()) };
        let what = || format!("cannot remove address {addr} from {link:?} in {ns}");
        let found = self.dump(ns, RouteNetlinkMessage::GetAddress(Default::default()), what)?.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewAddress(m)
                if m.header.index == index
                    && m.header.prefix_len == addr.prefix()
                    && m.attributes
                        .iter()
                        .any(|a| matches!(a, AddressAttribute::Address(ip) | AddressAttribute::Local(ip) if *ip == addr.ip())) =>
            {
                Some(m)
            }
            _ => None,
        });
        match found {
            Some(m) => self.request_now(ns, RouteNetlinkMessage::DelAddress(m), 0, what),
            None => Ok(()),
        }
    }

    fn route_message(
        &mut self,
        ns: &NsRef,
        dest: Option<IpNetwork>,
        via: &RouteVia,
    ) -> Result<rtnetlink::packet_route::route::RouteMessage> {
        let (dest_ip, prefix) = match (dest, via) {
            (Some(d), _) => (d.network(), d.prefix()),
            (None, RouteVia::Gateway(IpAddr::V6(_))) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
            (None, _) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        };
        let builder = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(dest_ip, prefix)
            .map_err(|e| Error::new(Code::MalformedAddress, "invalid route destination").why(e.to_string()))?;
        let builder = match via {
            RouteVia::Gateway(gw) => {
                if gw.is_ipv4() != dest_ip.is_ipv4() {
                    return Err(Error::new(
                        Code::BadValue,
                        format!("cannot route {} via {gw}", dest.map(|d| d.to_string()).unwrap_or("default".into())),
                    )
                    .why("the destination and the gateway are of different address families")
                    .help("use an IPv4 gateway for IPv4 destinations and an IPv6 one for IPv6"));
                }
                builder.gateway(*gw).map_err(|e| Error::new(Code::MalformedAddress, "invalid gateway").why(e.to_string()))?
            }
            RouteVia::Device(dev) => {
                let index = self.require_link(ns, dev)?;
                builder.output_interface(index)
            }
        };
        Ok(builder.build())
    }

    pub fn add_route(&mut self, ns: &NsRef, dest: Option<IpNetwork>, via: &RouteVia) -> Result<()> {
        self.queue_add_route(ns, dest, via)?;
        self.flush()
    }

    /// `ip route add`, queued.
    pub fn queue_add_route(&mut self, ns: &NsRef, dest: Option<IpNetwork>, via: &RouteVia) -> Result<()> {
        let msg = self.route_message(ns, dest, via)?;
        let what = format!("cannot add route {} in {ns}", describe_route(dest, via));
        let explain = move |err: Error| {
            let err = Error { code: Code::RouteRefused, what, ..err };
            match err.errno {
                Some(libc::ENETUNREACH) => err.with_code(Code::GatewayUnreachable).help("the gateway is not on any connected subnet of this namespace: add an address on its subnet (and bring the link up) first"),
                Some(libc::EEXIST) => err.help("a route to this destination already exists"),
                _ => err,
            }
        };
        self.queue(ns, RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_EXCL, Box::new(explain));
        Ok(())
    }

    pub fn del_route(&mut self, ns: &NsRef, dest: Option<IpNetwork>, via: &RouteVia) -> Result<()> {
        let msg = self.route_message(ns, dest, via)?;
        match self
            .request_now(ns, RouteNetlinkMessage::DelRoute(msg), 0, || format!("cannot remove route {} in {ns}", describe_route(dest, via)))
        {
            Err(e) if e.is_errno(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    fn dump_links(&mut self, ns: &NsRef) -> Result<Vec<LinkMessage>> {
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
        let names: HashMap<u32, String> = msgs.iter().map(|m| (m.header.index, name_of(m))).collect();
        Ok(msgs
            .iter()
            .map(|m| {
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
            })
            .collect())
    }

    pub fn addrs(&mut self, ns: &NsRef) -> Result<Vec<AddrInfo>> {
        let names: HashMap<u32, String> = self.dump_links(ns)?.iter().map(|m| (m.header.index, name_of(m))).collect();
        let query = RouteNetlinkMessage::GetAddress(Default::default());
        let msgs: Vec<_> = self
            .dump(ns, query, || format!("cannot list addresses in {ns}"))?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect();
        Ok(msgs
            .iter()
            .filter_map(|m| {
                let ip = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let ip = ip.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                Some(AddrInfo {
                    link: names.get(&m.header.index).cloned().unwrap_or_default(),
                    addr: format!("{ip}/{}", m.header.prefix_len),
                    family: if ip.is_ipv4() { 4 } else { 6 },
                })
            })
            .collect())
    }

    pub fn routes(&mut self, ns: &NsRef) -> Result<Vec<RouteInfo>> {
        let names: HashMap<u32, String> = self.dump_links(ns)?.iter().map(|m| (m.header.index, name_of(m))).collect();
        let mut out = Vec::new();
        for v6 in [false, true] {
            let query = if v6 { RouteMessageBuilder::<Ipv6Addr>::new().build() } else { RouteMessageBuilder::<Ipv4Addr>::new().build() };
            let msgs = self.dump(ns, RouteNetlinkMessage::GetRoute(query), || format!("cannot list routes in {ns}"))?;
            for m in msgs {
                let RouteNetlinkMessage::NewRoute(m) = m else { continue };
                // The main table's unicast routes: what `ip route` shows.
                if m.header.table != 254 || m.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut dest = None;
                let mut via = None;
                let mut dev = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(addr) => dest = route_addr(addr),
                        RouteAttribute::Gateway(addr) => via = route_addr(addr),
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

    /// The peer of a veth in the same namespace (IFLA_LINK without a link-netnsid).
    pub fn local_veth_peer(&mut self, ns: &NsRef, name: &str) -> Result<Option<String>> {
        let Some(msg) = self.get_link(ns, name)? else { return Ok(None) };
        if msg.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkNetNsId(_))) {
            return Ok(None);
        }
        let Some(peer) = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        }) else {
            return Ok(None);
        };
        Ok(self.dump_links(ns)?.iter().find(|m| m.header.index == peer).map(name_of))
    }
}

fn link_create_help(err: Error, names: &str) -> Error {
    match err.errno {
        Some(libc::EEXIST) => err
            .with_code(Code::NameTaken)
            .help(format!("a link named {names} already exists and does not belong to this lab: choose another name")),
        Some(libc::EOPNOTSUPP) => err.with_code(Code::KernelLacksFeature).help("this kernel lacks support for this link kind"),
        _ => err.with_code(Code::LinkCreateRefused),
    }
}

/// Up, with a carrier, but not yet seen by the kernel's link-watch work, which is what
/// activates its transmit queue (until then what is sent is dropped) and sets its
/// operational state. Veths and bridges start at "unknown" and always get there; lo and
/// kinds without carrier events stay "unknown" for good, so they are not waited for.
fn awaits_activation(link: &LinkMessage) -> bool {
    use rtnetlink::packet_route::link::State;
    let flags = link.header.flags;
    flags.contains(LinkFlags::Up | LinkFlags::LowerUp)
        && matches!(kind_of(link).as_str(), "veth" | "bridge")
        && link.attributes.iter().any(|a| matches!(a, LinkAttribute::OperState(State::Unknown)))
}

fn describe_change(change: &LinkChange) -> String {
    match change {
        LinkChange::Up => "up".into(),
        LinkChange::Down => "down".into(),
        LinkChange::Mtu(m) => format!("mtu {m}"),
        LinkChange::Mac(m) => format!("address {}", format_mac(m)),
        LinkChange::Master(b) => format!("master {b}"),
        LinkChange::NoMaster => "nomaster".into(),
        LinkChange::Rename(n) => format!("name {n}"),
        LinkChange::MoveTo(ns) => format!("move to {ns}"),
    }
}

pub fn describe_route(dest: Option<IpNetwork>, via: &RouteVia) -> String {
    let d = dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into());
    match via {
        RouteVia::Gateway(gw) => format!("{d} via {gw}"),
        RouteVia::Device(dev) => format!("{d} dev {dev}"),
    }
}

fn name_of(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn kind_of(m: &LinkMessage) -> String {
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

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

// ---- Issue 4: link kinds, forwarding tables, bridge VLANs, qdiscs ----

/// The kernel refused a link kind it was not built with ("Unknown device type").
fn lacks_kind(err: Error, kind: &str) -> Error {
    if !err.is_errno(libc::EOPNOTSUPP) {
        return err;
    }
    match kind {
        "vlan" => Error {
            code: Code::KernelLacksFeature,
            why: Some("this kernel lacks 802.1Q VLAN support (Unknown device type, EOPNOTSUPP)".into()),
            ..err
        }
        .help("load the module with `modprobe 8021q`, or use a kernel built with CONFIG_VLAN_8021Q"),
        "vxlan" => Error {
            code: Code::KernelLacksFeature,
            why: Some("this kernel lacks VXLAN support (Unknown device type, EOPNOTSUPP)".into()),
            ..err
        }
        .help("load the module with `modprobe vxlan`, or use a kernel built with CONFIG_VXLAN"),
        "macvlan" => Error {
            code: Code::KernelLacksFeature,
            why: Some("this kernel lacks macvlan support (Unknown device type, EOPNOTSUPP)".into()),
            ..err
        }
        .help("load the module with `modprobe macvlan`, or use a kernel built with CONFIG_MACVLAN"),
        _ => err,
    }
}

/// Like `bridge fdb`: permanent wins over static (the kernel reports 0x82 for both).
fn state_name(s: rtnetlink::packet_route::neighbour::NeighbourState) -> String {
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

impl Netlink {
    /// A vxlan, vlan or macvlan link (taps are made by `tap::create`). Returns its index.
    pub fn create_link(&mut self, spec: &crate::op::LinkSpec) -> Result<u32> {
        use crate::op::{LinkKind, MacvlanMode};
        use rtnetlink::packet_route::link::MacVlanMode as NlMode;
        validate_ifname(&spec.name)?;
        let ns = &spec.ns;
        let what = format!("cannot create {} link {:?} in {ns}", spec.kind.kind_name(), spec.name);
        let mut msg = match &spec.kind {
            LinkKind::Vxlan(v) => {
                let mut b = rtnetlink::LinkVxlan::new(&spec.name, v.id).port(v.dstport);
                if let Some(dev) = &v.dev {
                    let idx = self.require_link(ns, dev).map_err(|e| Error { what: what.clone(), ..e })?;
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
                if let Some(m) = spec.mtu {
                    b = b.mtu(m);
                }
                if spec.up {
                    b = b.up();
                }
                b.build()
            }
            LinkKind::Vlan { parent, id } => {
                let idx = self.require_link(ns, parent).map_err(|e| Error { what: what.clone(), ..e })?;
                let mut b = rtnetlink::LinkVlan::new(&spec.name, idx, *id);
                if let Some(m) = spec.mtu {
                    b = b.mtu(m);
                }
                if spec.up {
                    b = b.up();
                }
                b.build()
            }
            LinkKind::Macvlan { parent, mode } => {
                let idx = self.require_link(ns, parent).map_err(|e| Error { what: what.clone(), ..e })?;
                let mode = match mode {
                    MacvlanMode::Private => NlMode::Private,
                    MacvlanMode::Vepa => NlMode::Vepa,
                    MacvlanMode::Bridge => NlMode::Bridge,
                    MacvlanMode::Passthru => NlMode::Passthrough,
                };
                let mut b = rtnetlink::LinkMacVlan::new(&spec.name, idx, mode);
                if let Some(m) = spec.mtu {
                    b = b.mtu(m);
                }
                if spec.up {
                    b = b.up();
                }
                b.build()
            }
            LinkKind::Tap { .. } => {
                return Err(Error::new(Code::Internal, what).why("taps are created with the TUNSETIFF ioctl, not netlink"))
            }
        };
        // Keep the message as built (the builders fill IFLA_LINKINFO).
        msg.header.index = 0;
        let kind = spec.kind.kind_name();
        self.request_now(ns, RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL, || what.clone()).map_err(|e| {
            let err = lacks_kind(link_create_help(e, &spec.name), kind);
            match (&spec.kind, err.errno) {
                (LinkKind::Vxlan(v), Some(libc::EEXIST)) => err.help(format!(
                    "a link named {:?}, or another VXLAN with VNI {} on UDP port {}, already exists in {ns}",
                    spec.name, v.id, v.dstport
                )),
                (LinkKind::Vxlan(_), Some(libc::EINVAL)) => {
                    err.help("check that local and remote/group are of the same address family and that dev is the underlay link")
                }
                (LinkKind::Macvlan { .. }, Some(libc::EINVAL)) => {
                    err.help("the parent must be an Ethernet link (veth, bridge, NIC), not a macvlan in passthru mode or a loopback")
                }
                _ => err,
            }
        })?;
        self.require_link(ns, &spec.name)
    }

    /// `bridge fdb append MAC dev LINK dst IP`: appended, so several destinations can
    /// share one MAC (00:00:00:00:00:00 is the VXLAN flood list).
    pub fn fdb_append(&mut self, ns: &NsRef, link: &str, mac: [u8; 6], dst: IpAddr) -> Result<()> {
        use rtnetlink::packet_core::{NLM_F_APPEND, NLM_F_CREATE};
        use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState};
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let index = self.require_link(ns, link)?;
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.flags = NeighbourFlags::Own;
        msg.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        msg.attributes.push(NeighbourAttribute::Destination(match dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
        let what = || format!("cannot append {} dst {dst} to the forwarding table of {link:?} in {ns}", format_mac(&mac));
        self.request_now(ns, RouteNetlinkMessage::NewNeighbour(msg), NLM_F_CREATE | NLM_F_APPEND, what).map_err(|err| match err.errno {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => {
                err.help("a destination IP belongs on a VXLAN link's table: call fdb_append on the vxlan link")
            }
            Some(libc::EEXIST) => err.help("this MAC/destination pair is already in the table"),
            _ => err,
        })
    }

    /// The forwarding table of every bridge and VXLAN link in `ns` (`bridge fdb show`).
    pub fn fdb(&mut self, ns: &NsRef) -> Result<Vec<crate::op::FdbEntry>> {
        use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags};
        let names: HashMap<u32, String> = self.dump_links(ns)?.iter().map(|m| (m.header.index, name_of(m))).collect();
        let mut query = rtnetlink::packet_route::neighbour::NeighbourMessage::default();
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
                let mut e = crate::op::FdbEntry {
                    mac: String::new(),
                    dev: names.get(&m.header.ifindex).cloned().unwrap_or_else(|| format!("#{}", m.header.ifindex)),
                    master: None,
                    dst: None,
                    vlan: None,
                    vni: None,
                    state: state_name(m.header.state),
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
    pub fn bridge_vlan_filtering(&mut self, ns: &NsRef, bridge: &str, on: bool) -> Result<()> {
        use rtnetlink::packet_route::link::InfoBridge;
        let index = self.require_link(ns, bridge)?;
        let msg = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge)
            .index(index)
            .set_info_data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)]))
            .build();
        // RTM_NEWLINK on the existing bridge (changelink), as `ip link set .. type bridge` does:
        // RTM_SETLINK ignores IFLA_LINKINFO.
        let what = || format!("cannot turn VLAN filtering {} on bridge {bridge:?} in {ns}", if on { "on" } else { "off" });
        self.request_now(ns, RouteNetlinkMessage::NewLink(msg), 0, what).map_err(|err| {
            if err.is_errno(libc::EOPNOTSUPP) {
                Error {
                    code: Code::KernelLacksFeature,
                    why: Some("this kernel lacks bridge VLAN filtering (Operation not supported, EOPNOTSUPP)".into()),
                    ..err
                }
                .help("use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING (and CONFIG_VLAN_8021Q for tagged sub-interfaces)")
            } else {
                err
            }
        })
    }

    /// `bridge vlan add vid VID dev PORT [pvid] [untagged]`
    pub fn bridge_vlan(&mut self, ns: &NsRef, port: &str, vid: u16, pvid: bool, untagged: bool) -> Result<()> {
        use rtnetlink::packet_route::link::BridgeVlanInfoFlags;
        let index = self.require_link(ns, port)?;
        let mut flags = BridgeVlanInfoFlags::empty();
        if pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let msg = rtnetlink::LinkBridgeVlan::new(index).vlan(vid, flags).build();
        self.request_now(ns, RouteNetlinkMessage::SetLink(msg), 0, || format!("cannot add VLAN {vid} to bridge port {port:?} in {ns}"))
            .map_err(|err| {
                if err.is_errno(libc::EOPNOTSUPP) {
                    Error {
                        code: Code::KernelLacksFeature,
                        why: Some("this kernel lacks bridge VLAN filtering (Operation not supported, EOPNOTSUPP)".into()),
                        ..err
                    }
                    .help("use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING; the port must be enslaved to a bridge")
                } else {
                    err
                }
            })
    }

    /// `tc qdisc replace dev LINK root KIND OPTIONS` (options: the TCA_OPTIONS payload).
    pub fn replace_root_qdisc(&mut self, ns: &NsRef, link: &str, kind: &str, options: Vec<u8>) -> Result<()> {
        use rtnetlink::packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
        use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let index = self.require_link(ns, link)?;
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        msg.header.handle = TcHandle { major: 1, minor: 0 };
        msg.attributes.push(TcAttribute::Kind(kind.to_string()));
        // TCA_OPTIONS, raw: netem's payload is a struct followed by attributes.
        msg.attributes.push(TcAttribute::Other(DefaultNla::new(2, options)));
        self.request_now(ns, RouteNetlinkMessage::NewQueueDiscipline(msg), NLM_F_CREATE | NLM_F_REPLACE, || {
            format!("cannot shape link {link:?} in {ns} ({kind})")
        })
    }

    /// `tc qdisc del dev LINK root`; no qdisc of ours there counts as done.
    pub fn delete_root_qdisc(&mut self, ns: &NsRef, link: &str) -> Result<()> {
        use rtnetlink::packet_route::tc::{TcHandle, TcMessage};
        use rtnetlink::packet_route::RouteNetlinkMessage;
        let index = self.require_link(ns, link)?;
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        match self.request_now(ns, RouteNetlinkMessage::DelQueueDiscipline(msg), 0, || {
            format!("cannot remove the shaping of link {link:?} in {ns}")
        }) {
            Err(e) if e.is_errno(libc::ENOENT) || e.is_errno(libc::EINVAL) => Ok(()),
            other => other,
        }
    }
}

/// Link deletions under way on their own thread: each link's label and outcome, and
/// the sockets it used, to be given back with [`Netlink::deletions_done`].
pub struct Deletions(std::thread::JoinHandle<(Outcomes, HashMap<NsRef, Wire>)>);

/// Each deleted link's label and outcome.
pub type Outcomes = Vec<(String, Result<()>)>;

impl Netlink {
    /// Delete bridges (by namespace and ifindex, each with a label) on a thread of its
    /// own, over the namespaces' sockets: the caller goes on while the kernel works (a
    /// bridge with many ports takes it ~0.25 ms each). A bridge already gone counts as
    /// deleted.
    pub fn delete_bridges_elsewhere(&mut self, bridges: Vec<(NsRef, u32, String)>) -> Result<Deletions> {
        self.flush()?;
        let mut wires: HashMap<NsRef, Wire> = HashMap::new();
        for (ns, _, _) in &bridges {
            if !wires.contains_key(ns) {
                self.open_wire(ns)?;
                wires.insert(ns.clone(), self.wires.remove(ns).expect("just opened"));
            }
        }
        Ok(Deletions(std::thread::spawn(move || {
            let mut buf = vec![0u8; super::wire::ANSWER_BUF];
            let outcomes = bridges
                .into_iter()
                .map(|(ns, index, what)| {
                    // Down first: each port a running bridge loses makes it re-select the
                    // state of every remaining port (multicast timers included); a bridge
                    // that is down skips that. star(200): 67.8 -> 58.3 ms (30 runs each).
                    // The deletion's answer decides; one left down by a refusal is
                    // still recorded and deleted at the next `down`.
                    let requests = vec![
                        acked(RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).down().build()), 0),
                        acked(RouteNetlinkMessage::DelLink(LinkUnspec::new_with_index(index).build()), 0),
                    ];
                    let wire = wires.get_mut(&ns).expect("a wire per namespace");
                    let outcome = match wire.exchange(requests, &mut buf).map(|mut a| a.pop().unwrap_or_default().errno) {
                        Ok(None) | Ok(Some(libc::ENODEV)) => Ok(()),
                        Ok(Some(errno)) => Err(Error::new(Code::KernelRefused, format!("cannot delete {what}")).errno(errno)),
                        Err(e) => Err(e),
                    };
                    (what, outcome)
                })
                .collect();
            (outcomes, wires)
        })))
    }

    /// Wait for [`Netlink::delete_bridges_elsewhere`]: each bridge's label and outcome.
    pub fn deletions_done(&mut self, deletions: Deletions) -> Outcomes {
        match deletions.0.join() {
            Ok((outcomes, wires)) => {
                self.wires.extend(wires);
                outcomes
            }
            Err(_) => vec![("link deletions".into(), Err(Error::new(Code::Internal, "the thread deleting links failed")))],
        }
    }
}

// Issue 6: permanent neighbour entries for pingall (they do not count against the
// kernel's shared neighbour table limit).
impl Netlink {
    /// `ip neigh replace ADDR lladdr MAC dev IFINDEX nud permanent`, all sent at once.
    pub fn add_permanent_neighbours(&mut self, ns: &NsRef, entries: &[(u32, IpAddr, [u8; 6])]) -> Result<()> {
        use rtnetlink::packet_core::NLM_F_REPLACE;
        use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState};
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
}
