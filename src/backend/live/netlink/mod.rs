//! Everything that speaks rtnetlink, above the [`Kernel`] seam: the messages are built
//! here with rtnetlink's types (one file per message family), the kernel's sockets carry
//! them. This is the only module that imports rtnetlink's builders.
//!
//! Requests that answer only with an ack (link up, address, route) are *queued*: kept
//! until [`Netlink::flush`], which sends each namespace's requests as one burst, in the
//! order they were made (the kernel applies one socket's messages in order, so a link
//! can go up, get an address and a route in one sendmsg). Holding them back until the
//! lab's links exist is also what keeps a big lab quick: links brought up early start
//! IPv6 DAD/MLD chatter that a bridge floods to every port while the build goes on.

mod address;
mod bridge;
mod decode;
mod link;
mod neighbour;
pub mod observe;
mod qdisc;
mod route;
mod rule;

use super::kernel::{Answer, Kernel, Request};
use crate::error::{Code, Error, Origin, Result};
use crate::ops::NsRef;
use rtnetlink::packet_core::{NetlinkMessage, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;
use std::collections::{HashMap, HashSet};

/// The netlink side of a live run: the kernel it talks to, what it knows of the
/// lab's links, and the requests waiting for the next flush.
pub struct Netlink<K: Kernel> {
    k: K,
    /// ifindex by (namespace, name): filled by creation echoes and lookups, dropped on
    /// rename/move/delete, and cleared after anything else may have changed links.
    index: HashMap<(NsRef, String), u32>,
    queued: Vec<Queued>,
    /// Namespaces whose links may have come up since the last [`Netlink::settle`].
    unsettled: HashSet<NsRef>,
    /// The script call being served: kept with each queued request, so a refusal that
    /// arrives at a later flush still points at the line that asked for it.
    pub origin: Option<Origin>,
}

/// How a refused request is explained: the op's own `refused(errno)`.
type Explain = Box<dyn FnOnce(i32) -> Error + Send>;

/// A request waiting for the next flush, and how to explain its refusal.
struct Queued {
    ns: NsRef,
    request: Request,
    explain: Explain,
    origin: Option<Origin>,
}

/// A request the kernel answers with an ack (or a refusal), plus `flags`.
fn acked(msg: RouteNetlinkMessage, flags: u16) -> Request {
    let mut request = NetlinkMessage::from(msg);
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    request
}

impl<K: Kernel> Netlink<K> {
    pub fn new(k: K) -> Self {
        Netlink { k, index: HashMap::new(), queued: Vec::new(), unsettled: Default::default(), origin: None }
    }

    /// The kernel, for what is not netlink (namespaces, sysctl, firewall, processes).
    pub fn kernel(&mut self) -> &mut K {
        &mut self.k
    }

    /// Send `requests` to `ns` now, in order, and return the kernel's answers.
    fn exchange(&mut self, ns: &NsRef, requests: Vec<Request>) -> Result<Vec<Answer>> {
        self.k.exchange(ns, requests)
    }

    /// Dump `request`'s objects in `ns` (links, addresses, routes). Queued requests go
    /// first: a dump shows the lab as the script built it.
    fn dump(&mut self, ns: &NsRef, request: RouteNetlinkMessage, what: impl FnOnce() -> String) -> Result<Vec<RouteNetlinkMessage>> {
        self.flush()?;
        match self.k.dump(ns, request)? {
            Ok(messages) => Ok(messages),
            Err(errno) => Err(Error::new(Code::KernelRefused, what()).errno(errno)),
        }
    }

    /// Send one request to `ns` now (after the queued ones) and wait for its ack; a
    /// refusal is explained by `refused`.
    fn request_now(&mut self, ns: &NsRef, msg: RouteNetlinkMessage, flags: u16, refused: impl FnOnce(i32) -> Error) -> Result<()> {
        self.flush()?;
        match self.exchange(ns, vec![acked(msg, flags)])?.pop().unwrap_or_default().errno {
            None => Ok(()),
            Some(errno) => Err(refused(errno)),
        }
    }

    /// Forget everything held for a namespace (its socket pins it in the kernel).
    pub fn forget(&mut self, ns: &NsRef) {
        self.index.retain(|(n, _), _| n != ns);
        self.queued.retain(|q| &q.ns != ns);
        self.unsettled.remove(ns);
        self.k.forget(ns);
    }

    /// Close every namespace handle and socket the kernel side holds (two descriptors a
    /// namespace); each is opened again when needed. Links keep their indexes.
    pub fn release_handles(&mut self) {
        self.k.forget_all();
    }

    /// Links may have changed behind our back (a user's `exec`): look them up again.
    pub fn forget_indexes(&mut self) {
        self.index.clear();
    }

    /// Keep a request for the next [`Netlink::flush`].
    fn queue(&mut self, ns: &NsRef, msg: RouteNetlinkMessage, flags: u16, explain: Explain) {
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
            self.unsettled.insert(ns.clone());
            let answers = self.exchange(&ns, requests).map_err(|e| e.made_at(origin))?;
            for (answer, (explain, origin)) in answers.into_iter().zip(explains) {
                if let Some(errno) = answer.errno {
                    return Err(explain(errno).made_at(origin));
                }
            }
        }
        Ok(())
    }

    /// Forget queued requests unsent (the lab is being rolled back).
    pub fn discard_queued(&mut self) {
        self.queued.clear();
    }

    /// Make every link that came up, in the namespaces whose links changed since the
    /// last call, able to send before a check or a command sends: the kernel drops what
    /// is sent on a link its link-watch work has not activated yet, and that work may
    /// wait up to a second (seen: a whole 1 s `assert_no_ping` window right after a
    /// build). Asking the kernel for one link by index runs that link's pending
    /// link-watch event at once, so one round trip per namespace does it; nothing waits
    /// for a state that will not change (an empty bridge stays "unknown" for good).
    pub fn settle(&mut self) -> Result<()> {
        self.flush()?;
        for ns in std::mem::take(&mut self.unsettled) {
            // A namespace that cannot be listed any more has nothing to wait for.
            let Ok(links) = self.dump_links(&ns) else { continue };
            let asks: Vec<Request> = links
                .iter()
                .filter(|l| decode::may_await_activation(l))
                .map(|l| acked(RouteNetlinkMessage::GetLink(LinkUnspec::new_with_index(l.header.index).build()), 0))
                .collect();
            if !asks.is_empty() {
                self.exchange(&ns, asks)?;
            }
        }
        Ok(())
    }
}
