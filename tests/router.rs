//! Issue 3: router labs. NAT and firewall rules, processes, DHCP, native ping and the
//! reachability assertions, each checked on the kernel and the wire with tools that
//! are not ours (tcpdump in the fake internet host, socat, iptables -S, /proc, ip -j).

use crate::support::*;
use serde_json::Value;

/// Start tcpdump on eth0 of namespace `ns` writing the echo requests it sees to
/// `file`, and wait until it listens. `stop_capture` ends it.
fn capture(ns: &str, file: &str) -> String {
    format!(
        r#"ip netns exec {ns} tcpdump -n -l -i eth0 'icmp[icmptype] == icmp-echo' > {file} 2> {file}.err &
TCPDUMP=$!
for i in $(seq 100); do grep -q 'listening on' {file}.err && break; sleep 0.05; done
"#
    )
}

const STOP_CAPTURE: &str = "sleep 0.3; kill $TCPDUMP; wait $TCPDUMP 2>/dev/null\n";

/// Print, for every process the lab's ledger records, `PID alive|dead` (a zombie is dead).
const PROC_STATE: &str = r#"proc_state() {
  grep '"entry":"proc"' "$1" | grep -o '"pid":[0-9][0-9]*' | cut -d: -f2 | sort -u | while read p; do
    s=$(awk '{print $3}' /proc/$p/stat 2>/dev/null)
    if [ -n "$s" ] && [ "$s" != Z ]; then echo "$p alive"; else echo "$p dead"; fi
  done
}"#;

fn source_addresses(capture: &str) -> Vec<String> {
    capture
        .lines()
        .filter(|l| l.contains("ICMP echo request"))
        .filter_map(|l| l.split(" IP ").nth(1)?.split(' ').next().map(String::from))
        .collect()
}

fn lease_ms(stdout: &str) -> u64 {
    let after = stdout.split(" in ").nth(1).unwrap_or_else(|| panic!("no lease time in {stdout}"));
    after.split(" ms").next().unwrap().trim().parse().unwrap_or_else(|_| panic!("bad lease time in {stdout}"))
}

fn default_via(routes: &Value) -> Option<String> {
    routes.as_array()?.iter().find(|r| r["dst"] == "default").and_then(|r| r["gateway"].as_str()).map(String::from)
}

fn inet_addr(addrs: &Value) -> String {
    addrs.as_array().unwrap()[0]["addr_info"].as_array().unwrap().iter().find(|a| a["family"] == "inet").unwrap()["local"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn seed000_router_snat_dhcp_and_down() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
{PROC_STATE}
snapshot > before
sha256sum /etc/resolv.conf > resolv.before
$NSS $SCRIPTS/seed000_router.rhai > lab.out 2> lab.err || {{ cat lab.out lab.err; exit 1; }}
section lab; cat lab.out
section vm2_addr; ip -n vm2 -j addr show eth0
section vm2_route; ip -n vm2 -j route
{cap}
ip netns exec vm1 ping -c 2 -i 0.2 -W 1 203.0.113.1 > /dev/null; echo "vm1 ping $?" > pings
ip netns exec vm2 ping -c 2 -i 0.2 -W 1 203.0.113.1 > /dev/null; echo "vm2 ping $?" >> pings
{STOP_CAPTURE}
section pings; cat pings
section capture; cat inet.cap
section conntrack; ip netns exec rt conntrack -L -p icmp 2>/dev/null
section without_nat; ip netns exec rt iptables -t nat -F POSTROUTING
ip netns exec vm1 ping -c 1 -W 1 203.0.113.1 > /dev/null && echo "answered" || echo "no answer"
cp /run/nsscript/labs/seed000_router/ledger.jsonl ledger
section procs_up; proc_state ledger
$NSS down seed000_router || exit 1
section procs_down; proc_state ledger
snapshot > after
section diff; diff before after && echo same
section resolv; sha256sum -c resolv.before
"#,
            cap = capture("inet", "inet.cap")
        ),
    ) else {
        return;
    };
    run.ok();
    // DHCP: inside the range, default route via the router, well under a second.
    let addr = inet_addr(&run.json("vm2_addr"));
    let last: u32 = addr.strip_prefix("10.0.0.").expect("10.0.0.x").parse().unwrap();
    assert!((151..=160).contains(&last), "vm2 got {addr}");
    assert_eq!(default_via(&run.json("vm2_route")).as_deref(), Some("10.0.0.254"));
    let ms = lease_ms(&run.section("lab"));
    assert!(ms < 1000, "the lease took {ms} ms");
    eprintln!("seed000: DHCP lease in {ms} ms");
    // SNAT: the internet host saw echo requests, all from the router's outside address.
    assert_eq!(run.section("pings"), "vm1 ping 0\nvm2 ping 0\n");
    let sources = source_addresses(&run.section("capture"));
    assert!(sources.len() >= 4, "tcpdump saw {sources:?}:\n{}", run.section("capture"));
    assert!(sources.iter().all(|s| s == "192.168.100.11"), "sources seen by the internet host: {sources:?}");
    let ct = run.section("conntrack");
    assert!(ct.contains("src=10.0.0.1 dst=203.0.113.1") && ct.contains("dst=192.168.100.11"), "conntrack in rt:\n{ct}");
    // The premise of the simulation: without NAT the internet host cannot answer.
    assert_eq!(run.section("without_nat").trim(), "no answer");
    // Teardown: dnsmasq was alive, and is gone after down; nothing else is left.
    let up = run.section("procs_up");
    assert!(!up.is_empty() && up.lines().all(|l| l.ends_with(" alive")), "processes while up:\n{up}");
    let down = run.section("procs_down");
    assert_eq!(down.lines().count(), up.lines().count());
    assert!(down.lines().all(|l| l.ends_with(" dead")), "processes after down:\n{down}");
    assert_eq!(run.section("diff").trim(), "same");
    assert!(run.section("resolv").contains("OK"), "/etc/resolv.conf changed: {}", run.section("resolv"));
}

#[test]
fn seed001_homework_masquerades_to_the_outside() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
sha256sum /etc/resolv.conf > resolv.before
$NSS $SCRIPTS/seed001_homework.rhai > lab.out 2> lab.err || {{ cat lab.out lab.err; exit 1; }}
section lab; cat lab.out
section vm2_route; ip -n vm2 -j route
section nat; ip netns exec Netns1 iptables -t nat -S POSTROUTING
{cap}
ip netns exec vm2 ping -c 2 -i 0.2 -W 1 203.0.113.1 > /dev/null || echo "vm2 ping failed"
ip netns exec vm1 ping -c 2 -i 0.2 -W 1 203.0.113.1 > /dev/null || echo "vm1 ping failed"
{STOP_CAPTURE}
section capture; cat inet.cap
$NSS down seed001_homework || exit 1
snapshot > after
section diff; diff before after && echo same
section resolv; sha256sum -c resolv.before
"#,
            cap = capture("inet", "inet.cap")
        ),
    ) else {
        return;
    };
    run.ok();
    assert!(!run.stdout.contains("ping failed"), "{}", run.stdout);
    assert!(run.section("lab").contains("through Netns1's MASQUERADE"));
    assert_eq!(default_via(&run.json("vm2_route")).as_deref(), Some("10.0.1.254"));
    let nat = run.section("nat");
    assert_eq!(nat.matches("-j MASQUERADE").count(), 1, "one MASQUERADE rule:\n{nat}");
    assert!(nat.contains("-A POSTROUTING -s 10.0.1.0/24 ! -d 10.0.1.0/24 -o eth1 -j MASQUERADE"), "{nat}");
    let sources = source_addresses(&run.section("capture"));
    assert!(sources.len() >= 4 && sources.iter().all(|s| s == "192.168.2.140"), "sources: {sources:?}");
    assert_eq!(run.section("diff").trim(), "same");
    assert!(run.section("resolv").contains("OK"));
}

#[test]
fn dnat_lab_forwards_a_port_to_vm1() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
{PROC_STATE}
snapshot > before
$NSS $SCRIPTS/dnat.rhai > lab.out 2> lab.err || {{ cat lab.out lab.err; exit 1; }}
section wan; ip netns exec wan socat -T 2 - TCP:192.168.100.11:8080,connect-timeout=2 < /dev/null
section rt; ip netns exec rt socat -T 2 - TCP:192.168.100.11:8080,connect-timeout=2 < /dev/null
section inside_direct; ip netns exec wan socat -T 1 - TCP:10.0.0.1:80,connect-timeout=1 < /dev/null 2>&1 | head -1
section nat; ip netns exec rt iptables -t nat -S
cp /run/nsscript/labs/dnat/ledger.jsonl ledger
section procs_up; proc_state ledger
$NSS down dnat || exit 1
section procs_down; proc_state ledger
snapshot > after
section diff; diff before after && echo same
"#
        ),
    ) else {
        return;
    };
    run.ok();
    assert_eq!(run.section("wan"), "vm1 sees 192.168.100.1\n", "the reply of vm1's server, which sees the client's own address");
    assert!(run.section("rt").starts_with("vm1 sees "), "the router reaches its forwarded port: {}", run.section("rt"));
    assert!(!run.section("inside_direct").contains("vm1 sees"), "10.0.0.1 is not routable from wan");
    let nat = run.section("nat");
    let dnat = "--dport 8080 -j DNAT --to-destination 10.0.0.1:80";
    assert_eq!(nat.lines().filter(|l| l.starts_with("-A PREROUTING") && l.contains(dnat)).count(), 1, "{nat}");
    assert_eq!(
        nat.lines().filter(|l| l.starts_with("-A OUTPUT") && l.contains(dnat)).count(),
        1,
        "added once, though dnat() ran twice:\n{nat}"
    );
    let up = run.section("procs_up");
    assert!(up.lines().count() == 1 && up.ends_with("alive\n"), "the socat server: {up}");
    assert!(run.section("procs_down").ends_with("dead\n"));
    assert_eq!(run.section("diff").trim(), "same");
}

/// Rules in a namespace the lab does not delete (here: the one nsscript runs in) are
/// added once, recorded and removed at `down`; a rule that was there before is not ours.
#[test]
fn rules_and_processes_in_a_surviving_namespace_are_undone_at_down() {
    let lab = r#"
masquerade(host(), #{ src: "10.9.0.0/24", out: "eth9" });
masquerade(host(), #{ src: "10.9.0.0/24", out: "eth9" });
forward_accept(host(), #{ "in": "br-x", out: "br-x" });
forward_accept(host(), #{ iif: "br-x", oif: "br-x" });
iptables(host(), "-P FORWARD DROP");
iptables(host(), "-t nat -A POSTROUTING -s 10.8.0.0/24 -m comment --comment \"two words\" -j MASQUERADE");
iptables(host(), "-A INPUT -s 10.7.0.0/24 -j ACCEPT");        // there before the lab: not ours
snat(host(), #{ src: "10.6.0.0/24", not_dst: "10.6.0.0/24", to: "192.0.2.1", out: "eth9" });
let pid = spawn(host(), "sleep 300; echo never");
let pid2 = spawn(host(), ["sleep", "301"]);
print(`pids ${pid} ${pid2}`);
"#;
    let Some(run) = isolated(
        &[("rules.rhai", lab)],
        &format!(
            r#"{PROC_STATE}
iptables -A INPUT -s 10.7.0.0/24 -j ACCEPT
save() {{ iptables -S; iptables -t nat -S; }}
save > before
$NSS rules.rhai || exit 1
section during; save
cp /run/nsscript/labs/rules/ledger.jsonl ledger
section procs_up; proc_state ledger
section sleeps; pgrep -x sleep | sort
$NSS down rules || exit 1
section procs_down; proc_state ledger
save > after
section diff; diff before after && echo same
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let during = run.section("during");
    assert!(during.contains("-P FORWARD DROP"), "{during}");
    assert_eq!(during.matches("-A POSTROUTING -s 10.9.0.0/24 -o eth9 -j MASQUERADE").count(), 1, "added once:\n{during}");
    assert_eq!(during.matches("-A FORWARD -i br-x -o br-x -j ACCEPT").count(), 1, "\"in\" and iif are one option:\n{during}");
    assert!(during.contains("--comment \"two words\" -j MASQUERADE"), "{during}");
    assert!(during.contains("-A POSTROUTING -s 10.6.0.0/24 ! -d 10.6.0.0/24 -o eth9 -j SNAT --to-source 192.0.2.1"), "{during}");
    assert_eq!(during.matches("-A INPUT -s 10.7.0.0/24 -j ACCEPT").count(), 1, "an existing rule is not added again:\n{during}");
    let up = run.section("procs_up");
    assert_eq!(up.matches(" alive").count(), 2, "{up}");
    assert!(run.section("procs_down").lines().all(|l| l.ends_with(" dead")), "{}", run.section("procs_down"));
    // Everything restored: the FORWARD policy, the lab's rules gone, the older rule kept.
    assert_eq!(run.section("diff").trim(), "same", "iptables after down differs:\n{}", run.stdout);
}

#[test]
fn a_sandboxed_run_stops_its_processes() {
    let lab = r#"
let rt = netns("rt");
connect(rt, bridge("br0"), #{ ifname: "eth0", addr: "10.0.0.254/24" });
let d = dhcp_server(rt, #{ iface: "eth0", range: ["10.0.0.10", "10.0.0.20"] });
let s = spawn(rt, "sleep 400");
print(`pids ${d} ${s}`);
"#;
    // The pids are the sandbox's own (it has its own PID namespace): what is left is
    // looked for among the processes of the test's own PID namespace.
    let Some(run) = isolated(
        &[("sb.rhai", lab)],
        r#"
$NSS --sandbox sb.rhai > out 2> err || { cat out err; exit 1; }
section pids; cat out
section left
ps -e -o stat=,comm= | awk '$1 !~ /^Z/ && ($2 == "sleep" || $2 == "dnsmasq") { print $2 " still alive" }'
echo checked
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("pids").starts_with("pids "), "{}", run.stdout);
    assert_eq!(run.section("left"), "checked\n", "processes outlived the sandbox");
}

/// Two namespaces joined by a veth, with a default route to an address nobody has:
/// the check at its end fails and the lab is rolled back.
const ROUTE_TO_NOWHERE: &str = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24", gw: "10.1.0.2" });
assert_ping(a, "203.0.113.9", #{ timeout: 400 });
"#;

/// Two namespaces joined by a healthy veth, and a check that expects no answer:
/// it must fail, naming the answer.
const HEALTHY_PAIR_EXPECTED_SILENT: &str = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24" });
assert_no_ping(a, "10.1.0.2");
"#;

/// A check right after a build waits until the links that came up can carry packets:
/// the kernel drops what is sent on a link its link-watch work has not seen yet (up to
/// ~1 s, likelier while it is still freeing the namespaces of a lab just rolled back).
/// Without the wait, `assert_no_ping` passed on a healthy link in about one run in four.
#[test]
fn a_check_right_after_a_build_sees_links_that_carry_packets() {
    let Some(run) = isolated(
        &[("rolled_back.rhai", ROUTE_TO_NOWHERE), ("healthy.rhai", HEALTHY_PAIR_EXPECTED_SILENT)],
        r#"
for i in 1 2 3 4 5 6 7 8; do
  $NSS rolled_back.rhai >/dev/null 2>&1
  if $NSS healthy.rhai >out 2>&1; then echo "run $i: assert_no_ping passed on a healthy link"; $NSS down healthy >/dev/null 2>&1
  elif grep -q "10.1.0.2 answers a ping from namespace a" out; then echo "run $i: ok"
  else echo "run $i: another failure"; cat out; fi
done
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(run.stdout.lines().filter(|l| l.ends_with(": ok")).count(), 8, "{}", run.stdout);
}

/// Native ping works without any program (empty PATH), exec honours its timeout, and
/// the reachability assertions fail with a report naming source, target, route and wait.
#[test]
fn ping_and_reachability_reports() {
    let ok = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24" });
let p = ping(a, "10.1.0.2", #{ count: 3 });
print(`ping ${p.ok} ${p.sent} ${p.received} ${p.rtt_ms > 0.0}`);
let q = ping(a, "10.1.0.99", #{ count: 2, timeout: 300 });
print(`lost ${q.ok} ${q.sent} ${q.received}`);
assert_ping(a, "10.1.0.2");
assert_no_ping(a, "10.1.0.99", #{ timeout: 300 });
link(a, "eth0").addr("fd00::1/64");
link(b, "eth0").addr("fd00::2/64");
print(`ping6 ${ping(a, "fd00::2").ok}`);
"#;
    let fail_noroute = r#"
let a = netns("a");
assert_ping(a, "203.0.113.9", #{ timeout: 300 });
"#;
    let timeout = r#"
let a = netns("a");
let t = timestamp();
let r = exec(a, "sleep 5", #{ timeout: 300 });
print(`exec ${r.code} ${t.elapsed < 2.0}`);
let r = a.exec(["sh", "-c", "echo hi"], #{ timeout: 2000 });
print(`fast ${r.code} ${r.stdout}`);
"#;
    let Some(run) = isolated(
        &[
            ("ok.rhai", ok),
            ("route.rhai", ROUTE_TO_NOWHERE),
            ("noroute.rhai", fail_noroute),
            ("no.rhai", HEALTHY_PAIR_EXPECTED_SILENT),
            ("timeout.rhai", timeout),
        ],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
section ok; PATH=/nonexistent $NSS ok.rhai 2>&1 && $NSS down ok >/dev/null
for t in route noroute no; do section $t; $NSS $t.rhai 2>&1; echo "exit $?"; done
section timeout; $NSS --sandbox timeout.rhai 2>&1
snapshot > after
section diff; diff before after && echo same
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let ok = run.section("ok");
    assert!(ok.contains("ping true 3 3 true"), "{ok}");
    assert!(ok.contains("lost false 2 0"), "{ok}");
    assert!(ok.contains("ping6 true"), "{ok}");
    let route = run.section("route");
    assert!(route.contains("203.0.113.9 does not answer a ping from namespace a"), "{route}");
    assert!(route.contains("default via 10.1.0.2 dev eth0"), "the route used: {route}");
    assert!(route.contains("waited ") && route.contains(" ms"), "{route}");
    assert!(route.contains("route.rhai:5:1") && route.contains("assert_ping(a, \"203.0.113.9\""), "points at the line: {route}");
    assert!(route.contains("exit 1") && route.contains("rolled back"), "{route}");
    let noroute = run.section("noroute");
    assert!(noroute.contains("namespace a has no route to 203.0.113.9"), "{noroute}");
    assert!(noroute.contains("no echo request could be sent"), "{noroute}");
    let no = run.section("no");
    assert!(no.contains("10.1.0.2 answers a ping from namespace a, which was expected to fail"), "{no}");
    assert!(no.contains("10.1.0.0/24 dev eth0"), "{no}");
    let t = run.section("timeout");
    assert!(t.contains("exec 124 true"), "{t}");
    assert!(t.contains("fast 0 hi"), "{t}");
    assert_eq!(run.section("diff").trim(), "same");
}

/// With br_netfilter, bridged frames cross the FORWARD chain of the bridge's namespace:
/// a DROP policy there cuts the namespaces on the bridge apart. nsscript warns with the
/// fix; the fix works and is undone at down.
#[test]
fn forward_drop_on_a_bridge_warns_and_forward_accept_fixes_it() {
    let lab = r#"
let br = bridge("br0");
let a = netns("a");
let b = netns("b");
connect(a, br, #{ addr: "10.2.0.1/24" });
connect(b, br, #{ addr: "10.2.0.2/24" });
assert_no_ping(a, "10.2.0.2", #{ timeout: 500 });
forward_accept(host(), #{ iif: "br0", oif: "br0" });
assert_ping(a, "10.2.0.2");
print("fixed");
"#;
    let Some(run) = isolated(
        &[("fwd.rhai", lab)],
        r#"
[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || { echo "br_netfilter is not loaded"; exit 1; }
iptables -P FORWARD DROP
iptables -S > before
$NSS fwd.rhai > out 2> err; echo "exit $?" >> out
section out; cat out
section err; cat err
$NSS down fwd > /dev/null
iptables -S > after
section diff; diff before after && echo same
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("out").contains("fixed\nexit 0"), "{}\n{}", run.section("out"), run.section("err"));
    let err = run.section("err");
    assert!(err.contains("warning: bridge br0 in the host namespace: the FORWARD policy there is DROP"), "{err}");
    assert!(err.contains("forward_accept(host(), #{ iif: \"br0\", oif: \"br0\" })"), "{err}");
    assert_eq!(run.section("diff").trim(), "same");
}

/// Every bad input of the issue: the message, a pointer at the line, and nothing left
/// (no namespace, no link but lo, no lab, no process, no rule).
#[test]
fn bad_input_is_reported_and_leaves_nothing() {
    let head = r#"let rt = netns("rt");
let vm = netns("vm");
let br = bridge("br0");
connect(rt, br, #{ ifname: "eth0", addr: "10.0.0.254/24" });
connect(vm, br, #{ ifname: "eth0" });
"#;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "range",
            r#"dhcp_server(rt, #{ iface: "eth0", range: ["10.0.1.151", "10.0.1.160"] });"#,
            &["the DHCP range 10.0.1.151 - 10.0.1.160 is outside the subnet of eth0", "eth0 in namespace rt has 10.0.0.254/24"],
        ),
        (
            "nooffer",
            r#"dhcp_client(vm, "eth0", #{ timeout: 1000 });"#,
            &["no DHCP lease for eth0 in namespace vm", "no DHCP server answered within 1000 ms"],
        ),
        (
            "nodnsmasq",
            r#"dhcp_server(rt, #{ iface: "eth0", range: ["10.0.0.151", "10.0.0.160"] });"#,
            &["needs dnsmasq, which is not installed", "dnsmasq-base"],
        ),
        ("nobusybox", r#"dhcp_client(vm, "eth0");"#, &["needs busybox, which is not installed", "Debian package busybox"]),
        ("port", r#"dnat(rt, #{ proto: "tcp", dport: 70000, to: "10.0.0.1:80" });"#, &["dnat(): invalid dport 70000", "1 to 65535"]),
        ("toport", r#"dnat(rt, #{ proto: "tcp", dport: 80, to: "10.0.0.1:0" });"#, &["invalid port in \"to\" 0"]),
        (
            "proto",
            r#"dnat(rt, #{ proto: "icmp", dport: 80, to: "10.0.0.1:80" });"#,
            &["dnat(): invalid protocol \"icmp\"", "\"tcp\", \"udp\" or \"sctp\""],
        ),
        (
            "rejected",
            r#"iptables(rt, "-A FORWARD -m nosuchmatch -j ACCEPT");"#,
            &[
                "iptables refused the rule `-t filter -A FORWARD -m nosuchmatch -j ACCEPT` in namespace rt",
                "Couldn't load match `nosuchmatch'",
            ],
        ),
        ("badip", r#"snat(rt, #{ src: "10.0.0.0/24", to: "10.0.0.256" });"#, &["malformed IP address \"10.0.0.256\""]),
        ("spawnfail", r#"spawn(rt, "echo oops >&2; exit 7");"#, &["exited at once (code 7)", "oops"]),
    ];
    let mut files: Vec<(String, String)> = Vec::new();
    let mut bash =
        format!("{SNAPSHOT}\nsave() {{ snapshot; iptables -S; iptables -t nat -S; ls /run/nsscript/labs 2>/dev/null; }}\nsave > before\n");
    for (name, body, _) in cases {
        // Line 6 is the failing call.
        files.push((format!("{name}.rhai"), format!("{head}{body}\n")));
        let path = if name.starts_with("no") && *name != "nooffer" { "PATH=/nonexistent " } else { "" };
        bash.push_str(&format!("section {name}; {path}$NSS {name}.rhai 2>&1; echo \"exit $?\"\nsave > after; diff before after > /dev/null && echo clean || {{ echo DIRTY; diff before after; }}\n"));
    }
    let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let Some(run) = isolated(&refs, &bash) else { return };
    run.ok();
    for (name, _, expect) in cases {
        let out = run.section(name);
        for e in *expect {
            assert!(out.contains(e), "{name}: expected {e:?} in:\n{out}");
        }
        assert!(out.contains(&format!("{name}.rhai:6:")), "{name}: points at line 6:\n{out}");
        assert!(out.contains("exit 1"), "{name}: fails:\n{out}");
        assert!(out.ends_with("clean\n"), "{name}: left something behind:\n{out}");
    }
}
