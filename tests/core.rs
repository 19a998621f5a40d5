//! Issue 2: the core API, the seed labs, down (also after SIGKILL), rollback, bad input.

use crate::support::*;
use serde_json::Value;

/// The names in an `ip -j link` array.
fn names(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect()
}

fn link<'a>(v: &'a Value, name: &str) -> &'a Value {
    v.as_array().unwrap().iter().find(|l| l["ifname"] == name).unwrap_or_else(|| panic!("no link {name} in {v}"))
}

/// `10.0.0.1/24`-style addresses of one link in an `ip -j addr` array.
fn addrs(v: &Value, name: &str) -> Vec<String> {
    link(v, name)["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["scope"] != "link")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

#[test]
fn seed004_bridge_lab_builds_pings_and_goes_down() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
$NSS $SCRIPTS/seed004_bridge.rhai || exit 1
section netns; ip -j netns list
section bridge; ip -j link show master test-bridge
section br_addr; ip -j addr show test-bridge
for i in 1 2 3; do section addr$i; ip -n namespace$i -j addr; section route$i; ip -n namespace$i -j route; done
section pings
for i in 1 2 3; do for t in 172.19.0.1 172.19.0.2 172.19.0.3 172.19.0.4; do
  ip netns exec namespace$i ping -c1 -W1 $t >/dev/null && echo "ok $i $t" || echo "FAIL $i $t"; done; done
section ls; $NSS ls
$NSS down seed004_bridge || exit 1
snapshot > after
section diff; diff before after && echo same
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let mut netns: Vec<String> = run.json("netns").as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect();
    netns.sort();
    assert_eq!(netns, ["namespace1", "namespace2", "namespace3"]);
    assert_eq!(names(&run.json("bridge")).len(), 3, "three ports on test-bridge");
    assert_eq!(addrs(&run.json("br_addr"), "test-bridge"), ["172.19.0.1/24"]);
    for i in 1..=3 {
        let a = run.json(&format!("addr{i}"));
        let odd = format!("veth{}", 2 * i - 1);
        assert_eq!(addrs(&a, &odd)[0], format!("172.19.0.{}/24", i + 1));
        assert_eq!(link(&a, "lo")["operstate"], "UNKNOWN", "lo is up");
        let routes = run.json(&format!("route{i}"));
        assert!(
            routes.as_array().unwrap().iter().any(|r| r["dst"] == "default" && r["gateway"] == "172.19.0.1"),
            "default route in {routes}"
        );
    }
    let pings = run.section("pings");
    assert_eq!(pings.matches("ok ").count(), 12, "everyone pings everyone and the gateway:\n{pings}");
    assert!(run.section("ls").contains("seed004_bridge"));
    assert_eq!(run.section("diff").trim(), "same", "down leaves the machine as before");
}

#[test]
fn seed002_veth_lab_runs_in_the_sandbox_and_leaves_nothing() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
$NSS --sandbox $SCRIPTS/seed002_veth.rhai || exit 1
snapshot > after
section diff; diff before after && echo same
section ledger; ls /run/nsscript/labs 2>/dev/null | wc -l
"#
        ),
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("ping ok"), "{}", run.stdout);
    assert_eq!(run.section("diff").trim(), "same");
    assert_eq!(run.section("ledger").trim(), "0", "a sandboxed run keeps no ledger outside");
}

const API_LAB: &str = r#"
// Every function of the core API, observed afterwards with ip -j.
let h = host();
assert(h.name == "", "host() has no name");
let a = netns("a").forward(true);
let b = netns("b");
a.sysctl("net.ipv4.conf.all.rp_filter", 2);

// seed style: pair in the host, ends moved, renamed, configured
let v = veth("va", "vb");
assert(v.name == "va", "veth returns end a");
assert(v.peer().name == "vb", "peer() of va is vb");
let va = link("va").move_to(a);
let vb = link("vb").move_to(b);
let x = va.rename("x0").addr("10.9.0.1/24").addr("fd00:9::1/64").mtu(1400).mac("02:00:00:00:00:0a").up();
let y = vb.addr("10.9.0.2/24").up();
assert(x.name == "x0", "rename returns the renamed handle");

// bridges in the host and inside a namespace
let br = bridge("br-h").addr("10.8.0.1/24");
let brn = bridge(b, "br-n");
let c = netns("c");
let ce = connect(c, br, #{ addr: "10.8.0.2/24", gw: "10.8.0.1", mtu: 1450 });
assert(ce.name == "eth0", "default ifname is eth0");
let ce1 = connect(c, br, #{ peer: "c-second" });
assert(ce1.name == "eth1", "next free is eth1");
let p2p = connect(c, a, #{ ifname: "to-a", addr: "10.7.0.2/30", peer_addr: "10.7.0.1/30" });
connect(c, brn, #{ ifname: "to-brn" });

// a link enslaved and released, one taken down, one deleted
veth("vm", "vn");
link("vm").master(br).up();
link("vn").master("br-h");
link("vn").nomaster().down();
veth("vdel1", "vdel2");
link("vdel2").delete();

// routes: default, a network, via a device
c.route("10.50.0.0/16", "10.8.0.1");
b.route("10.60.0.0/16", "vb");
a.route("default", "10.9.0.2");

// exec with a shell string and an argv array
let r = a.exec("echo hello; echo oops >&2; exit 3");
assert(r.code == 3 && r.stdout == "hello\n" && r.stderr == "oops\n", `exec string: ${r}`);
let r = exec(b, ["ip", "-br", "link", "show", "vb"]);
assert(r.code == 0 && r.stdout.contains("vb"), `exec argv: ${r}`);
let r = a.exec(["cat", "/sys/class/net/x0/mtu"]);
assert(r.stdout == "1400\n", `exec sees the namespace's /sys: ${r}`);

// queries
let ls = links(a);
assert(ls.filter(|l| l.name == "x0" && l.up && l.mtu == 1400 && l.mac == "02:00:00:00:00:0a").len() == 1, `links(a): ${ls}`);
let ad = addrs(a);
assert(ad.filter(|x| x.link == "x0" && x.addr == "10.9.0.1/24").len() == 1, `addrs(a): ${ad}`);
let rs = routes(c);
assert(rs.filter(|x| x.dest == "default" && x.via == "10.8.0.1").len() == 1, `routes(c): ${rs}`);
assert(rs.filter(|x| x.dest == "10.50.0.0/16").len() == 1, `routes(c): ${rs}`);
assert(links(h).filter(|l| l.name == "vm" && l.master == "br-h").len() == 1, "vm on br-h");
assert(ns("a").name == "a", "ns() finds an existing namespace");
print(`lab=${lab()}`);
"#;

#[test]
fn every_core_api_function_shows_in_the_kernel() {
    let Some(run) = isolated(
        &[("api.rhai", API_LAB)],
        r#"
$NSS api.rhai || exit 1
section a_link; ip -n a -j addr
section a_fwd; ip netns exec a sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.rp_filter
section b_fwd; ip netns exec b sysctl -n net.ipv4.ip_forward
section b_link; ip -n b -j link
section b_route; ip -n b -j route
section a_route; ip -n a -j route
section c_link; ip -n c -j -d link
section c_addr; ip -n c -j addr
section c_route; ip -n c -j route
section host_link; ip -j link
section host_br; ip -j link show master br-h
section ping; ip netns exec c ping -c1 -W1 10.8.0.1 >/dev/null && echo br-ok; ip netns exec c ping -c1 -W1 10.7.0.1 >/dev/null && echo p2p-ok; ip netns exec a ping -c1 -W1 10.9.0.2 >/dev/null && echo veth-ok; ip netns exec a ping -c1 -W1 fd00:9::1 >/dev/null && echo v6-ok
$NSS down api || exit 1
section after; ip netns list; ip -br link | awk '{print $1}'
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("lab=api"));
    let a = run.json("a_link");
    let x0 = link(&a, "x0");
    assert_eq!(x0["mtu"], 1400);
    assert_eq!(x0["address"], "02:00:00:00:00:0a");
    let flags = x0["flags"].as_array().unwrap();
    assert!(flags.contains(&"UP".into()) && flags.contains(&"LOWER_UP".into()), "x0 up with carrier: {x0}");
    let a_addrs = addrs(&a, "x0");
    assert!(a_addrs.contains(&"10.9.0.1/24".to_string()) && a_addrs.contains(&"fd00:9::1/64".to_string()), "{a_addrs:?}");
    let v6 = x0["addr_info"].as_array().unwrap().iter().find(|i| i["local"] == "fd00:9::1").unwrap();
    assert!(v6.get("tentative").is_none(), "IPv6 address added without DAD: {v6}");
    assert_eq!(run.section("a_fwd").split_whitespace().collect::<Vec<_>>(), ["1", "1", "2"]);
    assert_eq!(run.section("b_fwd").trim(), "0", "forwarding is set explicitly only where asked");
    let b = run.json("b_link");
    assert!(link(&b, "br-n")["flags"].as_array().unwrap().contains(&"UP".into()), "bridges come up");
    assert!(names(&b).contains(&"vb".to_string()));
    let b_routes = run.json("b_route");
    assert!(b_routes.as_array().unwrap().iter().any(|r| r["dst"] == "10.60.0.0/16" && r["dev"] == "vb"), "{b_routes}");
    let a_routes = run.json("a_route");
    assert!(a_routes.as_array().unwrap().iter().any(|r| r["dst"] == "default" && r["gateway"] == "10.9.0.2"), "{a_routes}");
    let c = run.json("c_link");
    let eth0 = link(&c, "eth0");
    assert_eq!(eth0["mtu"], 1450);
    assert_eq!(eth0["operstate"], "UP");
    assert_eq!(eth0["linkinfo"]["info_kind"], "veth");
    assert!(
        names(&c).contains(&"eth1".to_string()) && names(&c).contains(&"to-a".to_string()) && names(&c).contains(&"to-brn".to_string())
    );
    assert_eq!(addrs(&run.json("c_addr"), "to-a"), ["10.7.0.2/30"]);
    let host = run.json("host_link");
    let host_names = names(&host);
    for n in ["br-h", "c-eth0", "c-second", "vm", "vn", "vdel1"] {
        if n == "vdel1" {
            assert!(!host_names.contains(&n.to_string()), "deleting vdel2 removed its peer vdel1");
        } else {
            assert!(host_names.contains(&n.to_string()), "{n} in host links {host_names:?}");
        }
    }
    assert!(!host_names.contains(&"va".to_string()) && !host_names.contains(&"vb".to_string()), "moved ends left the host");
    assert_eq!(link(&host, "vn")["operstate"], "DOWN");
    let ports = names(&run.json("host_br"));
    assert!(ports.contains(&"vm".to_string()) && ports.contains(&"c-eth0".to_string()) && !ports.contains(&"vn".to_string()), "{ports:?}");
    let ping = run.section("ping");
    for p in ["br-ok", "p2p-ok", "veth-ok", "v6-ok"] {
        assert!(ping.contains(p), "{p} missing from pings:\n{ping}");
    }
    assert_eq!(run.section("after").trim(), "lo", "down removed everything");
}

#[test]
fn down_after_sigkill_leaves_the_machine_as_before() {
    let lab = r#"
for i in 1..=6 { let n = netns(`k${i}`); connect(n, bridge("kbr"), #{ addr: `10.3.0.${i}/24` }); }
print("built"); 
sleep(60000);
"#;
    let Some(run) = isolated(
        &[("killme.rhai", lab)],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
$NSS killme.rhai > out 2>&1 &
pid=$!
for i in $(seq 100); do grep -q built out && break; sleep 0.1; done
kill -9 $pid; wait $pid
section up; ip netns list | wc -l
$NSS down killme || exit 1
snapshot > after
section diff; diff before after && echo same
section ls; $NSS ls
"#
        ),
    ) else {
        return;
    };
    run.ok();
    assert_eq!(run.section("up").trim(), "6", "the killed run had built its lab");
    assert_eq!(run.section("diff").trim(), "same", "down after SIGKILL restores the machine");
    assert_eq!(run.section("ls").trim(), "", "no lab left");
}

#[test]
fn a_failing_script_rolls_back_and_exits_non_zero() {
    let lab = r#"
let a = netns("ra");
let b = netns("rb");
connect(a, b, #{ addr: "10.1.1.1/24", peer_addr: "10.1.1.2/24" });
bridge("rbr");
a.exec("false");
throw "the lab is wrong";
"#;
    let Some(run) = isolated(
        &[("fails.rhai", lab)],
        &format!(
            r#"{SNAPSHOT}
snapshot > before
$NSS fails.rhai; echo "code=$?"
snapshot > after
section diff; diff before after && echo same
section kept; $NSS --keep fails.rhai; ip netns list | wc -l; $NSS down fails >/dev/null; ip netns list | wc -l
"#
        ),
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("code=1"), "{}", run.stdout);
    assert!(run.stderr.contains("the lab is wrong") && run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_eq!(run.section("diff").trim(), "same");
    assert_eq!(run.section("kept").split_whitespace().collect::<Vec<_>>(), ["2", "0"], "--keep keeps, down removes");
}

#[test]
fn a_lab_that_is_up_is_not_built_twice_and_replace_rebuilds_it() {
    let lab = r#"let n = netns("twice"); connect(n, bridge("tbr"), #{ addr: "10.4.0.2/24" });"#;
    let Some(run) = isolated(
        &[("twice.rhai", lab)],
        r#"
$NSS twice.rhai || exit 1
section again; $NSS twice.rhai; echo "code=$?"
section replace; $NSS --replace twice.rhai && echo replaced
ip netns list | wc -l
$NSS down twice
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(
        run.section("again").contains("code=2") && run.stderr.contains("lab \"twice\" is already up") && run.stderr.contains("--replace"),
        "{}",
        run.stderr
    );
    assert!(run.section("replace").contains("replaced"));
}

#[test]
fn names_vars_and_executable_lab_files() {
    let lab = "#!/usr/bin/env nsscript\nlab(\"named\");\nlet n = netns(`v-${tag}`);\nprint(`count=${count + 1} flag=${flag}`);\n";
    let Some(run) = isolated(
        &[("exe.rhai", lab)],
        r#"
chmod +x exe.rhai
PATH=$(dirname $NSS):$PATH ./exe.rhai --var tag=hello --var count=41 --var flag=true || exit 1
section ls; $NSS ls
section netns; ip netns list
$NSS down named
$NSS --name other exe.rhai --var tag=x --var count=0 --var flag=false >/dev/null || exit 1
section ls2; $NSS ls
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("count=42 flag=true"), "vars arrive typed: {}", run.stdout);
    assert!(run.section("ls").starts_with("named\t"), "lab(\"named\") names the lab");
    assert!(run.section("netns").contains("v-hello"));
    // lab("named") in the script wins over --name? No: the script's lab() is the last word.
    assert!(run.section("ls2").starts_with("named\t"), "{}", run.section("ls2"));
}

#[test]
fn the_plain_repl_keeps_variables_and_survives_errors() {
    let Some(run) = isolated(
        &[],
        r#"
printf 'let r = netns("rp1");\nfn two(x) {\n  x * 2\n}\nlink(r, "nope")\nprint(two(21));\nprint(r.name);\n' | $NSS repl --name rl
section netns; ip netns list
$NSS down rl
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("42") && run.stdout.contains("rp1"), "{}", run.stdout);
    assert!(run.stderr.contains("unknown link \"nope\""), "{}", run.stderr);
    assert!(run.section("netns").contains("rp1"));
}

/// Run a bad lab; return the rendered error and what is left (netns + links); `None`
/// where kernel tests are skipped.
fn bad(lab: &str, setup: &str) -> Option<(Run, String)> {
    let run = isolated(
        &[("bad.rhai", lab)],
        &format!(
            r#"{setup}
$NSS bad.rhai 2>err; echo "code=$?"
section err; cat err
section left; ip netns list; ip -br link | awk '{{print $1}}'
"#
        ),
    )?;
    let left = run.section("left");
    Some((run, left))
}

#[test]
fn bad_input_malformed_cidr() {
    let Some((run, left)) = bad("let n = netns(\"m1\");\nlink(n, \"lo\").addr(\"10.0.0.300/24\");\n", "") else { return };
    let err = run.section("err");
    assert!(run.stdout.contains("code=1"));
    assert!(err.contains("malformed address \"10.0.0.300/24\"") && err.contains("bad.rhai:2") && err.contains("help:"), "{err}");
    assert_eq!(left.trim(), "lo", "rolled back: {left}");
}

#[test]
fn bad_input_interface_name_too_long() {
    let Some((run, left)) = bad("netns(\"t1\");\nbridge(\"a-very-long-bridge-name\");\n", "") else { return };
    let err = run.section("err");
    assert!(
        err.contains("invalid interface name \"a-very-long-bridge-name\"") && err.contains("at most 15") && err.contains("bad.rhai:2"),
        "{err}"
    );
    assert_eq!(left.trim(), "lo");
}

#[test]
fn bad_input_unknown_namespace_and_link() {
    let Some((run, left)) = bad("let b = bridge(\"ub\");\nlet x = ns(\"ghost\");\n", "") else { return };
    let err = run.section("err");
    assert!(err.contains("unknown namespace \"ghost\"") && err.contains("bad.rhai:2"), "{err}");
    assert_eq!(left.trim(), "lo");
    let Some((run, left)) = bad("let n = netns(\"ul\");\nlink(n, \"eth9\").up();\n", "") else { return };
    let err = run.section("err");
    assert!(err.contains("unknown link \"eth9\"") && err.contains("links there: lo"), "{err}");
    assert_eq!(left.trim(), "lo");
}

#[test]
fn bad_input_names_that_exist_and_are_not_ours_are_never_touched() {
    let Some((run, left)) = bad("let n = netns(\"mine\");\nbridge(\"theirs\");\n", "ip link add theirs type bridge") else { return };
    let err = run.section("err");
    assert!(
        err.contains("cannot create bridge \"theirs\"") && err.contains("File exists") && err.contains("does not belong to this lab"),
        "{err}"
    );
    assert_eq!(left.split_whitespace().collect::<Vec<_>>(), ["lo", "theirs"], "their bridge stays, our netns goes");
    let Some((run, left)) = bad("netns(\"taken\");\n", "ip netns add taken") else { return };
    let err = run.section("err");
    assert!(err.contains("cannot create namespace \"taken\"") && err.contains("already exists"), "{err}");
    assert!(left.contains("taken"), "their namespace stays: {left}");
    let Some((run, _)) = bad("link(\"lo\").down();\n", "") else { return };
    assert!(run.section("err").contains("refusing to change link \"lo\""), "{}", run.section("err"));
}

#[test]
fn bad_input_syntax_error_shows_the_span_and_builds_nothing() {
    let Some((run, left)) = bad("netns(\"s1\");\nlet x = ;\n", "") else { return };
    let err = run.section("err");
    assert!(run.stdout.contains("code=1"));
    assert!(err.contains("syntax error") && err.contains("bad.rhai:2"), "{err}");
    assert!(err.contains("nothing was built"), "{err}");
    assert_eq!(left.trim(), "lo");
}

#[test]
fn bad_input_error_inside_a_script_function_shows_the_call_chain() {
    let lab = "fn make(name) {\n    netns(name)\n}\nfn lab_of(n) {\n    make(n)\n}\nlab_of(\"ok1\");\nlab_of(\"bad/name\");\n";
    let Some((run, left)) = bad(lab, "") else { return };
    let err = run.section("err");
    assert!(err.contains("invalid namespace name \"bad/name\"") && err.contains("contains '/'"), "{err}");
    assert!(err.contains("in the call to lab_of()") && err.contains("in the call to make()"), "{err}");
    assert!(err.contains("bad.rhai:2") && err.contains("bad.rhai:8"), "{err}");
    assert_eq!(left.trim(), "lo", "ok1 was rolled back");
}

#[test]
fn bad_input_unknown_function_suggests_the_right_one() {
    let Some((run, _)) = bad("let n = netnss(\"x\");\n", "") else { return };
    let err = run.section("err");
    assert!(err.contains("unknown function netnss") && err.contains("did you mean netns(name)"), "{err}");
}

#[test]
fn not_root_is_detected_up_front() {
    // As root: as nobody, inside the test's own namespaces. As a user who is not root
    // (no namespaces to hide in, and none needed: such a user cannot build anything):
    // as that user, plainly; the machine's namespaces are what must stay as they were.
    let lab = "netns(\"nr\");\n";
    let (run, left, want_left) = if why_no_kernel().is_none() {
        let Some((run, left)) = bad(lab, "chmod 755 .; chmod 644 bad.rhai; NSS=\"as_nobody $NSS\"") else { return };
        (run, left, "lo".to_string())
    } else {
        let run = plain(
            &[("bad.rhai", lab)],
            "section before; ip netns list\nsection code; $NSS bad.rhai 2>err; echo \"code=$?\"\nsection err; cat err\nsection left; ip netns list\n",
        );
        let (left, before) = (run.section("left"), run.section("before"));
        (run, left, before)
    };
    let err = run.section("err");
    assert!(run.stdout.contains("code=2"), "{}", run.stdout);
    assert!(err.contains("needs root") && err.contains("CAP_NET_ADMIN") && err.contains("sudo"), "{err}");
    assert_eq!(left.trim(), want_left.trim(), "nothing was built");
}

#[test]
fn the_readme_reference_is_what_nsscript_functions_prints() {
    let out = std::process::Command::new(bin()).arg("functions").output().expect("nsscript runs");
    let table = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(table.lines().count() > 40, "the registry lists the API:\n{table}");
    assert!(readme.contains(table.as_ref()), "README.md's function reference differs from `nsscript functions`: paste its output");
}

/// Queued requests (link up, addresses, routes) reach the kernel in bursts, after the
/// call that made them returned: a refusal found then still points at that call, in
/// the lab or in a user function, and the lab is rolled back.
#[test]
fn a_refusal_found_at_a_later_flush_points_at_the_call_that_asked() {
    let lab = "let a = netns(\"q1\");\na.route(\"default\", \"10.9.9.1\");\nlet b = netns(\"q2\");\nconnect(b, bridge(\"qbr\"), #{ addr: \"10.8.0.2/24\" });\n";
    let Some((run, left)) = bad(lab, "") else { return };
    let err = run.section("err");
    assert!(run.stdout.contains("code=1"), "{}", run.stdout);
    assert!(err.contains("cannot add route default via 10.9.9.1") && err.contains("ENETUNREACH"), "{err}");
    assert!(err.contains("bad.rhai:2:"), "points at line 2, where the route was asked for: {err}");
    assert_eq!(left.trim(), "lo", "rolled back: {left}");

    let lab = "fn plug(ns) {\n    ns.route(\"10.5.0.0/16\", \"10.9.9.1\")\n}\nlet a = netns(\"q3\");\nplug(a);\nlet b = netns(\"q4\");\nsleep(1);\n";
    let Some((run, left)) = bad(lab, "") else { return };
    let err = run.section("err");
    assert!(err.contains("cannot add route 10.5.0.0/16 via 10.9.9.1") && err.contains("bad.rhai:2:"), "{err}");
    assert_eq!(left.trim(), "lo", "rolled back: {left}");
}

/// Rough edges of issue 13: a plan refuses what the run refuses (the host's own lo is
/// not the lab's) and writes a pause into the walkthrough instead of waiting itself; in
/// the sandbox, `host()` is a namespace of the lab's with lo up; a name the lab holds
/// already is reported as the lab's; `nsscript --sandbox repl` says where the options go.
#[test]
fn plans_refuse_what_runs_refuse_and_do_not_sleep_and_the_sandbox_host_has_lo_up() {
    let Some(run) = isolated(
        &[
            ("lo.rhai", "link(\"lo\").down();\n"),
            ("pause.rhai", "netns(\"p\");\nsleep(4000);\nprint(\"after the pause\");\n"),
            ("local.rhai", "let p = ping(host(), \"127.0.0.1\");\nprint(`local ${p.ok} ${p.error}`);\n"),
            ("twice.rhai", "bridge(\"tb\");\nbridge(netns(\"t\"), \"x\");\nveth(\"tb\", \"tc\");\n"),
        ],
        r#"
section plan-lo; $NSS plan lo.rhai 2>&1; echo "code=$?"
section plan-pause; $NSS plan pause.rhai 2>&1; echo "code=$?"
section local; $NSS --sandbox local.rhai 2>&1; echo "code=$?"
section twice; $NSS --sandbox twice.rhai 2>&1; echo "code=$?"
section plan-twice; $NSS plan twice.rhai 2>&1; echo "code=$?"
section repl-first; $NSS --sandbox repl 2>&1; echo "code=$?"
"#,
    ) else {
        return;
    };
    let lo = run.section("plan-lo");
    assert!(lo.contains("nsscript::not_owned") && lo.contains("refusing to change link \"lo\"") && lo.contains("code=1"), "{lo}");
    let pause = run.section("plan-pause");
    assert!(pause.contains("\nsleep 4\n") && pause.contains("after the pause") && pause.contains("code=0"), "{pause}");
    let local = run.section("local");
    assert!(local.contains("local true") && local.contains("code=0"), "{local}");
    for section in ["twice", "plan-twice"] {
        let twice = run.section(section);
        assert!(twice.contains("nsscript::name_taken") && twice.contains("this lab already made a link named tb"), "{section}: {twice}");
    }
    let repl = run.section("repl-first");
    assert!(repl.contains("the options of `repl` come after it: `nsscript repl --sandbox`") && repl.contains("code=2"), "{repl}");
}

/// A script's `sleep()` is a pause for the lab to settle, not a place where SIGTERM
/// waits: the run stops at once, rolls back and exits 143 (a `timeout 20` around it
/// would answer 124 if the 60 s pause ran to its end).
#[test]
fn sigterm_during_sleep_stops_the_run_and_rolls_back() {
    let Some(run) = isolated(
        &[("nap.rhai", "netns(\"nap\");\nsleep(60000);\n")],
        r#"
timeout 20 $NSS nap.rhai > out 2>&1 & p=$!
for _ in $(seq 100); do ip netns list | grep -q nap && break; sleep 0.05; done
sleep 0.2; kill -TERM $(pgrep -P $p) 2>/dev/null; wait $p; echo "code=$?"
section left; ip netns list
section out; cat out
"#,
    ) else {
        return;
    };
    assert!(run.stdout.contains("code=143"), "{}", run.stdout);
    assert_eq!(run.section("left").trim(), "", "{}", run.stdout);
    assert!(run.section("out").contains("rolled back"), "{}", run.stdout);
}
