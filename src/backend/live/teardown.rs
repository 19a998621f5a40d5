//! Removing a lab: from its ledger alone, in an order that lets the kernel do the
//! bulk work (deleting a namespace frees all its links in one batch), and never
//! touching an object whose identity differs from the one recorded.

use super::kernel::Kernel;
use super::netlink::Netlink;
use crate::lab::report::Report;
use crate::lab::{self, LabState, Phase};
use crate::ops::firewall::{FwUndo, Rule};
use crate::ops::link::{kernel_kind, LinkRecord};
use crate::ops::NsRef;

/// Another lab's ledger that records this very object (same name and identity).
/// An Intent entry has no identity: a run killed between writing it and creating
/// the object, or whose create failed because the name was taken, must not delete
/// the object another lab created under that name.
fn claimed_elsewhere(state: &LabState, matches: impl Fn(&LabState) -> bool) -> Option<String> {
    lab::list().into_iter().find(|name| lab::load(name).is_ok_and(|other| other != *state && matches(&other)))
}

/// Remove what the ledger names. With `wait`, return only once the kernel has also
/// destroyed the veth ends of deleted namespaces (it frees namespaces asynchronously),
/// so that a rebuild right after finds every name free.
pub fn teardown<K: Kernel>(state: &LabState, nl: &mut Netlink<K>, wait: bool) -> Report {
    let mut report = Report::default();

    // 0. Processes (spawn, dhcp_server): before the namespaces they keep alive.
    super::procs::stop_all(state, nl.kernel(), &mut report);
    // No other run creates or removes anything while we look at identities.
    let _names = match lab::lock::names() {
        Ok(guard) => guard,
        Err(e) => {
            report.failed(e.to_string());
            return report;
        }
    };

    // A veth end outside the lab whose other end lives in a lab namespace goes with
    // that namespace: deleting it by hand would cost ~16 ms of RCU wait each.
    let goes_with_ns = |l: &LinkRecord| -> Option<String> {
        let pair = state.link_by_id(l.pair?)?;
        pair.ns.name().filter(|n| state.owns_netns(n)).map(str::to_string)
    };
    let outside: Vec<(&lab::Entry, &LinkRecord)> = state.links().rev().filter(|(_, l)| !state.owns_ns(&l.ns)).collect();

    // 1. Links in namespaces that outlive the lab, bridges first (their ports detach
    //    for free); veth ends paired into a lab namespace are left to step 3. The
    //    bridges are deleted aside while the namespaces are removed.
    let (bridges, others): (Vec<_>, Vec<_>) = outside.iter().partition(|(_, l)| l.kind == "bridge");
    let mut doomed_bridges: Vec<(NsRef, u32, String)> = Vec::new();
    for (_, link) in bridges {
        if let Some(index) = still_ours(state, nl, link, &mut report) {
            doomed_bridges.push((link.ns.clone(), index, format!("link {} in {}", link.name, link.ns)));
        }
    }
    let bridges_deleted = match nl.delete_bridges_aside(doomed_bridges) {
        Ok(d) => d,
        Err(e) => {
            report.failed(format!("bridges: {e}"));
            return report;
        }
    };
    for (_, link) in others.into_iter().filter(|(_, l)| goes_with_ns(l).is_none()) {
        delete_link(state, nl, link, &mut report);
    }

    // 2. Namespaces: each goes with every link inside it.
    let mut deleted = Vec::new();
    for (entry, ns) in state.netns().rev() {
        let now = nl.kernel().netns_identity(&ns.name);
        match (now, ns.inode) {
            (None, _) => {
                if entry.phase == Phase::Done {
                    report.skipped(format!("netns {}: already gone", ns.name));
                } else if let Ok(true) = nl.kernel().remove_netns_placeholder(&ns.name) {
                    report.removed(format!("netns {} (an unfinished placeholder)", ns.name));
                }
            }
            (Some(now), None)
                if claimed_elsewhere(state, |o| o.netns().any(|(_, n)| n.name == ns.name && n.inode == Some(now))).is_some() =>
            {
                report.skipped(format!("netns {}: never created by this lab (another lab owns inode {now})", ns.name))
            }
            (Some(now), Some(recorded)) if now != recorded => {
                report.skipped(format!("netns {}: exists but is not the one this lab created (inode {now}, recorded {recorded})", ns.name))
            }
            _ => {
                nl.forget(&NsRef::Named(ns.name.clone()));
                match nl.kernel().delete_netns(&ns.name) {
                    Ok(()) => {
                        report.removed(format!("netns {}", ns.name));
                        deleted.push(ns.name.clone());
                    }
                    Err(e) => report.failed(format!("netns {}: {e}", ns.name)),
                }
            }
        }
    }

    // 3. The veth ends of deleted namespaces: the kernel removes them as it frees the
    //    namespace (asynchronously, like `ip netns del`); the others by hand.
    let mut vanishing = Vec::new();
    for (_, link) in outside.iter().filter(|(_, l)| l.kind != "bridge") {
        match goes_with_ns(link) {
            Some(ns) if deleted.contains(&ns) => {
                report.removed(format!("link {} in {} (with netns {ns})", link.name, link.ns));
                vanishing.push(*link);
            }
            Some(_) => delete_link(state, nl, link, &mut report),
            None => {}
        }
    }
    for (what, outcome) in nl.deletions_done(bridges_deleted) {
        match outcome {
            Ok(()) => report.removed(what),
            Err(e) => report.failed(format!("{what}: {e}")),
        }
    }
    if wait {
        wait_until_gone(nl, &vanishing);
    }

    // 4. Changes to namespaces that outlive the lab, newest first.
    for (_, r) in state.routes().rev().filter(|(_, r)| !state.owns_ns(&r.ns)) {
        match nl.del_route(r) {
            Ok(()) => report.removed(format!("route {} in {}", r.describe(), r.ns)),
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (_, a) in state.addrs().rev().filter(|(_, a)| !state.owns_ns(&a.ns)) {
        match nl.del_addr(a) {
            Ok(()) => report.removed(a.describe()),
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (_, s) in state.sysctls().rev().filter(|(_, s)| !state.owns_ns(&s.ns)) {
        match nl.kernel().sysctl_write(&s.ns, &s.key, &s.old) {
            Ok(()) => report.removed(format!("sysctl {} restored to {} in {}", s.key, s.old, s.ns)),
            Err(e) => report.failed(e.to_string()),
        }
    }
    // 5. iptables changes in namespaces that outlive the lab.
    undo_firewall(state, nl.kernel(), &mut report);
    report
}

/// Undo the lab's iptables changes in namespaces that outlive it (newest first).
fn undo_firewall<K: Kernel>(state: &LabState, k: &mut K, report: &mut Report) {
    for (entry, f) in state.fw().rev().filter(|(_, f)| !state.owns_ns(&f.ns)) {
        let (table, chain) = (f.table.as_str(), f.chain.as_str());
        match &f.undo {
            FwUndo::Rule(text) => {
                let what = format!("iptables rule -t {table} -A {chain} {text} in {}", f.ns);
                let words = match crate::ops::firewall::split_words(text) {
                    Ok(w) => w,
                    Err(why) => {
                        report.failed(format!("{what}: the ledger's rule does not parse: {why}"));
                        continue;
                    }
                };
                let rule = Rule { table: table.to_string(), chain: chain.to_string(), words };
                match k
                    .rule_exists(&f.ns, &rule)
                    .and_then(|there| if there { k.rule_delete(&f.ns, &rule).map(|_| true) } else { Ok(false) })
                {
                    Ok(true) => report.removed(what),
                    Ok(false) => {
                        if entry.phase == Phase::Done {
                            report.skipped(format!("{what}: already gone"))
                        }
                    }
                    Err(e) => report.failed(e.to_string()),
                }
            }
            FwUndo::Policy(old) => {
                let what = format!("iptables policy of {chain} (table {table}) restored to {old} in {}", f.ns);
                match k.set_chain_policy(&f.ns, table, chain, old) {
                    Ok(()) => report.removed(what),
                    Err(e) => report.failed(e.to_string()),
                }
            }
        }
    }
}

/// Delete one recorded link if it is still the one the ledger names.
fn delete_link<K: Kernel>(state: &LabState, nl: &mut Netlink<K>, link: &LinkRecord, report: &mut Report) {
    let what = format!("link {} in {}", link.name, link.ns);
    if let Some(index) = still_ours(state, nl, link, report) {
        match nl.delete_index(&link.ns, index) {
            Ok(()) => report.removed(what),
            Err(e) => report.failed(format!("{what}: {e}")),
        }
    }
}

/// The ifindex of a recorded link if it is still the one this lab created; otherwise
/// None, with the reason in the report.
fn still_ours<K: Kernel>(state: &LabState, nl: &mut Netlink<K>, link: &LinkRecord, report: &mut Report) -> Option<u32> {
    let what = format!("link {} in {}", link.name, link.ns);
    match nl.link_identity(&link.ns, &link.name) {
        Ok(None) => report.removed(what), // went with its peer's namespace
        Ok(Some((index, _))) if link.index.is_some_and(|i| i != index) => report
            .skipped(format!("{what}: exists but is not the one this lab created (ifindex {index}, recorded {})", link.index.unwrap_or(0))),
        Ok(Some((index, _)))
            if link.index.is_none()
                && claimed_elsewhere(state, |o| {
                    o.links().any(|(_, l)| l.ns == link.ns && l.name == link.name && l.index == Some(index))
                })
                .is_some() =>
        {
            report.skipped(format!("{what}: never created by this lab (another lab owns ifindex {index})"))
        }
        Ok(Some((index, now))) if !link.kind.is_empty() && now != kernel_kind(&link.kind) => report.skipped(format!(
            "{what}: exists but is not the one this lab created (a {} link, recorded as {}; ifindex {index})",
            if now.is_empty() { "plain" } else { &now },
            link.kind
        )),
        Ok(Some((index, _))) => return Some(index),
        Err(e) => report.failed(format!("{what}: {e}")),
    }
    None
}

/// Poll (one dump per namespace every 5 ms, at most 10 s) until these links are gone.
fn wait_until_gone<K: Kernel>(nl: &mut Netlink<K>, links: &[&LinkRecord]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut left: Vec<&LinkRecord> = links.to_vec();
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
