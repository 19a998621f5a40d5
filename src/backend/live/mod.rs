//! The live backend: interprets ops against the kernel (through [`Kernel`]) and writes
//! every object to the lab's ledger before creating it. What an op means (validation,
//! errors, records) is in `crate::ops`; this file decides what is recorded, what is
//! refused because it is not the lab's, and what may be batched.

pub mod capture;
mod dhcp;
mod dns;
#[cfg(test)]
mod double;
mod firewall;
pub mod kernel;
pub mod linux;
pub mod netlink;
mod overlay;
mod packets;
mod pingall;
mod procs;
mod ra;
pub mod teardown;
#[cfg(test)]
mod tests;
pub mod trace;

use crate::backend::Backend;
use crate::error::{Code, Error, Origin, Result};
use crate::lab::report::Report;
use crate::lab::{self, Entry, LabState, Ledger, Object, Phase};
use crate::ops::address::AddAddr;
use crate::ops::link::{self as ops_link, CreateBridge, CreateVeth, DeleteLink, LinkChange, LinkRecord, SetLink};
use crate::ops::netns::{CreateNetns, NetnsRecord};
use crate::ops::query::Query;
use crate::ops::route::AddRoute;
use crate::ops::sysctl::{Sysctl, SysctlRecord};
use crate::ops::{names, NsRef, Op, Outcome};
use kernel::Kernel;
use linux::Linux;
use netlink::Netlink;

pub struct LiveBackend<K: Kernel = Linux> {
    nl: Netlink<K>,
    lab: String,
    script: String,
    /// Opened at the first object created, so a script that fails early leaves no lab.
    ledger: Option<Ledger>,
    state: LabState,
    /// A `--sandbox` run: the lab's processes end with it (and with nsscript if killed).
    sandboxed: bool,
    progress: crate::progress::Progress,
    /// The captures running in the background, by id (see packets.rs).
    captures: packets::Captures,
    /// The next ifindex for a link made in a namespace that outlives the lab (see
    /// [`LiveBackend::outside_index`]); 0 until the first is picked.
    next_outside_index: u32,
    /// The DNS servers resolve() asks by default.
    dns: dns::Known,
}

impl LiveBackend<Linux> {
    pub fn new(lab: &str, script: &str) -> Result<Self> {
        LiveBackend::with_kernel(Linux::default(), lab, script)
    }
}

impl<K: Kernel> LiveBackend<K> {
    pub fn with_kernel(kernel: K, lab: &str, script: &str) -> Result<Self> {
        names::validate_lab_name(lab)?;
        Ok(LiveBackend {
            nl: Netlink::new(kernel),
            lab: lab.to_string(),
            script: script.to_string(),
            ledger: None,
            state: LabState::default(),
            sandboxed: false,
            progress: Default::default(),
            captures: Default::default(),
            next_outside_index: 0,
            dns: Default::default(),
        })
    }

    pub fn set_sandboxed(&mut self, on: bool) {
        self.sandboxed = on;
        if on {
            // The sandbox's own namespace starts with lo down: `host()` is a namespace
            // of the lab's there, and reaching 127.0.0.1 in it should just work.
            self.nl.queue_lo_up(&NsRef::Host);
        }
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Every link of the lab, as the kernel lists them now (for capturing on them).
    pub fn lab_links(&mut self) -> Result<Vec<trace::LabLink>> {
        trace::lab_links(&mut self.nl, &self.state)
    }

    /// The kernel, for the REPL's `:capture` (it opens packet sockets through it).
    pub fn kernel(&mut self) -> &mut K {
        self.nl.kernel()
    }

    /// Whether this run created anything (so there is a lab to keep or roll back).
    pub fn has_lab(&self) -> bool {
        self.ledger.is_some()
    }

    /// Remove everything this run created and the ledger with it.
    pub fn rollback(&mut self) -> Report {
        self.progress.done();
        self.nl.discard_queued();
        let report = teardown::teardown(&self.state, &mut self.nl, true);
        if self.ledger.take().is_some() && report.failed.is_empty() {
            let _ = lab::remove(&self.lab);
        }
        self.state = LabState::default();
        report
    }

    fn record(&mut self, e: Entry) -> Result<()> {
        self.record_all(vec![e])
    }

    fn record_all(&mut self, entries: Vec<Entry>) -> Result<()> {
        if self.ledger.is_none() {
            self.ledger = Some(Ledger::create(&self.lab, &self.script)?);
        }
        self.ledger.as_mut().expect("just opened").append_all(&entries)?;
        for e in &entries {
            self.state.apply(e);
        }
        Ok(())
    }

    /// Write the intent of `object`, run `create`, then write the entry again as done
    /// (with what `done` fills in from the result) or as failed. The intent already
    /// holds the object's identity wherever one can be known before it exists (a
    /// namespace's cookie, the ifindex a link outside the lab is created with), and the
    /// identity of the outside namespace it goes into.
    fn created<T>(
        &mut self,
        object: Object,
        create: impl FnOnce(&mut Self) -> Result<T>,
        done: impl FnOnce(&T, Object) -> Object,
    ) -> Result<T> {
        // Intent, kernel call and result under the name lock: two labs claiming one
        // name never interleave (the second finds the first's object recorded).
        let _names = lab::lock::names()?;
        let mut first = self.outside_entry(object_ns(&object))?;
        let intent = Entry::intent(self.state.new_id(), object);
        first.push(intent.clone());
        self.record_all(first)?;
        match create(self) {
            Ok(v) => {
                let object = done(&v, intent.object.clone());
                self.record(Entry { phase: Phase::Done, object, ..intent })?;
                Ok(v)
            }
            Err(e) => {
                self.record(intent.at(Phase::Failed))?;
                Err(e)
            }
        }
    }

    /// A creation refused because a name is taken: when the lab itself holds the name,
    /// say so (the default help blames someone else).
    fn name_taken_by_us(&self, err: Error, names: &[(&NsRef, &str)]) -> Error {
        match names.iter().find(|(ns, name)| err.code == Code::NameTaken && self.state.link(ns, name).is_some()) {
            Some((ns, name)) => ops_link::taken_by_the_lab(err, ns, name),
            None => err,
        }
    }

    /// The entry that records the identity of `ns`, when the lab is about to change it
    /// for the first time and does not own it (nothing otherwise).
    fn outside_entry(&mut self, ns: Option<&NsRef>) -> Result<Vec<Entry>> {
        let Some(ns) = ns.filter(|ns| !self.state.owns_ns(ns) && self.state.outside_cookie(ns).is_none()) else {
            return Ok(Vec::new());
        };
        let cookie = self.nl.kernel().netns_cookie(ns)?;
        Ok(vec![Entry { id: self.state.new_id(), phase: Phase::Done, object: Object::Outside { ns: ns.clone(), cookie } }])
    }

    /// The ifindex to create a link in `ns` with, when `ns` outlives the lab (None in the
    /// lab's own namespaces: their links go with them and need no identity). Chosen by
    /// us, it is in the ledger's intent before the link exists, so a run killed between
    /// the two leaves an entry that still identifies its link: a link someone makes
    /// later under that name gets another ifindex from the kernel's counter, which
    /// starts at 1 and counts up, while ours come from 2^30 up (from a random point, so
    /// that two labs seldom meet; if they do, the kernel refuses and another is picked).
    fn outside_index(&mut self, ns: &NsRef) -> Option<u32> {
        if self.state.owns_ns(ns) {
            return None;
        }
        if self.next_outside_index == 0 {
            self.reseed_outside_index();
        }
        let i = self.next_outside_index;
        self.next_outside_index = if i >= i32::MAX as u32 { 0 } else { i + 1 };
        Some(i)
    }

    fn reseed_outside_index(&mut self) {
        const BASE: u32 = 1 << 30;
        self.next_outside_index = BASE + (random_u64() % u64::from(BASE - (1 << 24))) as u32;
    }

    /// Whether a creation refused with EEXIST was refused for the ifindex we chose (the
    /// name is free): then another index is tried.
    fn index_clash(&mut self, e: &Error, ns: &NsRef, names: &[&str], chosen: bool) -> bool {
        if !chosen || !e.is_errno(libc::EEXIST) {
            return false;
        }
        let free = names.iter().all(|n| matches!(self.nl.link_index(ns, n), Ok(None)));
        if free {
            self.reseed_outside_index();
        }
        free
    }

    fn require_owned_link(&self, ns: &NsRef, name: &str, action: &str) -> Result<()> {
        if self.state.owns_link(ns, name) {
            return Ok(());
        }
        Err(ops_link::not_owned(ns, name, action, &self.lab))
    }

    fn create_netns(&mut self, op: CreateNetns) -> Result<Outcome> {
        op.validate()?;
        if self.state.owns_netns(&op.name) {
            return Ok(Outcome::Done);
        }
        let name = op.name.clone();
        // The namespace exists (unnamed) before its entry is written: the intent holds
        // its cookie, so no entry ever names a namespace without saying which one.
        let cookie = self.nl.kernel().prepare_netns()?;
        let lab = self.lab.clone();
        self.created(
            Object::Netns(NetnsRecord { name: name.clone(), cookie: Some(cookie) }),
            |b| b.nl.kernel().create_netns(&name, &lab),
            |_, o| o,
        )?;
        // lo goes up with the namespace's first burst.
        self.nl.queue_lo_up(&NsRef::named(&op.name));
        Ok(Outcome::Done)
    }

    fn create_bridge(&mut self, op: CreateBridge) -> Result<Outcome> {
        op.validate()?;
        if self.state.link(&op.ns, &op.name).is_some_and(|(_, l)| l.kind == "bridge") {
            return Ok(Outcome::Done);
        }
        for attempt in 0.. {
            let index = self.outside_index(&op.ns);
            let record = LinkRecord { ns: op.ns.clone(), name: op.name.clone(), kind: "bridge".into(), index, pair: None };
            match self.created(Object::Link(record), |b| b.nl.create_bridge(&op, index), with_index) {
                Err(e) if attempt < 3 && self.index_clash(&e, &op.ns, &[&op.name], index.is_some()) => continue,
                other => other.map_err(|e| self.name_taken_by_us(e, &[(&op.ns, &op.name)]))?,
            };
            break;
        }
        if !self.state.owns_ns(&op.ns) {
            self.warn_bridge_filtering(&op.ns, &op.name);
        }
        Ok(Outcome::Done)
    }

    fn create_veth(&mut self, op: CreateVeth) -> Result<Outcome> {
        op.validate()?;
        for attempt in 0.. {
            let indexes = (self.outside_index(&op.ns), self.outside_index(&op.peer_ns));
            let (a, b) = (self.state.new_id(), self.state.new_id());
            let end = |id, pair, ns: &NsRef, name: &str, index| {
                Entry::intent(
                    id,
                    Object::Link(LinkRecord { ns: ns.clone(), name: name.to_string(), kind: "veth".into(), index, pair: Some(pair) }),
                )
            };
            let (near, far) = (end(a, b, &op.ns, &op.name, indexes.0), end(b, a, &op.peer_ns, &op.peer, indexes.1));
            // Both ends' intents in one ledger write, both results in another.
            let _names = lab::lock::names()?;
            let mut first = self.outside_entry(Some(&op.ns))?;
            if op.peer_ns != op.ns {
                first.extend(self.outside_entry(Some(&op.peer_ns))?);
            }
            first.extend([far.clone(), near.clone()]);
            self.record_all(first)?;
            match self.nl.create_veth(&op, indexes) {
                Ok((ia, ib)) => self.record_all(vec![done_with_index(near, ia), done_with_index(far, ib)])?,
                Err(e) => {
                    self.record_all(vec![near.at(Phase::Failed), far.at(Phase::Failed)])?;
                    let chosen = indexes.0.is_some() || indexes.1.is_some();
                    // Which end clashed is not said: both names free means an index did.
                    if attempt < 3
                        && self.index_clash(&e, &op.ns, &[&op.name], chosen)
                        && matches!(self.nl.link_index(&op.peer_ns, &op.peer), Ok(None))
                    {
                        continue;
                    }
                    return Err(self.name_taken_by_us(e, &[(&op.ns, &op.name), (&op.peer_ns, &op.peer)]));
                }
            }
            break;
        }
        Ok(Outcome::Done)
    }

    fn set_link(&mut self, op: SetLink) -> Result<Outcome> {
        op.validate()?;
        self.require_owned_link(&op.ns, &op.name, "change")?;
        if let LinkChange::MoveTo(NsRef::Named(target)) = &op.change {
            if !self.state.owns_netns(target) {
                // Moving a link into a foreign namespace would hand it out of the lab.
                self.nl.kernel().open_netns(target)?;
            }
        }
        if let LinkChange::MoveTo(target) = &op.change {
            // The namespace it moves into is identified before anything of ours is there.
            if self.state.link(&op.ns, &op.name).is_some() {
                let first = self.outside_entry(Some(target))?;
                if !first.is_empty() {
                    self.record_all(first)?;
                }
            }
        }
        self.nl.set_link(&op)?;
        if op.keeps_identity() {
            return Ok(Outcome::Done);
        }
        let (ns, name) = op.result();
        if let Some(id) = self.state.link(&op.ns, &op.name).map(|(e, _)| e.id) {
            let index = self.nl.require_link(&ns, &name)?;
            self.record(Entry { id, phase: Phase::Done, object: Object::LinkMoved { ns: ns.clone(), name: name.clone(), index } })?;
        }
        Ok(Outcome::Link { ns, name })
    }

    fn delete_link(&mut self, op: DeleteLink) -> Result<Outcome> {
        self.require_owned_link(&op.ns, &op.name, "delete")?;
        self.nl.delete_link(&op.ns, &op.name)?;
        if let Some((e, l)) = self.state.link(&op.ns, &op.name) {
            let gone: Vec<u64> = std::iter::once(e.id).chain(l.pair).collect();
            for id in gone {
                self.record(Entry { id, phase: Phase::Done, object: Object::LinkGone })?;
            }
        }
        Ok(Outcome::Done)
    }

    fn add_addr(&mut self, op: AddAddr) -> Result<Outcome> {
        if self.state.owns_link(&op.ns, &op.link) {
            self.nl.add_addr(&op)?;
            return Ok(Outcome::Done);
        }
        // An address on a link that outlives the lab: recorded, removed at `down`.
        self.nl.require_link(&op.ns, &op.link)?;
        self.created(Object::Addr(op.clone()), |b| b.nl.add_addr(&op), |_, o| o)?;
        Ok(Outcome::Done)
    }

    fn add_route(&mut self, op: AddRoute) -> Result<Outcome> {
        op.validate()?;
        if self.state.owns_ns(&op.ns) {
            self.nl.add_route(&op)?;
            return Ok(Outcome::Done);
        }
        self.created(Object::Route(op.clone()), |b| b.nl.add_route(&op), |_, o| o)?;
        Ok(Outcome::Done)
    }

    fn set_sysctl(&mut self, op: Sysctl) -> Result<Outcome> {
        op.validate()?;
        if self.state.owns_ns(&op.ns) {
            // Nothing to restore in a namespace that goes away with the lab.
            self.nl.kernel().sysctl_write(&op.ns, &op.key, &op.value)?;
            return Ok(Outcome::Done);
        }
        let old = self.nl.kernel().sysctl_read(&op.ns, &op.key)?;
        if old == op.value {
            return Ok(Outcome::Done);
        }
        let record = SysctlRecord { ns: op.ns.clone(), key: op.key.clone(), old };
        self.created(Object::Sysctl(record), |b| b.nl.kernel().sysctl_write(&op.ns, &op.key, &op.value), |_, o| o)?;
        Ok(Outcome::Done)
    }

    fn query(&mut self, q: Query) -> Result<Outcome> {
        match q {
            Query::Links(ns) => self.nl.links(&ns).map(Outcome::Links),
            Query::Addrs(ns) => self.nl.addrs(&ns).map(Outcome::Addrs),
            Query::Routes(ns) => self.nl.routes(&ns).map(Outcome::Routes),
            Query::Fdb(ns) => self.nl.fdb(&ns).map(Outcome::Fdb),
            Query::VethPeer { ns, name } => self.veth_peer(ns, name),
        }
    }

    fn veth_peer(&mut self, ns: NsRef, name: String) -> Result<Outcome> {
        if let Some(peer) = self.state.link(&ns, &name).and_then(|(_, l)| l.pair).and_then(|p| self.state.link_by_id(p)) {
            return Ok(Outcome::Link { ns: peer.ns.clone(), name: peer.name.clone() });
        }
        match self.nl.local_veth_peer(&ns, &name)? {
            Some(peer) => Ok(Outcome::Link { ns, name: peer }),
            None => {
                let kind = self.nl.link_kind(&ns, &name)?;
                let why = match kind.as_deref() {
                    None => "no such link".to_string(),
                    Some("veth") => "its peer is in a namespace this lab does not know".to_string(),
                    Some(k) => format!("it is a {} link, not a veth", if k.is_empty() { "device" } else { k }),
                };
                Err(Error::new(Code::NoPeer, format!("cannot find the peer of {name:?} in {ns}"))
                    .why(why)
                    .help(".peer() works on veth links"))
            }
        }
    }

    /// Queue `op` on its namespace's socket when it only needs an ack and changes
    /// nothing the ledger records; otherwise None (it must run on its own).
    fn try_queue(&mut self, op: &Op) -> Option<Result<()>> {
        match op {
            Op::SetLink(s)
                if matches!(s.change, LinkChange::Up | LinkChange::Down | LinkChange::Mtu(_) | LinkChange::Mac(_))
                    && self.state.owns_link(&s.ns, &s.name) =>
            {
                Some(self.nl.queue_set_link(s))
            }
            Op::AddAddr(a) if self.state.owns_link(&a.ns, &a.link) => Some(self.nl.queue_add_addr(a)),
            Op::AddRoute(r) if self.state.owns_ns(&r.ns) => Some(r.validate().and_then(|_| self.nl.queue_add_route(r))),
            _ => None,
        }
    }

    fn apply_one(&mut self, op: Op) -> Result<Outcome> {
        match op {
            Op::CreateNetns(o) => self.create_netns(o),
            Op::CreateBridge(o) => self.create_bridge(o),
            Op::CreateVeth(o) => {
                let watch = o.master.clone().map(|br| (o.ns.clone(), br, o.name.clone()));
                let out = self.create_veth(o)?;
                self.warn_overlay_mtu(watch)?;
                Ok(out)
            }
            Op::SetLink(o) => {
                let watch = match &o.change {
                    LinkChange::Master(br) => Some((o.ns.clone(), br.clone(), o.name.clone())),
                    _ => None,
                };
                let out = self.set_link(o)?;
                self.warn_overlay_mtu(watch)?;
                Ok(out)
            }
            Op::DeleteLink(o) => self.delete_link(o),
            Op::AddAddr(o) => self.add_addr(o),
            Op::AddRoute(o) => self.add_route(o),
            Op::Sysctl(o) => self.set_sysctl(o),
            Op::Exec(o) => {
                o.cmd.validate()?;
                let timeout = o.timeout_ms.map(|ms| std::time::Duration::from_millis(u64::from(ms)));
                self.nl.kernel().run(&o.ns, &o.cmd, timeout).map(Outcome::Exec)
            }
            Op::Query(q) => self.query(q),
            Op::Firewall(o) => self.firewall(o),
            Op::Spawn(o) => self.spawn(o),
            Op::DhcpServer(o) => self.dhcp_server(o),
            Op::DhcpLease(o) => self.dhcp_lease(o),
            Op::DhcpRelay(o) => self.dhcp_relay(o),
            Op::DnsServer(o) => self.dns_server(o),
            Op::RouterAdv(o) => self.router_adv(o),
            Op::Resolve(o) => self.resolve(o),
            Op::WaitAddr(o) => self.wait_addr(o),
            Op::Ping(o) => self.nl.kernel().ping(&o.ns, o.addr, &o.spec).map(Outcome::Ping),
            Op::PingAll(o) => self.pingall(o).map(Outcome::PingAll),
            Op::Capture(o) => self.capture(o),
            Op::Trace(o) => self.trace(o).map(Outcome::Trace),
            Op::CreateLink(o) => self.create_link(o),
            Op::FdbAppend(o) => self.fdb_append(o),
            Op::Shape(o) => self.shape(o),
            Op::BridgeVlanFiltering(o) => {
                self.require_owned_link(&o.ns, &o.bridge, "change")?;
                self.nl.bridge_vlan_filtering(&o).map(|_| Outcome::Done)
            }
            Op::BridgeVlan(o) => {
                self.require_owned_link(&o.ns, &o.port, "change")?;
                self.nl.bridge_vlan(&o).map(|_| Outcome::Done)
            }
        }
    }
}

/// The namespace an object lives in (None: a namespace itself, or nothing in one).
fn object_ns(o: &Object) -> Option<&NsRef> {
    match o {
        Object::Link(l) => Some(&l.ns),
        Object::Addr(a) => Some(&a.ns),
        Object::Route(r) => Some(&r.ns),
        Object::Sysctl(s) => Some(&s.ns),
        Object::Fw(f) => Some(&f.ns),
        Object::Proc(p) => Some(&p.ns),
        Object::LinkMoved { ns, .. } | Object::Outside { ns, .. } => Some(ns),
        Object::Begin { .. } | Object::Netns(_) | Object::LinkGone => None,
    }
}

/// 64 random bits from the kernel (getrandom), or from the clock if it cannot answer.
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    if n == 8 {
        return u64::from_ne_bytes(buf);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

/// A link entry with the ifindex the kernel gave it.
fn with_index(index: &u32, object: Object) -> Object {
    match object {
        Object::Link(l) => Object::Link(LinkRecord { index: Some(*index), ..l }),
        other => other,
    }
}

fn done_with_index(e: Entry, index: u32) -> Entry {
    Entry { phase: Phase::Done, object: with_index(&index, e.object.clone()), ..e }
}

impl<K: Kernel> Backend for LiveBackend<K> {
    fn apply(&mut self, op: Op) -> Result<Outcome> {
        // SIGINT/SIGTERM stop the build between two ops (see signals.rs).
        crate::signals::check()?;
        if let Some(queued) = self.try_queue(&op) {
            return queued.map(|_| Outcome::Done);
        }
        // Creations and settings of the lab's own namespaces go ahead of the queued
        // requests: those only change links, addresses and routes that exist already.
        // Anything else (a query, a command, a check, a rename...) first sees them done.
        let ahead_of_queue = match &op {
            Op::CreateNetns(_) | Op::CreateBridge(_) | Op::CreateVeth(_) => true,
            Op::Sysctl(s) => self.state.owns_ns(&s.ns),
            _ => false,
        };
        if !ahead_of_queue {
            self.nl.flush()?;
        }
        // What sends packets (a check, a user's command, a DHCP client) first makes the
        // links that came up able to carry them (see Netlink::settle).
        let started = std::time::Instant::now();
        if matches!(op, Op::Ping(_) | Op::PingAll(_) | Op::Exec(_) | Op::DhcpLease(_) | Op::Resolve(_) | Op::Trace(_)) {
            self.nl.settle()?;
        }
        // Questions are not building (the REPL's completion asks them at every Tab).
        if !matches!(op, Op::Query(_)) {
            let netns = self.state.netns().count();
            self.progress.tick(|| format!("{netns} namespaces in lab {}", self.lab));
        }
        let is_exec = matches!(op, Op::Exec(_) | Op::Spawn(_));
        let mut out = self.apply_one(op);
        // pingall's time is what its caller waited, the links' settling included.
        if let Ok(Outcome::PingAll(r)) = &mut out {
            r.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        }
        if is_exec {
            // A user's command may have renamed, moved or deleted links.
            self.nl.forget_indexes();
        }
        out
    }

    fn set_origin(&mut self, origin: Option<Origin>) {
        self.nl.origin = origin;
    }

    fn flush(&mut self) -> Result<()> {
        self.nl.flush()
    }

    fn lab_netns(&self) -> Vec<String> {
        self.state.netns_names()
    }

    fn finish(&mut self) -> Result<()> {
        self.progress.done();
        self.nl.flush()?;
        // A signal that came during the last step (a last `exec`, a last creation) is
        // honoured like one between two steps: the run stops and rolls back.
        crate::signals::check()
    }

    fn lab_name(&self) -> String {
        self.lab.clone()
    }

    fn set_lab_name(&mut self, name: &str) -> Result<()> {
        names::validate_lab_name(name)?;
        if self.ledger.is_none() {
            lab::lock::hold(name, "building it")?;
        }
        if self.ledger.is_some() {
            return Err(Error::new(Code::LateLabName, format!("cannot rename lab {:?} to {name:?}", self.lab))
                .why("it has already created objects")
                .help("call lab(\"NAME\") at the top of the script, before anything is created"));
        }
        self.lab = name.to_string();
        Ok(())
    }
}

impl<K: Kernel> Drop for LiveBackend<K> {
    /// A sandboxed run's processes end with it (see procs.rs).
    fn drop(&mut self) {
        self.stop_processes_if_sandboxed();
    }
}

/// `nsscript down LAB`: remove what the ledger names, then the ledger.
pub fn down(lab_name: &str, wait: bool) -> Result<Report> {
    let state = lab::load(lab_name)?;
    let mut nl = Netlink::new(Linux::default());
    let report = teardown::teardown(&state, &mut nl, wait);
    if report.failed.is_empty() {
        lab::remove(lab_name)?;
    }
    Ok(report)
}
