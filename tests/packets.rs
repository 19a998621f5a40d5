//! Issue 17: seeing the packets. `capture` is compared with independent observers
//! (tcpdump on the same link at the same time, `tcpdump -r` and tshark reading the
//! pcapng it wrote); `trace` is checked on the seed labs against what the kernel shows
//! by itself (conntrack -L, bridge fdb, iptables counters, tcpdump on the far side),
//! and on broken labs, one per reason a packet stops.

use crate::support::*;

/// Two namespaces joined by a veth: a (10.0.0.1) and b (10.0.0.2).
const PAIR: &str = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ addr: "10.0.0.1/24", peer_addr: "10.0.0.2/24" });
"#;

/// The address pairs and ICMP types of a tcpdump -r listing, in order.
fn flows(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1;
            if let Some(arp) = rest.strip_prefix("ARP, ") {
                return Some(format!("ARP {}", arp.split(',').next()?));
            }
            let (head, tail) = rest.split_once(": ")?;
            let what = if tail.starts_with("ICMP echo request") {
                "request"
            } else if tail.starts_with("ICMP echo reply") {
                "reply"
            } else if tail.starts_with("Request") || tail.starts_with("Reply") {
                tail.split(' ').next()?
            } else {
                "other"
            };
            Some(format!("{head} {what}"))
        })
        .collect()
}

#[test]
fn capture_agrees_with_tcpdump_on_the_same_link_and_with_its_own_pcapng() {
    let Some(run) = isolated(
        &[("pair.rhai", PAIR)],
        r#"$NSS pair.rhai 2> lab.err || { cat lab.err; exit 1; }
# tcpdump on the same link at the same time (cooked: it prints each packet's direction)
ip netns exec a tcpdump -n -l -i any 'icmp or arp' > theirs 2> theirs.err &
T=$!
for i in $(seq 100); do grep -q 'listening on' theirs.err && break; sleep 0.05; done
$NSS capture pair a:eth0 -f 'icmp or arp' -w cap.pcapng 2> cap.err &
CAP=$!
for i in $(seq 100); do grep -q 'capturing on' cap.err && break; sleep 0.05; done
ip -n a neigh flush all
ip netns exec a ping -c 3 -i 0.2 -W 1 10.0.0.2 > /dev/null
sleep 0.3
kill -TERM $CAP; wait $CAP; echo "capture exit $?" > exit
kill $T; wait $T 2>/dev/null
section exit; cat exit; cat cap.err
section left; kill -0 $CAP 2>/dev/null && echo "still running" || echo "gone"
section ours; tcpdump -n -r cap.pcapng 2>/dev/null
section theirs; cat theirs
section tshark; tshark -r cap.pcapng -T fields -e frame.interface_name -e frame.packet_flags_direction 2>/dev/null
$NSS down pair > /dev/null 2>&1"#,
    ) else {
        return;
    };
    run.ok();
    // (a background job of a script ignores SIGINT, so the test sends SIGTERM, which
    // stops it the same way)
    assert!(run.section("exit").contains("capture exit 0"), "a signal stops it cleanly:\n{}", run.section("exit"));
    assert_eq!(run.section("left").trim(), "gone");
    let ours = flows(&run.section("ours"));
    // "TIME eth0  Out ARP, ...": the direction, and the rest as tcpdump -r prints it.
    let theirs_text = run.section("theirs");
    let theirs: Vec<(String, String)> = theirs_text
        .lines()
        .filter_map(|l| {
            let mut w = l.splitn(4, char::is_whitespace).filter(|w| !w.is_empty());
            let (time, _link) = (w.next()?, w.next()?);
            let rest = l.split_once(_link)?.1.trim_start();
            let (dir, rest) = rest.split_once(char::is_whitespace)?;
            Some((dir.to_string(), format!("{time} {}", rest.trim_start())))
        })
        .collect();
    let their_flows = flows(&theirs.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>().join("\n"));
    assert!(ours.len() >= 8, "3 echo requests, 3 replies and an ARP exchange: {ours:?}");
    assert_eq!(ours, their_flows, "the capture and tcpdump saw the same packets in the same order\n{theirs_text}");
    // Directions: tshark reads them from the pcapng (1 inbound, 2 outbound).
    let tshark = run.section("tshark");
    let rows: Vec<Vec<&str>> = tshark.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), ours.len(), "tshark reads every packet:\n{tshark}");
    assert!(rows.iter().all(|r| r[0] == "a/eth0"), "the interface is named NS/LINK:\n{tshark}");
    let dirs: Vec<&str> = rows.iter().map(|r| if r[1].ends_with('2') { "Out" } else { "In" }).collect();
    assert_eq!(dirs, theirs.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>(), "directions as tcpdump saw them");
}

#[test]
fn capture_in_a_script_gives_packets_and_a_pcapng_for_many_links() {
    let lab = format!(
        r#"{PAIR}
let cap = capture([a, b], #{{ filter: "icmp", file: "two.pcapng" }});
ping(a, "10.0.0.2", #{{ count: 2 }});
let s = cap.stop();
print(`stats ${{s.packets}} ${{s.dropped}} ${{s.file}}`);
for p in cap.packets() {{ print(`pkt ${{p.ns}} ${{p.link}} ${{p.dir}} ${{p.proto}} ${{p.src}} ${{p.dst}} ${{p.summary}}`); }}
let none = capture(a, #{{ count: 1 }});
print(`count ${{none.stop().packets <= 1}}`);
"#
    );
    let Some(run) = isolated(
        &[("cap.rhai", &lab)],
        r#"$NSS --sandbox cap.rhai > out 2> err || { cat out err; exit 1; }
section out; cat out
section file; tcpdump -n -r two.pcapng 2>/dev/null | wc -l
section names; tshark -r two.pcapng -T fields -e frame.interface_name 2>/dev/null | sort -u"#,
    ) else {
        return;
    };
    run.ok();
    let out = run.section("out");
    let pkts: Vec<&str> = out.lines().filter(|l| l.starts_with("pkt ")).collect();
    // 2 requests and 2 replies, each seen leaving one namespace and entering the other.
    assert_eq!(pkts.len(), 8, "{out}");
    assert!(out.contains("stats 8 0 two.pcapng"), "{out}");
    assert!(pkts[0].starts_with("pkt a eth0 out icmp 10.0.0.1 10.0.0.2 IP 10.0.0.1 > 10.0.0.2: ICMP echo request"), "{out}");
    assert!(pkts[1].starts_with("pkt b eth0 in icmp 10.0.0.1 10.0.0.2"), "{out}");
    assert_eq!(run.section("file").trim(), "8", "tcpdump -r reads all of them");
    assert_eq!(run.section("names").lines().collect::<Vec<_>>(), vec!["a/eth0", "b/eth0"]);
    assert!(out.contains("count true"));
}

#[test]
fn trace_seed000_shows_the_snat_at_rt_and_the_reply_un_nat() {
    let Some(run) = isolated(
        &[],
        r#"$NSS $SCRIPTS/seed000_router.rhai > lab.out 2> lab.err || { cat lab.out lab.err; exit 1; }
ip netns exec inet tcpdump -n -l -i eth0 icmp > inet.cap 2> inet.err &
T=$!
for i in $(seq 100); do grep -q 'listening on' inet.err && break; sleep 0.05; done
section trace; $NSS trace seed000_router vm1 203.0.113.1; echo "exit $?"
sleep 0.2; kill $T; wait $T 2>/dev/null
section conntrack; ip netns exec rt conntrack -L -p icmp 2>/dev/null
section inet; cat inet.cap
section udp; $NSS trace seed000_router vm1 203.0.113.1 --proto udp --port 53; echo "exit $?"
section udp_conntrack; ip netns exec rt conntrack -L -p udp 2>/dev/null
$NSS down seed000_router > /dev/null"#,
    ) else {
        return;
    };
    run.ok();
    let t = run.section("trace");
    assert!(t.contains("exit 0"), "{t}");
    assert!(t.contains("vm1 eth0 -> out: IP 10.0.0.1 > 203.0.113.1: ICMP echo request"), "{t}");
    assert!(t.contains("br-in: forwarded vm1-eth0 -> link-in-br"), "{t}");
    assert!(
        t.contains(
            "rt eth0 -> eth1: routed via 192.168.100.1 (route default via 192.168.100.1 dev eth1), source NAT 10.0.0.1 -> 192.168.100.11"
        ),
        "{t}"
    );
    assert!(t.contains("rt eth1 -> eth0: routed to 10.0.0.1 on-link (route 10.0.0.0/24 dev eth0), destination rewritten back (un-NAT) 192.168.100.11 -> 10.0.0.1"), "{t}");
    assert!(t.contains("inet eth0 in: IP 192.168.100.11 > 203.0.113.1"), "{t}");
    assert!(t.contains("(back at vm1)"), "{t}");
    // The conntrack entry the trace names is the kernel's (same id), and inet saw the
    // translated source on the wire.
    let id =
        t.split("[conntrack: icmp src=10.0.0.1 dst=203.0.113.1 id=").nth(1).and_then(|r| r.split(' ').next()).expect("a conntrack entry");
    let ct = run.section("conntrack");
    assert!(
        ct.lines()
            .any(|l| l.contains("src=10.0.0.1 dst=203.0.113.1") && l.contains(&format!("id={id}")) && l.contains("dst=192.168.100.11")),
        "{ct}"
    );
    assert!(run.section("inet").contains("IP 192.168.100.11 > 203.0.113.1: ICMP echo request"), "{}", run.section("inet"));
    // A UDP probe after the ping: inet's port unreachable is un-NATed at rt by the UDP
    // entry it relates to (the kernel's, same ports), not by the ping's ICMP entry.
    let u = run.section("udp");
    assert!(u.contains("nothing listens on 203.0.113.1 port 53: inet answered ICMP port unreachable"), "{u}");
    let back = u.lines().find(|l| l.starts_with("rt eth1 -> eth0:")).unwrap_or_else(|| panic!("rt's step back: {u}"));
    assert!(
        back.contains("destination rewritten back (un-NAT) 192.168.100.11 -> 10.0.0.1 [conntrack: udp src=10.0.0.1 dst=203.0.113.1 sport="),
        "{back}"
    );
    let sport = back.split("sport=").nth(1).and_then(|r| r.split(' ').next()).unwrap();
    let ct = run.section("udp_conntrack");
    assert!(ct.lines().any(|l| l.contains(&format!("src=10.0.0.1 dst=203.0.113.1 sport={sport} dport=53"))), "{ct}");
}

#[test]
fn trace_seed003_floods_arp_through_vxlan0_and_learns_the_remote_mac() {
    let Some(run) = isolated(
        &[],
        r#"$NSS $SCRIPTS/vxlan_bridge.rhai > lab.out 2> lab.err || { cat lab.out lab.err; exit 1; }
ip -n ns204 neigh flush all
bridge -n peer1 fdb del $(ip -n ns205 -j link show veth0 | sed 's/.*"address":"\([^"]*\)".*/\1/') dev vxlan0 master
section trace; $NSS trace vxlan_bridge ns204 192.168.1.205; echo "exit $?"
section mac; ip -n ns205 -j link show veth0
section fdb; bridge -n peer1 -j fdb show br br0
$NSS down vxlan_bridge > /dev/null"#,
    ) else {
        return;
    };
    run.ok();
    let t = run.section("trace");
    assert!(t.contains("exit 0"), "{t}");
    assert!(t.contains("ns204 veth0 -> out: ARP, Request who-has 192.168.1.205 tell 192.168.1.204"), "{t}");
    assert!(t.contains("peer1 br0: flooded veth1 -> vxlan0"), "{t}");
    assert!(t.contains("peer1 eth0 out: VXLAN VNI 24, outer 10.230.4.204:"), "{t}");
    assert!(t.contains("> 10.230.4.205:4789"), "{t}");
    assert!(t.contains("peer2 eth0 in: VXLAN VNI 24 from 10.230.4.204, decapsulated by vxlan0"), "{t}");
    let mac = run.json("mac")[0]["address"].as_str().unwrap().to_string();
    assert!(t.contains(&format!("; learned {mac} on vxlan0")), "peer1's br0 learns ns205's MAC on vxlan0 ({mac}):\n{t}");
    let fdb = run.json("fdb");
    assert!(fdb.as_array().unwrap().iter().any(|e| e["mac"] == mac.as_str() && e["ifname"] == "vxlan0"), "bridge fdb agrees: {fdb}");
}

#[test]
fn trace_seed004_goes_through_the_bridge_to_a_learned_port() {
    let Some(run) = isolated(
        &[],
        r#"$NSS $SCRIPTS/seed004_bridge.rhai > lab.out 2> lab.err || { cat lab.out lab.err; exit 1; }
section trace; $NSS trace seed004_bridge namespace1 172.19.0.4; echo "exit $?"
section mac; ip -n namespace3 -j link show veth5
section fdb; bridge -j fdb show br test-bridge
$NSS down seed004_bridge > /dev/null"#,
    ) else {
        return;
    };
    run.ok();
    let t = run.section("trace");
    let mac = run.json("mac")[0]["address"].as_str().unwrap().to_string();
    assert!(t.contains("exit 0"), "{t}");
    assert!(t.contains(&format!("test-bridge: forwarded veth0 -> veth4 (MAC {mac} learned on veth4)")), "{t}");
    assert!(run.json("fdb").as_array().unwrap().iter().any(|e| e["mac"] == mac.as_str() && e["ifname"] == "veth4"), "bridge fdb agrees");
    assert!(t.contains("namespace3 veth5 in: IP 172.19.0.2 > 172.19.0.4: ICMP echo request"), "{t}");
}

/// One lab, one broken corner per reason a packet stops.
const BROKEN: &str = r#"
// no ARP reply: nothing answers 10.1.0.99
let n1 = netns("n1");
let n2 = netns("n2");
connect(n1, n2, #{ addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24" });
// a router whose FORWARD policy drops, one that does not forward, one with strict
// reverse-path filtering and no route back for a source it sees
let h = netns("h");
let fw = netns("fw").forward(true);
let far = netns("far");
connect(h, fw, #{ addr: "10.2.0.2/24", peer_addr: "10.2.0.1/24" });
connect(fw, far, #{ ifname: "eth1", addr: "10.3.0.1/24", peer_addr: "10.3.0.2/24" });
h.route("default", "10.2.0.1");
far.route("default", "10.3.0.1");
iptables(fw, "-P FORWARD DROP");
// a routing loop: l1 and l2 send 10.99.0.0/16 to each other
let l0 = netns("l0");
let l1 = netns("l1").forward(true);
let l2 = netns("l2").forward(true);
connect(l0, l1, #{ addr: "10.4.0.2/24", peer_addr: "10.4.0.1/24" });
connect(l1, l2, #{ ifname: "eth1", addr: "10.5.0.1/24", peer_addr: "10.5.0.2/24" });
l0.route("default", "10.4.0.1");
l1.route("10.99.0.0/16", "10.5.0.2");
l2.route("10.99.0.0/16", "10.5.0.1");
l2.route("default", "10.5.0.1");   // (the time-exceeded error finds its way back)
// reverse-path filtering: r sees 10.6.0.2's packets from 10.9.0.5 on eth0, but routes 10.9.0.0/24 out of eth1
let s = netns("s");
let r = netns("r").forward(true);
let d = netns("d");
connect(s, r, #{ addr: "10.6.0.2/24", peer_addr: "10.6.0.1/24" });
connect(r, d, #{ ifname: "eth1", addr: "10.7.0.1/24", peer_addr: "10.7.0.2/24" });
link(s, "eth0").addr("10.9.0.5/32");
s.exec("ip route add 10.7.0.0/24 via 10.6.0.1 src 10.9.0.5");
r.route("10.9.0.0/24", "10.7.0.2");
r.sysctl("net.ipv4.conf.all.rp_filter", 1);
r.sysctl("net.ipv4.conf.eth0.rp_filter", 1);
d.route("default", "10.7.0.1");
// a VXLAN whose remote is not there
let m = netns("m");
connect(m, netns("sw"), #{ addr: "10.8.0.1/24", peer_addr: "10.8.0.2/24" });
let v = vxlan(m, "vx0", #{ id: 42, remote: "10.8.0.99", local: "10.8.0.1", dstport: 4789, dev: "eth0" });
let vbr = bridge(m, "br0");
v.master(vbr).up();
let inner = netns("inner");
connect(inner, vbr, #{ ifname: "eth0", addr: "192.168.50.1/24" });
"#;

#[test]
fn a_stopped_trace_says_why_from_the_kernel() {
    let Some(run) = isolated(
        &[("broken.rhai", BROKEN)],
        r#"$NSS broken.rhai > lab.out 2> lab.err || { cat lab.out lab.err; exit 1; }
t() { section "$1"; shift; $NSS trace broken "$@"; echo "exit $?"; }
t noroute n1 10.77.0.1
t noarp n1 10.1.0.99
ip netns exec fw iptables -L FORWARD -v -x -n | head -1 > fw.before
t firewall h 10.3.0.2
ip netns exec fw iptables -L FORWARD -v -x -n | head -1 > fw.after
t loop l0 10.99.1.1
t rpfilter s 10.7.0.2
t closed_udp n1 10.1.0.2 --proto udp --port 9
t closed_tcp n1 10.1.0.2 --proto tcp --port 81
t vxlan inner 192.168.50.2
section fw_counter; cat fw.before fw.after
section rp; ip netns exec r sysctl -n net.ipv4.conf.eth0.rp_filter
$NSS down broken > /dev/null"#,
    ) else {
        return;
    };
    run.ok();
    let check = |name: &str, words: &[&str]| {
        let t = run.section(name);
        assert!(t.contains("exit 1"), "{name} stops:\n{t}");
        for w in words {
            assert!(t.contains(w), "{name}: {w:?} in\n{t}");
        }
    };
    check("noroute", &["n1 has no route to 10.77.0.1", "Network is unreachable", "help: add a route"]);
    check("noarp", &["ARP, Request who-has 10.1.0.99 tell 10.1.0.1", "no ARP reply for 10.1.0.99 on n1 eth0"]);
    check(
        "firewall",
        &["stopped (last seen at fw eth0): dropped by the firewall of fw: the FORWARD policy DROP", "forward_accept(netns(\"fw\")"],
    );
    let fw = run.section("fw_counter");
    let counts: Vec<u64> =
        fw.lines().map(|l| l.split("policy DROP ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()).collect();
    assert!(counts[1] > counts[0], "iptables' own counter moved: {fw}");
    check("loop", &["TTL exceeded in l", "ICMP time exceeded in-transit", "routing loop"]);
    check("rpfilter", &["reverse-path filtering dropped it in r: rp_filter is 1 on eth0", "Invalid argument (EINVAL)"]);
    assert_eq!(run.section("rp").trim(), "1");
    check("closed_udp", &["nothing listens on 10.1.0.2 port 9", "ICMP port unreachable", "ICMP 10.1.0.2 udp port 9 unreachable"]);
    check("closed_tcp", &["nothing listens on 10.1.0.2 port 81", "TCP RST", "Flags [R.]"]);
    check("vxlan", &["the VXLAN remote 10.8.0.99 never answered", "no ARP reply for 10.8.0.99"]);
}

#[test]
fn a_failed_assert_ping_explains_itself_with_a_trace() {
    let lab = format!("{PAIR}\nassert_ping(a, \"10.0.0.77\", #{{ timeout: 300 }});\n");
    let Some(run) = isolated(&[("fail.rhai", &lab)], "$NSS --sandbox fail.rhai 2> err; section err; cat err") else {
        return;
    };
    let err = run.section("err");
    assert!(err.contains("nsscript::ping_failed"), "{err}");
    assert!(err.contains("trace from a to 10.0.0.77:"), "{err}");
    assert!(err.contains("no ARP reply for 10.0.0.77 on a eth0"), "{err}");
}
