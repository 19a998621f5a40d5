//! Issue 8: the gallery (every script in scripts/ runs, asserts, and `down` leaves
//! nothing behind; the README lists them all), the stdlib builders (observed with
//! `ip -j` and the real ping), relative imports, and errors inside stdlib modules.

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// The lab files of the gallery: scripts/*.rhai (modules live in subdirectories).
fn gallery() -> Vec<String> {
    rhai_files(&scripts_dir())
}

/// Everything a lab may leave behind in the harness's namespace: namespaces, links,
/// /run/netns and its mounts (SNAPSHOT), addresses, routes, firewall rules, sysctls.
const STATE: &str = r#"state() {
  snapshot
  ip -br addr | awk '{$2=""; print}'
  ip route; ip -6 route | grep -v '^fe80'
  iptables -S; iptables -t nat -S
  sysctl -n net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables 2>/dev/null
}
alive() { for p in $(grep '"entry":"proc"' "$1" | grep -o '"pid":[0-9][0-9]*' | cut -d: -f2 | sort -u); do
  s=$(awk '{print $3}' /proc/$p/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && echo "$p"; done; true; }"#;

/// Run one gallery script plainly inside the harness (its own network namespace and
/// /run), then `down`: the run must succeed, build something, and leave nothing.
fn run_script(name: &str) -> Result<(), String> {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
{STATE}
state > before
$NSS $SCRIPTS/{name}.rhai > out 2> err; rc=$?
section out; cat out
section err; cat err
[ $rc = 0 ] || exit 10
state > during
cp /run/nsscript/labs/{name}/ledger.jsonl ledger || exit 11
$NSS down {name} > down.out 2>&1 || {{ cat down.out; exit 12; }}
sleep 0.2
state > after
section built; diff before during > /dev/null && echo nothing || echo something
section diff; diff before after && echo same
section alive; alive ledger
"#
        ),
    ) else {
        return Ok(());
    };
    let why = match run.code {
        0 => {
            let mut problems = Vec::new();
            if run.section("built").trim() != "something" {
                problems.push("the lab changed nothing in its namespace".to_string());
            }
            if run.section("diff").trim() != "same" {
                problems.push(format!("down left this behind:\n{}", run.section("diff")));
            }
            if !run.section("alive").trim().is_empty() {
                problems.push(format!("processes still running after down: {}", run.section("alive").trim()));
            }
            if problems.is_empty() {
                return Ok(());
            }
            problems.join("\n")
        }
        10 => "the script failed".into(),
        11 => "no ledger after the run".into(),
        12 => "down failed".into(),
        c => format!("the harness failed with {c}"),
    };
    Err(format!("{name}: {why}\n--- stdout\n{}\n--- stderr\n{}", run.stdout, run.stderr))
}

#[test]
fn every_gallery_script_runs_asserts_and_leaves_nothing_behind() {
    // Decided here, before the workers start: they are not the test's thread.
    if !kernel() {
        return;
    }
    let names = gallery();
    assert!(names.len() >= 20, "the gallery has {} scripts: {names:?}", names.len());
    let queue = Arc::new(Mutex::new(names.clone()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    // Three at a time on two cores: fast, and the timing-sensitive labs (shaping) keep
    // their margins.
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (queue, failures) = (queue.clone(), failures.clone());
            std::thread::spawn(move || loop {
                let Some(name) = queue.lock().unwrap().pop() else { break };
                if let Err(e) = run_script(&name) {
                    failures.lock().unwrap().push(e);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} of {} gallery scripts failed:\n\n{}", failures.len(), names.len(), failures.join("\n\n"));
}

#[test]
fn the_readme_gallery_lists_every_script_once() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let start = readme.find("\n## Gallery").expect("README has a ## Gallery section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map(|i| i + 3).unwrap_or(section.len())];
    let mut listed = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("- `scripts/")) {
        let name = line.trim_start_matches("- `scripts/").split(".rhai`").next().unwrap().to_string();
        assert!(
            line.contains(".rhai` — ") && line.split(" — ").nth(1).is_some_and(|d| d.trim().len() > 10),
            "README gallery line without a description: {line}"
        );
        listed.push(name);
    }
    let unique: BTreeSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "a script is listed twice: {listed:?}");
    let scripts: BTreeSet<String> = gallery().into_iter().collect();
    let missing: Vec<_> = scripts.difference(&unique).collect();
    let stale: Vec<_> = unique.difference(&scripts).collect();
    assert!(missing.is_empty() && stale.is_empty(), "README ## Gallery: not listed {missing:?}; listed but no such script {stale:?}");
}

/// The IPv4 addresses (with prefix) of every link of a namespace, from `ip -j addr`.
fn v4(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().iter())
        .filter(|a| a["family"] == "inet" && a["local"] != "127.0.0.1")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

/// The two hosts (with prefix) of the i-th /30 of 10.BASE_A.BASE_B.0, counted by hand.
fn p2p(base_a: u32, base_b: u32, i: u32) -> (String, String) {
    let n = i * 4;
    (format!("10.{base_a}.{}.{}/30", base_b + n / 256, n % 256 + 1), format!("10.{base_a}.{}.{}/30", base_b + n / 256, n % 256 + 2))
}

#[test]
fn topology_builders_allocate_addresses_and_routes_and_every_node_reaches_every_address() {
    let lab = r#"import "topo" as topo;
topo::star(3, #{ subnet: "10.1.0.0/24" });
topo::chain(2, #{});
topo::ring(4, #{ prefix: "g" });
topo::mesh(4, #{});
topo::tree(2, 2, #{});
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS lab.rhai || exit 1
section netns; ip -j netns list
for ns in $(ip netns list | awk '{print $1}'); do section addr-$ns; ip -n $ns -j addr; section route-$ns; ip -n $ns -j route; done
section br; ip -j addr show br0
# The real ping, from every node of a topology to every IPv4 address of every node of it.
section pings
for group in "n1 n2 n3" "left r1 r2 right" "g1 g2 g3 g4" "m1 m2 m3 m4" "t1 t2 t3 t4 t5 t6 t7"; do
  targets=$(for ns in $group; do ip -n $ns -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1; done)
  for src in $group; do for t in $targets; do
    ip netns exec $src ping -c1 -W1 $t >/dev/null 2>&1 && echo "ok $src $t" || echo "FAIL $src $t"; done; done
done
# Topologies do not leak into each other: the star's nodes have no way to the ring.
section apart; ip netns exec n1 ping -c1 -W1 10.3.0.1 >/dev/null 2>&1 && echo reached || echo apart
$NSS down lab >/dev/null || exit 2
"#,
    ) else {
        return;
    };
    run.ok();
    let addr = |ns: &str| v4(&run.json(&format!("addr-{ns}")));
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    // star: the bridge is .1, node i is .(i+1), default route via the bridge.
    assert_eq!(v4(&run.json("br")), set(&["10.1.0.1/24"]));
    for i in 1..=3 {
        assert_eq!(addr(&format!("n{i}")), set(&[&format!("10.1.0.{}/24", i + 1)]));
    }
    // chain(2) in 10.2.0.0/16: left - r1 - r2 - right, /30 links in order.
    let links: Vec<(String, String)> = (0..3).map(|i| p2p(2, 0, i)).collect();
    assert_eq!(addr("left"), set(&[&links[0].0]));
    assert_eq!(addr("r1"), set(&[&links[0].1, &links[1].0]));
    assert_eq!(addr("r2"), set(&[&links[1].1, &links[2].0]));
    // ring(4) in 10.3.0.0/16: g1 - g2 - g3 - g4 - g1.
    assert_eq!(addr("g1"), set(&["10.3.0.1/30", "10.3.0.14/30"]));
    assert_eq!(addr("right"), set(&[&links[2].1]));
    // mesh(4): 6 links, each node on 3 of them.
    for i in 1..=4 {
        assert_eq!(addr(&format!("m{i}")).len(), 3, "m{i}: {:?}", addr(&format!("m{i}")));
    }
    // tree(2, 2): t1 has 2 links, t2 and t3 have 3, the 4 leaves 1 with a default route.
    for (ns, n) in [("t1", 2), ("t2", 3), ("t3", 3), ("t4", 1), ("t7", 1)] {
        assert_eq!(addr(ns).len(), n, "{ns}: {:?}", addr(ns));
    }
    let default_via = |ns: &str| {
        run.json(&format!("route-{ns}"))
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dst"] == "default")
            .and_then(|r| r["gateway"].as_str().map(String::from))
    };
    assert_eq!(default_via("left").as_deref(), Some(links[0].1.split('/').next().unwrap()), "left's default route");
    assert_eq!(default_via("t4").as_deref(), Some("10.5.0.9"), "t4's default route is its parent t2 (t2-t4 is the 3rd link, 10.5.0.8/30)");
    assert_eq!(default_via("r2"), None, "a router gets routes, not a default");
    let pings = run.section("pings");
    assert!(!pings.contains("FAIL"), "unreachable:\n{}", pings.lines().filter(|l| l.starts_with("FAIL")).collect::<Vec<_>>().join("\n"));
    // 3*3 (star) + 4*6 (chain) + 4*8 (ring) + 4*12 (mesh) + 7*12 (tree).
    assert_eq!(pings.matches("ok ").count(), 9 + 24 + 32 + 48 + 84, "pings:\n{pings}");
    assert_eq!(run.section("apart").trim(), "apart");
}

#[test]
fn roles_and_checks_build_the_nat_lab_and_the_matrix_fails_when_it_does_not_hold() {
    let lab = r#"import "roles" as roles;
import "checks" as checks;
let rt = roles::nat_router(#{ inside: "10.0.0.0/24", outside: "192.168.100.11/24", upstream: "192.168.100.1", dhcp: ["10.0.0.151", "10.0.0.160"] });
let net = roles::upstream(rt.br_ex, #{ addr: "192.168.100.1/24" });
let vm1 = roles::vm(rt.br_in, "vm1", #{ addr: "10.0.0.1/24", gw: rt.gateway });
let vm2 = roles::vm(rt.br_in, "vm2", #{ dhcp: true });
let inet = #{ ns: net.far, addr: net.far_ip };
checks::matrix([vm1, vm2, inet], #{ vm1: "*", vm2: "*" });
let lan = roles::dhcp_lan(2, #{ subnet: "10.8.0.0/24" });
checks::all(lan.nodes);
if is_def_var("wrong") { checks::matrix([vm1, vm2, inet], #{ vm1: "*", vm2: ["vm1"], inet: ["vm1"] }); }
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS lab.rhai || exit 1
section rt; ip -n rt -j addr
section nat; ip netns exec rt iptables -t nat -S POSTROUTING
section fwd; ip netns exec rt sysctl -n net.ipv4.ip_forward
section vm2; ip -n vm2 -j addr
section c1; ip -n c1 -j addr
section inet_routes; ip -n inet -j route
section pings
ip netns exec vm1 ping -c1 -W1 203.0.113.1 >/dev/null && echo "vm1 inet ok" || echo "vm1 inet FAIL"
ip netns exec vm2 ping -c1 -W1 203.0.113.1 >/dev/null && echo "vm2 inet ok" || echo "vm2 inet FAIL"
ip netns exec inet ping -c1 -W1 10.0.0.1 >/dev/null && echo "inet vm1 REACHED" || echo "inet vm1 none"
ip netns exec c1 ping -c1 -W1 10.8.0.1 >/dev/null && echo "c1 server ok" || echo "c1 server FAIL"
$NSS down lab >/dev/null || exit 2
section wrong; $NSS --sandbox lab.rhai --var wrong=1 2>&1; echo "rc=$?"
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(v4(&run.json("rt")), ["10.0.0.254/24", "192.168.100.11/24"].iter().map(|s| s.to_string()).collect());
    assert!(
        run.section("nat").contains("-A POSTROUTING -s 10.0.0.0/24 ! -d 10.0.0.0/24 -j SNAT --to-source 192.168.100.11"),
        "{}",
        run.section("nat")
    );
    assert_eq!(run.section("fwd").trim(), "1");
    let vm2: Vec<String> = v4(&run.json("vm2")).into_iter().collect();
    let last: u32 = vm2[0].split('/').next().unwrap().rsplit('.').next().unwrap().parse().unwrap();
    assert!(vm2[0].starts_with("10.0.0.") && (151..=160).contains(&last), "vm2's lease {vm2:?}");
    assert!(v4(&run.json("c1")).iter().all(|a| a.starts_with("10.8.0.")), "c1: {:?}", v4(&run.json("c1")));
    let inet_routes = run.json("inet_routes");
    let dests: Vec<&str> =
        inet_routes.as_array().unwrap().iter().filter_map(|r| r["dst"].as_str()).filter(|d| !d.starts_with("fe80")).collect();
    assert_eq!(dests, ["192.168.100.0/24", "203.0.113.0/24"], "the far host routes back to the outside network only");
    let pings = run.section("pings");
    for want in ["vm1 inet ok", "vm2 inet ok", "inet vm1 none", "c1 server ok"] {
        assert!(pings.contains(want), "{want} missing in\n{pings}");
    }
    // A matrix that does not hold fails, naming the pairs both ways.
    // (miette wraps long messages: compare the words.)
    let wrong = run.section("wrong").split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ");
    assert!(wrong.contains("rc=1"), "{wrong}");
    assert!(wrong.contains("vm2 -> inet: must not reach it, but it answered"), "{wrong}");
    assert!(wrong.contains("inet -> vm1: must reach it, got no answer"), "{wrong}");
    assert!(wrong.contains("stdlib/checks.rhai"), "{wrong}");
}

#[test]
fn a_lab_imports_files_relative_to_itself_from_any_directory_and_modules_their_neighbours() {
    // helper.rhai imports its own neighbour: relative to itself, not to the lab.
    let helper = "import \"./net\" as net;\nfn pair(a, b) {\n    connect(netns(a), netns(b), #{ ifname: \"eth0\", peer: \"eth0\", addr: net::addr(1), peer_addr: net::addr(2) });\n    \"made \" + a + \"-\" + b\n}\n";
    let net = "fn addr(i) { cidr_addr(\"10.66.0.0/24\", i) }\n";
    let lab = "import \"./lib/helper\" as h;\nimport \"checks\" as checks;\nprint(h::pair(\"ra\", \"rb\"));\nchecks::reach(netns(\"ra\"), [\"10.66.0.2\"]);\n";
    let Some(run) = isolated(
        &[("labs/rel.rhai", lab), ("labs/lib/helper.rhai", helper), ("labs/lib/net.rhai", net)],
        r#"D=$PWD
cd / && $NSS $D/labs/rel.rhai || exit 1
section made; ip -n ra -j addr
section ping; ip netns exec rb ping -c1 -W1 10.66.0.1 >/dev/null && echo ok || echo FAIL
$NSS down rel >/dev/null || exit 2
section missing; cd $D/labs && printf 'import "./nope" as n;\n' > bad.rhai && $NSS --sandbox bad.rhai 2>&1; echo "rc=$?"
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("made ra-rb"), "{}", run.stdout);
    assert!(v4(&run.json("made")).contains("10.66.0.1/24"));
    assert_eq!(run.section("ping").trim(), "ok");
    let missing = run.section("missing");
    assert!(missing.contains("cannot find module") && missing.contains("rc=1"), "{missing}");
}

/// The line (1-based) of the first line of stdlib/NAME.rhai containing `needle`.
fn stdlib_line(module: &str, needle: &str) -> usize {
    let src = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("stdlib/{module}.rhai"))).unwrap();
    src.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in stdlib/{module}.rhai")) + 1
}

#[test]
fn an_error_inside_a_stdlib_function_shows_the_module_file_and_line_and_the_call_chain() {
    let lab = "import \"topo\" as topo;\n\nlet lab = topo::chain(2, #{ subnet: \"10.2.0.0/29\" });\n";
    let Some(run) = isolated(&[("lab.rhai", lab)], "$NSS --sandbox lab.rhai; echo \"rc=$?\"") else { return };
    let err = &run.stderr;
    assert!(run.stdout.contains("rc=1"), "{}\n{err}", run.stdout);
    // Innermost: cidr_subnet in p2p(), then the call in chain(), then the lab's line 3.
    let inner = stdlib_line("topo", "let subnet = cidr_subnet(block, plen, i);");
    let call = stdlib_line("topo", "with_groups(p2p(names, edges, o))");
    assert!(err.contains("has no /30 subnet number 2"), "{err}");
    assert!(err.contains(&format!("[stdlib/topo.rhai:{inner}:")), "no stdlib/topo.rhai:{inner} in\n{err}");
    assert!(err.contains(&format!("[stdlib/topo.rhai:{call}:")), "no stdlib/topo.rhai:{call} in\n{err}");
    assert!(err.contains("[lab.rhai:3:"), "no lab.rhai:3 in\n{err}");
    assert!(
        err.find("stdlib/topo.rhai").unwrap() < err.find("[lab.rhai:3:").unwrap(),
        "the chain goes from the module out to the lab:\n{err}"
    );
}

#[test]
fn an_error_inside_a_relative_import_shows_its_file_and_line() {
    let module = "fn boom(x) {\n    if x > 1 {\n        throw \"boom in bad\";\n    }\n}\n";
    let lab = "import \"./lib/bad\" as b;\nb::boom(5);\n";
    // From the lab's directory, then from / (the paths shown follow the lab's as given).
    let Some(run) = isolated(
        &[("lab.rhai", lab), ("lib/bad.rhai", module)],
        "$NSS --sandbox lab.rhai 2>&1; echo \"rc=$?\"; section other; D=$PWD; cd / && $NSS --sandbox $D/lab.rhai 2>&1; echo \"rc=$?\"",
    ) else {
        return;
    };
    let here = run.stdout.split("==other==").next().unwrap();
    let other = run.section("other");
    for err in [here, other.as_str()] {
        assert!(err.contains("rc=1"), "{err}");
        assert!(err.contains("boom in bad"), "{err}");
        assert!(err.contains("lib/bad.rhai:3:9]"), "no lib/bad.rhai:3 in\n{err}");
        assert!(err.contains("3 |         throw \"boom in bad\";"), "the module's line is not shown:\n{err}");
        assert!(err.contains("in the call to boom()"), "{err}");
    }
    assert!(here.contains("[lab.rhai:2:4]") && here.contains("[lib/bad.rhai:3:9]"), "{here}");
    assert!(other.contains("/lab.rhai:2:4]") && other.contains("/lib/bad.rhai:3:9]"), "{other}");
}
