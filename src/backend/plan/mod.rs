//! The recording backend: runs a lab script without root and without touching the
//! kernel. Every op is checked as the run checks it (the op family's `validate`, and
//! the refusals the model can predict, with the same errors), updates a model of the
//! lab (model.rs), and is written down as the shell commands its family prints. Queries
//! answer from the model, so `links(ns)` in plan mode returns what the plan created.
//!
//! `nsscript plan` prints [`PlanBackend::script`]; `nsscript graph` draws
//! [`PlanBackend::model`].

mod model;
mod services;

pub use model::{Model, PLink, PRule, Reach, RootQdisc};
pub use services::PService;

use crate::backend::Backend;
use crate::error::{Code, Error, Result};
use crate::ops::address::AddAddr;
use crate::ops::bridge::{self as ops_bridge, BridgePortInfo, SetBridgePort};
use crate::ops::capture::{stop_shell, CaptureOp, CaptureStats};
use crate::ops::check::{planned_ping, Ping, PingAll, PingAllResult, PingResult};
use crate::ops::firewall::{chain_undo_shell, deleted_chain, deleted_rule, FilterRule, Firewall, FwOp, PortForward, Rule};
use crate::ops::link::{self as ops_link, format_mac, CreateBridge, CreateVeth, DeleteLink, LinkChange, SetLink};
use crate::ops::netns::{self as ops_netns, CreateNetns};
use crate::ops::overlay::{CreateLink, FdbAppend, LinkKind};
use crate::ops::probe::{
    DnsResult, ExchangeResult, Failure, HttpResult, MtuResult, Probe, ProbeOutcome, Serve, StreamTo, Throughput, ThroughputResult,
};
use crate::ops::process::{Exec, ExecOutput, Spawn};
use crate::ops::qdisc::{undo_shell as qdisc_undo_shell, SetHtb, SetShape};
use crate::ops::query::{AddrInfo, FdbEntry, LinkInfo, Query};
use crate::ops::route::{AddRoute, RouteVia};
use crate::ops::rule::AddRule;
use crate::ops::shell::{quote, Sh, Step};
use crate::ops::sysctl::Sysctl;
use crate::ops::trace::{Trace, TraceResult};
use crate::ops::{names, NsRef, Op, Outcome};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The kinds a link can be enslaved to (`link.master(m)`).
const MASTER_KINDS: &[&str] = &["bridge", "bond", "vrf"];

pub struct PlanBackend {
    lab: String,
    source: String,
    model: Model,
    steps: Vec<Step>,
    /// Captures started (their ids name their tcpdumps' pids in the script).
    captures: u64,
}

impl PlanBackend {
    /// The lab's name is checked as the run checks it: it lands in paths and comments.
    pub fn new(lab: &str, source: &str) -> Result<Self> {
        names::validate_lab_name(lab)?;
        Ok(PlanBackend { lab: lab.to_string(), source: source.to_string(), model: Model::new(), steps: Vec::new(), captures: 0 })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The walkthrough as a bash script.
    pub fn script(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "#!/bin/bash");
        // The lab's name and file are the user's: no line break can end the comment.
        let oneline = |s: &str| s.replace(['\n', '\r'], " ");
        let _ = writeln!(out, "# Lab {} as shell commands (nsscript plan {}).", oneline(&self.lab), oneline(&self.source));
        let _ = writeln!(out, "# Run it as root; it builds the same namespaces, links, addresses, routes and rules.");
        let _ = writeln!(out, "set -e");
        for step in &self.steps {
            if let Some(c) = &step.comment {
                let _ = writeln!(out, "\n# {}", oneline(c));
            }
            for cmd in &step.commands {
                let _ = writeln!(out, "{cmd}");
            }
        }
        let undo = self.undo();
        if !undo.is_empty() {
            let _ = writeln!(out, "\n# To take it down again:");
            for u in undo {
                let _ = writeln!(out, "#   {u}");
            }
        }
        out
    }

    /// Where the host's background programs write their pids.
    fn host_pid_file(&self) -> String {
        format!("/run/nsscript-plan-{}.pids", self.lab)
    }

    /// The commands that take the lab down, from what it holds at the end: programs
    /// first (a namespace with a process in it outlives `ip netns del`), then the host's
    /// links and rules, then the namespaces with everything inside them.
    fn undo(&self) -> Vec<String> {
        let m = &self.model;
        let mut out = Vec::new();
        let named: Vec<&str> = m.netns.iter().filter(|n| m.ran_in.contains(&NsRef::named(n))).map(|n| n.as_str()).collect();
        if !named.is_empty() {
            let list = named.iter().map(|n| quote(n)).collect::<Vec<_>>().join(" ");
            out.push(format!("for ns in {list}; do ip netns pids \"$ns\" | xargs -r kill; done   # what the lab left running"));
        }
        for s in &m.services {
            out.extend(s.run.plan_undo(&self.lab));
        }
        if m.host_background > 0 {
            out.push(format!("kill $(cat {})", quote(&self.host_pid_file())));
        }
        for r in m.ip_rules.iter().rev().filter(|r| r.ns == NsRef::Host) {
            out.push(r.undo_shell());
        }
        // Root qdiscs on the host's links the lab did not make (its own links take theirs
        // along): the kernel's default comes back.
        for (_, link, _) in
            m.qdiscs.iter().rev().filter(|(ns, link, _)| *ns == NsRef::Host && m.link(ns, link).is_some_and(|l| l.kind == "loopback"))
        {
            out.push(qdisc_undo_shell(&NsRef::Host, link));
        }
        // Routes before the links they go by (deleting a link takes its routes along).
        for r in m.routes.iter().rev().filter(|r| r.ns == NsRef::Host) {
            out.push(r.undo_shell());
        }
        for l in m.links_in(&NsRef::Host).iter().rev().filter(|l| l.kind != "loopback") {
            // Deleting one end of a veth pair deletes the other: the newer end goes first.
            let peer_gone_first = l.peer.and_then(|p| m.by_id(p)).is_some_and(|p| p.ns == NsRef::Host && p.id > l.id);
            if !peer_gone_first {
                out.push(Sh::ip(&NsRef::Host).raw("link del").w(&l.name).done());
            }
        }
        for r in m.rules.iter().filter(|r| r.ns == NsRef::Host).rev() {
            out.push(r.rule.shell(&NsRef::Host, "-D", None));
        }
        // Chains after the rules that may jump to them.
        for (_, table, chain) in m.chains.iter().filter(|(ns, ..)| *ns == NsRef::Host).rev() {
            out.extend(chain_undo_shell(&NsRef::Host, table, chain));
        }
        // What they were before is not known to a plan.
        let mut changed: Vec<String> = m.sysctls.iter().filter(|(ns, _, _)| *ns == NsRef::Host).map(|(_, k, _)| k.clone()).collect();
        changed.extend(m.policies.iter().filter(|(ns, ..)| *ns == NsRef::Host).map(|(_, t, c, _)| format!("iptables policy of {t} {c}")));
        changed.dedup();
        if !changed.is_empty() {
            out.push(format!("# the host's {} changed: set back by hand what it was before", changed.join(", ")));
        }
        for n in m.netns.iter().rev() {
            out.push(Sh::ip(&NsRef::Host).raw("netns del").w(n).done());
        }
        out
    }

    fn push(&mut self, step: Step) {
        match (self.steps.last_mut(), step.comment.is_none()) {
            // Commands without a comment of their own belong to the step before.
            (Some(last), true) => last.commands.extend(step.commands),
            // Runs of the same kind of step read better under one comment.
            (Some(last), false) if last.comment == step.comment => last.commands.extend(step.commands),
            _ => self.steps.push(step),
        }
    }

    /// Remember that programs ran in ns (the undo stops what is left of them).
    fn ran_in(&mut self, ns: &NsRef) {
        if !self.model.ran_in.contains(ns) {
            self.model.ran_in.push(ns.clone());
        }
    }

    fn require_ns(&self, ns: &NsRef) -> Result<()> {
        if self.model.has_ns(ns) {
            return Ok(());
        }
        Err(ops_netns::unknown(ns.name().unwrap_or("")))
    }

    fn require_link(&self, ns: &NsRef, name: &str) -> Result<&PLink> {
        self.require_ns(ns)?;
        self.model.link(ns, name).ok_or_else(|| ops_link::unknown(ns, name))
    }

    /// A link the lab may change or delete: every link of the model but the host's own
    /// lo, which the lab found there (the run refuses it the same way).
    fn require_owned(&self, ns: &NsRef, name: &str, action: &str) -> Result<&PLink> {
        let l = self.require_link(ns, name)?;
        if *ns == NsRef::Host && l.kind == "loopback" {
            return Err(ops_link::not_owned(ns, name, action, &self.lab));
        }
        Ok(l)
    }

    /// A creation whose name is taken: by the lab itself (every link of the model but
    /// the host's lo), or by what the host had.
    fn taken(&self, err: Error, ns: &NsRef, name: &str) -> Error {
        match self.model.link(ns, name) {
            Some(l) if !(*ns == NsRef::Host && l.kind == "loopback") => ops_link::taken_by_the_lab(err, ns, name),
            _ => err,
        }
    }

    fn create_netns(&mut self, op: CreateNetns) -> Result<Outcome> {
        op.validate()?;
        if self.model.netns.contains(&op.name) {
            return Ok(Outcome::Done);
        }
        self.model.netns.push(op.name.clone());
        self.model.add_link(NsRef::named(&op.name), "lo", "loopback", true, 65536);
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    fn create_bridge(&mut self, op: CreateBridge) -> Result<Outcome> {
        op.validate()?;
        if let Some(l) = self.model.link(&op.ns, &op.name).filter(|l| l.kind == "bridge") {
            if op.opts.is_empty() {
                return Ok(Outcome::Done);
            }
            // The kernel applies the forward delay before the STP state: checked against
            // the state the bridge is in.
            if l.stp && op.opts.forward_delay_ms.is_some_and(|fd| fd < ops_bridge::FORWARD_DELAY_STP.0) {
                return Err(ops_bridge::options_refused(&op.ns, &op.name, &op.opts, libc::ERANGE));
            }
            let stp = op.opts.stp.unwrap_or(l.stp);
            self.model.link_mut(&op.ns, &op.name).expect("just found").stp = stp;
            self.push(ops_bridge::change_shell(&op.ns, &op.name, &op.opts));
            return Ok(Outcome::Done);
        }
        self.require_ns(&op.ns)?;
        if self.model.link(&op.ns, &op.name).is_some() {
            return Err(self.taken(op.refused(libc::EEXIST), &op.ns, &op.name));
        }
        let id = self.model.add_link(op.ns.clone(), &op.name, "bridge", true, 1500);
        self.model.by_id_mut(id).expect("just added").stp = op.opts.stp == Some(true);
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    fn bridge_port(&mut self, op: SetBridgePort) -> Result<Outcome> {
        op.validate()?;
        if self.require_link(&op.ns, &op.port)?.master.is_none() {
            return Err(op.refused(libc::EOPNOTSUPP));
        }
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    /// The ports of a bridge as the plan knows them: up ports forward (what STP would
    /// block is not known to a plan).
    fn bridge_ports(&self, ns: &NsRef, bridge: &str) -> Result<Vec<BridgePortInfo>> {
        self.require_link(ns, bridge)?;
        let ports = self.model.links_in(ns).into_iter().filter(|l| l.master.as_deref() == Some(bridge));
        Ok(ports
            .map(|l| BridgePortInfo {
                name: l.name.clone(),
                state: if l.up { "forwarding" } else { "disabled" }.into(),
                cost: 2,
                priority: 32,
            })
            .collect())
    }

    fn create_veth(&mut self, op: CreateVeth) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        self.require_ns(&op.peer_ns)?;
        for (ns, name) in [(&op.ns, &op.name), (&op.peer_ns, &op.peer)] {
            if self.model.link(ns, name).is_some() {
                return Err(self.taken(op.refused(libc::EEXIST), ns, name));
            }
        }
        if let Some(br) = &op.master {
            self.require_link(&op.ns, br)?;
        }
        let mtu = op.mtu.unwrap_or(1500);
        let a = self.model.add_link(op.ns.clone(), &op.name, "veth", op.up, mtu);
        let b = self.model.add_link(op.peer_ns.clone(), &op.peer, "veth", op.up, mtu);
        for (x, y) in [(a, b), (b, a)] {
            if let Some(l) = self.model.by_id_mut(x) {
                l.peer = Some(y);
                if x == a {
                    l.master = op.master.clone();
                }
            }
        }
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    fn set_link(&mut self, op: SetLink) -> Result<Outcome> {
        op.validate()?;
        self.require_owned(&op.ns, &op.name, "change")?;
        let (ns, name) = (op.ns.clone(), op.name.clone());
        match &op.change {
            LinkChange::Master(br) if !MASTER_KINDS.contains(&self.require_link(&ns, br)?.kind.as_str()) => {
                return Err(op.refused(libc::EOPNOTSUPP))
            }
            LinkChange::Rename(new) if self.model.link(&ns, new).is_some() => return Err(op.refused(libc::EEXIST)),
            LinkChange::MoveTo(target) => {
                self.require_ns(target)?;
                if self.model.link(target, &name).is_some() {
                    return Err(op.refused(libc::EEXIST));
                }
            }
            _ => {}
        }
        let m = &mut self.model;
        match &op.change {
            LinkChange::Up => m.link_mut(&ns, &name).expect("checked").up = true,
            LinkChange::Down => m.link_mut(&ns, &name).expect("checked").up = false,
            LinkChange::Mtu(mtu) => m.link_mut(&ns, &name).expect("checked").mtu = *mtu,
            LinkChange::Mac(mac) => m.link_mut(&ns, &name).expect("checked").mac = Some(format_mac(mac)),
            LinkChange::Master(br) => m.link_mut(&ns, &name).expect("checked").master = Some(br.clone()),
            LinkChange::NoMaster => m.link_mut(&ns, &name).expect("checked").master = None,
            LinkChange::Rename(new) => {
                for a in m.addrs.iter_mut().filter(|a| a.ns == ns && a.link == name) {
                    a.link = new.clone();
                }
                for r in m.routes.iter_mut().filter(|r| r.ns == ns && r.via == RouteVia::Device(name.clone())) {
                    r.via = RouteVia::Device(new.clone());
                }
                for l in m.links.iter_mut().filter(|l| l.ns == ns) {
                    if l.master.as_deref() == Some(&name) {
                        l.master = Some(new.clone());
                    }
                    if l.parent.as_deref() == Some(&name) {
                        l.parent = Some(new.clone());
                    }
                }
                for q in m.qdiscs.iter_mut().filter(|(n, l, _)| *n == ns && *l == name) {
                    q.1 = new.clone();
                }
                m.link_mut(&ns, &name).expect("checked").name = new.clone();
            }
            LinkChange::MoveTo(target) => {
                // Like the kernel: a moved link arrives down, without addresses, master or qdisc.
                m.addrs.retain(|a| !(a.ns == ns && a.link == name));
                m.qdiscs.retain(|(n, l, _)| !(*n == ns && *l == name));
                m.routes.retain(|r| !(r.ns == ns && r.via == RouteVia::Device(name.clone())));
                let l = m.link_mut(&ns, &name).expect("checked");
                l.ns = target.clone();
                l.up = false;
                l.master = None;
            }
        }
        self.push(op.shell());
        if op.keeps_identity() {
            return Ok(Outcome::Done);
        }
        let (ns, name) = op.result();
        Ok(Outcome::Link { ns, name })
    }

    fn delete_link(&mut self, op: DeleteLink) -> Result<Outcome> {
        let l = self.require_owned(&op.ns, &op.name, "delete")?.clone();
        self.model.remove_link(l.id);
        if let Some(p) = l.peer {
            self.model.remove_link(p);
        }
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    fn add_addr(&mut self, op: AddAddr) -> Result<Outcome> {
        self.require_link(&op.ns, &op.link)?;
        if self.model.addrs.contains(&op) {
            return Err(op.refused(libc::EEXIST));
        }
        self.push(op.shell());
        self.model.addrs.push(op);
        Ok(Outcome::Done)
    }

    fn add_route(&mut self, op: AddRoute) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        if let Some(dev) = op.device() {
            self.require_link(&op.ns, dev)?;
        }
        if let RouteVia::Gateway(gw) = &op.via {
            if !op.onlink && !self.model.addrs.iter().any(|a| a.ns == op.ns && a.addr.contains(*gw)) {
                return Err(op.refused(libc::ENETUNREACH));
            }
        }
        if let Some(src) = op.src {
            if !self.model.addrs.iter().any(|a| a.ns == op.ns && a.addr.ip() == src) {
                return Err(op.refused(libc::EINVAL));
            }
        }
        let same = |r: &AddRoute| {
            r.ns == op.ns
                && r.dest_or_default() == op.dest_or_default()
                && r.table_id() == op.table_id()
                && r.metric_or_default() == op.metric_or_default()
        };
        if self.model.routes.iter().any(same) {
            return Err(op.refused(libc::EEXIST));
        }
        self.push(op.shell());
        self.model.routes.push(op);
        Ok(Outcome::Done)
    }

    fn add_rule(&mut self, op: AddRule) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        // The priority the kernel would give it, then its check for the very same rule.
        let pref = op.pref.unwrap_or_else(|| self.model.next_rule_pref(&op.ns, op.is_ipv6()));
        let resolved = AddRule { pref: Some(pref), ..op.clone() };
        if self.model.ip_rules.contains(&resolved) {
            return Err(op.refused(libc::EEXIST));
        }
        self.push(op.shell());
        self.model.ip_rules.push(resolved);
        Ok(Outcome::Done)
    }

    fn sysctl(&mut self, op: Sysctl) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        self.model.sysctls.retain(|(n, k, _)| !(n == &op.ns && k == &op.key));
        self.model.sysctls.push((op.ns.clone(), op.key.clone(), op.value.clone()));
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    fn create_link(&mut self, op: CreateLink) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        if self.model.link(&op.ns, &op.name).is_some() {
            return Err(self.taken(op.name_taken(), &op.ns, &op.name));
        }
        // Without an explicit MTU the kernel derives one from the lower device.
        let lower_mtu = match op.kind.lower() {
            Some(lower) => Some(self.require_link(&op.ns, lower).map_err(|e| op.needing(e))?.mtu),
            None => None,
        };
        let mtu = op.mtu.or(lower_mtu.map(|m| op.kind.derived_mtu(m))).unwrap_or(op.kind.own_mtu());
        let id = self.model.add_link(op.ns.clone(), &op.name, op.kind.kind_name(), op.up, mtu);
        let l = self.model.by_id_mut(id).expect("just added");
        l.remote = op.kind.remote();
        l.parent = op.kind.lower().filter(|_| !matches!(op.kind, LinkKind::Vxlan(_))).map(String::from);
        self.push(op.shell());
        Ok(Outcome::Link { ns: op.ns, name: op.name })
    }

    fn firewall(&mut self, op: Firewall) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        let ns = op.ns.clone();
        match &op.op {
            FwOp::Raw { args } => {
                // `-D CHAIN RULE` takes a rule out of the model, `-X CHAIN` a chain
                // (appends, inserts, policies and new chains come as their own ops).
                if let Some(gone) = deleted_rule(args) {
                    self.model.rules.retain(|r| !(r.ns == ns && r.rule.same(&gone)));
                }
                if let Some((table, chain)) = deleted_chain(args) {
                    self.model.chains.retain(|c| *c != (ns.clone(), table.clone(), chain.clone()));
                }
                self.push(op.shell());
                return Ok(Outcome::Text(String::new()));
            }
            FwOp::Policy { table, chain, policy } => {
                self.model.policies.push((ns, table.clone(), chain.clone(), policy.clone()));
                self.push(op.shell());
                return Ok(Outcome::Done);
            }
            FwOp::NewChain { table, chain } => {
                // Made once, as the run does.
                let key = (ns.clone(), table.clone(), chain.clone());
                if !self.model.chains.contains(&key) {
                    self.model.chains.push(key);
                    self.push(op.shell());
                }
                return Ok(Outcome::Done);
            }
            _ => {}
        }
        let (nat, filter) = (op.source_nat(), op.filter());
        let mut rules: Vec<(Rule, Option<FilterRule>)> = op.rules().unwrap_or_default().into_iter().map(|r| (r, filter.clone())).collect();
        if matches!(op.op, FwOp::PortForward(_)) && self.model.policy(&ns, "filter", "FORWARD") == "DROP" {
            let forward = PortForward::forward_filter();
            rules.push((forward.rule(), Some(forward)));
        }
        let mut cmds = Vec::new();
        for (rule, filter) in rules {
            // Added once, as the run does (`iptables -C` first).
            if self.model.rules.iter().any(|r| r.ns == ns && r.rule.same(&rule)) {
                continue;
            }
            let pos = match &op.op {
                FwOp::Insert { pos, .. } => Some(*pos),
                _ => None,
            };
            cmds.push(rule.shell(&ns, if pos.is_some() { "-I" } else { "-A" }, pos));
            self.model.add_rule(PRule { ns: ns.clone(), rule, source_nat: nat.clone(), filter }, pos);
        }
        if !cmds.is_empty() {
            self.push(Step::new(format!("iptables in {ns}"), cmds));
        }
        Ok(Outcome::Done)
    }

    fn shape(&mut self, op: SetShape) -> Result<Outcome> {
        op.validate()?;
        // A link the lab did not make (the host's lo) is shaped too, as the run does: the
        // qdisc is in the undo.
        self.require_link(&op.ns, &op.link)?;
        let there = self.model.qdiscs.iter().find(|(ns, name, _)| *ns == op.ns && *name == op.link).map(|(_, _, q)| match q {
            RootQdisc::Shape(q) => q.kind(),
            RootQdisc::Htb(_) => "htb",
        });
        self.push(op.shell(there)?);
        self.model.qdiscs.retain(|(ns, name, _)| !(*ns == op.ns && *name == op.link));
        if let Some(shape) = &op.shape {
            self.model.qdiscs.push((op.ns.clone(), op.link.clone(), RootQdisc::Shape(shape.qdisc()?)));
        }
        Ok(Outcome::Done)
    }

    fn htb(&mut self, op: SetHtb) -> Result<Outcome> {
        let htb = op.resolve()?;
        self.require_link(&op.ns, &op.link)?;
        let replacing = self.model.qdiscs.iter().any(|(ns, name, _)| *ns == op.ns && *name == op.link);
        self.push(op.shell(replacing)?);
        self.model.qdiscs.retain(|(ns, name, _)| !(*ns == op.ns && *name == op.link));
        self.model.qdiscs.push((op.ns.clone(), op.link.clone(), RootQdisc::Htb(htb)));
        Ok(Outcome::Done)
    }

    fn query(&mut self, q: Query) -> Result<Outcome> {
        match q {
            Query::Links(ns) => {
                self.require_ns(&ns)?;
                Ok(Outcome::Links(self.model.links_in(&ns).into_iter().map(link_info).collect()))
            }
            Query::Link { ns, name } => Ok(Outcome::Links(vec![link_info(self.require_link(&ns, &name)?)])),
            Query::Addrs(ns) => {
                self.require_ns(&ns)?;
                let mut addrs = vec![AddrInfo::permanent("lo", "127.0.0.1/8".parse().expect("an address"))];
                addrs.extend(self.model.addrs_in(&ns));
                Ok(Outcome::Addrs(addrs))
            }
            Query::Routes(ns) => {
                self.require_ns(&ns)?;
                Ok(Outcome::Routes(self.model.routes_in(&ns)))
            }
            Query::RoutesIn(ns, tables) => {
                self.require_ns(&ns)?;
                Ok(Outcome::Routes(self.model.routes_of(&ns, tables)))
            }
            Query::BridgePorts { ns, bridge } => self.bridge_ports(&ns, &bridge).map(Outcome::BridgePorts),
            Query::Qdiscs(ns) => {
                self.require_ns(&ns)?;
                Ok(Outcome::Qdiscs(self.model.qdisc_infos(&ns)))
            }
            Query::Rules(ns) => {
                self.require_ns(&ns)?;
                Ok(Outcome::Rules(self.model.rule_infos(&ns)))
            }
            Query::RouteGet(ns, q) => {
                self.require_ns(&ns)?;
                q.validate()?;
                if let Some(iif) = &q.iif {
                    self.require_link(&ns, iif)?;
                }
                self.model.route_get(&ns, &q).map(Outcome::Route).map_err(|errno| q.refused(&ns, errno))
            }
            Query::Fdb(ns) => {
                self.require_ns(&ns)?;
                Ok(Outcome::Fdb(self.model.fdb.iter().filter(|(n, _)| n == &ns).map(|(_, e)| e.clone()).collect()))
            }
            Query::VethPeer { ns, name } => {
                let l = self.require_link(&ns, &name)?;
                match l.peer.and_then(|p| self.model.by_id(p)) {
                    Some(p) => Ok(Outcome::Link { ns: p.ns.clone(), name: p.name.clone() }),
                    None => Err(Error::new(Code::NoPeer, format!("cannot find the peer of {name:?} in {ns}"))
                        .why(format!("it is a {} link, not a veth", l.kind))
                        .help(".peer() works on veth links")),
                }
            }
        }
    }

    fn exec(&mut self, op: Exec) -> Result<Outcome> {
        op.cmd.validate()?;
        self.require_ns(&op.ns)?;
        self.ran_in(&op.ns);
        self.push(op.shell());
        Ok(Outcome::Exec(ExecOutput::default()))
    }

    fn spawn(&mut self, op: Spawn) -> Result<Outcome> {
        op.cmd.validate()?;
        self.require_ns(&op.ns)?;
        if op.ns == NsRef::Host {
            self.model.host_background += 1;
        }
        self.ran_in(&op.ns);
        self.push(op.shell(&self.host_pid_file()));
        Ok(Outcome::Spawned { pid: 0 })
    }

    /// A probe is written down as the tool a walkthrough would use; its answer is what
    /// the model can say (an exchange gets through where the model reaches the target),
    /// and failed assertions on it are advisory, like every check of a plan.
    fn probe(&mut self, p: Probe) -> Result<Outcome> {
        p.validate()?;
        self.require_ns(p.source())?;
        if let Probe::Throughput(Throughput { to: StreamTo::Netns { ns, .. }, .. }) = &p {
            self.require_ns(ns)?;
            self.ran_in(ns);
        }
        self.push(p.shell());
        // The model judges the probe's packets; what it cannot tell counts as no
        // answer, said once.
        let reaches = match self.model.reaches(p.source(), p.target(), p.carried()) {
            Reach::Yes => true,
            Reach::No(_) => false,
            Reach::Unknown(why) => {
                crate::warnings::warning!("plan: not checked (needs the real lab): a check from {} to {}: {why}", p.source(), p.target());
                false
            }
        };
        Ok(Outcome::Probe(match p {
            Probe::Exchange(_) => {
                ProbeOutcome::Exchange(ExchangeResult { failure: (!reaches).then_some(Failure::Timeout), ..Default::default() })
            }
            Probe::Http(_) => ProbeOutcome::Http(HttpResult { ms: 0.0, response: Err(Failure::Timeout) }),
            Probe::Dns(d) => ProbeOutcome::Dns(DnsResult { ms: 0.0, server: d.server, answer: Err(Failure::Timeout) }),
            Probe::PathMtu(_) => ProbeOutcome::Mtu(MtuResult::default()),
            Probe::Throughput(_) => ProbeOutcome::Throughput(ThroughputResult::default()),
        }))
    }

    /// nsscript's own responder: the walkthrough starts the same binary.
    fn serve(&mut self, op: Serve) -> Result<Outcome> {
        self.require_ns(&op.ns)?;
        if op.ns == NsRef::Host {
            self.model.host_background += 1;
        }
        self.ran_in(&op.ns);
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "nsscript".into());
        self.push(op.shell(&exe, &self.host_pid_file()));
        Ok(Outcome::Spawned { pid: 0 })
    }

    fn fdb_append(&mut self, op: FdbAppend) -> Result<Outcome> {
        self.require_owned(&op.ns, &op.link, "change the forwarding table of")?;
        let entry = FdbEntry {
            mac: format_mac(&op.mac),
            dev: op.link.clone(),
            master: None,
            dst: Some(op.dst.to_string()),
            vlan: None,
            vni: None,
            state: "permanent".into(),
            is_self: true,
        };
        self.model.fdb.push((op.ns.clone(), entry));
        self.push(op.shell());
        Ok(Outcome::Done)
    }

    /// What the model says of a ping, in words for the plan's comment; whether it expects
    /// an answer. What it cannot tell is reported as not checked (and counts as no answer).
    fn judge(&self, ns: &NsRef, addr: IpAddr) -> (bool, String) {
        match self.model.reaches(ns, addr, crate::ops::firewall::Carried::Ping) {
            Reach::Yes => (true, "the plan expects an answer".into()),
            Reach::No(None) => (false, "the plan expects no answer".into()),
            Reach::No(Some(why)) => (false, format!("the plan expects no answer: {why}")),
            Reach::Unknown(why) => {
                crate::warnings::warning!("plan: not checked (needs the real lab): a ping from {ns} to {addr}: {why}");
                (false, format!("the plan cannot tell: {why}"))
            }
        }
    }

    fn ping(&mut self, op: Ping) -> Result<Outcome> {
        self.require_ns(&op.ns)?;
        let (ok, words) = self.judge(&op.ns, op.addr);
        self.push(Step::new(format!("ping {} from {} ({words})", op.addr, op.ns), vec![planned_ping(&op.ns, op.addr, ok)]));
        let sent = op.spec.count.max(1);
        Ok(Outcome::Ping(PingResult { sent, received: if ok { sent } else { 0 }, rtt_ms: ok.then_some(0.0), waited_ms: 0, unsent: None }))
    }

    fn pingall(&mut self, op: PingAll) -> Result<Outcome> {
        let mut rtt_ms = Vec::new();
        let mut lines = Vec::new();
        for (i, src) in op.nodes.iter().enumerate() {
            self.require_ns(&src.ns)?;
            let mut row = Vec::new();
            for (j, dst) in op.nodes.iter().enumerate() {
                let ok = i != j && self.judge(&src.ns, dst.addr).0;
                if i != j {
                    lines.push(planned_ping(&src.ns, dst.addr, ok));
                }
                row.push(ok.then_some(0.0));
            }
            rtt_ms.push(row);
        }
        let answered = rtt_ms.iter().flatten().filter(|r| r.is_some()).count();
        let pairs = op.nodes.len() * op.nodes.len().saturating_sub(1);
        self.push(Step::new(
            format!("pingall: {} nodes, every ordered pair (the plan expects answers in {answered} of {pairs})", op.nodes.len()),
            lines,
        ));
        Ok(Outcome::PingAll(PingAllResult { rtt_ms, elapsed_ms: 0.0 }))
    }
}

/// A link of the model as `links(ns)` shows it (the plan has no ifindex: the model's
/// ids stand in).
fn link_info(l: &PLink) -> LinkInfo {
    LinkInfo {
        name: l.name.clone(),
        index: l.id as u32 + 1,
        kind: if l.kind == "loopback" { String::new() } else { l.kind.clone() },
        up: l.up,
        state: if l.kind == "loopback" {
            "UNKNOWN"
        } else if l.up {
            "UP"
        } else {
            "DOWN"
        }
        .to_string(),
        mtu: l.mtu,
        mac: l.mac.clone().unwrap_or_default(),
        master: l.master.clone(),
    }
}

impl PlanBackend {
    /// A capture in a plan: tcpdump on each link in the background; no packets.
    fn capture(&mut self, op: CaptureOp) -> Result<Outcome> {
        match op {
            CaptureOp::Start(s) => {
                s.validate()?;
                // The filter is refused as the run refuses it: libpcap compiles it.
                crate::backend::live::capture::bpf::program(s.filter.as_deref(), s.snaplen)?;
                for t in &s.targets {
                    self.require_link(&t.ns, &t.link)?;
                }
                self.captures += 1;
                self.push(s.shell(self.captures));
                Ok(Outcome::Capture(self.captures))
            }
            CaptureOp::Stop(id) => {
                self.push(stop_shell(id));
                Ok(Outcome::CaptureStats(CaptureStats::default()))
            }
            CaptureOp::Packets(_) => Ok(Outcome::Packets(Vec::new())),
        }
    }

    /// A trace in a plan: the probe by hand; whether it gets through, as the model says.
    fn trace(&mut self, op: Trace) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        self.push(op.shell());
        const RUN_IT: &str = "a plan sends nothing: run the lab to trace it";
        let (ok, reason) = match self.model.reaches(&op.ns, op.dst, op.probe.carried()) {
            Reach::Yes => (true, None),
            Reach::No(None) => (false, Some(format!("the plan's model finds no way there and back ({RUN_IT})"))),
            Reach::No(Some(why)) => (false, Some(format!("the plan's model expects no answer: {why} ({RUN_IT})"))),
            Reach::Unknown(why) => (false, Some(format!("the plan's model cannot tell: {why} ({RUN_IT})"))),
        };
        Ok(Outcome::Trace(TraceResult { ok, reason, ..Default::default() }))
    }
}

impl Backend for PlanBackend {
    fn apply(&mut self, op: Op) -> Result<Outcome> {
        match op {
            Op::CreateNetns(o) => self.create_netns(o),
            Op::CreateBridge(o) => self.create_bridge(o),
            Op::CreateVeth(o) => self.create_veth(o),
            Op::CreateLink(o) => self.create_link(o),
            Op::SetLink(o) => self.set_link(o),
            Op::DeleteLink(o) => self.delete_link(o),
            Op::AddAddr(o) => self.add_addr(o),
            Op::AddRoute(o) => self.add_route(o),
            Op::AddRule(o) => self.add_rule(o),
            Op::Sysctl(o) => self.sysctl(o),
            Op::Exec(o) => self.exec(o),
            Op::Spawn(o) => self.spawn(o),
            Op::Query(q) => self.query(q),
            Op::FdbAppend(o) => self.fdb_append(o),
            Op::Shape(o) => self.shape(o),
            Op::Htb(o) => self.htb(o),
            Op::BridgeVlanFiltering(o) => {
                self.require_owned(&o.ns, &o.bridge, "change")?;
                self.push(o.shell());
                Ok(Outcome::Done)
            }
            Op::BridgePort(o) => self.bridge_port(o),
            Op::WaitStp(o) => {
                self.require_link(&o.ns, &o.bridge)?;
                self.push(o.shell());
                Ok(Outcome::Done)
            }
            Op::BridgeVlan(o) => {
                self.require_owned(&o.ns, &o.port, "change")?;
                self.push(o.shell());
                Ok(Outcome::Done)
            }
            Op::Firewall(o) => self.firewall(o),
            Op::DhcpServer(o) => self.dhcp_server(o),
            Op::DhcpLease(o) => self.dhcp_lease(o),
            Op::DhcpRelay(o) => self.dhcp_relay(o),
            Op::DnsServer(o) => self.dns_server(o),
            Op::RouterAdv(o) => self.router_adv(o),
            Op::Resolve(o) => self.resolve(o),
            Op::WaitAddr(o) => self.wait_addr(o),
            Op::Ping(o) => self.ping(o),
            Op::PingAll(o) => self.pingall(o),
            Op::Probe(o) => self.probe(o),
            Op::Serve(o) => self.serve(o),
            Op::Capture(o) => self.capture(o),
            Op::Trace(o) => self.trace(o),
        }
    }

    fn lab_name(&self) -> String {
        self.lab.clone()
    }

    /// The walkthrough waits where the script does; making the plan does not.
    fn pause(&mut self, ms: u32) -> Result<()> {
        let secs = f64::from(ms) / 1000.0;
        self.push(Step::new(format!("wait {secs} s, as the script does"), vec![format!("sleep {secs}")]));
        Ok(())
    }

    fn checks_are_advisory(&self) -> bool {
        true
    }

    fn set_lab_name(&mut self, name: &str) -> Result<()> {
        names::validate_lab_name(name)?;
        if !self.steps.is_empty() {
            return Err(Error::new(Code::LateLabName, format!("cannot rename lab {:?} to {name:?}", self.lab))
                .why("it has already created objects")
                .help("call lab(\"NAME\") at the top of the script, before anything is created"));
        }
        self.lab = name.to_string();
        Ok(())
    }
}
