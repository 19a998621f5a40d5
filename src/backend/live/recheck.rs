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
use crate::ops::capture::CaptureOp;
use crate::ops::dhcp::Lease;
use crate::ops::firewall::FwOp;
use crate::ops::probe::{Probe, StreamTo, Throughput};
use crate::ops::query::Query;
use crate::ops::{NsRef, Op, Outcome};
use ipnetwork::IpNetwork;
use std::collections::HashSet;
use std::net::IpAddr;

pub struct Recheck<K: Kernel = Linux> {
    live: LiveBackend<K>,
    /// What the lab's ledger says it holds.
    state: LabState,
    /// Namespaces whose identity was compared with the ledger's (their handles held).
    identified: HashSet<NsRef>,
}

impl Recheck<Linux> {
    /// `script`: the script as reports name it (the help for a lab to rebuild says it).
    pub fn new(lab: &str, script: &str, state: LabState) -> Result<Self> {
        let mut r = Recheck::with_kernel(Linux::default(), lab, state)?;
        r.live.script.shown = script.to_string();
        Ok(r)
    }
}

/// iptables commands that only look (`-S`, `-L`, `-C`): they run; others change the
/// lab and are taken as done.
fn only_looks(args: &[String]) -> bool {
    args.iter().any(|a| matches!(a.as_str(), "-S" | "--list-rules" | "-L" | "--list" | "-C" | "--check"))
}

impl<K: Kernel> Recheck<K> {
    pub fn with_kernel(kernel: K, lab: &str, state: LabState) -> Result<Self> {
        Ok(Recheck { live: LiveBackend::with_kernel(kernel, lab, "")?, state, identified: HashSet::new() })
    }

    /// The namespace must be the lab's (the cookie its ledger records), and still there.
    fn netns(&mut self, name: &str) -> Result<Outcome> {
        let ns = NsRef::named(name);
        if !self.state.owns_ns(&ns) {
            return Err(Error::new(Code::UnknownNamespace, format!("lab {} has no namespace {name}", self.live.lab))
                .why("the script creates a namespace the lab's ledger does not record")
                .help("check the lab against the script it was built from (`nsscript check LAB` without a script)"));
        }
        // Each netns() of the script looks again: the name may have moved since.
        if self.identified.remove(&ns) {
            self.live.nl.kernel().forget(&ns);
        }
        self.identify(&ns)?;
        Ok(Outcome::Done)
    }

    /// Before anything looks into `ns`: it must be the namespace the lab built or
    /// changed, by the cookie its ledger records. The handle whose cookie is compared is
    /// the one every later check in ns uses (a namespace put under the name afterwards
    /// is not looked at). A namespace the lab never changed has no identity to compare:
    /// it is looked at as it is.
    fn identify(&mut self, ns: &NsRef) -> Result<()> {
        if self.identified.contains(ns) {
            return Ok(());
        }
        let lab = self.live.lab.clone();
        let recorded = match ns {
            NsRef::Named(name) if self.state.owns_ns(ns) => match self.state.netns().find(|(_, n)| &n.name == name) {
                Some((_, n)) => n.cookie,
                None => None,
            },
            _ => match self.state.outside_cookie(ns) {
                Some(c) => Some(c),
                None => {
                    self.identified.insert(ns.clone());
                    return Ok(());
                }
            },
        };
        let Some(recorded) = recorded else {
            return Err(Error::new(Code::UnknownNamespace, format!("cannot tell whether namespace {ns} is the one lab {lab} created"))
                .why("the lab's ledger records no identity (cookie) for it: an older nsscript built it, or the ledger was edited")
                .help(format!("rebuild the lab with this nsscript: nsscript --replace {}", self.live.script.shown)));
        };
        if let NsRef::Named(name) = ns {
            match self.live.nl.kernel().netns_at(name) {
                NetnsAt::Namespace(_) => {}
                at => {
                    let held = match at {
                        NetnsAt::Nothing => "nothing".to_string(),
                        NetnsAt::Placeholder(_) => "a plain file, no namespace".to_string(),
                        NetnsAt::Other(what) => what,
                        NetnsAt::Namespace(_) => unreachable!(),
                    };
                    return Err(Error::new(Code::UnknownNamespace, format!("namespace {name} of lab {lab} is gone"))
                        .why(format!("/run/netns/{name} holds {held}"))
                        .help(format!("something removed it; rebuild the lab (`nsscript down {lab}`, then run it again)")));
                }
            }
        }
        // The cookie of the handle the checks will use, not of a second look at the name.
        let now = self.live.nl.kernel().netns_cookie(ns)?;
        if now != recorded {
            self.live.nl.kernel().forget(ns);
            let err = match ns {
                NsRef::Named(name) if self.state.owns_ns(ns) => {
                    let what = format!("namespace {name} is no longer the one lab {lab} created");
                    let why = format!("another namespace has taken its name (cookie {now}, the ledger records {recorded}): not checked");
                    let help = format!("it was deleted and made again; rebuild the lab: nsscript --replace {}", self.live.script.shown);
                    Error::new(Code::UnknownNamespace, what).why(why).help(help)
                }
                _ => {
                    let what = format!("namespace {ns} is not the one lab {lab} changed");
                    let why = format!("its cookie is {now}, the ledger records {recorded}: not checked");
                    Error::new(Code::UnknownNamespace, what).why(why).help("run nsscript check in the namespace the lab was built from")
                }
            };
            return Err(err);
        }
        self.identified.insert(ns.clone());
        Ok(())
    }

    /// The namespaces an op that runs for real looks into.
    fn looks_in(op: &Op) -> Vec<NsRef> {
        match op {
            Op::Exec(o) => vec![o.ns.clone()],
            Op::Ping(o) => vec![o.ns.clone()],
            Op::PingAll(o) => o.nodes.iter().map(|n| n.ns.clone()).collect(),
            Op::Probe(p) => {
                let mut v = vec![p.source().clone()];
                if let Probe::Throughput(Throughput { to: StreamTo::Netns { ns, .. }, .. }) = p {
                    v.push(ns.clone());
                }
                v
            }
            Op::Resolve(o) => vec![o.ns.clone()],
            Op::WaitAddr(o) => vec![o.ns.clone()],
            Op::WaitStp(o) => vec![o.ns.clone()],
            Op::Trace(o) => vec![o.ns.clone()],
            Op::Capture(CaptureOp::Start(c)) => c.targets.iter().map(|t| t.ns.clone()).collect(),
            Op::Firewall(f) => vec![f.ns.clone()],
            Op::Query(Query::Links(ns) | Query::Addrs(ns) | Query::Routes(ns) | Query::Fdb(ns) | Query::VethPeer { ns, .. }) => {
                vec![ns.clone()]
            }
            _ => Vec::new(),
        }
    }

    /// An op that only looks, run for real in namespaces identified first.
    fn look(&mut self, op: Op) -> Result<Outcome> {
        for ns in Self::looks_in(&op) {
            self.identify(&ns)?;
        }
        self.live.apply(op)
    }

    /// A background program of the lab: found by what it runs and where.
    fn process(&mut self, ns: &NsRef, what: &str) -> Result<Outcome> {
        self.process_like(ns, what, |w| w == what)
    }

    /// A background program whose recorded words `fits` (a dnsmasq's words name what
    /// the lab held when it started: ranges, names; the op alone gives their start).
    fn process_like(&mut self, ns: &NsRef, what: &str, fits: impl Fn(&str) -> bool) -> Result<Outcome> {
        let found = self.state.procs().find(|(_, p)| &p.ns == ns && fits(&p.what)).map(|(_, p)| (p.pid, p.start));
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
        let addrs = self.look(Op::Query(Query::Addrs(ns.clone())))?;
        let routes = self.look(Op::Query(Query::Routes(ns.clone())))?;
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
        Ok(Outcome::Lease(Lease {
            addr: addr.ip(),
            prefix: addr.prefix(),
            router,
            server: None,
            dns: Vec::new(),
            domain: None,
            lease_secs: None,
            ms: 0,
        }))
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
            Op::DhcpServer(o) => {
                let start = format!("dnsmasq (DHCP on {}, ", o.iface);
                self.process_like(&o.ns, &format!("the DHCP server on {}", o.iface), |w| w.starts_with(&start))
            }
            Op::DhcpRelay(o) => {
                let words = format!("dnsmasq (DHCP relay on {} to {})", o.iface, o.server);
                self.process(&o.ns, &words)
            }
            Op::DnsServer(o) => {
                let on = o.iface.as_ref().map(|i| format!(" on {i}")).unwrap_or_default();
                let start = format!("dnsmasq (DNS{on}, ");
                self.process_like(&o.ns, &format!("the DNS server{on}"), |w| w.starts_with(&start))
            }
            Op::RouterAdv(o) => {
                let end = format!(" on {})", o.iface);
                self.process_like(&o.ns, &format!("the router advertisements on {}", o.iface), |w| {
                    w.starts_with("dnsmasq (router advertisements of ") && w.ends_with(&end)
                })
            }
            Op::Serve(o) => self.process(&o.ns, &o.what()),
            Op::DhcpLease(o) => self.lease(&o.ns, &o.iface),
            Op::Firewall(f) => match &f.op {
                FwOp::Raw { args } if only_looks(args) => self.look(Op::Firewall(f)),
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
            | Op::AddRule(_)
            | Op::BridgePort(_)
            | Op::Htb(_)
            | Op::Sysctl(_)
            | Op::FdbAppend(_)
            | Op::BridgeVlanFiltering(_)
            | Op::BridgeVlan(_)
            | Op::Shape(_) => Ok(Outcome::Done),
            Op::Exec(_)
            | Op::Query(_)
            | Op::Ping(_)
            | Op::PingAll(_)
            | Op::Probe(_)
            | Op::Resolve(_)
            | Op::WaitAddr(_)
            | Op::WaitStp(_)
            | Op::Capture(_)
            | Op::Trace(_) => self.look(op),
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
        r.apply(Op::CreateBridge(CreateBridge::new(NsRef::named("a"), "br0"))).unwrap();
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

    fn lab_with(k: &mut Double, name: &str) -> LabState {
        let cookie = k.prepare_netns().unwrap();
        k.create_netns(name, "lab").unwrap();
        let mut state = LabState::default();
        state.apply(&Entry { id: 1, phase: Phase::Done, object: Object::Netns(NetnsRecord { name: name.into(), cookie: Some(cookie) }) });
        state
    }

    fn ping(ns: NsRef) -> Op {
        let spec = crate::ops::check::PingSpec { count: 1, interval_ms: 100, wait_ms: 100, stop_on_reply: true };
        Op::Ping(crate::ops::check::Ping { ns, addr: "10.0.0.1".parse().unwrap(), spec })
    }

    /// A namespace deleted and made again under the lab's name is refused, with both
    /// cookies, and nothing is looked at in it; one that is gone says so.
    #[test]
    fn a_namespace_made_again_under_the_name_is_not_checked() {
        let mut k = Double::new();
        let state = lab_with(&mut k, "a");
        k.replace_netns("a");
        let mut r = Recheck::with_kernel(k, "lab", state).unwrap();
        let e = r.apply(Op::CreateNetns(CreateNetns { name: "a".into() })).unwrap_err();
        assert_eq!(e.code, Code::UnknownNamespace);
        let said = format!("{e:?}");
        assert!(said.contains("no longer the one lab lab created") && said.contains("the ledger records"), "{said}");
        // A check in it (a script that goes on past the refusal) is refused as well.
        assert_eq!(r.apply(ping(NsRef::named("a"))).unwrap_err().code, Code::UnknownNamespace);
        assert_eq!(r.apply(Op::Query(Query::Addrs(NsRef::named("a")))).unwrap_err().code, Code::UnknownNamespace);
        assert!(!r.live.nl.kernel().calls.iter().any(|c| matches!(c, Call::Dump(..))), "looked into a foreign namespace");

        let mut k = Double::new();
        let state = lab_with(&mut k, "a");
        k.delete_netns("a").unwrap();
        let mut r = Recheck::with_kernel(k, "lab", state).unwrap();
        let e = r.apply(Op::CreateNetns(CreateNetns { name: "a".into() })).unwrap_err();
        assert!(format!("{e:?}").contains("namespace a of lab lab is gone"), "{e:?}");
    }

    /// A ledger without a cookie for the namespace (an older nsscript): no check in it.
    #[test]
    fn a_namespace_without_a_recorded_identity_is_not_checked() {
        let mut k = Double::new();
        k.prepare_netns().unwrap();
        k.create_netns("a", "lab").unwrap();
        let mut state = LabState::default();
        state.apply(&Entry { id: 1, phase: Phase::Done, object: Object::Netns(NetnsRecord { name: "a".into(), cookie: None }) });
        let mut r = Recheck::with_kernel(k, "lab", state).unwrap();
        let e = r.apply(Op::CreateNetns(CreateNetns { name: "a".into() })).unwrap_err();
        assert!(format!("{e:?}").contains("records no identity"), "{e:?}");
    }

    /// The host the lab changed must be the one checked (the double's host has cookie 1).
    #[test]
    fn the_host_the_lab_changed_is_identified_before_a_check_in_it() {
        let mut state = LabState::default();
        state.apply(&Entry { id: 1, phase: Phase::Done, object: Object::Outside { ns: NsRef::Host, cookie: 999 } });
        let mut r = Recheck::with_kernel(Double::new(), "lab", state).unwrap();
        let ping_host = ping(NsRef::Host);
        let e = r.apply(ping_host.clone()).unwrap_err();
        assert!(format!("{e:?}").contains("is not the one lab lab changed"), "{e:?}");
        let mut state = LabState::default();
        state.apply(&Entry { id: 1, phase: Phase::Done, object: Object::Outside { ns: NsRef::Host, cookie: 1 } });
        let mut r = Recheck::with_kernel(Double::new(), "lab", state).unwrap();
        r.apply(ping_host).unwrap();
    }
}
