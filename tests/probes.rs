//! Issue 18: labs as tests. The service checks (TCP, UDP, HTTP, DNS, path MTU,
//! throughput, serve) against servers and tools that are not ours (socat, busybox
//! httpd, dnsmasq, iperf3, ping -M do, tcpdump, iptables counters, ss), check blocks,
//! `nsscript check` on a lab changed by hand, and `nsscript test` with JUnit read by
//! python's XML parser.

use crate::support::*;
use serde_json::Value;

/// `ok`/`FAIL` lines of `nsscript check` or `nsscript test`: (passed, name).
fn verdicts(stdout: &str) -> Vec<(bool, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (ok, rest) = if let Some(r) = l.strip_prefix("ok   ") { (true, r) } else { (false, l.strip_prefix("FAIL ")?) };
            let name = rest.trim_start().split_once(" ms  ")?.1;
            Some((ok, name.to_string()))
        })
        .collect()
}

/// The words of a text (miette wraps long lines and draws borders).
fn words(text: &str) -> String {
    text.split_whitespace().filter(|w| !matches!(*w, "|" | ":" | "`----")).collect::<Vec<_>>().join(" ")
}

/// a - r - b: a reaches b's subnet through r (and has no other route), b routes back.
const ROUTED: &str = r#"
let a = netns("a");
let r = netns("r").forward(true);
let b = netns("b");
connect(a, r, #{ ifname: "eth0", addr: "10.1.0.2/24", peer: "eth0", peer_addr: "10.1.0.1/24" });
a.route("10.2.0.0/24", "10.1.0.1");
connect(b, r, #{ ifname: "eth0", addr: "10.2.0.2/24", gw: "10.2.0.1", peer: "eth1", peer_addr: "10.2.0.1/24" });
"#;

#[test]
fn tcp_checks_tell_a_listener_from_a_stopped_one_a_refused_port_a_drop_and_a_missing_route() {
    let lab = format!(
        r#"{ROUTED}
spawn(b, ["socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:read line; echo hello"], #{{ listen: 80 }});
spawn(b, ["socat", "TCP-LISTEN:83,fork,reuseaddr", "SYSTEM:echo hello"], #{{ listen: 83 }});
iptables(r, "-A FORWARD -p tcp --dport 82 -j DROP");
check("listener 80", || assert_tcp(a, "10.2.0.2:80"));
check("listener 83", || assert_tcp(a, "10.2.0.2:83"));
check("nothing on 81", || assert_no_tcp(a, "10.2.0.2:81"));
check("82 is dropped", || assert_no_tcp(a, "10.2.0.2:82"));
"#
    );
    // Run against the lab by `nsscript check LAB probes.rhai`: each check fails for its reason.
    // (The server on 80 reads the probe's line before it answers: one that answered and
    // closed at once could meet the line after closing, and its RST would throw away the
    // answer before the probe read it.)
    let probes = r#"let a = netns("a");
for t in ["10.2.0.2:80", "10.2.0.2:81", "10.2.0.2:82", "10.9.9.9:80"] {
    let p = tcp_probe(a, t, #{ timeout: 500, send: "hi\n", expect: "hello" });
    print(`probe ${t} ok=${p.ok} error=${p.error} reply=${p.reply}`);
}
check("refused", || assert_tcp(a, "10.2.0.2:81", #{ timeout: 500 }));
check("dropped", || assert_tcp(a, "10.2.0.2:82", #{ timeout: 500 }));
check("no route", || assert_tcp(a, "10.9.9.9:80", #{ timeout: 500 }));
check("accepted", || assert_no_tcp(a, "10.2.0.2:80"));
"#;
    let Some(run) = isolated(
        &[("lab.rhai", &lab), ("probes.rhai", probes)],
        r#"$NSS lab.rhai 2>lab.err || { cat lab.err; exit 1; }
section listening; ip netns exec b ss -Hltn
ip netns exec b tcpdump -n -l -i eth0 'tcp[tcpflags] & tcp-rst != 0' > rst.cap 2> rst.err &
TCPDUMP=$!
for i in $(seq 100); do grep -q 'listening on' rst.err && break; sleep 0.05; done
section probes; $NSS check lab probes.rhai 2>probes.err; echo "exit $?"
section probes_err; cat probes.err
sleep 0.3; kill $TCPDUMP; wait $TCPDUMP 2>/dev/null
section rst; cat rst.cap
section dropped; ip netns exec r iptables -vnxL FORWARD | grep 'dpt:82'
section route; ip -n a route get 10.9.9.9 2>&1
section healthy; $NSS check lab; echo "exit $?"
# The listener on 83 stops: only its check fails now.
kill $(ip netns exec b ss -Hltnp 'sport = :83' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)
for i in $(seq 50); do ip netns exec b ss -Hltn | grep -q ':83 ' || break; sleep 0.1; done
section stopped; $NSS check lab 2>stopped.err; echo "exit $?"
section stopped_err; cat stopped.err
$NSS down lab >/dev/null || exit 3
"#,
    ) else {
        return;
    };
    run.ok();
    let listening = run.section("listening");
    assert!(listening.contains(":80 ") && listening.contains(":83 ") && !listening.contains(":81 "), "{listening}");
    let probes = run.section("probes");
    for want in [
        "probe 10.2.0.2:80 ok=true error= reply=hello",
        "probe 10.2.0.2:81 ok=false error=refused",
        "probe 10.2.0.2:82 ok=false error=timeout",
        "probe 10.9.9.9:80 ok=false error=no route",
    ] {
        assert!(probes.contains(want), "{want:?} missing in\n{probes}");
    }
    assert!(probes.contains("exit 1"), "{probes}");
    assert_eq!(
        verdicts(&probes),
        [(false, "refused".into()), (false, "dropped".into()), (false, "no route".into()), (false, "accepted".into())]
    );
    let why = words(&run.section("probes_err"));
    for want in [
        "refused (RST): nothing listens on TCP port 81 at 10.2.0.2",
        "no answer (timeout): the packets are dropped on the way",
        "no route to 10.9.9.9 (Network is unreachable (ENETUNREACH))",
        "10.2.0.2:80 accepts a TCP connection from namespace a, which was expected to fail",
        "namespace a sends it by the route `10.2.0.0/24 via 10.1.0.1 dev eth0`",
        "namespace a has no route to 10.9.9.9",
        "probes.rhai:6",
    ] {
        assert!(why.contains(want), "{want:?} missing in\n{why}");
    }
    // What the kernel did, seen by tools that are not ours: b answered port 81 with a
    // reset, r's DROP rule counted the SYNs for 82, a has no route to 10.9.9.9.
    assert!(run.section("rst").contains("10.2.0.2.81 > 10.1.0.2."), "{}", run.section("rst"));
    let dropped: u64 = run.section("dropped").split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(dropped > 0, "the DROP rule saw no packet:\n{}", run.section("dropped"));
    assert!(run.section("route").contains("Network is unreachable"), "{}", run.section("route"));
    let healthy = run.section("healthy");
    assert!(healthy.contains("exit 0") && healthy.contains("4 passed, 0 failed"), "{healthy}");
    let stopped = run.section("stopped");
    assert_eq!(
        verdicts(&stopped),
        [(true, "listener 80".into()), (false, "listener 83".into()), (true, "nothing on 81".into()), (true, "82 is dropped".into())],
        "{stopped}"
    );
    assert!(stopped.contains("exit 1"), "{stopped}");
    assert!(words(&run.section("stopped_err")).contains("refused (RST): nothing listens on TCP port 83"), "{}", run.section("stopped_err"));
}

#[test]
fn http_get_reads_busybox_httpd_and_assert_http_says_what_differs() {
    let lab = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
spawn(b, ["busybox", "httpd", "-f", "-p", "8000", "-h", www], #{ listen: 8000 });
let r = http_get(a, "http://10.0.0.2:8000/index.html");
print(`status=${r.status} ok=${r.ok}`);
print(`body=${r.body}`);
let m = http_get(a, "http://10.0.0.2:8000/missing.html");
print(`missing=${m.status}`);
let none = http_get(a, "http://10.0.0.2:8001/", #{ timeout: 500 });
print(`closed=${none.status} ${none.error}`);
assert_http(a, "http://10.0.0.2:8000/index.html", #{ contains: "served by busybox" });
assert_http(a, "http://10.0.0.2:8000/missing.html", #{ status: 404 });
try { assert_http(a, "http://10.0.0.2:8000/missing.html"); } catch (e) { print(`caught1 ${e}`); }
try { assert_http(a, "http://10.0.0.2:8000/index.html", #{ contains: "nginx" }); } catch (e) { print(`caught2 ${e}`); }
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab), ("www/index.html", "<p>served by busybox httpd</p>\n")],
        r#"$NSS --sandbox lab.rhai --var www=$PWD/www > out 2> err || { cat out err; exit 1; }
section out; cat out
"#,
    ) else {
        return;
    };
    run.ok();
    let out = run.section("out");
    assert!(out.contains("status=200 ok=true"), "{out}");
    assert!(out.contains("body=<p>served by busybox httpd</p>\n"), "the body is the file busybox serves:\n{out}");
    assert!(out.contains("missing=404"), "{out}");
    assert!(out.contains("closed=0 refused"), "{out}");
    assert!(
        out.contains("caught1 GET http://10.0.0.2:8000/missing.html from namespace a failed: the status is 404 Not Found, not 200"),
        "{out}"
    );
    assert!(
        out.contains("caught2 GET http://10.0.0.2:8000/index.html from namespace a failed: the body (31 bytes) does not contain \"nginx\""),
        "{out}"
    );
}

#[test]
fn throughput_agrees_with_iperf3_on_a_tbf_shaped_link() {
    let lab = r#"let a = netns("a");
let b = netns("b");
let eth0 = connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
eth0.shape(#{ rate: "20mbit", latency: "50ms" });
serve(b, 5002);
let t = throughput(a, b, #{ seconds: 3 });
print(`ns ${t.bits_per_s}`);
let l = throughput(a, "10.0.0.2:5002", #{ seconds: 3 });
print(`listener ${l.bits_per_s}`);
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS lab.rhai > out 2> err || { cat out err; exit 1; }
section out; cat out
section qdisc; tc -n a -j qdisc show dev eth0
ip netns exec b iperf3 -s -1 -D -p 5201
for i in $(seq 50); do ip netns exec b ss -Hltn | grep -q ':5201 ' && break; sleep 0.1; done
section iperf; ip netns exec a iperf3 -c 10.0.0.2 -p 5201 -t 3 -J
$NSS down lab > /dev/null || exit 2
"#,
    ) else {
        return;
    };
    run.ok();
    let qdisc = run.json("qdisc");
    assert_eq!(qdisc[0]["kind"], "tbf", "{qdisc}");
    let iperf: Value = run.json("iperf");
    let reference = iperf["end"]["sum_received"]["bits_per_second"].as_f64().expect("iperf3's received rate");
    let out = run.section("out");
    let rate = |key: &str| -> f64 {
        out.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| panic!("no {key} in {out}"))
    };
    for key in ["ns ", "listener "] {
        let ours = rate(key);
        let ratio = ours / reference;
        assert!((0.9..=1.1).contains(&ratio), "throughput to {key}measured {ours} bit/s, iperf3 {reference} bit/s (ratio {ratio:.3})");
    }
}

#[test]
fn path_mtu_finds_the_mtu_a_lab_set_on_a_middle_hop_also_when_routers_stay_silent() {
    let lab = r#"let a = netns("a");
let r1 = netns("r1").forward(true);
let r2 = netns("r2").forward(true);
let b = netns("b");
connect(a, r1, #{ ifname: "eth0", addr: "10.1.0.2/24", gw: "10.1.0.1", peer: "eth0", peer_addr: "10.1.0.1/24" });
connect(r2, r1, #{ ifname: "eth0", addr: "10.2.0.2/24", gw: "10.2.0.1", peer: "eth1", peer_addr: "10.2.0.1/24", mtu: 1300 });
connect(b, r2, #{ ifname: "eth0", addr: "10.3.0.2/24", gw: "10.3.0.1", peer: "eth1", peer_addr: "10.3.0.1/24" });
r1.route("10.3.0.0/24", "10.2.0.2");
for l in [[a, "eth0", "fd01::2/64"], [r1, "eth0", "fd01::1/64"], [r1, "eth1", "fd02::1/64"], [r2, "eth0", "fd02::2/64"], [r2, "eth1", "fd03::1/64"], [b, "eth0", "fd03::2/64"]] {
    link(l[0], l[1]).addr(l[2]);
}
a.route("default", "fd01::1");
r1.route("fd03::/64", "fd02::2");
r2.route("default", "fd02::1");
b.route("default", "fd03::1");
// The routers' link-local addresses are tentative for a second or two (DAD): until
// then their neighbour solicitations go nowhere.
for i in 0..50 { if ping(a, "fd03::2", #{ count: 1, timeout: 200 }).ok { break; } }
print(`v4 ${path_mtu(a, "10.3.0.2")}`);
print(`v6 ${path_mtu(a, "fd03::2")}`);
print(`near ${path_mtu(a, "10.1.0.1")}`);
"#;
    // The routers' "fragmentation needed" dropped: the search has only silence to go by.
    let silent = r#"let a = netns("a");
print(`silent ${path_mtu(a, "10.3.0.2", #{ timeout: 300 })}`);
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab), ("silent.rhai", silent)],
        r#"$NSS lab.rhai > out 2> err || { cat out err; exit 1; }
section out; cat out
section links; ip -n r1 -j link show eth1
section ping_fits; ip netns exec a ping -c1 -W1 -M do -s 1272 10.3.0.2 >/dev/null 2>&1; echo $?
section ping_too_big; ip netns exec a ping -c1 -W1 -M do -s 1273 10.3.0.2 >/dev/null 2>&1; echo $?
ip netns exec r1 iptables -A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP
ip -n a route flush cache
section silent; $NSS check lab silent.rhai 2>&1
section blackholed; ip netns exec r1 iptables -vnxL OUTPUT | grep -i 'icmptype 3 code 4'
$NSS down lab > /dev/null || exit 2
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(run.json("links")[0]["mtu"], 1300);
    assert_eq!(run.section("ping_fits").trim(), "0", "ping -M do of 1300 bytes gets through");
    assert_ne!(run.section("ping_too_big").trim(), "0", "ping -M do of 1301 bytes does not");
    let out = run.section("out");
    for want in ["v4 1300", "v6 1300", "near 1500"] {
        assert!(out.lines().any(|l| l == want), "{want:?} missing in\n{out}");
    }
    assert!(run.section("silent").lines().any(|l| l == "silent 1300"), "{}", run.section("silent"));
    let dropped: u64 = run.section("blackholed").split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(dropped > 0, "r1 sent no fragmentation-needed to drop:\n{}", run.section("blackholed"));
}

#[test]
fn serve_answers_tcp_udp_and_http_from_its_own_binary_and_down_stops_it() {
    let lab = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
print(`pid ${serve(b, 7)}`);
print(`pid ${serve(b, 8, #{ reply: "banner\n" })}`);
print(`pid ${serve(b, 53, #{ proto: "udp", reply: "pong" })}`);
print(`pid ${serve(b, 80, #{ proto: "http", reply: "it works\n" })}`);
spawn(b, ["socat", "UDP-RECVFROM:5000,fork", "SYSTEM:echo pong"]);
exec(b, "for i in $(seq 50); do ss -Hlun | grep -q ':5000 ' && break; sleep 0.1; done");
assert_udp(a, "10.0.0.2:5000", #{ send: "ping", expect: "pong" });
assert_udp(a, "10.0.0.2:53", #{ send: "ping", expect: "pong" });
try { assert_udp(a, "10.0.0.2:54", #{ send: "ping", timeout: 500 }); } catch (e) { print(`caught ${e}`); }
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS lab.rhai > out 2> err || { cat out err; exit 1; }
section out; cat out
section echo; echo hello | ip netns exec a socat -T 1 - TCP:10.0.0.2:7
section banner; ip netns exec a socat -T 1 - TCP:10.0.0.2:8 </dev/null
section udp; echo ping | ip netns exec a socat -T 1 - UDP:10.0.0.2:53; echo
section http; ip netns exec a timeout 5 busybox wget -q -O - http://10.0.0.2/
section comm; for p in $(grep -o '^pid [0-9]*' out | cut -d' ' -f2); do cat /proc/$p/comm; done
section ledger; grep -o '"what":"serve[^"]*"' /run/nsscript/labs/lab/ledger.jsonl
$NSS down lab > /dev/null || exit 2
section after
for p in $(grep -o '^pid [0-9]*' out | cut -d' ' -f2); do
  s=$(awk '{print $3}' /proc/$p/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && echo "$p alive ($s)"
done; echo done
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(run.section("echo"), "hello\n");
    assert_eq!(run.section("banner"), "banner\n");
    assert_eq!(run.section("udp"), "pong\n");
    assert_eq!(run.section("http"), "it works\n");
    assert_eq!(run.section("comm").lines().collect::<Vec<_>>(), ["nsscript"; 4], "serve runs nsscript's own binary");
    assert_eq!(
        run.section("ledger").lines().collect::<Vec<_>>(),
        [
            "\"what\":\"serve tcp 7\"",
            "\"what\":\"serve tcp 7\"",
            "\"what\":\"serve tcp 8\"",
            "\"what\":\"serve tcp 8\"",
            "\"what\":\"serve udp 53\"",
            "\"what\":\"serve udp 53\"",
            "\"what\":\"serve http 80\"",
            "\"what\":\"serve http 80\"",
        ],
        "each responder recorded before it starts and after"
    );
    assert!(
        words(&run.section("out")).contains("caught 10.0.0.2:54 does not answer a UDP datagram from namespace a: waited"),
        "{}",
        run.section("out")
    );
    assert!(run.section("out").contains("ICMP port unreachable: nothing listens on UDP port 54"), "{}", run.section("out"));
    assert_eq!(run.section("after"), "done\n", "down stopped every responder");
}

#[test]
fn assert_dns_asks_dnsmasq_and_names_what_it_answered() {
    let lab = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
spawn(b, ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--pid-file=",
          "--listen-address=10.0.0.2", "--bind-interfaces", "--address=/web.lab/10.0.0.7", "--address=/web.lab/fd00::7",
          "--host-record=db.lab,10.0.0.8", "--local=/lab/"], #{ listen: 53 });
assert_dns(a, "web.lab", "10.0.0.7", #{ server: "10.0.0.2" });
assert_dns(a, "web.lab", ["10.0.0.7", "fd00::7"], #{ server: "10.0.0.2:53" });
assert_dns(a, "db.lab", "10.0.0.8", #{ server: "10.0.0.2" });
try { assert_dns(a, "web.lab", "10.0.0.9", #{ server: "10.0.0.2" }); } catch (e) { print(`wrong: ${e}`); }
try { assert_dns(a, "nothere.lab", "10.0.0.9", #{ server: "10.0.0.2" }); } catch (e) { print(`missing: ${e}`); }
try { assert_dns(a, "web.lab", "10.0.0.7", #{ server: "10.0.0.1", timeout: 500 }); } catch (e) { print(`noserver: ${e}`); }
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS --sandbox lab.rhai > out 2> err || { cat out err; exit 1; }
section out; cat out
"#,
    ) else {
        return;
    };
    run.ok();
    let out = run.section("out");
    assert!(
        out.contains("wrong: web.lab does not resolve to 10.0.0.9 from namespace a (asking 10.0.0.2:53): the answer is 10.0.0.7"),
        "{out}"
    );
    assert!(out.contains("missing: nothere.lab does not resolve to 10.0.0.9 from namespace a (asking 10.0.0.2:53): the answer is NXDOMAIN with no A record"), "{out}");
    assert!(out.contains("noserver: web.lab does not resolve to 10.0.0.7 from namespace a (asking 10.0.0.1:53): waited"), "{out}");
    assert!(out.contains("ICMP port unreachable: nothing listens on UDP port 53 at 10.0.0.1"), "{out}");
}

#[test]
fn a_failed_check_block_is_reported_the_script_goes_on_and_the_run_fails_at_the_end() {
    let lab = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
serve(b, 80, #{ proto: "http" });
let first = check("nothing on 81", || {
    assert_ping(a, "10.0.0.2");
    assert_tcp(a, "10.0.0.2:81");
    print("not reached");
});
print(`after the block: ${first}`);
netns("c");
check("the web page", || assert_http(a, "http://10.0.0.2/", #{ contains: "nsscript serve on port 80" }));
"#;
    let pass = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
check("b answers", || assert_ping(a, "10.0.0.2"));
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab), ("pass.rhai", pass)],
        r#"$NSS lab.rhai > out 2> err; echo "exit $?" >> out
section out; cat out
section err; cat err
section netns; ip netns list
section kept; $NSS lab.rhai --keep >/dev/null 2>&1; echo "exit $?"; ip netns list | awk '{print $1}' | sort
$NSS down lab >/dev/null
section pass; $NSS --sandbox pass.rhai 2>&1; echo "exit $?"
"#,
    ) else {
        return;
    };
    run.ok();
    let out = run.section("out");
    assert!(out.contains("after the block: false") && !out.contains("not reached") && out.contains("exit 1"), "{out}");
    let err = run.section("err");
    let w = words(&err);
    assert!(w.contains("check \"nothing on 81\" failed: nsscript::tcp_failed"), "{err}");
    assert!(w.contains("lab.rhai:7"), "the report points at the failing assertion:\n{err}");
    assert!(w.contains("nsscript::checks_failed x 1 of 2 checks failed: \"nothing on 81\""), "{err}");
    assert!(w.contains("rolled back: removed"), "{err}");
    assert!(run.section("netns").trim().is_empty(), "rolled back:\n{}", run.section("netns"));
    // The statement after the failed block ran: c was created (and kept with --keep).
    assert_eq!(run.section("kept").lines().collect::<Vec<_>>(), ["exit 1", "a", "b", "c"]);
    let pass = run.section("pass");
    assert!(pass.contains("checks: 1 passed, 0 failed.") && pass.contains("exit 0"), "{pass}");
}

#[test]
fn nsscript_check_reports_exactly_the_checks_a_change_by_hand_breaks_and_changes_nothing() {
    let lab = r#"let br = bridge("br0").addr("10.0.0.254/24");
let srv = netns("srv");
let c1 = netns("c1");
let c2 = netns("c2");
for n in [[srv, "10.0.0.1/24"], [c1, "10.0.0.2/24"], [c2, "10.0.0.3/24"]] {
    connect(n[0], br, #{ ifname: "eth0", addr: n[1], gw: "10.0.0.254" });
}
serve(srv, 80, #{ proto: "http", reply: "hello\n" });
check("c1 gets the page", || assert_http(c1, "http://10.0.0.1/", #{ contains: "hello" }));
check("c2 gets the page", || assert_http(c2, "http://10.0.0.1/", #{ contains: "hello" }));
check("c1 pings srv", || assert_ping(c1, "10.0.0.1"));
check("c2 pings the gateway", || assert_ping(c2, "10.0.0.254", #{ timeout: 500 }));
assert_ping(c1, "10.0.0.254");
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"state() {
  for ns in $(ip netns list | awk '{print $1}' | sort); do
    ip -n $ns -j link show; ip -n $ns -j addr show; ip -n $ns -j route show; ip netns exec $ns iptables-save | grep -v '^#'
    ip netns pids $ns
  done
  ip -j link show
}
$NSS lab.rhai 2> build.err || { cat build.err; exit 1; }
mkdir elsewhere; cd elsewhere
state > ../before
section healthy; $NSS check lab; echo "exit $?"
state > ../after
section same; diff ../before ../after && echo same
ip -n c2 link set eth0 down
section changed; $NSS check lab 2> ../changed.err; echo "exit $?"
section changed_err; cat ../changed.err
# c2 deleted and made again by hand, holding the gateway's address: a check that looked
# into it would pass.
ip netns del c2; ip netns add c2; ip -n c2 link set lo up; ip -n c2 addr add 10.0.0.254/32 dev lo
ip netns exec c2 ping -c1 -W1 10.0.0.254 > /dev/null && echo "the foreign c2 answers"
section foreign; $NSS check lab 2> ../foreign.err; echo "exit $?"
section foreign_err; cat ../foreign.err
cd ..; $NSS down lab > /dev/null || exit 2
section kept; ip netns list | awk '{print $1}' | grep -x c2
section gone; $NSS check lab 2>&1; echo "exit $?"
"#,
    ) else {
        return;
    };
    run.ok();
    let healthy = run.section("healthy");
    assert!(
        healthy.contains("checking lab lab as it is now") && healthy.contains("5 passed, 0 failed") && healthy.contains("exit 0"),
        "{healthy}"
    );
    assert_eq!(run.section("same"), "same\n", "nsscript check changed the lab");
    let changed = run.section("changed");
    assert_eq!(
        verdicts(&changed),
        [
            (true, "c1 gets the page".into()),
            (false, "c2 gets the page".into()),
            (true, "c1 pings srv".into()),
            (false, "c2 pings the gateway".into()),
            (true, "assert_ping(c1, \"10.0.0.254\")".into()),
        ],
        "{changed}"
    );
    assert!(changed.contains("3 passed, 2 failed") && changed.contains("exit 1"), "{changed}");
    let err = words(&run.section("changed_err"));
    assert!(err.contains("check \"c2 gets the page\" failed: nsscript::http_failed"), "{err}");
    assert!(err.contains("namespace c2 has no route to 10.0.0.1"), "{err}");
    // A namespace made again under the lab's name is refused, not checked.
    let foreign = run.section("foreign");
    assert!(run.stdout.contains("the foreign c2 answers"), "{}", run.stdout);
    assert!(verdicts(&foreign).iter().all(|(ok, _)| !ok), "a check ran in the foreign c2: {foreign}");
    assert!(foreign.contains("exit 1") && !foreign.contains(" passed, 0 failed"), "{foreign}");
    let err = words(&run.section("foreign_err"));
    assert!(err.contains("nsscript::unknown_namespace") && err.contains("namespace c2 is no longer the one lab lab created"), "{err}");
    assert!(err.contains("the ledger records"), "{err}");
    assert_eq!(run.section("kept"), "c2\n", "down deleted the namespace someone else made");
    let gone = words(&run.section("gone"));
    assert!(gone.contains("nsscript::lab_not_up") && gone.contains("exit 2"), "{gone}");
}

#[test]
fn nsscript_test_reports_every_check_as_a_case_in_junit_and_tap() {
    let good = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
serve(b, 80, #{ proto: "http" });
check("web answers", || assert_http(a, "http://10.0.0.2/"));
check("ssh is closed", || assert_no_tcp(a, "10.0.0.2:22"));
assert_ping(a, "10.0.0.2");
"#;
    let bad = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.0.0.1/24", peer: "eth0", peer_addr: "10.0.0.2/24" });
check("ssh answers", || assert_tcp(a, "10.0.0.2:22"));
assert(false, "the lab says no");
check("never run", || assert_ping(a, "10.0.0.2"));
"#;
    let broken = "let a = netns(\"a\");\nlet b = ;\n";
    let Some(run) = isolated(
        &[("labs/good.rhai", good), ("labs/bad.rhai", bad), ("labs/broken.rhai", broken), ("labs/lib/module.rhai", "fn f() { 1 }\n")],
        r#"parse() {
python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print("total", root.get("tests"), root.get("failures"))
for s in root.findall("testsuite"):
    cases = s.findall("testcase")
    print("suite", s.get("name"), s.get("tests"), len(cases), s.get("failures"))
    for c in cases:
        f = c.find("failure")
        print("case", s.get("name") + ":", c.get("name"), "|", "FAIL " + f.get("message") if f is not None else "ok")
EOF
}
ls -d /tmp/nsscript-test-* > tmp.before 2>/dev/null
section run; $NSS test labs -j 3 --junit mine.xml; echo "exit $?"
section junit; parse mine.xml
section tap; $NSS test labs/good.rhai labs/bad.rhai --tap; echo "exit $?"
section filter; $NSS test labs/good.rhai --filter web; echo "exit $?"
section good; $NSS test labs/good.rhai; echo "exit $?"
section scripts; $NSS test $SCRIPTS -j 2 --junit scripts.xml > scripts.out; echo "exit $?"; tail -1 scripts.out
section scripts_junit; parse scripts.xml
section leftover; ip netns list; ls /run/nsscript/labs 2>/dev/null; ls -d /tmp/nsscript-test-* 2>/dev/null | grep -vxFf tmp.before; echo done
"#,
    ) else {
        return;
    };
    run.ok();
    let junit = run.section("junit");
    let mut cases: Vec<&str> = junit.lines().filter(|l| l.starts_with("case ")).collect();
    cases.sort();
    let mut want = vec![
        "case bad: the lab says no | FAIL nsscript::assert_failed: assertion failed: the lab says no",
        "case bad: ssh answers | FAIL nsscript::tcp_failed: 10.0.0.2:22 does not accept a TCP connection from namespace a",
        "case broken: build | FAIL nsscript::syntax: syntax error: Unexpected ';'",
        "case good: assert_ping(a, \"10.0.0.2\") | ok",
        "case good: ssh is closed | ok",
        "case good: web answers | ok",
    ];
    want.sort();
    assert_eq!(cases, want, "{junit}");
    assert!(junit.contains("total 6 3"), "{junit}");
    let run_out = run.section("run");
    assert!(run_out.contains("3 passed, 3 failed (3 labs,") && run_out.contains("exit 1"), "{run_out}");
    let tap = run.section("tap");
    let tap_lines: Vec<&str> = tap.lines().filter(|l| l.starts_with("ok ") || l.starts_with("not ok ") || l.starts_with("1..")).collect();
    assert_eq!(
        tap_lines,
        [
            "ok 1 - good: web answers",
            "ok 2 - good: ssh is closed",
            "ok 3 - good: assert_ping(a, \"10.0.0.2\")",
            "not ok 4 - bad: ssh answers",
            "not ok 5 - bad: the lab says no",
            "1..5",
        ],
        "{tap}"
    );
    assert!(tap.starts_with("TAP version 13\n") && tap.contains("exit 1"), "{tap}");
    let filter = run.section("filter");
    assert_eq!(verdicts(&filter), [(true, "good: web answers".into())], "{filter}");
    assert!(filter.contains("exit 0"), "{filter}");
    assert!(run.section("good").contains("3 passed, 0 failed (1 labs,") && run.section("good").contains("exit 0"));
    // Every lab of the gallery is a suite, every case passes, and the counts agree.
    let scripts = run.section("scripts");
    assert!(scripts.contains("exit 0"), "{scripts}");
    let sj = run.section("scripts_junit");
    let suites: Vec<Vec<&str>> = sj.lines().filter(|l| l.starts_with("suite ")).map(|l| l.split(' ').collect()).collect();
    let gallery = rhai_files(&scripts_dir());
    assert_eq!(suites.iter().map(|s| s[1].to_string()).collect::<std::collections::BTreeSet<_>>(), gallery.iter().cloned().collect());
    for s in &suites {
        assert!(s[2] == s[3] && s[2] != "0" && s[4] == "0", "suite {s:?}: tests attribute, cases, failures\n{sj}");
    }
    let total: usize = suites.iter().map(|s| s[3].parse::<usize>().unwrap()).sum();
    assert!(sj.contains(&format!("total {total} 0")), "{sj}");
    assert!(scripts.contains(&format!("{total} passed, 0 failed")), "{scripts}");
    assert!(sj.contains("case services: the path MTU is the middle hop's | ok"), "{sj}");
    assert_eq!(run.section("leftover"), "done\n", "nsscript test left something behind");
}

#[test]
fn a_plan_writes_each_check_as_a_command_and_reports_it_not_checked() {
    let lab = format!(
        r#"{ROUTED}
serve(b, 80, #{{ proto: "http", reply: "hi" }});
check("web", || assert_http(a, "http://10.2.0.2/"));
assert_tcp(a, "10.2.0.2:80");
assert_udp(a, "10.2.0.2:53", #{{ send: "x" }});
assert_dns(a, "web.lab", "10.2.0.2", #{{ server: "10.2.0.2" }});
print(`mtu ${{path_mtu(a, "10.2.0.2")}}`);
print(`bits ${{throughput(a, b).bits_per_s}}`);
"#
    );
    // A plan needs no root and no namespace.
    let run = plain(&[("lab.rhai", &lab)], "$NSS plan lab.rhai 2>err; echo \"exit $?\"; section err; cat err");
    run.ok();
    let plan = &run.stdout;
    for want in [
        "__serve http 80 --reply hi &",
        "until ip netns exec b ss -Hltn | grep -q ':80 '; do sleep 0.1; done",
        "ip netns exec a timeout 2 busybox wget -q -O - http://10.2.0.2/ || true",
        "ip netns exec a socat -T 2 /dev/null TCP:10.2.0.2:80,connect-timeout=2 || true",
        "printf '%s' x | ip netns exec a socat -T 2 - UDP:10.2.0.2:53 || true",
        "ip netns exec a busybox nslookup -type=A web.lab 10.2.0.2 || true",
        "ip netns exec a tracepath -n 10.2.0.2 || true",
        "ip netns exec b iperf3 -s -1 -D",
        "ip netns exec a iperf3 -c 10.2.0.2 -t 2 || true",
        "exit 0",
    ] {
        assert!(plan.contains(want), "{want:?} missing in the plan:\n{plan}");
    }
    let err = run.section("err");
    for want in ["plan: not checked (needs the real lab): assert_http(a, \"http://10.2.0.2/\")", "assert_dns(a, \"web.lab\")"] {
        assert!(err.contains(want), "{want:?} missing in\n{err}");
    }
}
