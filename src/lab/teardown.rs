//! Removing a lab: from its ledger alone, in an order that lets the kernel do the
//! bulk work (deleting a namespace frees all its links in one batch), and never
//! touching an object whose identity differs from the one recorded.

use super::{LabState, LinkRec, Phase};
use crate::backend::live::netlink::Netlink;
use crate::backend::live::sysctl;
use crate::nsexec;
use crate::op::{NsRef, RouteVia};

#[derive(Debug, Default)]
pub struct Report {
    pub removed: Vec<String>,
    /// Objects left alone on purpose: already gone, or no longer the one recorded.
    pub skipped: Vec<String>,
    /// Objects that could not be removed (the ledger is kept for another try).
    pub failed: Vec<String>,
}

/// Another lab's ledger that records this very object (same name and identity).
/// An Intent entry has no identity: a run killed between writing it and creating
/// the object, or whose create failed because the name was taken, must not delete
/// the object another lab created under that name.
fn claimed_elsewhere(state: &LabState, matches: impl Fn(&LabState) -> bool) -> Option<String> {
    super::list().into_iter().find(|lab| super::load(lab).is_ok_and(|other| other != *state && matches(&other)))
}

/// The kernel's name for a kind the ledger records (a tap is a "tun" device).
fn kernel_kind(kind: &str) -> &str {
    match kind {
        "tap" => "tun",
        k => k,
    }
}

/// Remove what the ledger names. With `wait`, return only once the kernel has also
/// destroyed the veth ends of deleted namespaces (it frees namespaces asynchronously),
/// so that a rebuild right after finds every name free.
pub fn teardown(state: &LabState, nl: &mut Netlink, wait: bool) -> Report {
    let mut report = Report::default();

    // 0. Processes (spawn, dhcp_server): before the namespaces they keep alive.
    crate::backend::live::procs::teardown(state, &mut report);
    // No other run creates or removes anything while we look at identities.
    let _names = match super::lock::names() {
        Ok(guard) => guard,
        Err(e) => {
            report.failed.push(e.to_string());
            return report;
        }
    };

    // A veth end outside the lab whose other end lives in a lab namespace goes with
    // that namespace: deleting it by hand would cost ~16 ms of RCU wait each.
    let goes_with_ns = |l: &LinkRec| -> Option<String> {
        let pair = state.links.iter().find(|p| Some(p.id) == l.pair)?;
        pair.ns.name().filter(|n| state.owns_netns(n)).map(str::to_string)
    };
    let outside: Vec<&LinkRec> = state.links.iter().rev().filter(|l| !state.owns_ns(&l.ns)).collect();

    // 1. Links in namespaces that outlive the lab, bridges first (their ports detach
    //    for free); veth ends paired into a lab namespace are left to step 3.
    //    The bridges are deleted by a thread of their own: the kernel spends ~0.25 ms
    //    of CPU per port (~48 ms for star(200)'s bridge) in that request, time the main
    //    thread uses to remove the namespaces.
    let (bridges, others): (Vec<&LinkRec>, Vec<&LinkRec>) = outside.iter().partition(|l| l.kind == "bridge");
    let mut doomed_bridges: Vec<(NsRef, u32, String)> = Vec::new();
    for link in bridges {
        if let Some(index) = still_ours(state, nl, link, &mut report) {
            doomed_bridges.push((link.ns.clone(), index, format!("link {} in {}", link.name, link.ns)));
        }
    }
    let bridges_deleted = match nl.delete_bridges_elsewhere(doomed_bridges) {
        Ok(thread) => thread,
        Err(e) => {
            report.failed.push(format!("bridges: {e}"));
            return report;
        }
    };
    for link in others.into_iter().filter(|l| goes_with_ns(l).is_none()) {
        delete_link(state, nl, link, &mut report);
    }

    // 2. Namespaces: each goes with every link inside it.
    let mut deleted = Vec::new();
    for ns in state.netns.iter().rev() {
        let now = nsexec::netns_inode(&ns.name);
        match (now, ns.inode) {
            (None, _) => {
                if ns.phase == Phase::Done {
                    report.skipped.push(format!("netns {}: already gone", ns.name));
                } else if let Ok(true) = nsexec::remove_netns_placeholder(&ns.name) {
                    report.removed.push(format!("netns {} (an unfinished placeholder)", ns.name));
                }
            }
            (Some(now), None)
                if claimed_elsewhere(state, |o| o.netns.iter().any(|n| n.name == ns.name && n.inode == Some(now))).is_some() =>
            {
                report.skipped.push(format!("netns {}: never created by this lab (another lab owns inode {now})", ns.name))
            }
            (Some(now), Some(recorded)) if now != recorded => report
                .skipped
                .push(format!("netns {}: exists but is not the one this lab created (inode {now}, recorded {recorded})", ns.name)),
            _ => {
                nl.forget(&NsRef::Named(ns.name.clone()));
                match nsexec::delete_netns(&ns.name) {
                    Ok(()) => {
                        report.removed.push(format!("netns {}", ns.name));
                        deleted.push(ns.name.clone());
                    }
                    Err(e) => report.failed.push(format!("netns {}: {e}", ns.name)),
                }
            }
        }
    }

    // 3. The veth ends of deleted namespaces: the kernel removes them as it frees the
    //    namespace (asynchronously, like `ip netns del`); the others by hand.
    let mut vanishing = Vec::new();
    for link in outside.iter().filter(|l| l.kind != "bridge") {
        match goes_with_ns(link) {
            Some(ns) if deleted.contains(&ns) => {
                report.removed.push(format!("link {} in {} (with netns {ns})", link.name, link.ns));
                vanishing.push(*link);
            }
            Some(_) => delete_link(state, nl, link, &mut report),
            None => {}
        }
    }
    for (what, outcome) in nl.deletions_done(bridges_deleted) {
        match outcome {
            Ok(()) => report.removed.push(what),
            Err(e) => report.failed.push(format!("{what}: {e}")),
        }
    }
    if wait {
        wait_until_gone(nl, &vanishing);
    }

    // 4. Changes to namespaces that outlive the lab.
    for r in state.routes.iter().rev().filter(|r| !state.owns_ns(&r.ns)) {
        let dest = r.dest.as_deref().and_then(|d| d.parse().ok());
        let via = match r.via.strip_prefix("dev ") {
            Some(dev) => RouteVia::Device(dev.to_string()),
            None => match r.via.parse() {
                Ok(ip) => RouteVia::Gateway(ip),
                Err(_) => continue,
            },
        };
        match nl.del_route(&r.ns, dest, &via) {
            Ok(()) => report.removed.push(format!("route {} via {} in {}", r.dest.as_deref().unwrap_or("default"), r.via, r.ns)),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    for a in state.addrs.iter().rev().filter(|a| !state.owns_ns(&a.ns)) {
        let Ok(addr) = a.addr.parse() else { continue };
        match nl.del_addr(&a.ns, &a.link, addr) {
            Ok(()) => report.removed.push(format!("address {} on {} in {}", a.addr, a.link, a.ns)),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    for s in state.sysctls.iter().rev().filter(|s| !state.owns_ns(&s.ns)) {
        let res = nl.ns_fd(&s.ns).and_then(|fd| sysctl::write(fd, &s.key, &s.old));
        match res {
            Ok(()) => report.removed.push(format!("sysctl {} restored to {} in {}", s.key, s.old, s.ns)),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    // 5. iptables changes in namespaces that outlive the lab.
    crate::backend::live::firewall::teardown(state, nl, &mut report);
    report
}

/// Delete one recorded link if it is still the one the ledger names.
fn delete_link(state: &LabState, nl: &mut Netlink, link: &LinkRec, report: &mut Report) {
    let what = format!("link {} in {}", link.name, link.ns);
    if let Some(index) = still_ours(state, nl, link, report) {
        match nl.delete_index(&link.ns, index) {
            Ok(()) => report.removed.push(what),
            Err(e) => report.failed.push(format!("{what}: {e}")),
        }
    }
}

/// The ifindex of a recorded link if it is still the one this lab created; otherwise
/// None, with the reason in the report.
fn still_ours(state: &LabState, nl: &mut Netlink, link: &LinkRec, report: &mut Report) -> Option<u32> {
    let what = format!("link {} in {}", link.name, link.ns);
    match nl.link_identity(&link.ns, &link.name) {
        Ok(None) => report.removed.push(what), // went with its peer's namespace
        Ok(Some((index, _))) if link.index.is_some_and(|i| i != index) => report
            .skipped
            .push(format!("{what}: exists but is not the one this lab created (ifindex {index}, recorded {})", link.index.unwrap_or(0))),
        Ok(Some((index, _)))
            if link.index.is_none()
                && claimed_elsewhere(state, |o| {
                    o.links.iter().any(|l| l.ns == link.ns && l.name == link.name && l.index == Some(index))
                })
                .is_some() =>
        {
            report.skipped.push(format!("{what}: never created by this lab (another lab owns ifindex {index})"))
        }
        Ok(Some((index, now))) if !link.kind.is_empty() && now != kernel_kind(&link.kind) => report.skipped.push(format!(
            "{what}: exists but is not the one this lab created (a {} link, recorded as {}; ifindex {index})",
            if now.is_empty() { "plain" } else { &now },
            link.kind
        )),
        Ok(Some((index, _))) => return Some(index),
        Err(e) => report.failed.push(format!("{what}: {e}")),
    }
    None
}

/// Poll (one dump per namespace every 5 ms, at most 10 s) until these links are gone.
fn wait_until_gone(nl: &mut Netlink, links: &[&LinkRec]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut left: Vec<&LinkRec> = links.to_vec();
    while !left.is_empty() && std::time::Instant::now() < deadline {
        let mut namespaces: Vec<NsRef> = left.iter().map(|l| l.ns.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        let mut present = Vec::new();
        for ns in namespaces {
            match nl.links(&ns) {
                Ok(now) => present.extend(now.into_iter().map(|l| (ns.clone(), l.name, l.index))),
                Err(_) => return,
            }
        }
        left.retain(|l| present.iter().any(|(ns, name, index)| *ns == l.ns && *name == l.name && l.index.is_none_or(|i| i == *index)));
        if !left.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
