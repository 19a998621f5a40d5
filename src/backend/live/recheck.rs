//! `nsscript check LAB`: the lab's script run again against the lab as it is now,
//! building and changing nothing. Every op that would create or change something is
//! answered without touching the kernel: a namespace must already be there (the one
//! the lab's ledger records: same identity), a background program must already run
//! (it is found in the ledger and its pid answered, with a warning when it has died),
//! a DHCP lease is the address the link has now; links, addresses, routes, sysctls,
//! firewall rules and qdiscs are taken as built. What only looks runs for real:
//! queries, `exec` (labs check themselves with commands too), and every check.
//!
//! Renames and moves answer where the link would be, so the script's handles follow.

use super::kernel::{Kernel, NetnsAt};
use super::linux::Linux;
use super::LiveBackend;
use crate::backend::Backend;
use crate::error::{Code, Error, Result};
use crate::lab::LabState;
use crate::ops::dhcp::Lease;
use crate::ops::firewall::FwOp;
use crate::ops::query::Query;
use crate::ops::{NsRef, Op, Outcome};
use ipnetwork::IpNetwork;
use std::net::IpAddr;

pub struct Recheck<K: Kernel = Linux> {
    live: LiveBackend<K>,
    /// What the lab's ledger says it holds.
    state: LabState,
}

impl Recheck<Linux> {
    pub fn new(lab: &str, state: LabState) -> Result<Self> {
        Recheck::with_kernel(Linux::default(), lab, state)
    }
}

/// iptables commands that only look (`-S`, `-L`, `-C`): they run; others change the
/// lab and are taken as done.
fn only_looks(args: &[String]) -> bool {
    args.iter().any(|a| matches!(a.as_str(), "-S" | "--list-rules" | "-L" | "--list" | "-C" | "--check"))
}

impl<K: Kernel> Recheck<K> {
    pub fn with_kernel(kernel: K, lab: &str, state: LabState) -> Result<Self> {
        Ok(Recheck { live: LiveBackend::with_kernel(kernel, lab, "")?, state })
    }

    /// The namespace must be the lab's (the cookie its ledger records), and still there.
    fn netns(&mut self, name: &str) -> Result<Outcome> {
        let lab = self.live.lab.clone();
        let recorded = self.state.netns().find(|(_, n)| n.name == name).map(|(_, n)| n.cookie);
        let now = self.live.nl.kernel().netns_at(name);
        match (recorded, now) {
            (Some(Some(cookie)), NetnsAt::Namespace(now)) if cookie == now => Ok(Outcome::Done),
            (Some(_), NetnsAt::Namespace(_)) => {
                Err(Error::new(Code::UnknownNamespace, format!("namespace {name} is no longer the one lab {lab} created"))
                    .why("another namespace has taken its name (its identity differs from the ledger's)")
                    .help(format!("rebuild the lab: nsscript --replace {}", self.live.script.shown)))
            }
            (Some(_), _) => Err(Error::new(Code::UnknownNamespace, format!("namespace {name} of lab {lab} is gone"))
                .why(format!("/run/netns/{name} holds no namespace"))
                .help(format!("something removed it; rebuild the lab (`nsscript down {lab}`, then run it again)"))),
            (None, _) => Err(Error::new(Code::UnknownNamespace, format!("lab {lab} has no namespace {name}"))
                .why("the script creates a namespace the lab's ledger does not record")
                .help("check the lab against the script it was built from (`nsscript check LAB` without a script)")),
        }
    }

    /// A background program of the lab: found by what it runs and where.
    fn process(&mut self, ns: &NsRef, what: &str) -> Result<Outcome> {
        let found = self.state.procs().find(|(_, p)| &p.ns == ns && p.what == what).map(|(_, p)| (p.pid, p.start));
        let Some((Some(pid), start)) = found else {
            crate::warnings::warning!("check: lab {} never started {what} in {ns}", self.live.lab);
            return Ok(Outcome::Spawned { pid: 0 });
        };
        let alive = match self.live.nl.kernel().process(pid) {
            Some(('Z', _)) | None => false,
            Some((_, s)) => start.is_none_or(|r| r == s),
        };
        if !alive {
            crate::warnings::warning!("check: {what} in {ns} (pid {pid}) is no longer running");
        }
        Ok(Outcome::Spawned { pid })
    }

    /// The lease a DHCP client holds: the address its link has now, and the default route.
    fn lease(&mut self, ns: &NsRef, iface: &str) -> Result<Outcome> {
        let addrs = self.live.apply(Op::Query(Query::Addrs(ns.clone())))?;
        let routes = self.live.apply(Op::Query(Query::Routes(ns.clone())))?;
        let addr = match addrs {
            Outcome::Addrs(a) => a.into_iter().filter(|a| a.link == iface && a.family == 4).find_map(|a| a.addr.parse::<IpNetwork>().ok()),
            _ => None,
        };
        let Some(IpNetwork::V4(addr)) = addr else {
            return Err(Error::new(Code::NoLease, format!("{iface} in {ns} holds no lease"))
                .why("the link has no IPv4 address now")
                .help("the DHCP client's address is gone: run the lab again"));
        };
        let router = match routes {
            Outcome::Routes(r) => r.into_iter().find(|r| r.dest == "default" && r.family == 4).and_then(|r| r.via?.parse::<IpAddr>().ok()),
            _ => None,
        };
        let router = match router {
            Some(IpAddr::V4(r)) => Some(r),
            _ => None,
        };
        Ok(Outcome::Lease(Lease { addr: addr.ip(), prefix: addr.prefix(), router, server: None, dns: Vec::new(), lease_secs: None, ms: 0 }))
    }
}

impl<K: Kernel> Backend for Recheck<K> {
    fn apply(&mut self, op: Op) -> Result<Outcome> {
        match op {
            Op::CreateNetns(o) => {
                o.validate()?;
                self.netns(&o.name)
            }
            Op::SetLink(o) if !o.keeps_identity() => {
                let (ns, name) = o.result();
                Ok(Outcome::Link { ns, name })
            }
            Op::Spawn(o) => self.process(&o.ns, &o.cmd.short()),
            Op::DhcpServer(o) => self.process(&o.ns, &o.describe()),
            Op::Serve(o) => self.process(&o.ns, &o.what()),
            Op::DhcpLease(o) => self.lease(&o.ns, &o.iface),
            Op::Firewall(f) => match &f.op {
                FwOp::Raw { args } if only_looks(args) => self.live.apply(Op::Firewall(f)),
                FwOp::Raw { .. } => Ok(Outcome::Text(String::new())),
                _ => Ok(Outcome::Done),
            },
            Op::CreateBridge(_)
            | Op::CreateVeth(_)
            | Op::CreateLink(_)
            | Op::SetLink(_)
            | Op::DeleteLink(_)
            | Op::AddAddr(_)
            | Op::AddRoute(_)
            | Op::Sysctl(_)
            | Op::FdbAppend(_)
            | Op::BridgeVlanFiltering(_)
            | Op::BridgeVlan(_)
            | Op::Shape(_) => Ok(Outcome::Done),
            Op::Exec(_) | Op::Query(_) | Op::Ping(_) | Op::PingAll(_) | Op::Probe(_) => self.live.apply(op),
        }
    }

    fn lab_name(&self) -> String {
        self.live.lab.clone()
    }

    /// `lab("NAME")` in the script: it names the lab being checked.
    fn set_lab_name(&mut self, name: &str) -> Result<()> {
        if name == self.live.lab {
            return Ok(());
        }
        Err(Error::new(Code::LabNotUp, format!("the script names its lab {name:?}, but lab {:?} is being checked", self.live.lab))
            .help(format!("check that lab: nsscript check {name}")))
    }

    fn lab_netns(&self) -> Vec<String> {
        self.state.netns_names()
    }

    fn flush(&mut self) -> Result<()> {
        self.live.flush()
    }

    fn finish(&mut self) -> Result<()> {
        self.live.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::live::double::{Call, Double};
    use crate::lab::{Entry, Object, Phase};
    use crate::ops::address::AddAddr;
    use crate::ops::link::CreateBridge;
    use crate::ops::netns::{CreateNetns, NetnsRecord};

    /// Nothing is created or changed: the double sees no request at all.
    #[test]
    fn a_recheck_builds_nothing_and_requires_the_lab_namespaces() {
        let mut k = Double::new();
        let cookie = k.prepare_netns().unwrap();
        k.create_netns("a", "lab").unwrap();
        k.calls.clear();
        let mut state = LabState::default();
        state.apply(&Entry { id: 1, phase: Phase::Done, object: Object::Netns(NetnsRecord { name: "a".into(), cookie: Some(cookie) }) });
        let mut r = Recheck::with_kernel(k, "lab", state).unwrap();
        r.apply(Op::CreateNetns(CreateNetns { name: "a".into() })).unwrap();
        r.apply(Op::CreateBridge(CreateBridge { ns: NsRef::named("a"), name: "br0".into() })).unwrap();
        r.apply(Op::AddAddr(AddAddr { ns: NsRef::named("a"), link: "br0".into(), addr: "10.0.0.1/24".parse().unwrap() })).unwrap();
        let gone = r.apply(Op::CreateNetns(CreateNetns { name: "b".into() })).unwrap_err();
        assert_eq!(gone.code, Code::UnknownNamespace);
        r.finish().unwrap();
        let calls: Vec<&Call> = r.live.nl.kernel().calls.iter().filter(|c| !matches!(c, Call::Dump(..))).collect();
        assert!(calls.is_empty(), "a recheck asked the kernel to change: {calls:?}");
        // A namespace replaced under its name is not the lab's.
        r.live.nl.kernel().replace_netns("a");
        assert_eq!(r.apply(Op::CreateNetns(CreateNetns { name: "a".into() })).unwrap_err().code, Code::UnknownNamespace);
    }
}
