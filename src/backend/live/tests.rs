//! The live backend against the recording double (no root): what the ledger holds
//! and when, how requests are batched, what a rollback and `down` remove and in what
//! order, and what they leave alone.

use super::double::{Call, Double};
use super::kernel::Kernel as _;
use super::netlink::Netlink;
use super::{teardown, LiveBackend};
use crate::backend::Backend;
use crate::error::Code;
use crate::lab::{self, Entry, Object, Phase};
use crate::ops::address::AddAddr;
use crate::ops::firewall::{Firewall, FwOp, Masquerade};
use crate::ops::link::{CreateBridge, CreateVeth, LinkChange, SetLink};
use crate::ops::netns::CreateNetns;
use crate::ops::route::{AddRoute, RouteVia};
use crate::ops::sysctl::Sysctl;
use crate::ops::{NsRef, Op};

/// Ledgers and locks go to a directory of the tests' own.
fn state_root() {
    let root = std::env::temp_dir().join(format!("nsscript-unit-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&root);
    lab::set_state_root(root);
}

fn backend(lab: &str) -> LiveBackend<Double> {
    state_root();
    LiveBackend::with_kernel(Double::new(), lab, "test.rhai").expect("a valid lab name")
}

fn ledger(lab: &str) -> Vec<Entry> {
    let text = std::fs::read_to_string(lab::lab_dir(lab).join("ledger.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).expect("ledger lines parse")).collect()
}

fn netns(name: &str) -> Op {
    Op::CreateNetns(CreateNetns { name: name.into() })
}

fn veth(ns: &str, name: &str, peer_ns: &str, peer: &str, master: Option<&str>) -> Op {
    let place = |n: &str| if n == "host" { NsRef::Host } else { NsRef::named(n) };
    Op::CreateVeth(CreateVeth {
        ns: place(ns),
        name: name.into(),
        peer_ns: place(peer_ns),
        peer: peer.into(),
        mtu: None,
        up: true,
        master: master.map(String::from),
    })
}

fn addr(ns: &str, link: &str, cidr: &str) -> Op {
    Op::AddAddr(AddAddr { ns: NsRef::named(ns), link: link.into(), addr: cidr.parse().unwrap() })
}

#[test]
fn every_object_is_recorded_before_it_exists_and_identified_after() {
    let mut b = backend("unit-ledger");
    b.apply(netns("a")).unwrap();
    b.apply(Op::CreateBridge(CreateBridge { ns: NsRef::Host, name: "br0".into() })).unwrap();
    b.apply(veth("host", "a-eth0", "a", "eth0", Some("br0"))).unwrap();
    b.finish().unwrap();
    let phases: Vec<(String, Phase)> = ledger("unit-ledger")
        .iter()
        .filter_map(|e| match &e.object {
            Object::Netns(n) => Some((format!("netns {} {:?}", n.name, n.cookie.is_some()), e.phase)),
            Object::Link(l) => Some((format!("link {} {:?}", l.name, l.index.is_some()), e.phase)),
            Object::Outside { ns, .. } => Some((format!("outside {ns}"), e.phase)),
            _ => None,
        })
        .collect();
    // Every intent already identifies its object where it outlives a kill: the
    // namespace by its cookie, a link in the host by the ifindex it is created with.
    // Only the end inside the lab's namespace (which goes with it) waits for its echo.
    assert_eq!(
        phases,
        [
            ("netns a true".into(), Phase::Intent),
            ("netns a true".into(), Phase::Done),
            ("outside the host namespace".into(), Phase::Done),
            ("link br0 true".into(), Phase::Intent),
            ("link br0 true".into(), Phase::Done),
            ("link eth0 false".into(), Phase::Intent),
            ("link a-eth0 true".into(), Phase::Intent),
            ("link a-eth0 true".into(), Phase::Done),
            ("link eth0 true".into(), Phase::Done),
        ]
    );
    // The state replayed from the file is what the run holds.
    assert_eq!(lab::load("unit-ledger").unwrap(), *b.state());
    b.rollback();
}

#[test]
fn a_refused_creation_is_recorded_as_failed_and_the_error_says_so() {
    let mut b = backend("unit-refused");
    b.apply(netns("r")).unwrap();
    b.nl.kernel().refuse("newlink veth x", libc::EEXIST);
    let err = b.apply(veth("r", "x", "r", "y", None)).unwrap_err();
    assert_eq!(err.code, Code::NameTaken);
    assert!(err.help.as_deref().unwrap_or("").contains("already exists"), "{err:?}");
    let last: Vec<Phase> = ledger("unit-refused").iter().rev().take(2).map(|e| e.phase).collect();
    assert_eq!(last, [Phase::Failed, Phase::Failed]);
    assert!(b.state().link(&NsRef::named("r"), "x").is_none());
    b.rollback();
}

#[test]
fn requests_that_need_only_an_ack_wait_for_one_burst_per_namespace() {
    let mut b = backend("unit-burst");
    b.apply(netns("a")).unwrap();
    b.apply(netns("b")).unwrap();
    b.apply(veth("a", "eth0", "b", "eth0", None)).unwrap();
    b.apply(addr("a", "eth0", "10.9.0.1/24")).unwrap();
    b.apply(addr("b", "eth0", "10.9.0.2/24")).unwrap();
    b.apply(Op::AddRoute(AddRoute { ns: NsRef::named("a"), dest: None, via: RouteVia::Gateway("10.9.0.2".parse().unwrap()) })).unwrap();
    // Nothing queued is sent yet: only the creation went to the kernel.
    assert_eq!(b.nl.kernel().bursts(&NsRef::named("a")), [vec!["newlink veth eth0".to_string()]]);
    b.finish().unwrap();
    let a = b.nl.kernel().bursts(&NsRef::named("a"));
    assert_eq!(a[1], ["setlink #1 up", "newaddr #2 10.9.0.1/24", "newroute 0.0.0.0/0 via 10.9.0.2"]);
    // b's lo, its veth end brought up (the kernel refuses IFF_UP for a peer made in
    // another namespace), and its address: one burst.
    let bb = b.nl.kernel().bursts(&NsRef::named("b"));
    assert_eq!(bb, [vec!["setlink #1 up".to_string(), "setlink #2 up".into(), "newaddr #2 10.9.0.2/24".into()]]);
    b.rollback();
}

#[test]
fn a_refusal_found_at_a_later_flush_is_the_error_of_the_op_that_asked() {
    let mut b = backend("unit-late");
    b.apply(netns("l")).unwrap();
    b.apply(veth("l", "e0", "l", "e1", None)).unwrap();
    b.nl.kernel().refuse("newaddr", libc::EEXIST);
    b.apply(addr("l", "e0", "10.8.0.1/24")).unwrap();
    let err = b.finish().unwrap_err();
    assert_eq!(err.code, Code::AddressRefused);
    assert_eq!(err.help.as_deref(), Some("e0 already has 10.8.0.1/24"));
    b.rollback();
}

#[test]
fn rollback_stops_processes_then_deletes_bridges_aside_and_namespaces_then_restores_the_host() {
    let mut b = backend("unit-rollback");
    b.nl.kernel().set_sysctl(&NsRef::Host, "net.ipv4.ip_forward", "0");
    b.apply(netns("n1")).unwrap();
    b.apply(Op::CreateBridge(CreateBridge { ns: NsRef::Host, name: "brx".into() })).unwrap();
    b.apply(veth("host", "n1-eth0", "n1", "eth0", Some("brx"))).unwrap();
    b.apply(Op::Sysctl(Sysctl { ns: NsRef::Host, key: "net.ipv4.ip_forward".into(), value: "1".into() })).unwrap();
    let masq = Masquerade { src: "10.1.0.0/24".parse().unwrap(), out: "eth9".into(), not_dst: None };
    b.apply(Op::Firewall(Firewall { ns: NsRef::Host, op: FwOp::Masquerade(masq) })).unwrap();
    b.apply(Op::Spawn(crate::ops::process::Spawn {
        ns: NsRef::named("n1"),
        cmd: crate::ops::process::Command::Shell("sleep 60".into()),
        listen: None,
        wait_ms: 100,
    }))
    .unwrap();
    b.finish().unwrap();
    let before = b.nl.kernel().calls.len();
    let br = b.state().link(&NsRef::Host, "brx").and_then(|(_, l)| l.index).expect("the bridge's ifindex is recorded");
    let report = b.rollback();
    assert!(report.failed.is_empty(), "{report:?}");
    let k = b.nl.kernel();
    let after: Vec<&Call> = k.calls[before..].iter().filter(|c| !matches!(c, Call::Dump(..))).collect();
    let pos = |f: &dyn Fn(&Call) -> bool| after.iter().position(|c| f(c)).unwrap_or_else(|| panic!("not called: {after:?}"));
    let killed = pos(&|c| matches!(c, Call::Kill(_, s) if s == "SIGTERM"));
    let down_del = [format!("setlink #{br} down"), format!("dellink #{br}")];
    let bridge = pos(&|c| matches!(c, Call::Aside(NsRef::Host, r) if r == &down_del));
    let ns = pos(&|c| matches!(c, Call::DeleteNetns(n) if n == "n1"));
    let sysctl = pos(&|c| matches!(c, Call::SysctlWrite(NsRef::Host, key, v) if key == "net.ipv4.ip_forward" && v == "0"));
    let rule = pos(&|c| matches!(c, Call::RuleDelete(NsRef::Host, r) if r == "-s 10.1.0.0/24 -o eth9 -j MASQUERADE"));
    assert!(killed < bridge && bridge < ns && ns < sysctl && sysctl < rule, "{after:?}");
    // The host end went with the namespace: it was not deleted by hand.
    assert!(!after.iter().any(|c| matches!(c, Call::Burst(NsRef::Host, r) if r.iter().any(|w| w.starts_with("dellink")))), "{after:?}");
    assert!(k.link_names(&NsRef::Host).is_empty() && !k.has_netns("n1") && k.rules(&NsRef::Host).is_empty());
    assert!(!lab::exists("unit-rollback"));
}

#[test]
fn down_leaves_alone_what_is_no_longer_the_object_the_lab_made() {
    let mut b = backend("unit-foreign");
    b.apply(netns("mine")).unwrap();
    b.apply(netns("swapped")).unwrap();
    b.apply(Op::CreateBridge(CreateBridge { ns: NsRef::Host, name: "brf".into() })).unwrap();
    b.finish().unwrap();
    let state = lab::load("unit-foreign").unwrap();
    let mut k = std::mem::take(b.nl.kernel());
    // Someone deleted the namespace and the bridge and made their own under the names.
    k.replace_netns("swapped");
    let mut nl = Netlink::new(k);
    let index = nl.link_index(&NsRef::Host, "brf").unwrap().unwrap();
    nl.delete_index(&NsRef::Host, index).unwrap();
    nl.kernel().add_foreign_link(&NsRef::Host, "brf", "bridge");
    let report = teardown::teardown(&state, &mut nl, false);
    assert!(report.skipped.iter().any(|s| s.starts_with("netns swapped: exists but is not the one")), "{report:?}");
    assert!(report.skipped.iter().any(|s| s.starts_with("link brf in the host namespace: exists but is not the one")), "{report:?}");
    let k = nl.kernel();
    assert!(k.has_netns("swapped") && !k.has_netns("mine"));
    assert_eq!(k.link_names(&NsRef::Host), ["brf"]);
    lab::remove("unit-foreign").unwrap();
}

#[test]
fn changes_to_a_link_that_is_not_the_labs_are_refused_before_the_kernel_is_asked() {
    let mut b = backend("unit-owned");
    b.nl.kernel().add_foreign_link(&NsRef::Host, "eth0", "");
    let err = b.apply(Op::SetLink(SetLink { ns: NsRef::Host, name: "eth0".into(), change: LinkChange::Down })).unwrap_err();
    assert_eq!(err.code, Code::NotOwned);
    assert!(b.nl.kernel().calls.is_empty(), "{:?}", b.nl.kernel().calls);
    assert!(!b.has_lab());
}

#[test]
fn host_changes_are_recorded_and_undone_renames_followed() {
    let mut b = backend("unit-host");
    b.apply(Op::CreateBridge(CreateBridge { ns: NsRef::Host, name: "brh".into() })).unwrap();
    b.apply(Op::AddAddr(AddAddr { ns: NsRef::Host, link: "brh".into(), addr: "10.7.0.1/24".parse().unwrap() })).unwrap();
    b.apply(Op::AddRoute(AddRoute {
        ns: NsRef::Host,
        dest: Some("10.70.0.0/16".parse().unwrap()),
        via: RouteVia::Gateway("10.7.0.2".parse().unwrap()),
    }))
    .unwrap();
    b.apply(Op::SetLink(SetLink { ns: NsRef::Host, name: "brh".into(), change: LinkChange::Rename("brh2".into()) })).unwrap();
    b.finish().unwrap();
    let state = lab::load("unit-host").unwrap();
    assert!(state.link(&NsRef::Host, "brh2").is_some() && state.link(&NsRef::Host, "brh").is_none());
    assert_eq!(state.routes().count(), 1);
    let before = b.nl.kernel().calls.len();
    let report = b.rollback();
    assert!(report.failed.is_empty(), "{report:?}");
    let after = &b.nl.kernel().calls[before..];
    assert!(after.iter().any(|c| matches!(c, Call::Burst(NsRef::Host, r) if r == &["delroute 10.70.0.0/16 via 10.7.0.2"])), "{after:?}");
    assert!(b.nl.kernel().link_names(&NsRef::Host).is_empty());
}

// ---------------------------------------------------------------------------------
// Identities (issue 13): what `down` does with entries a killed run left, or that name
// objects someone else made since.

use crate::lab::LabState;
use crate::nsexec::Marker;
use crate::ops::link::LinkRecord;
use crate::ops::netns::NetnsRecord;
use crate::ops::sysctl::SysctlRecord;

fn replay(entries: &[Entry]) -> LabState {
    let mut s = LabState::default();
    for e in entries {
        s.apply(e);
    }
    s
}

fn ns_entry(id: u64, name: &str, cookie: Option<u64>, phase: Phase) -> Entry {
    Entry { id, phase, object: Object::Netns(NetnsRecord { name: name.into(), cookie }) }
}

fn host_link(id: u64, name: &str, kind: &str, index: Option<u32>, phase: Phase) -> Entry {
    Entry { id, phase, object: Object::Link(LinkRecord { ns: NsRef::Host, name: name.into(), kind: kind.into(), index, pair: None }) }
}

fn host_is(cookie: u64) -> Entry {
    Entry { id: 1, phase: Phase::Done, object: Object::Outside { ns: NsRef::Host, cookie } }
}

fn down_with(k: Double, state: &LabState) -> (crate::lab::report::Report, Double) {
    state_root();
    let mut nl = Netlink::new(k);
    let report = teardown::teardown(state, &mut nl, true);
    (report, std::mem::take(nl.kernel()))
}

#[test]
fn intents_a_killed_run_left_never_delete_what_someone_made_under_their_names() {
    // The run died after writing the intents: the namespace was never named, the bridge
    // never made. Someone then made both.
    let state = replay(&[
        host_is(1),
        ns_entry(2, "k1", Some(4242), Phase::Intent),
        host_link(3, "k1-br", "bridge", Some((1 << 30) + 7), Phase::Intent),
    ]);
    let mut k = Double::new();
    k.replace_netns("k1");
    k.add_foreign_link(&NsRef::Host, "k1-br", "bridge");
    let (report, k) = down_with(k, &state);
    assert!(report.skipped.iter().any(|s| s.starts_with("netns k1: exists but is not the one this lab created (cookie")), "{report:?}");
    assert!(report.skipped.iter().any(|s| s.starts_with("link k1-br in the host namespace: exists but is not the one")), "{report:?}");
    assert!(report.removed.is_empty() && report.failed.is_empty(), "{report:?}");
    assert!(k.has_netns("k1") && k.link_names(&NsRef::Host) == ["k1-br"]);
    assert!(!k.calls.iter().any(|c| matches!(c, Call::DeleteNetns(_) | Call::Burst(..) | Call::Aside(..))), "{:?}", k.calls);
}

#[test]
fn an_entry_without_identity_deletes_nothing_and_the_report_says_what_stands_there() {
    // A ledger of an older nsscript (or an edited one): no cookie, no ifindex.
    let state = replay(&[host_is(1), ns_entry(2, "old", None, Phase::Done), host_link(3, "eth0", "veth", None, Phase::Intent)]);
    let mut k = Double::new();
    k.replace_netns("old");
    k.add_foreign_link(&NsRef::Host, "eth0", "veth");
    let (report, k) = down_with(k, &state);
    let said = report.skipped.join("\n");
    assert!(said.contains("netns old: the ledger holds no identity for it") && said.contains("a namespace (cookie"), "{said}");
    assert!(
        said.contains("link eth0 in the host namespace: the ledger holds no identity for it") && said.contains("a veth link with ifindex"),
        "{said}"
    );
    assert!(k.has_netns("old") && k.link_names(&NsRef::Host) == ["eth0"], "{:?}", k.calls);
}

#[test]
fn the_placeholder_a_killed_run_left_is_removed_and_nothing_else_is() {
    let state = replay(&[
        ns_entry(1, "mine", Some(77), Phase::Done),
        ns_entry(2, "empty", Some(78), Phase::Done),
        ns_entry(3, "other", Some(79), Phase::Intent),
    ]);
    let mut k = Double::new();
    k.put_placeholder("mine", Some(Marker { cookie: 77, lab: "l".into() }));
    // iproute2's placeholder (empty), and another lab's.
    k.put_placeholder("empty", None);
    k.put_placeholder("other", Some(Marker { cookie: 5, lab: "l2".into() }));
    let (report, k) = down_with(k, &state);
    assert_eq!(report.removed, ["netns mine (the placeholder file a killed run left at /run/netns/mine)"], "{report:?}");
    assert!(report.skipped.iter().any(|s| s.starts_with("netns empty: /run/netns/empty holds an empty file")), "{report:?}");
    assert!(report.skipped.iter().any(|s| s.contains("the placeholder of lab l2's namespace with cookie 5")), "{report:?}");
    let mut k = k;
    assert_eq!(super::kernel::Kernel::netns_at(&mut k, "empty"), crate::nsexec::NetnsAt::Placeholder(None));
}

#[test]
fn nothing_is_undone_in_a_namespace_that_is_not_the_one_the_lab_changed() {
    // `down` run from another namespace than the build (the double's host has cookie 1).
    let state = replay(&[
        host_is(999),
        Entry {
            id: 2,
            phase: Phase::Done,
            object: Object::Sysctl(SysctlRecord { ns: NsRef::Host, key: "net.ipv4.ip_forward".into(), old: "0".into() }),
        },
        host_link(3, "brx", "bridge", Some((1 << 30) + 1), Phase::Done),
    ]);
    let mut k = Double::new();
    k.add_foreign_link_at(&NsRef::Host, "brx", "bridge", (1 << 30) + 1);
    let (report, k) = down_with(k, &state);
    assert!(
        report.skipped.iter().any(|s| s.contains("what the lab changed in the host namespace (link brx, sysctl net.ipv4.ip_forward)")
            && s.contains("is not the namespace the lab changed (cookie 1, recorded 999")),
        "{report:?}"
    );
    assert!(!k.calls.iter().any(|c| matches!(c, Call::SysctlWrite(..) | Call::Aside(..) | Call::Burst(..))), "{:?}", k.calls);
}

#[test]
fn every_process_inside_a_lab_namespace_is_stopped_before_it_goes_whoever_started_it() {
    let mut b = backend("unit-nsprocs");
    b.apply(netns("np")).unwrap();
    b.finish().unwrap();
    let theirs = b.nl.kernel().add_process_in("np");
    let elsewhere = b.nl.kernel().add_process_in("not-a-lab-namespace");
    let report = b.rollback();
    let k = b.nl.kernel();
    let signal = k.calls.iter().position(|c| matches!(c, Call::Signal(p, s) if *p == theirs && s == "SIGTERM")).expect("signalled");
    let delete = k.calls.iter().position(|c| matches!(c, Call::DeleteNetns(n) if n == "np")).expect("deleted");
    assert!(signal < delete, "{:?}", k.calls);
    assert!(!k.alive(theirs) && k.alive(elsewhere));
    assert!(report.removed.iter().any(|r| r.starts_with(&format!("process {theirs} (proc) in np"))), "{report:?}");
    assert!(report.waited.iter().any(|w| w.contains("1 process(es) found in the lab's namespaces")), "{report:?}");
}

#[test]
fn a_background_process_runs_only_once_the_ledger_holds_its_pid_and_start_time() {
    let mut b = backend("unit-gate");
    b.nl.kernel().watch_ledger = Some(lab::lab_dir("unit-gate").join("ledger.jsonl"));
    b.apply(netns("g")).unwrap();
    b.apply(Op::Spawn(crate::ops::process::Spawn {
        ns: NsRef::named("g"),
        cmd: crate::ops::process::Command::Argv(vec!["sleep".into(), "60".into()]),
        listen: None,
        wait_ms: 100,
    }))
    .unwrap();
    assert_eq!(b.nl.kernel().released_after_record, [true]);
    b.rollback();
}

#[test]
fn a_link_outside_the_lab_is_created_with_an_ifindex_of_its_own_and_another_if_that_is_taken() {
    let mut b = backend("unit-index");
    b.next_outside_index = (1 << 30) + 100;
    // Someone holds the ifindex the lab would pick first.
    b.nl.kernel().add_foreign_link_at(&NsRef::Host, "theirs", "bridge", (1 << 30) + 100);
    b.apply(Op::CreateBridge(CreateBridge { ns: NsRef::Host, name: "bri".into() })).unwrap();
    let index = b.nl.kernel().index_of(&NsRef::Host, "bri").expect("created");
    assert!(index >= 1 << 30 && index != (1 << 30) + 100, "{index}");
    let entries = ledger("unit-index");
    let bri: Vec<(Phase, Option<u32>)> = entries
        .iter()
        .filter_map(|e| match &e.object {
            Object::Link(l) if l.name == "bri" => Some((e.phase, l.index)),
            _ => None,
        })
        .collect();
    assert_eq!(
        bri,
        [
            (Phase::Intent, Some((1 << 30) + 100)),
            (Phase::Failed, Some((1 << 30) + 100)),
            (Phase::Intent, Some(index)),
            (Phase::Done, Some(index))
        ]
    );
    // A name that is taken is still the error it was.
    b.nl.kernel().add_foreign_link(&NsRef::Host, "taken", "bridge");
    let err = b.apply(Op::CreateBridge(CreateBridge { ns: NsRef::Host, name: "taken".into() })).unwrap_err();
    assert_eq!(err.code, Code::NameTaken);
    b.rollback();
    assert_eq!(b.nl.kernel().link_names(&NsRef::Host), ["theirs", "taken"]);
}

#[test]
fn a_ledger_naming_pid_1_or_a_file_outside_the_labs_directory_is_refused() {
    for (lab_name, bad) in [
        ("unit-pid1", r#"{"id":5,"phase":"done","entry":"proc","ns":"Host","what":"x","pid":1,"start":7,"files":[]}"#.to_string()),
        (
            "unit-file",
            r#"{"id":5,"phase":"done","entry":"proc","ns":"Host","what":"x","pid":1234,"start":7,"files":["/etc/passwd"]}"#.to_string(),
        ),
    ] {
        let mut b = backend(lab_name);
        b.apply(netns(&format!("{lab_name}-ns"))).unwrap();
        b.finish().unwrap();
        let path = lab::lab_dir(lab_name).join("ledger.jsonl");
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{good}{bad}\n")).unwrap();
        let err = lab::load(lab_name).unwrap_err();
        assert_eq!(err.code, Code::LedgerTampered, "{err:?}");
        assert!(err.what.contains("names an invalid process"), "{err:?}");
        std::fs::write(&path, good).unwrap();
        b.rollback();
    }
}

#[test]
fn a_hosts_chain_is_made_once_and_goes_at_down_after_the_rules_that_jump_to_it_then_the_policy_returns() {
    use crate::ops::firewall::parse;
    let mut b = backend("unit-chain");
    let fw = |text: &str| Op::Firewall(Firewall { ns: NsRef::Host, op: parse(text).unwrap() });
    b.apply(fw("-N LAB-IN")).unwrap();
    b.apply(fw("-N LAB-IN")).unwrap();
    b.apply(fw("-A LAB-IN -s 10.0.0.0/8 -j ACCEPT")).unwrap();
    b.apply(fw("-A INPUT -j LAB-IN")).unwrap();
    b.apply(fw("-P INPUT DROP")).unwrap();
    b.finish().unwrap();
    let k = b.nl.kernel();
    assert_eq!(k.calls.iter().filter(|c| matches!(c, Call::ChainAdd(..))).count(), 1, "{:?}", k.calls);
    assert!(k.has_chain(&NsRef::Host, "filter", "LAB-IN"));
    let before = k.calls.len();
    let report = b.rollback();
    assert!(report.failed.is_empty(), "{report:?}");
    let k = b.nl.kernel();
    let after: Vec<&Call> = k.calls[before..].iter().collect();
    let pos = |f: &dyn Fn(&Call) -> bool| after.iter().position(|c| f(c)).unwrap_or_else(|| panic!("not called: {after:?}"));
    let jump = pos(&|c| matches!(c, Call::RuleDelete(NsRef::Host, r) if r == "-j LAB-IN"));
    let inner = pos(&|c| matches!(c, Call::RuleDelete(NsRef::Host, r) if r == "-s 10.0.0.0/8 -j ACCEPT"));
    let chain = pos(&|c| matches!(c, Call::ChainDelete(NsRef::Host, t) if t == "filter LAB-IN"));
    let policy = pos(&|c| matches!(c, Call::SetPolicy(NsRef::Host, t, p) if t == "filter INPUT" && p == "ACCEPT"));
    assert!(jump < chain && inner < chain && chain < policy, "{after:?}");
    assert!(!k.has_chain(&NsRef::Host, "filter", "LAB-IN") && k.rules(&NsRef::Host).is_empty());
}

#[test]
fn a_chain_that_was_there_before_the_lab_is_not_the_labs_to_delete() {
    use crate::ops::firewall::parse;
    let mut b = backend("unit-oldchain");
    b.nl.kernel().chain_add(&NsRef::Host, "filter", "DOCKER").unwrap();
    b.apply(Op::Firewall(Firewall { ns: NsRef::Host, op: parse("-N DOCKER").unwrap() })).unwrap();
    assert!(!b.has_lab(), "nothing was made, so nothing is recorded");
    let report = b.rollback();
    assert!(report.removed.is_empty() && b.nl.kernel().has_chain(&NsRef::Host, "filter", "DOCKER"), "{report:?}");
}
