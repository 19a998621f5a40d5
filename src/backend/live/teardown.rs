//! Removing a lab: from its ledger alone, in an order that lets the kernel do the
//! bulk work (deleting a namespace frees all its links in one batch), and never
//! touching an object whose identity differs from the one recorded, or whose entry
//! records none: such an entry is reported with what stands under its name now.
//!
//! Identities: a namespace's cookie (never reused by the kernel); a link outside the
//! lab's namespaces is its ifindex (chosen by the lab before it existed), kind and name,
//! inside a namespace outside the lab whose cookie is the recorded one; a process is its
//! pid and start time; a root qdisc the lab set on a link outside it is that link's
//! ifindex and the qdisc's kind with handle 1:. Every process inside a lab namespace
//! goes before the namespace, whoever started it.

use super::kernel::{Kernel, NetnsAt};
use super::netlink::Netlink;
use crate::lab::report::Report;
use crate::lab::{self, LabState, Phase};
use crate::ops::firewall::{FwRecord, FwUndo, Rule};
use crate::ops::link::{kernel_kind, LinkRecord};
use crate::ops::qdisc::QdiscRecord;
use crate::ops::NsRef;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// What a name holds now, in words, for a report.
fn describe_at(at: &NetnsAt) -> String {
    match at {
        NetnsAt::Nothing => "nothing".into(),
        NetnsAt::Namespace(c) => format!("a namespace (cookie {c})"),
        NetnsAt::Placeholder(None) => "an empty file, no namespace (an `ip netns add` under way, or one killed halfway)".into(),
        NetnsAt::Placeholder(Some(m)) => format!("the placeholder of lab {}'s namespace with cookie {}", m.lab, m.cookie),
        NetnsAt::Other(what) => what.clone(),
    }
}

/// How a recorded link stands now.
enum Standing {
    /// Still the link the lab made: its ifindex.
    Ours(u32),
    /// Nothing of that name.
    Absent,
    /// Something else is there (the reason is in the report).
    NotOurs,
}

/// Compare a recorded link with what the namespace holds under its name now (`now`:
/// ifindex and kind), and say in the report why it is left alone if it is.
fn judge_link(link: &LinkRecord, phase: Phase, now: Option<&(u32, String)>, report: &mut Report) -> Standing {
    let what = format!("link {} in {}", link.name, link.ns);
    let Some((index, kind)) = now else {
        if phase == Phase::Done {
            report.skipped(format!("{what}: already gone"));
        }
        return Standing::Absent;
    };
    let kind_words = if kind.is_empty() { "plain".to_string() } else { kind.clone() };
    match link.index {
        None => report.skipped(format!(
            "{what}: the ledger holds no identity for it (a creation that never finished, or a ledger of an older nsscript), \
             and a {kind_words} link with ifindex {index} stands there now: left alone"
        )),
        Some(recorded) if recorded != *index => {
            report.skipped(format!("{what}: exists but is not the one this lab created (ifindex {index}, recorded {recorded})"))
        }
        Some(_) if !link.kind.is_empty() && kernel_kind(&link.kind) != kind => report.skipped(format!(
            "{what}: exists but is not the one this lab created (a {kind_words} link, recorded as {}; ifindex {index})",
            link.kind
        )),
        Some(_) => return Standing::Ours(*index),
    }
    Standing::NotOurs
}

/// The namespaces outside the lab that it changed and that are still the ones it
/// changed (by cookie). Every other one is reported once, with how many changes in it
/// are left alone.
fn trusted_outside<K: Kernel>(state: &LabState, nl: &mut Netlink<K>, report: &mut Report) -> HashSet<NsRef> {
    // Each namespace, with what the lab changed there (in words, for the report).
    let mut changes: Vec<(NsRef, Vec<String>)> = Vec::new();
    let mut note = |ns: &NsRef, what: String| {
        if state.owns_ns(ns) {
            return;
        }
        match changes.iter_mut().find(|(n, _)| n == ns) {
            Some((_, c)) => c.push(what),
            None => changes.push((ns.clone(), vec![what])),
        }
    };
    state.links().for_each(|(_, l)| note(&l.ns, format!("link {}", l.name)));
    state.addrs().for_each(|(_, a)| note(&a.ns, format!("address {} on {}", a.addr, a.link)));
    state.routes().for_each(|(_, r)| note(&r.ns, format!("route {}", r.describe())));
    state.rules().for_each(|(_, r)| note(&r.ns, format!("rule {}", r.describe())));
    state.sysctls().for_each(|(_, s)| note(&s.ns, format!("sysctl {}", s.key)));
    state.fw().for_each(|(_, f)| note(&f.ns, format!("iptables {} {}", f.table, f.chain)));
    state.qdiscs().for_each(|(_, q)| note(&q.ns, format!("qdisc {} on {}", q.kind, q.link)));
    let mut trusted = HashSet::new();
    for (ns, what) in changes {
        let listed = if what.len() > 4 { format!("{}, ... ({} in all)", what[..3].join(", "), what.len()) } else { what.join(", ") };
        let left = format!("what the lab changed in {ns} ({listed})");
        match (state.outside_cookie(&ns), nl.kernel().netns_cookie(&ns)) {
            (None, _) => report.skipped(format!(
                "{left}: the ledger does not say which namespace that was (a ledger of an older nsscript, or edited), so nothing there is touched"
            )),
            (Some(_), Err(_)) => report.skipped(format!("{left}: the namespace is gone, and the changes with it")),
            (Some(recorded), Ok(now)) if recorded != now => report.skipped(format!(
                "{left}: {ns} is not the namespace the lab changed (cookie {now}, recorded {recorded}: run `down` where the lab was built), so nothing there is touched"
            )),
            (Some(_), Ok(_)) => {
                trusted.insert(ns);
            }
        }
    }
    trusted
}

/// Remove what the ledger names. With `wait`, return only once the kernel has also
/// destroyed the veth ends of deleted namespaces (it frees namespaces asynchronously),
/// so that a rebuild right after finds every name free.
pub fn teardown<K: Kernel>(state: &LabState, nl: &mut Netlink<K>, wait: bool) -> Report {
    // A rollback may follow a build that ran out of file descriptors (EMFILE, two held
    // per namespace): with them all in use, looking at each namespace's identity below
    // would fail and leave it standing. They are a cache; what is needed is reopened.
    nl.release_handles();
    let mut report = Report::default();

    // 0. Processes the ledger names (spawn, dhcp_server): before the namespaces they
    //    keep alive.
    super::procs::stop_all(state, nl.kernel(), &mut report);
    // No other run creates or removes anything while we look at identities.
    let _names = match lab::lock::names() {
        Ok(guard) => guard,
        Err(e) => {
            report.failed(e.to_string());
            return report;
        }
    };
    let trusted = trusted_outside(state, nl, &mut report);

    // Every other process inside the lab's namespaces (those still the lab's own).
    let mut seen: HashMap<String, NetnsAt> = state.netns().map(|(_, ns)| (ns.name.clone(), nl.kernel().netns_at(&ns.name))).collect();
    let lab_namespaces: Vec<String> = state
        .netns()
        .filter(|(_, ns)| ns.cookie.is_some_and(|c| seen.get(&ns.name) == Some(&NetnsAt::Namespace(c))))
        .map(|(_, ns)| ns.name.clone())
        .collect();
    let waits = report.waited.len();
    super::procs::stop_in_namespaces(&lab_namespaces, nl.kernel(), &mut report);
    if report.waited.len() != waits {
        // Time passed while processes ended: each name is looked at again before it goes.
        seen.clear();
    }

    // The links outside the lab's namespaces, judged against one dump per namespace.
    let mut standing: HashMap<NsRef, HashMap<String, (u32, String)>> = HashMap::new();
    let mut ours: HashMap<u64, u32> = HashMap::new();
    for (entry, link) in state.links().filter(|(_, l)| !state.owns_ns(&l.ns) && trusted.contains(&l.ns)) {
        if !standing.contains_key(&link.ns) {
            match nl.links(&link.ns) {
                Ok(now) => {
                    standing.insert(link.ns.clone(), now.into_iter().map(|l| (l.name, (l.index, l.kind))).collect());
                }
                Err(e) => {
                    report.failed(format!("links in {}: {e}", link.ns));
                    return report;
                }
            }
        }
        if let Standing::Ours(index) = judge_link(link, entry.phase, standing[&link.ns].get(&link.name), &mut report) {
            ours.insert(entry.id, index);
        }
    }
    // A veth end outside whose other end lives in a lab namespace goes with that
    // namespace: deleting it by hand would cost ~16 ms of RCU wait each.
    let goes_with_ns = |l: &LinkRecord| -> Option<String> {
        let pair = state.link_by_id(l.pair?)?;
        pair.ns.name().filter(|n| state.owns_netns(n)).map(str::to_string)
    };
    let outside: Vec<(&lab::Entry, &LinkRecord, u32)> =
        state.links().rev().filter_map(|(e, l)| ours.get(&e.id).map(|i| (e, l, *i))).collect();

    // 1. Links in namespaces that outlive the lab, bridges first (their ports detach
    //    for free); veth ends paired into a lab namespace are left to step 3. The
    //    bridges are deleted aside while the namespaces are removed.
    let doomed_bridges: Vec<(NsRef, u32, String)> = outside
        .iter()
        .filter(|(_, l, _)| l.kind == "bridge")
        .map(|(_, l, index)| (l.ns.clone(), *index, format!("link {} in {}", l.name, l.ns)))
        .collect();
    let bridges_deleted = match nl.delete_bridges_aside(doomed_bridges) {
        Ok(d) => d,
        Err(e) => {
            report.failed(format!("bridges: {e}"));
            return report;
        }
    };
    for (_, link, index) in outside.iter().filter(|(_, l, _)| l.kind != "bridge" && goes_with_ns(l).is_none()) {
        delete_link(nl, link, *index, &mut report);
    }

    // 2. Namespaces: each goes with every link inside it.
    let mut deleted = Vec::new();
    for (entry, ns) in state.netns().rev() {
        let at = match seen.remove(&ns.name) {
            Some(at) => at,
            None => nl.kernel().netns_at(&ns.name),
        };
        let what = format!("netns {}", ns.name);
        let Some(cookie) = ns.cookie else {
            if at != NetnsAt::Nothing {
                report.skipped(format!(
                    "{what}: the ledger holds no identity for it (a ledger of an older nsscript, or edited), and {} stands there now: left alone",
                    describe_at(&at)
                ));
            }
            continue;
        };
        match at {
            NetnsAt::Nothing => {
                if entry.phase == Phase::Done {
                    report.skipped(format!("{what}: already gone"));
                }
            }
            NetnsAt::Namespace(now) if now == cookie => {
                nl.forget(&NsRef::Named(ns.name.clone()));
                match nl.kernel().delete_netns(&ns.name) {
                    Ok(()) => {
                        report.removed(what);
                        deleted.push(ns.name.clone());
                    }
                    Err(e) => report.failed(format!("{what}: {e}")),
                }
            }
            NetnsAt::Namespace(now) => {
                report.skipped(format!("{what}: exists but is not the one this lab created (cookie {now}, recorded {cookie})"))
            }
            NetnsAt::Placeholder(Some(m)) if m.cookie == cookie => match nl.kernel().remove_netns_placeholder(&ns.name, cookie) {
                Ok(_) => report.removed(format!("{what} (the placeholder file a killed run left at /run/netns/{})", ns.name)),
                Err(e) => report.failed(format!("{what}: {e}")),
            },
            other => report.skipped(format!("{what}: /run/netns/{} holds {}: left alone", ns.name, describe_at(&other))),
        }
    }

    // 3. The veth ends of deleted namespaces: the kernel removes them as it frees the
    //    namespace (asynchronously, like `ip netns del`); the others by hand.
    let mut vanishing = Vec::new();
    for (_, link, index) in outside.iter().filter(|(_, l, _)| l.kind != "bridge") {
        match goes_with_ns(link) {
            Some(ns) if deleted.contains(&ns) => vanishing.push((*link, *index, ns)),
            Some(_) => delete_link(nl, link, *index, &mut report),
            None => {}
        }
    }
    for (what, outcome) in nl.deletions_done(bridges_deleted) {
        match outcome {
            Ok(()) => report.removed(what),
            Err(e) => report.failed(format!("{what}: {e}")),
        }
    }
    if wait && !vanishing.is_empty() {
        let since = Instant::now();
        let left = wait_until_gone(nl, &vanishing);
        report.waited(format!("the kernel to free the {} veth end(s) of deleted namespaces", vanishing.len()), since);
        for (link, index, ns) in &vanishing {
            if left.contains(index) {
                // Something outside our sight still holds the namespace: the end is ours
                // (identity checked above), so it goes by hand, and its peer with it.
                let what = format!("link {} in {} (its netns {ns} was still held after 10 s: deleted by hand)", link.name, link.ns);
                match nl.delete_index(&link.ns, *index) {
                    Ok(()) => report.removed(what),
                    Err(e) => report.failed(format!("{what}: {e}")),
                }
            } else {
                report.removed(format!("link {} in {} (with netns {ns})", link.name, link.ns));
            }
        }
    } else {
        for (link, _, ns) in &vanishing {
            report.removed(format!("link {} in {} (with netns {ns})", link.name, link.ns));
        }
    }

    // 4. Changes to namespaces that outlive the lab, newest first.
    let undo_here = |ns: &NsRef| !state.owns_ns(ns) && trusted.contains(ns);
    undo_qdiscs(state, nl, &undo_here, &mut report);
    for (_, r) in state.rules().rev().filter(|(_, r)| undo_here(&r.ns)) {
        match nl.del_rule(r) {
            Ok(()) => report.removed(format!("rule {} in {}", r.describe(), r.ns)),
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (_, r) in state.routes().rev().filter(|(_, r)| undo_here(&r.ns)) {
        match nl.del_route(r) {
            Ok(()) => report.removed(format!("route {} in {}", r.describe(), r.ns)),
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (_, a) in state.addrs().rev().filter(|(_, a)| undo_here(&a.ns)) {
        match nl.del_addr(a) {
            Ok(()) => report.removed(a.describe()),
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (_, s) in state.sysctls().rev().filter(|(_, s)| undo_here(&s.ns)) {
        match nl.kernel().sysctl_write(&s.ns, &s.key, &s.old) {
            Ok(()) => report.removed(format!("sysctl {} restored to {} in {}", s.key, s.old, s.ns)),
            Err(e) => report.failed(e.to_string()),
        }
    }
    // 5. iptables changes in namespaces that outlive the lab.
    undo_firewall(state, nl.kernel(), &trusted, &mut report);
    report
}

/// Take back the root qdiscs the lab set on links that outlive it, newest first: one
/// deletion per link, only while the link under that name is still the recorded ifindex
/// (in a namespace whose cookie was checked) and its root qdisc is still one the lab set
/// there (a kind it set, handle 1:; the kernel checks both in the deletion itself). The
/// kernel's default qdisc comes back. Anything else is reported and left alone.
fn undo_qdiscs<K: Kernel>(state: &LabState, nl: &mut Netlink<K>, undo_here: &dyn Fn(&NsRef) -> bool, report: &mut Report) {
    // Each shaped link (place and ifindex), with the kinds set on it and whether any
    // change is known done (an intent alone may have left nothing).
    let mut links: Vec<(&QdiscRecord, Vec<&str>, bool)> = Vec::new();
    for (entry, q) in state.qdiscs().rev().filter(|(_, q)| undo_here(&q.ns)) {
        let done = entry.phase == Phase::Done;
        match links.iter_mut().find(|(r, ..)| r.ns == q.ns && r.link == q.link && r.index == q.index) {
            Some((_, kinds, d)) => {
                kinds.push(&q.kind);
                *d |= done;
            }
            None => links.push((q, vec![&q.kind], done)),
        }
    }
    for (q, kinds, done) in links {
        let what = format!("the root qdisc the lab set on link {} in {} ({} 1:)", q.link, q.ns, kinds.join(" or "));
        let now = match nl.link_identity(&q.ns, &q.link) {
            Ok(now) => now,
            Err(e) => {
                report.failed(format!("{what}: {e}"));
                continue;
            }
        };
        match now {
            None => {
                if done {
                    report.skipped(format!("{what}: the link is gone, and the qdisc with it"));
                }
                continue;
            }
            Some((index, _)) if index != q.index => {
                report.skipped(format!(
                    "{what}: link {} is not the link the lab shaped (ifindex {index}, recorded {}): its qdisc is left alone",
                    q.link, q.index
                ));
                continue;
            }
            Some(_) => {}
        }
        let root = match nl.root_qdisc(&q.ns, q.index) {
            Ok(r) => r.filter(|(_, h)| h.major != 0),
            Err(e) => {
                report.failed(format!("{what}: {e}"));
                continue;
            }
        };
        match root {
            None => {
                if done {
                    report.skipped(format!("{what}: already gone (the kernel's default is there)"));
                }
            }
            Some((kind, h)) if h.major == 1 && h.minor == 0 && kinds.contains(&kind.as_str()) => {
                match nl.delete_root_qdisc(&q.ns, q.index, &kind, &what) {
                    Ok(()) => report.removed(format!("qdisc {kind} 1: on link {} in {} (the kernel's default is back)", q.link, q.ns)),
                    Err(e) if e.is_errno(libc::ENOENT) || e.is_errno(libc::EINVAL) => {
                        report.skipped(format!("{what}: it changed while down looked at it: left alone"))
                    }
                    Err(e) => report.failed(e.to_string()),
                }
            }
            Some((kind, h)) => report.skipped(format!(
                "{what}: its root qdisc is now a {kind} qdisc ({}), not one the lab set: left alone",
                crate::ops::qdisc::handle_text(h.major, h.minor)
            )),
        }
    }
}

/// Undo the lab's iptables changes in namespaces that outlive it, newest first: the
/// rules, then the chains of the lab's own (a rule may jump to one: `-X` refuses a chain
/// something still jumps to, and its own rules go with `-F`), then the policies.
fn undo_firewall<K: Kernel>(state: &LabState, k: &mut K, trusted: &HashSet<NsRef>, report: &mut Report) {
    let records: Vec<(&lab::Entry, &FwRecord)> =
        state.fw().rev().filter(|(_, f)| !state.owns_ns(&f.ns) && trusted.contains(&f.ns)).collect();
    let pass = |want: fn(&FwUndo) -> bool| records.iter().filter(move |(_, f)| want(&f.undo));
    for (entry, f) in pass(|u| matches!(u, FwUndo::Rule(_))) {
        let FwUndo::Rule(text) = &f.undo else { continue };
        let words = match crate::ops::firewall::split_words(text) {
            Ok(w) => w,
            Err(why) => {
                report.failed(format!(
                    "iptables rule -t {} -A {} {text} in {}: the ledger's rule does not parse: {why}",
                    f.table, f.chain, f.ns
                ));
                continue;
            }
        };
        let rule = Rule { ipv6: f.ipv6, ..Rule::new(&f.table, &f.chain, words) };
        let what = format!("{} in {}", rule.describe(), f.ns);
        match k.rule_exists(&f.ns, &rule).and_then(|there| if there { k.rule_delete(&f.ns, &rule).map(|_| true) } else { Ok(false) }) {
            Ok(true) => report.removed(what),
            Ok(false) => {
                if entry.phase == Phase::Done {
                    report.skipped(format!("{what}: already gone"))
                }
            }
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (entry, f) in pass(|u| matches!(u, FwUndo::Chain)) {
        let what = format!("iptables chain {} (table {}) in {}", f.chain, f.table, f.ns);
        match k.chain_exists(&f.ns, &f.table, &f.chain).and_then(|there| {
            if there {
                k.chain_delete(&f.ns, &f.table, &f.chain).map(|_| true)
            } else {
                Ok(false)
            }
        }) {
            Ok(true) => report.removed(what),
            Ok(false) => {
                if entry.phase == Phase::Done {
                    report.skipped(format!("{what}: already gone"))
                }
            }
            Err(e) => report.failed(e.to_string()),
        }
    }
    for (_, f) in pass(|u| matches!(u, FwUndo::Policy(_))) {
        let FwUndo::Policy(old) = &f.undo else { continue };
        let what = format!("iptables policy of {} (table {}) restored to {old} in {}", f.chain, f.table, f.ns);
        match k.set_chain_policy(&f.ns, &f.table, &f.chain, old) {
            Ok(()) => report.removed(what),
            Err(e) => report.failed(e.to_string()),
        }
    }
}

/// Delete one recorded link whose identity was checked (`index`).
fn delete_link<K: Kernel>(nl: &mut Netlink<K>, link: &LinkRecord, index: u32, report: &mut Report) {
    let what = format!("link {} in {}", link.name, link.ns);
    match nl.delete_index(&link.ns, index) {
        Ok(()) => report.removed(what),
        Err(e) => report.failed(format!("{what}: {e}")),
    }
}

/// Poll (one dump per namespace every 5 ms, at most 10 s) until these links are gone;
/// the ifindexes of those still there.
fn wait_until_gone<K: Kernel>(nl: &mut Netlink<K>, links: &[(&LinkRecord, u32, String)]) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left: Vec<(&LinkRecord, u32)> = links.iter().map(|(l, i, _)| (*l, *i)).collect();
    loop {
        let mut namespaces: Vec<NsRef> = left.iter().map(|(l, _)| l.ns.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        let mut present = HashSet::new();
        for ns in namespaces {
            match nl.links(&ns) {
                Ok(now) => present.extend(now.into_iter().map(|l| (ns.clone(), l.name, l.index))),
                Err(_) => return Vec::new(),
            }
        }
        left.retain(|(l, i)| present.contains(&(l.ns.clone(), l.name.clone(), *i)));
        if left.is_empty() || Instant::now() >= deadline {
            return left.into_iter().map(|(_, i)| i).collect();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
