//! Issue 4: VXLAN across simulated (and two real-ish) machines, VLAN, macvlan, tap,
//! shaping. Every check looks at the kernel with tools that are not ours: `ip -j`,
//! `bridge -j fdb`, `tc -j`, tcpdump, ping, a real TCP transfer.

use crate::support::*;
use serde_json::Value;

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

/// Watch a simulated machine's underlay (eth0) with tcpdump while `trigger` runs, and
/// print what it saw in section NAME.
fn capture(name: &str, machine: &str, trigger: &str) -> String {
    // Only VXLAN frames whose inner frame is IPv4 or ARP (not the IPv6 chatter).
    format!(
        r#"ip netns exec {machine} timeout 8 tcpdump -i eth0 -nn -v -c 4 'udp port 4789 and (udp[28:2] = 0x0800 or udp[28:2] = 0x0806)' > cap-{name}.txt 2>/dev/null &
TPID=$!
sleep 1
{trigger}
wait $TPID
section {name}; cat cap-{name}.txt
"#
    )
}

#[test]
fn vxlan_unicast_lab_pings_over_udp_4789_with_vni_11() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
$NSS $SCRIPTS/vxlan_unicast.rhai || exit 1
section link; ip -n peer1 -d -j link show vxlan0
{cap}
section ping; ip netns exec peer2 ping -c1 -W1 192.168.1.2 >/dev/null && echo ok
$NSS down vxlan_unicast || exit 1
snapshot > after
section diff; diff before after && echo same
"#,
            cap = capture("cap", "peer1", "ip netns exec peer1 ping -c 2 -W 1 192.168.1.3 >/dev/null")
        ),
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("vxlan_unicast: peer1 (192.168.1.2) reaches 192.168.1.3"), "{}", run.stdout);
    let link = run.json("link");
    let info = &arr(&link)[0]["linkinfo"];
    assert_eq!(info["info_kind"], "vxlan");
    assert_eq!(info["info_data"]["id"], 11);
    assert_eq!(info["info_data"]["port"], 4789, "dstport defaults to 4789, not the kernel's 8472");
    assert_eq!(info["info_data"]["remote"], "10.230.4.205");
    assert_eq!(info["info_data"]["local"], "10.230.4.204");
    let cap = run.section("cap");
    assert!(cap.contains("10.230.4.204.") && cap.contains("10.230.4.205.4789"), "VXLAN on UDP 4789 between the machines:\n{cap}");
    assert!(cap.contains("vni 11"), "the packets carry VNI 11:\n{cap}");
    assert!(cap.contains("192.168.1.2 > 192.168.1.3: ICMP echo request"), "the inner ping is inside:\n{cap}");
    assert_eq!(run.section("ping").trim(), "ok");
    assert_eq!(run.section("diff").trim(), "same", "down removes the lab");
}

#[test]
fn vxlan_multicast_lab_floods_to_224_1_1_1() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"$NSS $SCRIPTS/vxlan_multicast.rhai || exit 1
section fdb; bridge -n peer1 -j fdb show dev vxlan0
section link; ip -n peer2 -d -j link show vxlan0
ip -n peer1 neigh flush dev vxlan0
{cap}
"#,
            cap = capture("cap", "peer1", "ip netns exec peer1 ping -c 2 -W 1 192.168.1.3 >/dev/null")
        ),
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("vxlan_multicast: peer2 (192.168.1.3) reaches 192.168.1.2"), "{}", run.stdout);
    let fdb = run.json("fdb");
    assert!(arr(&fdb).iter().any(|e| e["mac"] == "00:00:00:00:00:00" && e["dst"] == "224.1.1.1"), "vxlan0 floods to the group: {fdb}");
    let link = run.json("link");
    let info = &arr(&link)[0]["linkinfo"]["info_data"];
    assert_eq!(info["group"], "224.1.1.1");
    assert_eq!(info["port"], 4789);
    let cap = run.section("cap");
    assert!(cap.contains("224.1.1.1.4789"), "the ARP request is flooded to the group:\n{cap}");
    assert!(cap.contains("vni 11"), "VNI 11:\n{cap}");
}

#[test]
fn vxlan_bridge_lab_learns_the_remote_mac_on_the_vxlan_port() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"$NSS $SCRIPTS/vxlan_bridge.rhai 2>err.txt || {{ cat err.txt; exit 1; }}
section err; cat err.txt
section mac205; ip -n ns205 -j link show veth0
section fdb; bridge -n peer1 -j fdb show br br0
section mtu; ip -n ns204 -j link show veth0
section bigping; ip netns exec ns204 ping -c1 -W2 -M do -s 1472 192.168.1.205 >/dev/null && echo ok
{cap}
"#,
            cap = capture("cap", "peer2", "ip netns exec ns205 ping -c 2 -W 1 192.168.1.204 >/dev/null")
        ),
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("vxlan_bridge: ns204 reaches 192.168.1.205"), "{}", run.stdout);
    assert!(!run.section("err").contains("warning"), "the lab sets the right MTU, so it does not warn:\n{}", run.section("err"));
    let mac205 = arr(&run.json("mac205"))[0]["address"].as_str().unwrap().to_string();
    let fdb = run.json("fdb");
    assert!(
        arr(&fdb).iter().any(|e| e["mac"] == mac205.as_str() && e["ifname"] == "vxlan0" && e["master"] == "br0"),
        "br0 on peer1 learned ns205's MAC {mac205} on vxlan0: {fdb}"
    );
    assert_eq!(arr(&run.json("mtu"))[0]["mtu"], 1500, "the simulated underlay (1550) lets the inner links keep 1500");
    assert_eq!(run.section("bigping").trim(), "ok", "a 1500-byte ping with DF crosses the overlay");
    let cap = run.section("cap");
    assert!(cap.contains("vni 24") && cap.contains(".4789"), "VNI 24 on UDP 4789:\n{cap}");
}

/// The seed's own steps over a 1500-byte underlay: vxlan0 gets MTU 1450, the inner veth
/// keeps 1500, and full frames would be dropped silently. The lab warns, and says what
/// to do; doing it fixes the overlay for full-size pings.
#[test]
fn vxlan_under_a_full_size_inner_link_warns_and_the_fix_works() {
    let lab = r#"
import "machine" as machine;
let ips = #{ a: "10.230.4.204", b: "10.230.4.205" };
let ms = [machine::host("a", #{ addr: "10.230.4.204/16", mtu: 1500 }), machine::host("b", #{ addr: "10.230.4.205/16", mtu: 1500 })];
for m in ms {
    let other = if m.name == "a" { "b" } else { "a" };
    let br = bridge(m.ns, "br0");
    connect(netns(`in-${m.name}`), br, #{ ifname: "veth0", addr: if m.name == "a" { "192.168.1.204/24" } else { "192.168.1.205/24" } });
    vxlan(m.ns, "vxlan0", #{ id: 24, remote: ips[other], local: ips[m.name], dev: "eth0" }).master(br).up();
}
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS lab.rhai 2>err.txt || { cat err.txt; exit 1; }
section err; cat err.txt
section small; ip netns exec in-a ping -c1 -W2 192.168.1.205 >/dev/null && echo ok
section big; ip netns exec in-a ping -c1 -W2 -M do -s 1472 192.168.1.205 >/dev/null && echo ok || echo dropped
for s in a b; do ip -n in-$s link set veth0 mtu 1450; ip -n $s link set in-$s-veth0 mtu 1450; done
section fixed; ip netns exec in-a ping -c1 -W2 -M do -s 1422 192.168.1.205 >/dev/null && echo ok
"#,
    ) else {
        return;
    };
    run.ok();
    let err = run.section("err");
    assert!(err.contains("warning: bridge br0 in namespace a"), "the lab warned:\n{err}");
    assert!(err.contains("MTU 1500 but VXLAN port vxlan0 carries at most 1450"), "{err}");
    assert!(err.contains("mtu: 1450"), "the warning says what to do:\n{err}");
    assert_eq!(run.section("small").trim(), "ok");
    assert_eq!(run.section("big").trim(), "dropped", "the warning was justified: 1500-byte frames are dropped");
    assert_eq!(run.section("fixed").trim(), "ok", "with MTU 1450 inside, full-size inner frames cross");
}

/// The same lab file, one run per "machine": two network namespaces joined by a veth
/// stand for peer1 and peer2, and nsscript runs in each (not sandboxed: for real there).
#[test]
fn vxlan_bridge_lab_runs_for_real_on_two_machines() {
    let Some(run) = isolated(
        &[],
        r#"ip netns add m1; ip netns add m2
ip link add eth0 netns m1 type veth peer name eth0 netns m2
ip -n m1 addr add 10.230.4.204/16 dev eth0; ip -n m1 link set eth0 up; ip -n m1 link set lo up
ip -n m2 addr add 10.230.4.205/16 dev eth0; ip -n m2 link set eth0 up; ip -n m2 link set lo up
nsenter --net=/run/netns/m1 $NSS $SCRIPTS/vxlan_bridge.rhai --var host=peer1 --name vb1 > out1.txt 2>&1 &
P1=$!
sleep 2
nsenter --net=/run/netns/m2 $NSS $SCRIPTS/vxlan_bridge.rhai --var host=peer2 --name vb2 > out2.txt 2>&1 &
P2=$!
wait $P1; echo "rc1 $?" > rc.txt; wait $P2; echo "rc2 $?" >> rc.txt
section rc; cat rc.txt
section out1; cat out1.txt
section out2; cat out2.txt
section mac205; ip -n ns205 -j link show veth0
section fdb1; ip netns exec m1 bridge -j fdb show br br0
section links1; ip -n m1 -j link show
section mtu204; ip -n ns204 -j link show veth0
nsenter --net=/run/netns/m1 $NSS down vb1 || exit 1
nsenter --net=/run/netns/m2 $NSS down vb2 || exit 1
section after; ip -n m1 -br link; ip -n m2 -br link; ip netns list
"#,
    ) else {
        return;
    };
    run.ok();
    let rc = run.section("rc");
    assert!(
        rc.contains("rc1 0") && rc.contains("rc2 0"),
        "both machines' runs succeed:\n{rc}\n{}\n{}",
        run.section("out1"),
        run.section("out2")
    );
    assert!(run.section("out1").contains("ns204 reaches 192.168.1.205"), "{}", run.section("out1"));
    assert!(run.section("out2").contains("ns205 reaches 192.168.1.204"), "{}", run.section("out2"));
    let mac205 = arr(&run.json("mac205"))[0]["address"].as_str().unwrap().to_string();
    let fdb = run.json("fdb1");
    assert!(arr(&fdb).iter().any(|e| e["mac"] == mac205.as_str() && e["ifname"] == "vxlan0"), "m1's br0 learned {mac205} on vxlan0: {fdb}");
    let links = run.json("links1");
    let vx = arr(&links).iter().find(|l| l["ifname"] == "vxlan0").expect("vxlan0 in m1");
    assert_eq!(vx["mtu"], 1450, "over a real 1500-byte underlay the VXLAN MTU is 1450");
    assert_eq!(arr(&run.json("mtu204"))[0]["mtu"], 1450, "and the lab gave the inner link 1450");
    let after = run.section("after");
    assert!(!after.contains("vxlan0") && !after.contains("br0") && !after.contains("ns204"), "down removed each machine's half:\n{after}");
    assert!(after.contains("m1") && after.contains("eth0"), "and left the machines' own eth0 alone:\n{after}");
}

#[test]
fn fdb_append_builds_a_static_unicast_mesh() {
    let lab = r#"
import "machine" as machine;
let ms = [machine::host("h1", #{ addr: "10.1.0.1/24" }), machine::host("h2", #{ addr: "10.1.0.2/24" }), machine::host("h3", #{ addr: "10.1.0.3/24" })];
for m in ms {
    let vx = vxlan(m.ns, "vx0", #{ id: 42, local: m.ip, dev: "eth0" }).addr(`192.168.42.${m.ip.split(".")[3]}/24`).up();
    for o in ms {
        if o.name != m.name { vx.fdb_append("00:00:00:00:00:00", o.ip); }
    }
}
let t = fdb(netns("h1")).filter(|e| e.dev == "vx0" && e.mac == "00:00:00:00:00:00").map(|e| e.dst);
print(`flood=${t}`);
assert(netns("h1").exec("ping -c1 -W1 192.168.42.3").code == 0, "h1 reaches h3");
"#;
    let Some(run) = isolated(
        &[("mesh.rhai", lab)],
        r#"$NSS --sandbox mesh.rhai || exit 1
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("10.1.0.2") && run.stdout.contains("10.1.0.3"), "both peers on h1's flood list: {}", run.stdout);
}

#[test]
fn macvlan_bridge_mode_talks_and_private_mode_isolates() {
    let Some(run) = isolated(
        &[],
        r#"$NSS $SCRIPTS/macvlan.rhai || exit 1
section kind; ip -n c1 -d -j link show eth0; ip -n p1 -d -j link show eth0
section pings
ip netns exec c1 ping -c1 -W1 10.9.0.12 >/dev/null && echo "c1-c2 ok" || echo "c1-c2 blocked"
ip netns exec p1 ping -c1 -W1 10.9.1.12 >/dev/null && echo "p1-p2 ok" || echo "p1-p2 blocked"
ip netns exec p1 ping -c1 -W1 10.9.1.1 >/dev/null && echo "p1-router ok" || echo "p1-router blocked"
"#,
    ) else {
        return;
    };
    run.ok();
    let kinds = run.section("kind");
    assert!(
        kinds.contains(r#""info_kind":"macvlan""#) && kinds.contains(r#""mode":"bridge""#) && kinds.contains(r#""mode":"private""#),
        "{kinds}"
    );
    let pings = run.section("pings");
    assert!(pings.contains("c1-c2 ok"), "{pings}");
    assert!(pings.contains("p1-p2 blocked"), "{pings}");
    assert!(pings.contains("p1-router ok"), "{pings}");
}

/// Bytes b received after the first, and how long they took, measured on b's side.
const MEASURE: &str = r#"measure() {
  (sleep 0.3; head -c $1 /dev/zero | ip netns exec a socat -u - TCP:10.77.0.2:5001) >/dev/null 2>&1 &
  ip netns exec b timeout 30 socat -u TCP-LISTEN:5001,reuseaddr STDOUT | (head -c 1 >/dev/null; s=$(date +%s%N); n=$(wc -c); e=$(date +%s%N); echo $(( n * 8 * 1000 / ((e - s) / 1000000) )))
}"#;

#[test]
fn shaping_limits_a_bulk_tcp_transfer_to_the_asked_rate() {
    let lab = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.77.0.1/24", peer: "eth0", peer_addr: "10.77.0.2/24" }).shape(#{ rate: "20mbit", burst: "32kb", latency: "50ms" });
"#;
    let Some(run) = isolated(
        &[("shape.rhai", lab)],
        &format!(
            r#"{MEASURE}
$NSS shape.rhai || exit 1
section tc; tc -n a -j qdisc show dev eth0
section rate; measure 10000000
$NSS --sandbox $SCRIPTS/shaping.rhai > lab.txt 2>&1 || {{ cat lab.txt; exit 1; }}
section lab; cat lab.txt
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let tc = run.json("tc");
    let q = &arr(&tc)[0];
    assert_eq!(q["kind"], "tbf", "{tc}");
    assert_eq!(q["root"], true, "{tc}");
    assert_eq!(q["options"]["rate"], 2_500_000, "20 Mbit/s is 2.5 MB/s in tc's json: {tc}");
    let burst = q["options"]["burst"].as_i64().unwrap();
    assert!((32767..=32768).contains(&burst), "burst 32kb (tc rounds it through scheduler ticks): {tc}");
    let bits: f64 = run.section("rate").trim().parse().unwrap();
    eprintln!("shaped to 20mbit, measured {:.2} Mbit/s", bits / 1e6);
    assert!((bits - 20e6).abs() < 0.2 * 20e6, "a bulk TCP transfer runs within 20% of 20 Mbit/s, measured {bits}");
    let lab = run.section("lab");
    assert!(lab.contains("shaping: asked 10 Mbit/s, measured"), "{lab}");
}

#[test]
fn delay_and_loss_need_netem_and_say_so() {
    let lab = "let a = netns(\"a\");\nlet l = connect(a, netns(\"b\"), #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\nl.shape(#{ delay: \"100ms\" });\n";
    let Some(run) = isolated(
        &[("netem.rhai", lab)],
        r#"ip link add nx0 type veth peer name nx1
if tc qdisc add dev nx0 root netem delay 1ms 2>/dev/null; then echo HAS_NETEM; fi
ip link del nx0
$NSS --sandbox netem.rhai; echo "rc $?"
"#,
    ) else {
        return;
    };
    if run.stdout.contains("HAS_NETEM") {
        // A kernel with netem: the delay must really be there.
        assert!(run.stdout.contains("rc 0"), "{}\n{}", run.stdout, run.stderr);
        println!("netem present: shape(delay) succeeded");
        return;
    }
    assert!(run.stdout.contains("rc 1"), "{}\n{}", run.stdout, run.stderr);
    let err = &run.stderr;
    assert!(err.contains("this kernel lacks netem (sch_netem)"), "{err}");
    assert!(err.contains("modprobe sch_netem") && err.contains("CONFIG_NET_SCH_NETEM"), "{err}");
    assert!(err.contains("l.shape(#{ delay: \"100ms\" });"), "the error points at the call:\n{err}");
    assert!(err.contains("netem.rhai:3"), "at line 3:\n{err}");
}

/// Probe the kernel: can it make VLAN sub-interfaces, and can a bridge filter VLANs?
const VLAN_PROBE: &str = r#"ip link add vp0 type veth peer name vp1
ip link add link vp0 name vp0.10 type vlan id 10 2>/dev/null && echo HAS_8021Q
ip link add vpbr type bridge && ip link set vpbr type bridge vlan_filtering 1 2>/dev/null && echo HAS_VLAN_FILTERING
ip link del vp0; ip link del vpbr 2>/dev/null
"#;

#[test]
fn vlan_without_8021q_says_what_the_kernel_lacks_and_points_at_the_call() {
    let lab = "let a = netns(\"a\");\nlet l = connect(a, netns(\"b\"), #{ ifname: \"eth0\" });\nlet v = vlan(l, 10);\n";
    let Some(run) = isolated(&[("vlan.rhai", lab)], &format!("{VLAN_PROBE}\n$NSS --sandbox vlan.rhai; echo \"rc $?\"\n")) else { return };
    if run.stdout.contains("HAS_8021Q") {
        println!("skipped: this kernel has 8021q, so there is no error to show (the real VLAN test covers it)");
        return;
    }
    assert!(run.stdout.contains("rc 1"), "{}\n{}", run.stdout, run.stderr);
    let err = &run.stderr;
    assert!(err.contains("cannot create vlan link \"eth0.10\" in namespace a"), "named PARENT.ID:\n{err}");
    assert!(err.contains("this kernel lacks 802.1Q VLAN support"), "{err}");
    assert!(err.contains("modprobe 8021q") && err.contains("CONFIG_VLAN_8021Q"), "{err}");
    assert!(err.contains("let v = vlan(l, 10);") && err.contains("vlan.rhai:3"), "points at the call:\n{err}");
}

#[test]
fn bridge_vlan_filtering_without_kernel_support_says_so() {
    let lab = "let br = bridge(\"br0\");\nbr.vlan_filtering(true);\n";
    let Some(run) = isolated(&[("vf.rhai", lab)], &format!("{VLAN_PROBE}\n$NSS --sandbox vf.rhai; echo \"rc $?\"\n")) else { return };
    if run.stdout.contains("HAS_VLAN_FILTERING") {
        println!("skipped: this kernel filters VLANs on bridges (the real VLAN test covers it)");
        return;
    }
    assert!(run.stdout.contains("rc 1"), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("this kernel lacks bridge VLAN filtering"), "{}", run.stderr);
    assert!(run.stderr.contains("vf.rhai:2"), "{}", run.stderr);
}

/// The real VLAN lab: two namespaces over tagged sub-interfaces, and an access/trunk
/// bridge. Runs where the kernel has 8021q (and bridge VLAN filtering); elsewhere it
/// reports itself skipped, with the reason.
#[test]
fn vlan_tagged_subinterfaces_and_an_access_trunk_bridge() {
    let lab = r#"
// Tagged sub-interfaces: v1 and v2 talk on VLAN 10 over one veth.
let v1 = netns("v1");
let v2 = netns("v2");
let e = connect(v1, v2, #{ ifname: "eth0", peer: "eth0" });
vlan(e, 10).addr("10.10.0.1/24").up();
vlan(link(v2, "eth0"), 10, #{ name: "eth0.10" }).addr("10.10.0.2/24").up();
assert(v1.exec("ping -c1 -W1 10.10.0.2").code == 0, "VLAN 10 sub-interfaces talk");

// Access/trunk bridge in sw: access port (pvid 20, untagged) to acc, trunk to trk,
// which tags VLAN 20 itself.
let sw = netns("sw");
let br = bridge(sw, "br0").vlan_filtering(true);
let acc = netns("acc");
let trk = netns("trk");
connect(acc, br, #{ ifname: "eth0", peer: "p-acc", addr: "10.20.0.1/24" });
connect(trk, br, #{ ifname: "eth0", peer: "p-trk" });
link(sw, "p-acc").bridge_vlan(20, #{ pvid: true, untagged: true });
link(sw, "p-trk").bridge_vlan(20);
vlan(link(trk, "eth0"), 20).addr("10.20.0.2/24").up();
assert(acc.exec("ping -c1 -W1 10.20.0.2").code == 0, "access port reaches the trunk's VLAN 20");
print("vlan: ok");
"#;
    let Some(run) =
        isolated(&[("vlan.rhai", lab)], &format!("{VLAN_PROBE}\n$NSS vlan.rhai 2>&1 || exit 1\nsection br; bridge -n sw -j vlan show\n"))
    else {
        return;
    };
    if !run.stdout.contains("HAS_8021Q") {
        println!("skipped: kernel lacks 8021q (802.1Q VLAN sub-interfaces: `ip link add ... type vlan` says Unknown device type)");
        return;
    }
    if !run.stdout.contains("HAS_VLAN_FILTERING") {
        println!("skipped: kernel lacks bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)");
        return;
    }
    run.ok();
    assert!(run.stdout.contains("vlan: ok"), "{}", run.stdout);
    let br = run.section("br");
    assert!(br.contains("\"vlan\":20"), "{br}");
}

/// A tap on a lab bridge, opened by a userspace peer (socat's TUN address, tap type):
/// the peer's ARP request reaches the namespace, and the namespace's reply comes back.
#[test]
fn a_tap_on_a_bridge_exchanges_frames_with_a_userspace_peer() {
    let lab = r#"
let br = bridge("br0");
connect(netns("n1"), br, #{ ifname: "eth0", addr: "10.0.0.1/24" });
tap("tap0", #{ owner: 4242, group: 4343 }).master(br).up();
tap(netns("n1"), "tap1");
"#;
    // An ARP request: who has 10.0.0.1? tell 10.0.0.99 (02:00:00:00:00:99).
    let frame = r"\xff\xff\xff\xff\xff\xff\x02\x00\x00\x00\x00\x99\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01\x02\x00\x00\x00\x00\x99\x0a\x00\x00\x63\x00\x00\x00\x00\x00\x00\x0a\x00\x00\x01";
    let Some(run) = isolated(
        &[("tap.rhai", lab)],
        &format!(
            r#"$NSS tap.rhai || exit 1
section link; ip -d -j link show tap0
section tap1; ip -n n1 -d -j link show tap1
printf '{frame}' > arp.bin
(sleep 1; cat arp.bin; sleep 2) | timeout 6 socat -t 1 - TUN,tun-type=tap,tun-name=tap0,iff-no-pi,iff-up > out.bin
section reply; od -An -tx1 -v out.bin | tr -d ' \n'; echo
section neigh; ip -n n1 -j neigh show 10.0.0.99
$NSS down tap || exit 1
section after; ip -br link show tap0 2>&1; true
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let link = run.json("link");
    let l = &arr(&link)[0];
    assert_eq!(l["linkinfo"]["info_kind"], "tun", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["type"], "tap", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["persist"], true, "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["user"], 4242, "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["group"], 4343, "{l}");
    assert_eq!(l["master"], "br0", "{l}");
    assert_eq!(arr(&run.json("tap1"))[0]["linkinfo"]["info_data"]["type"], "tap", "tap(ns, name) makes it inside ns");
    // An ARP reply (0806, opcode 2) to 02:00:00:00:00:99 saying 10.0.0.1 is here.
    let reply = run.section("reply");
    assert!(
        reply.contains("020000000099") && reply.contains("08060001080006040002") && reply.contains("0a000001"),
        "the namespace answered the userspace peer:\n{reply}"
    );
    let neigh = run.json("neigh");
    assert_eq!(arr(&neigh)[0]["lladdr"], "02:00:00:00:00:99", "n1 learned the peer's MAC: {neigh}");
    assert!(run.section("after").contains("does not exist"), "down deletes the tap: {}", run.section("after"));
}

#[test]
fn vxlan_group_without_dev_is_a_clear_error() {
    let lab = "let a = netns(\"a\");\nvxlan(a, \"vx0\", #{ id: 6, group: \"224.1.1.1\" });\n";
    let Some(run) = isolated(&[("g.rhai", lab)], "$NSS --sandbox g.rhai; echo \"rc $?\"\n") else { return };
    assert!(run.stdout.contains("rc 1"), "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("vxlan() with group 224.1.1.1 needs dev"), "{}", run.stderr);
    assert!(run.stderr.contains("g.rhai:2"), "points at the call: {}", run.stderr);
}
