//! Issue 15: link kinds of other kernels (dummy, gre, gretap, ipip, bond, vrf). This
//! kernel lacks them (../shared/KERNEL.md): each test proves the error (its code, the
//! kernel option named, the span, nothing left behind) and the plan's shell text; where
//! a probe finds the kind (`ip link add ... type KIND` succeeding in the test's own
//! namespace), the same test builds it and checks it with `ip -d -j link`, and says so.

use crate::support::*;
use serde_json::Value;

struct Kind {
    /// `ip link add probe0 type ...` that succeeds where the kernel has the kind.
    probe: &'static str,
    /// The call, as line 3 of the lab.
    call: &'static str,
    /// The link the call makes.
    name: &'static str,
    /// What the error names.
    lacks: &'static str,
    option: &'static str,
    module: &'static str,
    /// The plan's commands for it, one a line.
    plan: &'static str,
    /// Checks `ip -d -j link show NAME` where the kernel has the kind.
    check: fn(&Value, &Run),
}

fn kind_test(k: Kind) {
    let lab = format!(
        "let a = netns(\"a\");\nlet e = connect(a, netns(\"b\"), #{{ ifname: \"eth0\", addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" }});\nlet l = {};\n",
        k.call
    );
    let Some(run) = isolated(
        &[("lab.rhai", &lab)],
        &format!(
            r#"{SNAPSHOT}
ip link add probe0 {} 2>/dev/null && echo HAS_KIND; ip link del probe0 2>/dev/null
snapshot > before
$NSS lab.rhai > out.txt 2> err.txt; echo "rc $?"
section err; cat err.txt
section link; ip -n a -d -j link show {} 2>/dev/null
section ports; ip -n a -d -j link show master {} 2>/dev/null
$NSS down lab > /dev/null 2>&1
snapshot > after
section diff; diff before after && echo same
section ledger; ls /run/nsscript/labs 2>/dev/null
section plan; $NSS plan lab.rhai 2>&1
"#,
            k.probe, k.name, k.name
        ),
    ) else {
        return;
    };
    let plan = run.section("plan");
    for line in k.plan.lines() {
        assert!(plan.lines().any(|l| l == line), "the plan's shell text for {} has {line}:\n{plan}", k.call);
    }
    if run.stdout.contains("HAS_KIND") {
        assert!(run.stdout.contains("rc 0"), "{}\n{}", run.stdout, run.section("err"));
        (k.check)(&run.json("link")[0], &run);
        assert_eq!(run.section("diff").trim(), "same", "down removed it");
        println!("this kernel has it: {} built and checked with ip -d -j link", k.name);
        return;
    }
    println!("skipped the real {}: this kernel lacks it ({}); its error is checked instead", k.name, k.option);
    assert!(run.stdout.contains("rc 1"), "{}\n{}", run.stdout, run.section("err"));
    let err = run.section("err");
    assert!(err.contains("nsscript::kernel_lacks_feature"), "{err}");
    assert!(err.contains(&format!("this kernel lacks {} support (Unknown device type, EOPNOTSUPP)", k.lacks)), "{err}");
    assert!(err.contains(&format!("modprobe {}", k.module)) && err.contains(k.option), "names the module and {}:\n{err}", k.option);
    assert!(err.contains(&format!("let l = {};", k.call)) && err.contains("lab.rhai:3"), "points at the call:\n{err}");
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(run.section("diff").trim(), "same", "nothing is left behind:\n{}", run.section("diff"));
    assert!(run.section("ledger").trim().is_empty(), "no lab stays up: {}", run.section("ledger"));
}

#[test]
fn dummy_link() {
    kind_test(Kind {
        probe: "type dummy",
        call: "dummy(a, \"d0\", #{ mtu: 1400, up: true })",
        name: "d0",
        lacks: "dummy link",
        option: "CONFIG_DUMMY",
        module: "dummy",
        plan: "ip -n a link add d0 mtu 1400 type dummy\nip -n a link set d0 up",
        check: |l, _| {
            assert_eq!(l["linkinfo"]["info_kind"], "dummy", "{l}");
            assert_eq!(l["mtu"], 1400);
        },
    });
}

#[test]
fn gre_tunnel() {
    kind_test(Kind {
        probe: "type gre local 10.9.9.1 remote 10.9.9.2",
        call: "gre(a, \"gre1\", #{ local: \"10.0.0.1\", remote: \"10.0.0.2\", ttl: 64, key: 42 })",
        name: "gre1",
        lacks: "GRE tunnel",
        option: "CONFIG_NET_IPGRE",
        module: "ip_gre",
        plan: "ip -n a link add gre1 type gre local 10.0.0.1 remote 10.0.0.2 ttl 64 key 42",
        check: |l, _| {
            let d = &l["linkinfo"]["info_data"];
            assert_eq!(l["linkinfo"]["info_kind"], "gre", "{l}");
            assert_eq!(d["local"], "10.0.0.1");
            assert_eq!(d["remote"], "10.0.0.2");
            assert_eq!(d["ttl"], 64);
            assert_eq!(d["ikey"], "0.0.0.42");
        },
    });
}

#[test]
fn gretap_tunnel() {
    kind_test(Kind {
        probe: "type gretap local 10.9.9.1 remote 10.9.9.2",
        call: "gre(a, \"gt1\", #{ local: \"10.0.0.1\", remote: \"10.0.0.2\", tap: true })",
        name: "gt1",
        lacks: "GRE tunnel",
        option: "CONFIG_NET_IPGRE",
        module: "ip_gre",
        plan: "ip -n a link add gt1 type gretap local 10.0.0.1 remote 10.0.0.2",
        check: |l, _| {
            assert_eq!(l["linkinfo"]["info_kind"], "gretap", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["remote"], "10.0.0.2");
        },
    });
}

#[test]
fn ipip_tunnel() {
    kind_test(Kind {
        probe: "type ipip local 10.9.9.1 remote 10.9.9.2",
        call: "ipip(a, \"ipip1\", #{ local: \"10.0.0.1\", remote: \"10.0.0.2\", ttl: 32 })",
        name: "ipip1",
        lacks: "IP-in-IP tunnel",
        option: "CONFIG_NET_IPIP",
        module: "ipip",
        plan: "ip -n a link add ipip1 type ipip local 10.0.0.1 remote 10.0.0.2 ttl 32",
        check: |l, _| {
            let d = &l["linkinfo"]["info_data"];
            assert_eq!(l["linkinfo"]["info_kind"], "ipip", "{l}");
            assert_eq!(d["remote"], "10.0.0.2");
            assert_eq!(d["ttl"], 32);
        },
    });
}

#[test]
fn bond_with_a_port() {
    kind_test(Kind {
        probe: "type bond",
        call: "bond(a, \"bond0\", #{ mode: \"active-backup\", ports: [e], miimon: 100 })",
        name: "bond0",
        lacks: "bonding",
        option: "CONFIG_BONDING",
        module: "bonding",
        plan:
            "ip -n a link add bond0 type bond mode active-backup miimon 100\nip -n a link set eth0 down\nip -n a link set eth0 master bond0",
        check: |l, run| {
            let d = &l["linkinfo"]["info_data"];
            assert_eq!(l["linkinfo"]["info_kind"], "bond", "{l}");
            assert_eq!(d["mode"], "active-backup");
            assert_eq!(d["miimon"], 100);
            assert_eq!(run.json("ports")[0]["ifname"], "eth0", "eth0 is the bond's port");
        },
    });
}

#[test]
fn vrf_with_its_table() {
    kind_test(Kind {
        probe: "type vrf table 10",
        call: "vrf(a, \"blue\", #{ table: 10 })",
        name: "blue",
        lacks: "VRF",
        option: "CONFIG_NET_VRF",
        module: "vrf",
        plan: "ip -n a link add blue type vrf table 10",
        check: |l, _| {
            assert_eq!(l["linkinfo"]["info_kind"], "vrf", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["table"], 10);
        },
    });
}

/// The graph draws tunnels as edges between their ends and bonds and VRFs as boxes
/// holding their links (from the plan's model: no kernel needed).
#[test]
fn graph_draws_tunnels_as_edges_and_bonds_and_vrfs_as_boxes() {
    let lab = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "192.0.2.1/24", peer: "eth0", peer_addr: "192.0.2.2/24" });
gre(a, "gre1", #{ local: "192.0.2.1", remote: "192.0.2.2" });
gre(b, "gre1", #{ local: "192.0.2.2", remote: "192.0.2.1" });
ipip(a, "ipip1", #{ local: "192.0.2.1", remote: "198.51.100.7" });
let x = netns("x");
connect(x, netns("y"), #{ ifname: "eth1", peer: "p1" });
bond(x, "bond0", #{ mode: "802.3ad", ports: ["eth1"] });
let blue = vrf(x, "blue", #{ table: 10 });
dummy(x, "d0").master(blue);
"#;
    let Some(run) = isolated(&[("lab.rhai", lab)], "$NSS graph lab.rhai --format json") else {
        return;
    };
    run.ok();
    let g: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let edges = g["edges"].as_array().unwrap();
    let gre = edges.iter().filter(|e| e["kind"] == "gre").collect::<Vec<_>>();
    assert_eq!(gre.len(), 1, "the two gre ends make one tunnel: {edges:?}");
    assert!((gre[0]["a"] == "ns:a" && gre[0]["b"] == "ns:b") || (gre[0]["a"] == "ns:b" && gre[0]["b"] == "ns:a"), "{gre:?}");
    assert!(edges.iter().any(|e| e["kind"] == "ipip" && e["b"] == "ext:198.51.100.7"), "{edges:?}");
    let nodes = g["nodes"].as_array().unwrap();
    let node = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap_or_else(|| panic!("no node {id}: {nodes:?}"));
    assert_eq!(node("bond:x/bond0")["kind"], "bond");
    assert!(node("bond:x/bond0")["lines"].as_array().unwrap().iter().any(|l| l == "port eth1"));
    assert_eq!(node("vrf:x/blue")["kind"], "vrf");
    assert!(node("vrf:x/blue")["lines"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("d0")));
    assert!(
        edges.iter().any(|e| e["kind"] == "veth" && (e["a"] == "bond:x/bond0" || e["b"] == "bond:x/bond0")),
        "the bond's port's veth ends at the bond: {edges:?}"
    );
    let Some(ascii) = isolated(&[("lab.rhai", lab)], "$NSS graph lab.rhai") else {
        return;
    };
    ascii.ok();
    assert!(ascii.stdout.contains("bond bond0 (in x)") && ascii.stdout.contains("vrf blue (in x)"), "{}", ascii.stdout);
    assert!(ascii.stdout.contains("<==gre==>"), "{}", ascii.stdout);
}
