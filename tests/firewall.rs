//! Issue 16: filtering beyond NAT. A stateful host and router (iptables-save, conntrack
//! and real connections that pass or time out), a load balancer whose back ends share
//! 60 connections, an MSS clamp seen in a captured SYN, and the host namespace's
//! policies, chains and rules undone at `down`. Observed with iptables-save,
//! ip6tables-save, conntrack, socat and tcpdump, never taken from nsscript's word.

use crate::support::*;

/// `connect NS HOST:PORT`: what a one-shot TCP client gets (or its error), in one line.
const CONNECT: &str =
    r#"connect() { ip netns exec "$1" socat -T 2 - "TCP:$2,connect-timeout=1" </dev/null 2>&1 | sed 's/^.* E //' | head -1; }"#;

#[test]
fn a_stateful_host_and_router_let_their_own_connections_back_and_nothing_new_in() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
{CONNECT}
snapshot > before
$NSS $SCRIPTS/stateful_firewall.rhai > lab.out 2>&1 || {{ cat lab.out; exit 1; }}
section pc_rules; ip netns exec pc iptables-save | grep -v '^#'
section gw_rules; ip netns exec gw iptables-save -t filter | grep -v '^#'
section out; connect pc 203.0.113.1:80
section pc_conntrack; ip netns exec pc conntrack -L -p tcp --dport 80 2>/dev/null
section gw_conntrack; ip netns exec gw conntrack -L -p tcp --dport 80 2>/dev/null
section in_pc; connect gw 10.0.0.2:22
section in_gw; connect inet 203.0.113.254:2222
section lan_gw; connect pc 10.0.0.1:2222
section dropped; ip netns exec pc iptables-save -c -t filter | grep '^:INPUT'
$NSS down stateful_firewall >/dev/null || exit 1
snapshot > after
section diff; diff before after && echo same
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let pc = run.section("pc_rules");
    for want in [
        ":INPUT DROP",
        "-A INPUT -i lo -j ACCEPT",
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"replies to connections from pc\" -j ACCEPT",
        "-A INPUT -s 10.0.0.0/24 -p icmp -m icmp --icmp-type 8 -j ACCEPT",
    ] {
        assert!(pc.contains(want), "pc's iptables-save lacks {want:?}:\n{pc}");
    }
    let gw = run.section("gw_rules");
    for want in [":block - ", "-A block ! -i eth1 -m conntrack --ctstate NEW -j ACCEPT", "-A INPUT -j block", "-A FORWARD -j block"] {
        assert!(gw.contains(want), "gw's iptables-save lacks {want:?}:\n{gw}");
    }
    assert_eq!(gw.matches(":block ").count(), 1, "one chain block:\n{gw}");
    // pc's own connection came back through both firewalls, and conntrack saw it through.
    assert_eq!(run.section("out").trim(), "inet answers");
    let pc_ct = run.section("pc_conntrack");
    assert!(pc_ct.contains("src=10.0.0.2 dst=203.0.113.1") && pc_ct.contains("[ASSURED]"), "pc's conntrack:\n{pc_ct}");
    let gw_ct = run.section("gw_conntrack");
    assert!(gw_ct.contains("src=10.0.0.2 dst=203.0.113.1") && gw_ct.contains("dst=203.0.113.254"), "gw's conntrack (NATed):\n{gw_ct}");
    // New connections in are dropped (they time out; a refusal would be an answer).
    assert!(run.section("in_pc").contains("timed out"), "to pc: {}", run.section("in_pc"));
    assert!(run.section("in_gw").contains("timed out"), "to gw from outside: {}", run.section("in_gw"));
    assert_eq!(run.section("lan_gw").trim(), "gw answers");
    let dropped = run.section("dropped");
    let count: u64 = dropped.split('[').nth(1).and_then(|c| c.split(':').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(count > 0, "pc's INPUT policy dropped the SYNs: {dropped}");
    assert_eq!(run.section("diff").trim(), "same");
}

#[test]
fn a_load_balancer_spreads_60_connections_over_its_back_ends() {
    let Some(run) = isolated(
        &[],
        r#"$NSS $SCRIPTS/load_balancer.rhai > lab.out 2>&1 || { cat lab.out; exit 1; }
section nat; ip netns exec lb iptables-save -t nat | grep -- '-A PREROUTING'
section answers; for i in $(seq 60); do ip netns exec client socat -T 2 - TCP:192.0.2.80:80,connect-timeout=2 </dev/null; done | awk '{print $1}' | sort | uniq -c
section conntrack; ip netns exec lb conntrack -L -p tcp --dport 80 2>/dev/null | grep -o 'src=10.1.0.1[0-9]' | sort | uniq -c
$NSS down load_balancer >/dev/null || exit 1
"#,
    ) else {
        return;
    };
    run.ok();
    let nat = run.section("nat");
    assert_eq!(nat.lines().count(), 3, "{nat}");
    assert!(nat.contains("-m statistic --mode nth --every 3 --packet 0 -j DNAT --to-destination 10.1.0.11:80"), "{nat}");
    assert!(nat.contains("-m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.1.0.12:80"), "{nat}");
    let counts: Vec<(u32, String)> = run
        .section("answers")
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.parse().ok()?, w.next()?.to_string()))
        })
        .collect();
    assert_eq!(counts.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["web1", "web2", "web3"], "{counts:?}");
    assert_eq!(counts.iter().map(|(c, _)| c).sum::<u32>(), 60, "{counts:?}");
    assert!(counts.iter().all(|(c, _)| *c >= 10), "each back end answers its share: {counts:?}");
    // conntrack's replies come from each back end (the lab's 60 and the test's 60).
    let ct = run.section("conntrack");
    assert_eq!(ct.lines().count(), 3, "three back ends in conntrack:\n{ct}");
}

#[test]
fn a_clamping_router_rewrites_the_mss_of_forwarded_syns() {
    // client -- rt -- server, the rt-server link with MTU 1400: a SYN from the client
    // offers 1460; clamped to the path MTU the server sees 1360 (or the given mss).
    let lab = r#"
let rt = netns("rt").forward(true);
let client = netns("client");
let server = netns("server");
connect(client, rt, #{ ifname: "eth0", addr: "10.0.0.2/24", peer: "eth0", peer_addr: "10.0.0.1/24" });
connect(server, rt, #{ ifname: "eth0", addr: "10.9.0.2/24", peer: "eth1", peer_addr: "10.9.0.1/24", mtu: 1400 });
client.route("default", "10.0.0.1");
server.route("default", "10.9.0.1");
if mode == "pmtu" { clamp_mss(rt, #{ oif: "eth1" }); }
if mode == "fixed" { clamp_mss(rt, #{ mss: 1200 }); }
spawn(server, ["socat", "TCP-LISTEN:80,reuseaddr", "SYSTEM:echo hi"], #{ listen: 80 });
"#;
    let Some(run) = isolated(
        &[("mss.rhai", lab)],
        r#"for mode in none pmtu fixed; do
  $NSS mss.rhai --var mode=$mode > lab.out 2>&1 || { cat lab.out; exit 1; }
  ip netns exec server timeout 5 tcpdump -n -i eth0 -c 1 -w syn.pcap 'tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0' 2> tcpdump.err &
  for i in $(seq 100); do grep -q 'listening on' tcpdump.err && break; sleep 0.05; done
  ip netns exec client socat -T 2 - TCP:10.9.0.2:80,connect-timeout=2 </dev/null >/dev/null
  wait
  section $mode; tcpdump -n -v -r syn.pcap 2>/dev/null
  section rules-$mode; ip netns exec rt iptables-save -t mangle | grep -- '-A FORWARD' || true
  $NSS down mss >/dev/null || exit 1
done
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("none").contains("mss 1460"), "unclamped: {}", run.section("none"));
    assert!(run.section("pmtu").contains("mss 1360"), "clamped to the path MTU 1400: {}", run.section("pmtu"));
    assert!(run.section("fixed").contains("mss 1200"), "set to 1200: {}", run.section("fixed"));
    assert_eq!(run.section("rules-pmtu").trim(), "-A FORWARD -o eth1 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu");
}

/// The namespace nsscript runs in outlives the lab: every policy, chain and rule the
/// lab put there is undone at `down` (chains after the rules that jump to them), and a
/// chain or rule that was there before is left alone.
#[test]
fn the_hosts_policies_chains_and_rules_are_undone_at_down() {
    let lab = r#"
policy(host(), "forward", "drop");
policy(host(), "input", "accept");
iptables(host(), "-N LAB-IN");
iptables(host(), "-N LAB-IN");
iptables(host(), "-N OLD-CHAIN");
iptables(host(), "-A LAB-IN -s 10.0.0.0/8 -j RETURN");
iptables(host(), "-A INPUT -j LAB-IN");
firewall(host(), #{ chain: "input", action: "drop", proto: "tcp", dport: 23, comment: "no telnet" });
firewall(host(), #{ chain: "input", action: "accept", proto: "icmpv6", icmp_type: "echo-request", src: "fd00::/8" });
forward_accept(host(), #{ src: "10.1.0.0/24", dst: "10.2.0.0/24" });
clamp_mss(host(), #{ mss: 1400 });
dnat(host(), #{ proto: "udp", dport: 53, to: ["10.1.0.53:53", "10.1.0.54:53"] });
"#;
    let Some(run) = isolated(
        &[("hostfw.rhai", lab)],
        r#"iptables -N OLD-CHAIN
# Rules, chains of one's own and policies that are not ACCEPT (iptables-nft makes the
# built-in chains of a table as soon as a tool looks at it: those say nothing).
save() { for t in iptables ip6tables; do $t-save | sed 's/ \[[0-9]*:[0-9]*\]$//' | awk -v t=$t '/^\*/ {table=$1} /^-A |^:[^ ]+ (DROP|-)$/ {print t, table, $0}'; done; }
save > before
$NSS hostfw.rhai || exit 1
section during; save
$NSS down hostfw > down.out 2>&1 || { cat down.out; exit 1; }
section down; cat down.out
save > after
section diff; diff before after && echo same
"#,
    ) else {
        return;
    };
    run.ok();
    let during = run.section("during");
    for want in [
        ":FORWARD DROP",
        ":LAB-IN -",
        "-A INPUT -j LAB-IN",
        "-A INPUT -p tcp -m tcp --dport 23 -m comment --comment \"no telnet\" -j DROP",
        "-A INPUT -s fd00::/8 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT",
        "-A FORWARD -s 10.1.0.0/24 -d 10.2.0.0/24 -j ACCEPT",
        "-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400",
        "-m statistic --mode nth --every 2 --packet 0 -j DNAT --to-destination 10.1.0.53:53",
    ] {
        assert!(during.contains(want), "iptables-save lacks {want:?}:\n{during}");
    }
    assert_eq!(during.matches(":LAB-IN -").count(), 1, "-N twice makes one chain:\n{during}");
    assert_eq!(during.matches(":OLD-CHAIN -").count(), 1, "{during}");
    // The FORWARD policy, LAB-IN and its rule, the jump, two filter rules, forward_accept,
    // the DNAT's FORWARD rule (FORWARD drops), the clamp and four DNAT rules: not the INPUT
    // policy (it was ACCEPT already), not the second -N, not OLD-CHAIN (there before).
    assert!(run.section("down").contains("removed 13 object(s)"), "{}", run.section("down"));
    assert_eq!(run.section("diff").trim(), "same", "down left iptables changed:\n{}", run.stdout);
}

/// Two namespaces a (10.1.0.1) and b (10.1.0.2) on one veth pair: the plan tests' lab.
const A_AND_B: &str = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.1.0.1/24", peer: "eth0", peer_addr: "10.1.0.2/24" });
"#;

#[test]
fn the_plan_judges_pings_through_the_typed_rules_and_says_what_it_cannot_tell() {
    let lab = &format!(
        r#"{A_AND_B}policy(b, "input", "drop");
firewall(b, #{{ chain: "input", action: "accept", state: ["established"] }});
assert_no_ping(a, "10.1.0.2");
assert_ping(b, "10.1.0.1");
iptables(a, "-A INPUT -m length --length 0:64 -j ACCEPT");
assert_ping(b, "10.1.0.1");
"#
    );
    // A plan needs no kernel: it runs anywhere.
    let run = plain(&[("lab.rhai", lab)], "$NSS plan lab.rhai");
    run.ok();
    let plan = &run.stdout;
    assert!(
        plan.contains("# ping 10.1.0.2 from namespace a (the plan expects no answer: the INPUT policy of namespace b is DROP)"),
        "{plan}"
    );
    assert!(plan.contains("# ping 10.1.0.1 from namespace b (the plan expects an answer)"), "{plan}");
    assert!(plan.contains("(the plan cannot tell: iptables -t filter -A INPUT -m length --length 0:64 -j ACCEPT in namespace a"), "{plan}");
    // Only the ping the plan cannot judge is reported (with why), and the assert on it.
    let not_checked: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("plan: not checked")).collect();
    assert_eq!(not_checked.len(), 2, "{}", run.stderr);
    assert!(not_checked[0].contains("a ping from namespace b to 10.1.0.1: iptables -t filter -A INPUT -m length"), "{}", run.stderr);
    assert!(not_checked[1].contains("assert_ping(b, \"10.1.0.1\")"), "{}", run.stderr);
}

/// Each case (name, the failing call, what its report says) runs after `head`: the run
/// and the plan refuse it at its line with the same words, and the run leaves nothing behind.
#[track_caller]
pub(crate) fn refused_alike(head: &str, cases: &[(&str, &str, &[&str])]) {
    let line = head.lines().count() + 1;
    let mut files = Vec::new();
    let mut bash = format!("{SNAPSHOT}\nsnapshot > before\n");
    for (name, body, _) in cases {
        files.push((format!("{name}.rhai"), format!("{head}{body}\n")));
        bash.push_str(&format!(
            "section {name}; $NSS {name}.rhai 2>&1; echo \"exit $?\"; snapshot > after; diff before after >/dev/null && echo clean\n\
             section plan-{name}; $NSS plan {name}.rhai 2>&1 >/dev/null; echo \"exit $?\"\n"
        ));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let Some(run) = isolated(&refs, &bash) else {
        return;
    };
    run.ok();
    for (name, _, expect) in cases {
        for phase in [name.to_string(), format!("plan-{name}")] {
            let out = run.section(&phase);
            let flat = out.split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ");
            for e in *expect {
                assert!(flat.contains(e), "{phase}: expected {e:?} in:\n{out}");
            }
            assert!(out.contains(&format!("{name}.rhai:{line}:")) && out.contains("exit 1"), "{phase}: fails at line {line}:\n{out}");
        }
        assert!(run.section(name).ends_with("clean\n"), "{name} left something behind:\n{}", run.section(name));
    }
}

/// Bad filter options are refused at the call, by the run and by the plan alike, and
/// leave nothing behind.
#[test]
fn bad_filter_options_are_refused_the_same_by_the_run_and_the_plan() {
    let head = "let a = netns(\"a\");\nconnect(a, netns(\"b\"), #{ ifname: \"eth0\", addr: \"10.0.0.1/24\" });\n";
    let cases: &[(&str, &str, &[&str])] = &[
        ("chain", r#"firewall(a, #{ chain: "prerouting", action: "drop" });"#, &["firewall(): unknown chain \"prerouting\""]),
        ("ports", r#"firewall(a, #{ chain: "input", action: "drop", dport: 22 });"#, &["sport and dport need proto \"tcp\" or \"udp\""]),
        ("oif", r#"firewall(a, #{ chain: "input", action: "drop", oif: "eth0" });"#, &["oif does not apply to the input chain"]),
        ("state", r#"firewall(a, #{ chain: "input", action: "accept", state: ["fresh"] });"#, &["unknown connection state \"fresh\""]),
        (
            "icmp",
            r#"firewall(a, #{ chain: "input", action: "accept", proto: "icmp", icmp_type: "hello" });"#,
            &["unknown ICMP type \"hello\""],
        ),
        ("reject", r#"policy(a, "input", "reject");"#, &["a chain's policy is \"accept\" or \"drop\""]),
        ("mss", r#"clamp_mss(a, #{ mss: 20 });"#, &["clamp_mss(): mss 20 is out of range"]),
        ("negation", r#"iptables(a, "-A INPUT -s ! 10.0.0.0/8 -j DROP");"#, &["`! -s 10.0.0.0/8`"]),
        (
            "twice",
            r#"dnat(a, #{ proto: "tcp", dport: 80, to: ["10.0.0.2:80", "10.0.0.2:80"] });"#,
            &["the back end 10.0.0.2:80 is named twice"],
        ),
    ];
    refused_alike(head, cases);
}

/// The plan follows a TCP or UDP probe's packets through the typed rules by their ports,
/// as the kernel does: a policy of DROP with port 80 let in, then a TCP check to port 80
/// and one to 81 (and a DNS-like UDP one to 53) get the same verdicts in the plan as in
/// the run. A rule on the client's port, which the kernel picks, is one the plan says it
/// cannot judge.
#[test]
fn the_plan_judges_tcp_and_udp_checks_by_their_ports_as_the_run_does() {
    let lab = &format!(
        r#"{A_AND_B}policy(b, "input", "drop");
firewall(b, #{{ chain: "input", action: "accept", proto: "tcp", dport: 80 }});
firewall(b, #{{ chain: "input", action: "accept", proto: "udp", dport: 53 }});
firewall(b, #{{ chain: "input", action: "accept", state: ["established"] }});
serve(b, 80);
serve(b, 81);
serve(b, 53, #{{ proto: "udp", reply: "ok" }});
assert_tcp(a, "10.1.0.2:80");
assert_no_tcp(a, "10.1.0.2:81");
assert_udp(a, "10.1.0.2:53", #{{ send: "q", expect: "ok" }});
"#
    );
    let client_port = &format!(
        r#"{A_AND_B}firewall(b, #{{ chain: "input", action: "drop", proto: "tcp", sport: 40000 }});
serve(b, 80);
assert_tcp(a, "10.1.0.2:80");
"#
    );
    let plan = plain(
        &[("lab.rhai", lab), ("client.rhai", client_port)],
        "section lab; $NSS plan lab.rhai 2>&1 >/dev/null; echo \"exit $?\"; section client; $NSS plan client.rhai 2>&1 >/dev/null",
    );
    let out = plan.section("lab");
    assert!(out.contains("exit 0"), "{out}");
    let judged: Vec<&str> = out.lines().filter(|l| l.starts_with("plan: not checked")).collect();
    assert!(judged.is_empty(), "the plan judges each check as the run does: {judged:?}");
    let client = plan.section("client");
    assert!(
        client.contains("plan: not checked (needs the real lab)")
            && client.contains(
                "iptables -t filter -A INPUT -p tcp -m tcp --sport 40000 -j DROP in namespace b matches on a port the kernel picks"
            ),
        "{client}"
    );
    // The run agrees: every check of the lab holds on the kernel.
    let Some(run) = isolated(&[("lab.rhai", lab)], "$NSS lab.rhai >lab.out 2>&1; echo \"exit $?\"; cat lab.out; $NSS down lab >/dev/null")
    else {
        return;
    };
    assert!(run.stdout.contains("exit 0"), "{}", run.stdout);
}
