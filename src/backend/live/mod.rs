//! The live backend: executes ops against the kernel and writes every object to the
//! lab's ledger before creating it.

pub mod dhcp;
pub mod firewall;
pub mod icmp;
pub mod netlink;
mod nft;
pub mod overlay;
mod pingall;
pub mod process;
pub mod procs;
pub mod sysctl;
pub mod tap;
pub mod tc;
mod wire;

use crate::backend::Backend;
use crate::error::{Code, Error, Origin, Result};
use crate::lab::{self, teardown, Entry, LabState, Ledger, Phase};
use crate::nsexec;
use crate::op::{LinkChange, NsRef, Op, Outcome, RouteVia, VethSpec};
use netlink::Netlink;
use std::os::fd::AsRawFd;

pub struct LiveBackend {
    nl: Netlink,
    lab: String,
    script: String,
    /// Opened at the first object created, so a script that fails early leaves no lab.
    ledger: Option<Ledger>,
    state: LabState,
    /// A `--sandbox` run: the lab's processes end with it (and with nsscript if killed).
    sandboxed: bool,
    progress: crate::progress::Progress,
}

impl LiveBackend {
    pub fn new(lab: &str, script: &str) -> Result<Self> {
        lab::validate_lab_name(lab)?;
        Ok(LiveBackend {
            nl: Netlink::new(),
            lab: lab.to_string(),
            script: script.to_string(),
            ledger: None,
            state: LabState::default(),
            sandboxed: false,
            progress: Default::default(),
        })
    }

    pub fn set_sandboxed(&mut self, on: bool) {
        self.sandboxed = on;
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    /// Whether this run created anything (so there is a lab to keep or roll back).
    pub fn has_lab(&self) -> bool {
        self.ledger.is_some()
    }

    /// Remove everything this run created and the ledger with it.
    pub fn rollback(&mut self) -> teardown::Report {
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

    /// Write `intent`, run `create`, then write `done(result)` or `failed`.
    fn created<T>(
        &mut self,
        intent: Entry,
        create: impl FnOnce(&mut Self) -> Result<T>,
        done: impl FnOnce(&T, Entry) -> Entry,
    ) -> Result<T> {
        // Intent, kernel call and result under the name lock: two labs claiming one
        // name never interleave (the second finds the first's object recorded).
        let _names = lab::lock::names()?;
        self.record(intent.clone())?;
        match create(self) {
            Ok(v) => {
                self.record(done(&v, with_phase(intent, Phase::Done)))?;
                Ok(v)
            }
            Err(e) => {
                self.record(with_phase(intent, Phase::Failed))?;
                Err(e)
            }
        }
    }

    fn require_owned_link(&self, ns: &NsRef, name: &str, action: &str) -> Result<()> {
        if self.state.owns_link(ns, name) {
            return Ok(());
        }
        Err(Error::new(Code::NotOwned, format!("refusing to {action} link {name:?} in {ns}"))
            .why(format!("the link does not belong to lab {:?}", self.lab))
            .help("nsscript only changes links its lab created or that live in its namespaces; the machine's own links are left alone"))
    }

    fn create_netns(&mut self, name: &str) -> Result<Outcome> {
        nsexec::validate_netns_name(name)?;
        if self.state.owns_netns(name) {
            return Ok(Outcome::Done);
        }
        let id = self.state.new_id();
        let intent = Entry::Netns { id, phase: Phase::Intent, name: name.to_string(), inode: None };
        let made = self.created(
            intent,
            |_| nsexec::create_netns(name),
            |made, e| match e {
                Entry::Netns { id, phase, name, .. } => Entry::Netns { id, phase, name, inode: Some(made.inode) },
                other => other,
            },
        )?;
        let ns = NsRef::named(name);
        self.nl.adopt_socket(ns.clone(), made.route_socket);
        self.nl.adopt_ns_handle(name, made.handle);
        // lo goes up with the namespace's first burst (see netlink.rs).
        self.nl.queue_lo_up(&ns);
        Ok(Outcome::Done)
    }

    fn create_bridge(&mut self, ns: NsRef, name: String) -> Result<Outcome> {
        netlink::validate_ifname(&name)?;
        if self.state.link(&ns, &name).is_some_and(|l| l.kind == "bridge") {
            return Ok(Outcome::Done);
        }
        let id = self.state.new_id();
        let intent =
            Entry::Link { id, phase: Phase::Intent, ns: ns.clone(), name: name.clone(), kind: "bridge".into(), index: None, pair: None };
        self.created(intent, |b| b.nl.create_bridge(&ns, &name), |index, e| set_index(e, *index))?;
        if !self.state.owns_ns(&ns) {
            self.warn_bridge_filtering(&ns, &name); // issue 3: FORWARD DROP + br_netfilter
        }
        Ok(Outcome::Done)
    }

    fn create_veth(&mut self, spec: VethSpec) -> Result<Outcome> {
        netlink::validate_ifname(&spec.name)?;
        netlink::validate_ifname(&spec.peer)?;
        if spec.ns == spec.peer_ns && spec.name == spec.peer {
            return Err(Error::new(Code::BadWiring, format!("cannot create veth pair {:?} / {:?}", spec.name, spec.peer))
                .help("the two ends need different names"));
        }
        let (a, b) = (self.state.new_id(), self.state.new_id());
        let end = |id, pair, ns: &NsRef, name: &str| Entry::Link {
            id,
            phase: Phase::Intent,
            ns: ns.clone(),
            name: name.to_string(),
            kind: "veth".into(),
            index: None,
            pair: Some(pair),
        };
        let (near, far) = (end(a, b, &spec.ns, &spec.name), end(b, a, &spec.peer_ns, &spec.peer));
        // Both ends' intents in one ledger write, both results in another.
        let _names = lab::lock::names()?;
        self.record_all(vec![far.clone(), near.clone()])?;
        match self.nl.create_veth(&spec) {
            Ok((ia, ib)) => {
                self.record_all(vec![set_index(with_phase(near, Phase::Done), ia), set_index(with_phase(far, Phase::Done), ib)])?
            }
            Err(e) => {
                self.record_all(vec![with_phase(near, Phase::Failed), with_phase(far, Phase::Failed)])?;
                return Err(e);
            }
        }
        Ok(Outcome::Done)
    }

    fn set_link(&mut self, ns: NsRef, name: String, change: LinkChange) -> Result<Outcome> {
        self.require_owned_link(&ns, &name, "change")?;
        if let LinkChange::MoveTo(NsRef::Named(target)) = &change {
            if !self.state.owns_netns(target) {
                // Moving a link into a foreign namespace would hand it out of the lab.
                nsexec::open_netns(target)?;
            }
        }
        self.nl.set_link(&ns, &name, &change)?;
        let (new_ns, new_name) = match &change {
            LinkChange::Rename(n) => (ns.clone(), n.clone()),
            LinkChange::MoveTo(t) => (t.clone(), name.clone()),
            _ => return Ok(Outcome::Done),
        };
        if let Some(id) = self.state.link(&ns, &name).map(|l| l.id) {
            let index = self.nl.require_link(&new_ns, &new_name)?;
            self.record(Entry::LinkMoved { id, ns: new_ns.clone(), name: new_name.clone(), index })?;
        }
        Ok(Outcome::Link { ns: new_ns, name: new_name })
    }

    fn delete_link(&mut self, ns: NsRef, name: String) -> Result<Outcome> {
        self.require_owned_link(&ns, &name, "delete")?;
        self.nl.delete_link(&ns, &name)?;
        if let Some(rec) = self.state.link(&ns, &name).cloned() {
            self.record(Entry::LinkGone { id: rec.id })?;
            if let Some(pair) = rec.pair {
                self.record(Entry::LinkGone { id: pair })?;
            }
        }
        Ok(Outcome::Done)
    }

    fn add_addr(&mut self, ns: NsRef, link: String, addr: ipnetwork::IpNetwork) -> Result<Outcome> {
        if self.state.owns_link(&ns, &link) {
            self.nl.add_addr(&ns, &link, addr)?;
            return Ok(Outcome::Done);
        }
        // An address on a link that outlives the lab: recorded, removed at `down`.
        self.nl.require_link(&ns, &link)?;
        let id = self.state.new_id();
        let intent = Entry::Addr { id, phase: Phase::Intent, ns: ns.clone(), link: link.clone(), addr: addr.to_string() };
        self.created(intent, |b| b.nl.add_addr(&ns, &link, addr), |_, e| e)?;
        Ok(Outcome::Done)
    }

    fn add_route(&mut self, ns: NsRef, dest: Option<ipnetwork::IpNetwork>, via: RouteVia) -> Result<Outcome> {
        if self.state.owns_ns(&ns) {
            self.nl.add_route(&ns, dest, &via)?;
            return Ok(Outcome::Done);
        }
        let id = self.state.new_id();
        let via_text = match &via {
            RouteVia::Gateway(ip) => ip.to_string(),
            RouteVia::Device(d) => format!("dev {d}"),
        };
        let intent = Entry::Route { id, phase: Phase::Intent, ns: ns.clone(), dest: dest.map(|d| d.to_string()), via: via_text };
        self.created(intent, |b| b.nl.add_route(&ns, dest, &via), |_, e| e)?;
        Ok(Outcome::Done)
    }

    fn set_sysctl(&mut self, ns: NsRef, key: String, value: String) -> Result<Outcome> {
        if self.state.owns_ns(&ns) {
            // Nothing to restore in a namespace that goes away with the lab.
            sysctl::write(self.nl.ns_fd(&ns)?, &key, &value)?;
            return Ok(Outcome::Done);
        }
        let old = sysctl::read(self.nl.ns_fd(&ns)?, &key)?;
        if old == value {
            return Ok(Outcome::Done);
        }
        let id = self.state.new_id();
        let intent = Entry::Sysctl { id, phase: Phase::Intent, ns: ns.clone(), key: key.clone(), old };
        self.created(intent, |b| sysctl::write(b.nl.ns_fd(&ns)?, &key, &value), |_, e| e)?;
        Ok(Outcome::Done)
    }

    fn veth_peer(&mut self, ns: NsRef, name: String) -> Result<Outcome> {
        if let Some(pair) = self.state.link(&ns, &name).and_then(|l| l.pair) {
            if let Some(peer) = self.state.links.iter().find(|l| l.id == pair) {
                return Ok(Outcome::Link { ns: peer.ns.clone(), name: peer.name.clone() });
            }
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
}

impl LiveBackend {
    /// Queue `op` on its namespace's socket when it only needs an ack and changes
    /// nothing the ledger records; otherwise None (it must run on its own).
    fn try_queue(&mut self, op: &Op) -> Option<Result<()>> {
        match op {
            Op::SetLink { ns, name, change }
                if matches!(change, LinkChange::Up | LinkChange::Down | LinkChange::Mtu(_) | LinkChange::Mac(_))
                    && self.state.owns_link(ns, name) =>
            {
                Some(self.nl.queue_set_link(ns, name, change))
            }
            Op::AddAddr { ns, link, addr } if self.state.owns_link(ns, link) => Some(self.nl.queue_add_addr(ns, link, *addr)),
            Op::AddRoute { ns, dest, via } if self.state.owns_ns(ns) => Some(self.nl.queue_add_route(ns, *dest, via)),
            _ => None,
        }
    }

    fn apply_one(&mut self, op: Op) -> Result<Outcome> {
        match op {
            Op::CreateNetns { name } => self.create_netns(&name),
            Op::CreateBridge { ns, name } => self.create_bridge(ns, name),
            Op::CreateVeth(spec) => {
                let watch = overlay::enslaving(&Op::CreateVeth(spec.clone()));
                let out = self.create_veth(spec)?;
                self.warn_overlay_mtu(watch)?;
                Ok(out)
            }
            Op::SetLink { ns, name, change } => {
                let watch = overlay::enslaving(&Op::SetLink { ns: ns.clone(), name: name.clone(), change: change.clone() });
                let out = self.set_link(ns, name, change)?;
                self.warn_overlay_mtu(watch)?;
                Ok(out)
            }
            Op::DeleteLink { ns, name } => self.delete_link(ns, name),
            Op::AddAddr { ns, link, addr } => self.add_addr(ns, link, addr),
            Op::AddRoute { ns, dest, via } => self.add_route(ns, dest, via),
            Op::Sysctl { ns, key, value } => self.set_sysctl(ns, key, value),
            Op::Exec { ns, cmd } => {
                let fd = match &ns {
                    NsRef::Host => None,
                    named => Some(self.nl.ns_fd(named)?.as_raw_fd()),
                };
                process::run(fd, &cmd, &ns.to_string()).map(Outcome::Exec)
            }
            Op::Links { ns } => self.nl.links(&ns).map(Outcome::Links),
            Op::Addrs { ns } => self.nl.addrs(&ns).map(Outcome::Addrs),
            Op::Routes { ns } => self.nl.routes(&ns).map(Outcome::Routes),
            Op::VethPeer { ns, name } => self.veth_peer(ns, name),
            // Issue 3: firewall/NAT, processes, DHCP, ping (firewall.rs, procs.rs, dhcp.rs, icmp.rs).
            Op::Fw { ns, op } => self.apply_fw(ns, op),
            Op::Spawn { ns, cmd, listen, wait_ms } => self.spawn(ns, cmd, listen, wait_ms),
            Op::ExecTimeout { ns, cmd, timeout_ms } => self.exec_timeout(ns, cmd, timeout_ms),
            Op::DhcpServer { ns, spec } => self.dhcp_server(ns, spec),
            Op::DhcpLease { ns, iface, timeout_ms } => self.dhcp_lease(ns, iface, timeout_ms),
            Op::Ping { ns, addr, spec } => icmp::ping(self.nl.ns_fd(&ns)?, addr, &spec).map(Outcome::Ping),
            // Issue 4: link kinds, overlays, bridge VLANs, shaping (backend/live/overlay.rs).
            Op::CreateLink(spec) => self.create_link(spec),
            Op::FdbAppend { ns, link, mac, dst } => self.fdb_append(ns, link, mac, dst),
            Op::Fdb { ns } => self.nl.fdb(&ns).map(Outcome::Fdb),
            Op::Shape { ns, link, shape } => self.shape(ns, link, shape),
            Op::BridgeVlanFiltering { ns, bridge, on } => self.bridge_vlan_filtering(ns, bridge, on),
            Op::BridgeVlan { ns, port, vid, pvid, untagged } => self.bridge_vlan(ns, port, vid, pvid, untagged),
            Op::PingAll(spec) => self.pingall(spec).map(Outcome::PingAll),
        }
    }
}

impl Backend for LiveBackend {
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
            Op::CreateNetns { .. } | Op::CreateBridge { .. } | Op::CreateVeth(_) => true,
            Op::Sysctl { ns, .. } => self.state.owns_ns(ns),
            _ => false,
        };
        if !ahead_of_queue {
            self.nl.flush()?;
        }
        // What sends packets (a check, a user's command, a DHCP client) waits until the
        // links that came up can carry them: the kernel drops packets on a link its
        // link-watch work has not seen yet, up to ~1 s after it came up.
        if matches!(op, Op::Ping { .. } | Op::PingAll(_) | Op::Exec { .. } | Op::ExecTimeout { .. } | Op::DhcpLease { .. }) {
            self.nl.settle()?;
        }
        let netns = self.state.netns.len();
        self.progress.tick(|| format!("{netns} namespaces in lab {}", self.lab));
        let is_exec = matches!(op, Op::Exec { .. } | Op::ExecTimeout { .. } | Op::Spawn { .. });
        let out = self.apply_one(op);
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
        self.state().netns.iter().map(|n| n.name.clone()).collect()
    }

    fn finish(&mut self) -> Result<()> {
        self.progress.done();
        self.nl.flush()
    }

    fn lab_name(&self) -> String {
        self.lab.clone()
    }

    fn set_lab_name(&mut self, name: &str) -> Result<()> {
        lab::validate_lab_name(name)?;
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

impl Drop for LiveBackend {
    /// A sandboxed run's processes end with it (issue 3; see procs.rs).
    fn drop(&mut self) {
        self.stop_processes_if_sandboxed();
    }
}

fn with_phase(e: Entry, p: Phase) -> Entry {
    match e {
        Entry::Netns { id, name, inode, .. } => Entry::Netns { id, phase: p, name, inode },
        Entry::Link { id, ns, name, kind, index, pair, .. } => Entry::Link { id, phase: p, ns, name, kind, index, pair },
        Entry::Addr { id, ns, link, addr, .. } => Entry::Addr { id, phase: p, ns, link, addr },
        Entry::Route { id, ns, dest, via, .. } => Entry::Route { id, phase: p, ns, dest, via },
        Entry::Sysctl { id, ns, key, old, .. } => Entry::Sysctl { id, phase: p, ns, key, old },
        Entry::Fw { id, ns, table, chain, undo, .. } => Entry::Fw { id, phase: p, ns, table, chain, undo },
        Entry::Proc { id, ns, what, pid, start, files, .. } => Entry::Proc { id, phase: p, ns, what, pid, start, files },
        other => other,
    }
}

fn set_index(e: Entry, index: u32) -> Entry {
    match e {
        Entry::Link { id, phase, ns, name, kind, pair, .. } => Entry::Link { id, phase, ns, name, kind, index: Some(index), pair },
        other => other,
    }
}

/// `nsscript down LAB`: remove what the ledger names, then the ledger.
pub fn down(lab_name: &str, wait: bool) -> Result<teardown::Report> {
    let state = lab::load(lab_name)?;
    let mut nl = Netlink::new();
    let report = teardown::teardown(&state, &mut nl, wait);
    if report.failed.is_empty() {
        lab::remove(lab_name)?;
    }
    Ok(report)
}
