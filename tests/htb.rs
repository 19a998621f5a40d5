//! Issue 15: HTB. The qdisc, its classes and its filters as `tc` shows them, and real
//! traffic: two bulk TCP transfers at once, one per class, each near its class's rate;
//! a class with a ceil above its rate borrowing up to it; unshape taking it away.

use crate::support::*;
use serde_json::Value;

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("not an array: {v}"))
}

/// `rate NAME ADDR BYTES`: receive on NAME, send BYTES from office to ADDR; the rate
/// the receiver saw (bit/s, from its first byte to its last) goes to NAME.rate.
const RATE: &str = r#"rate() {
  ip netns exec $1 timeout 40 socat -u TCP-LISTEN:5001,reuseaddr STDOUT | (head -c 1 >/dev/null; s=$(date +%s%N); n=$(wc -c); e=$(date +%s%N); echo $(( n * 8 * 1000 / ((e - s) / 1000000) ))) > $1.rate &
  (sleep 0.5; head -c $3 /dev/zero | ip netns exec office socat -u - TCP:$2:5001) >/dev/null 2>&1 &
}"#;

#[test]
fn htb_classes_filters_and_rates_are_the_kernels_and_the_traffics() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{RATE}
$NSS $SCRIPTS/htb_per_destination.rhai > lab.txt 2>&1 || {{ cat lab.txt; exit 1; }}
section lab; cat lab.txt
section qdisc; tc -n office -j qdisc show dev eth0
section class; tc -n office class show dev eth0
section filter; tc -n office -j filter show dev eth0
# Both classes at once.
rate s1 10.60.0.2 6000000; rate s2 10.60.0.3 18000000; wait
section both; echo "$(cat s1.rate) $(cat s2.rate)"
# A third address (unclassified: the default class 1:30, 1 Mbit/s, ceil 5 Mbit/s).
ip -n s1 addr add 10.60.0.9/24 dev eth0
rate s1 10.60.0.9 2000000; wait
section borrow; cat s1.rate
$NSS down htb_per_destination >/dev/null || exit 1
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let qdisc = run.json("qdisc");
    let q = &arr(&qdisc)[0];
    assert_eq!(q["kind"], "htb", "{qdisc}");
    assert_eq!(q["handle"], "1:");
    assert_eq!(q["options"]["default"], "0x30", "unclassified traffic goes to 1:30");
    let class = run.section("class");
    for line in [
        "class htb 1:1 root rate 41Mbit ceil 41Mbit burst 51250b cburst 51250b",
        "class htb 1:10 parent 1:1 prio 0 rate 10Mbit ceil 10Mbit burst 12500b cburst 12500b",
        "class htb 1:20 parent 1:1 prio 0 rate 30Mbit ceil 30Mbit burst 37500b cburst 37500b",
        "class htb 1:30 parent 1:1 prio 0 rate 1Mbit ceil 5Mbit burst 4Kb cburst 6250b",
    ] {
        assert!(class.contains(line), "tc shows {line}:\n{class}");
    }
    let filter = run.json("filter");
    let flows: Vec<(String, String)> = arr(&filter)
        .iter()
        .filter(|f| f["options"]["flowid"].is_string())
        .map(|f| (f["options"]["flowid"].as_str().unwrap().to_string(), f["options"]["match"]["value"].as_str().unwrap().to_string()))
        .collect();
    // tc prints the key's value in hex: 10.60.0.2 is 0a3c0002.
    assert_eq!(flows, [("1:10".to_string(), "a3c0002".to_string()), ("1:20".to_string(), "a3c0003".to_string())], "{filter}");
    let both: Vec<f64> = run.section("both").split_whitespace().map(|n| n.parse().unwrap()).collect();
    eprintln!("htb: at once, to s1 {:.2} Mbit/s (class 10mbit), to s2 {:.2} Mbit/s (class 30mbit)", both[0] / 1e6, both[1] / 1e6);
    assert!((both[0] - 10e6).abs() < 0.25 * 10e6, "the s1 flow is capped near 10 Mbit/s: {both:?}");
    assert!((both[1] - 30e6).abs() < 0.25 * 30e6, "the s2 flow gets its own 30 Mbit/s beside it: {both:?}");
    let borrow: f64 = run.section("borrow").trim().parse().unwrap();
    eprintln!("htb: the default class (1mbit, ceil 5mbit) alone ran at {:.2} Mbit/s", borrow / 1e6);
    assert!((borrow - 5e6).abs() < 0.25 * 5e6, "a class alone borrows up to its ceil: {borrow}");
}

#[test]
fn unshape_removes_the_htb_and_bad_classes_are_refused_before_anything_is_made() {
    let lab = r#"
let a = netns("a");
let e = connect(a, netns("b"), #{ ifname: "eth0", addr: "10.61.0.1/24", peer_addr: "10.61.0.2/24" });
e.htb(#{ classes: [#{ id: 10, rate: "10mbit" }] });
e.htb(#{ "default": 20, classes: [#{ id: 20, rate: "5mbit", ceil: "8mbit", prio: 3 }] });
a.exec("tc -j qdisc show dev eth0 > replaced.json; tc class show dev eth0 > replaced.txt");
e.unshape();
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"$NSS lab.rhai > out.txt 2>&1 || { cat out.txt; exit 1; }
section replaced; cat replaced.json
section replaced_classes; cat replaced.txt
section after; tc -n a -j qdisc show dev eth0
section after_classes; tc -n a class show dev eth0
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(arr(&run.json("replaced"))[0]["options"]["default"], "0x20", "a second htb() replaces the first");
    let classes = run.section("replaced_classes");
    assert!(!classes.contains("1:10") && classes.contains("class htb 1:20 parent 1:1 prio 3 rate 5Mbit ceil 8Mbit"), "{classes}");
    assert_ne!(arr(&run.json("after"))[0]["kind"], "htb", "unshape removed it: {}", run.section("after"));
    assert!(run.section("after_classes").trim().is_empty());

    for (opts, code, words) in [
        (r#"#{ classes: [#{ id: 10 }] }"#, "missing_option", "htb class 10 needs a rate"),
        (r#"#{ classes: [#{ id: 1, rate: "1mbit" }] }"#, "bad_value", "class 1:1 is the one nsscript makes"),
        (r#"#{ "default": 40, classes: [#{ id: 10, rate: "1mbit" }] }"#, "bad_value", "default class 40 is not one of the classes"),
        (r#"#{ classes: [#{ id: 10, rate: "2mbit", ceil: "1mbit" }] }"#, "bad_value", "is below its rate"),
        (r#"#{ classes: [#{ id: 10, rate: "1mbit", "match": #{ dport: 80 } }] }"#, "bad_value", "ports need proto"),
        (r#"#{ classes: [#{ id: 10, rate: "1mbit", "match": #{ dst: "fd00::1" } }] }"#, "bad_value", "IPv4"),
    ] {
        let file = format!("let a = netns(\"a\");\nlet e = connect(a, netns(\"b\"), #{{ ifname: \"eth0\" }});\ne.htb({opts});\n");
        let Some(run) = isolated(
            &[("lab.rhai", &file)],
            "$NSS lab.rhai; echo \"rc $?\"; section left; ip netns list; section plan; $NSS plan lab.rhai 2>&1 >/dev/null",
        ) else {
            return;
        };
        assert!(run.section("left").trim().is_empty() && run.stdout.contains("rc 1"), "{opts}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(&format!("nsscript::{code}")) && run.stderr.contains(words), "{opts}:\n{}", run.stderr);
        assert!(run.stderr.contains("lab.rhai:3"), "points at the call:\n{}", run.stderr);
        let plan = run.section("plan");
        assert!(plan.contains(&format!("nsscript::{code}")) && plan.contains(words), "the plan refuses the same:\n{plan}");
    }
}

/// The root qdisc of `dev` in a `tc -j qdisc show dev` dump: (kind, handle).
fn root_of(dump: &Value) -> (String, String) {
    let q = arr(dump).iter().find(|q| q["root"] == true).unwrap_or_else(|| panic!("no root qdisc: {dump}"));
    (q["kind"].as_str().unwrap_or_default().to_string(), q["handle"].as_str().unwrap_or_default().to_string())
}

/// Links the lab did not make (veths made with `ip link add` before nsscript runs, and
/// lo, in the test's own "host" namespace) shaped with htb() and shape(): the qdiscs
/// are the kernel's while the lab is up; `down` deletes them and the kernel's default
/// comes back, except on a link deleted and made again by hand under the same name
/// (another ifindex), whose qdisc down leaves alone and reports. unshape() takes back
/// a qdisc of the lab's; a link whose root qdisc someone else set is refused.
#[test]
fn qdiscs_on_links_that_outlive_the_lab_are_in_the_ledger_and_go_at_down() {
    let lab = r#"
link("up1").htb(#{ "default": 20, classes: [#{ id: 10, rate: "10mbit", "match": #{ dst: "10.9.0.2" } }, #{ id: 20, rate: "5mbit" }] });
link("up2").shape(#{ rate: "20mbit" });
link("up3").htb(#{ classes: [#{ id: 10, rate: "3mbit" }] });
link("lo").shape(#{ rate: "100mbit" });
let u4 = link("up4");
u4.shape(#{ rate: "1mbit" });
u4.shape(#{ rate: "2mbit" });
u4.unshape();
try { link("up5").shape(#{ rate: "1mbit" }); } catch (err) { print(`up5: ${err}`); }
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"for i in 1 2 3 4 5; do ip link add up$i type veth peer name up${i}p && ip link set up$i up && ip link set up${i}p up || exit 1; done
tc qdisc add dev up5 root handle 5: tbf rate 1mbit burst 4k latency 50ms || exit 1
section before; tc -j qdisc show dev up1
$NSS lab.rhai > out.txt 2>&1 || { cat out.txt; exit 1; }
section out; cat out.txt
section ledger; grep -c '"entry":"qdisc"' /run/nsscript/labs/lab/ledger.jsonl
section q1; tc -j qdisc show dev up1
section c1; tc -j class show dev up1
section q2; tc -j qdisc show dev up2
section q3; tc -j qdisc show dev up3
section qlo; tc -j qdisc show dev lo
section q4; tc -j qdisc show dev up4
section q5; tc -j qdisc show dev up5
section index3; ip -o link show up3 | cut -d: -f1
# up3 deleted and made again by hand, under the same name, with a qdisc of the same kind and handle.
ip link del up3 && ip link add up3 type veth peer name up3p && ip link set up3 up || exit 1
tc qdisc add dev up3 root handle 1: htb default 0 && tc class add dev up3 parent 1: classid 1:7 htb rate 1mbit || exit 1
section index3b; ip -o link show up3 | cut -d: -f1
$NSS down lab > down.txt 2>&1; echo "rc $?" >> down.txt
section down; cat down.txt
section q1_after; tc -j qdisc show dev up1
section c1_after; tc class show dev up1
section q2_after; tc -j qdisc show dev up2
section qlo_after; tc -j qdisc show dev lo
section q3_after; tc -j qdisc show dev up3
section c3_after; tc class show dev up3
section q5_after; tc -j qdisc show dev up5
section left; ls /run/nsscript/labs
"#,
    ) else {
        return;
    };
    run.ok();
    let default = root_of(&run.json("before"));
    assert_eq!(default.1, "0:", "a veth that is up has the kernel's default root qdisc: {default:?}");
    assert_eq!(run.section("ledger").trim(), "12", "intent and done of each of six qdisc changes:\n{}", run.section("out"));
    assert_eq!(root_of(&run.json("q1")), ("htb".into(), "1:".into()), "{}", run.section("q1"));
    let c1 = run.section("c1");
    for class in
        ["class htb 1:1 root rate 15Mbit", "class htb 1:10 parent 1:1 prio 0 rate 10Mbit", "class htb 1:20 parent 1:1 prio 0 rate 5Mbit"]
    {
        assert!(c1.contains(class), "tc shows {class}:\n{c1}");
    }
    assert_eq!(root_of(&run.json("q2")), ("tbf".into(), "1:".into()));
    assert_eq!(root_of(&run.json("q3")), ("htb".into(), "1:".into()));
    assert_eq!(root_of(&run.json("qlo")), ("tbf".into(), "1:".into()));
    assert_eq!(root_of(&run.json("q4")).1, "0:", "unshape() took the lab's qdisc off up4: {}", run.section("q4"));
    let out = run.section("out");
    assert!(out.contains("up5: ") && out.contains("refusing to shape link \"up5\""), "{out}");
    assert_eq!(root_of(&run.json("q5")), ("tbf".into(), "5:".into()), "someone else's qdisc stays: {}", run.section("q5"));
    assert_ne!(run.section("index3").trim(), run.section("index3b").trim(), "up3 was made again with another ifindex");

    let down = run.section("down");
    assert!(down.contains("rc 0"), "{down}");
    assert_eq!(root_of(&run.json("q1_after")), default, "down gave up1 back the kernel's default: {}", run.section("q1_after"));
    assert!(run.section("c1_after").trim().is_empty(), "and its classes went with it: {}", run.section("c1_after"));
    assert_eq!(root_of(&run.json("q2_after")), default, "{}", run.section("q2_after"));
    assert_eq!(root_of(&run.json("qlo_after")).1, "0:", "{}", run.section("qlo_after"));
    assert_eq!(root_of(&run.json("q3_after")), ("htb".into(), "1:".into()), "the re-made up3 keeps its own qdisc");
    assert!(run.section("c3_after").contains("class htb 1:7"), "{}", run.section("c3_after"));
    assert!(down.contains("up3") && down.contains("not the link the lab shaped"), "down says why up3 was left alone:\n{down}");
    assert!(!down.contains("up4"), "nothing to say about up4, its qdisc went with unshape():\n{down}");
    assert_eq!(root_of(&run.json("q5_after")), ("tbf".into(), "5:".into()));
    assert!(run.section("left").trim().is_empty(), "the lab's state is gone: {}", run.section("left"));
}

/// A run that fails after shaping a link the lab did not make rolls the qdisc back.
#[test]
fn a_rollback_takes_back_a_qdisc_on_a_link_that_outlives_the_lab() {
    let lab = r#"
link("up1").htb(#{ classes: [#{ id: 10, rate: "10mbit" }] });
link("up2").shape(#{ rate: "20mbit" });
link("no_such_link").up();
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"for i in 1 2; do ip link add up$i type veth peer name up${i}p && ip link set up$i up && ip link set up${i}p up || exit 1; done
$NSS lab.rhai > out.txt 2>&1; echo "rc $?" >> out.txt
section out; cat out.txt
section q1; tc -j qdisc show dev up1
section c1; tc class show dev up1
section q2; tc -j qdisc show dev up2
section left; ls /run/nsscript/labs 2>/dev/null
"#,
    ) else {
        return;
    };
    run.ok();
    let out = run.section("out");
    assert!(out.contains("rc 1"), "the script fails at its last line:\n{out}");
    assert_eq!(root_of(&run.json("q1")).1, "0:", "rolled back: {}\n{out}", run.section("q1"));
    assert!(run.section("c1").trim().is_empty(), "{}", run.section("c1"));
    assert_eq!(root_of(&run.json("q2")).1, "0:", "{}", run.section("q2"));
    assert!(run.section("left").trim().is_empty(), "{}", run.section("left"));
}

/// The plan shapes the host's lo (a link the lab did not make) as the run does, and its
/// undo takes the qdisc back.
#[test]
fn the_plan_undoes_a_qdisc_on_a_link_that_outlives_the_lab() {
    let lab = r#"
let a = netns("a");
link("lo").shape(#{ rate: "100mbit" });
link(a, "lo").shape(#{ rate: "10mbit" });
"#;
    let run = plain(&[("lab.rhai", lab)], "$NSS plan lab.rhai");
    run.ok();
    let plan = &run.stdout;
    assert!(plan.contains("\ntc qdisc replace dev lo root handle 1: tbf rate 100000000bit"), "{plan}");
    let undo = plan.split("# To take it down again:").nth(1).unwrap_or_else(|| panic!("no undo:\n{plan}"));
    assert!(undo.contains("#   tc qdisc del dev lo root handle 1:\n"), "{undo}");
    assert_eq!(undo.matches("tc qdisc del").count(), 1, "a's lo goes with a:\n{undo}");
}

#[test]
fn a_shape_after_an_htb_replaces_it_in_the_run_and_in_the_plan() {
    // `tc qdisc replace` cannot turn the htb at 1: into a tbf (EINVAL): both the run and
    // the plan's shell take the htb away first.
    let lab = r#"let a = netns("a");
let b = netns("b");
connect(a, b, #{ addr: "10.0.0.1/24", peer_addr: "10.0.0.2/24" });
let l = link(a, "eth0");
l.htb(#{ "default": 10, classes: [#{ id: 10, rate: "5mbit" }] });
l.shape(#{ rate: "2mbit" });
"#;
    let Some(run) = isolated(
        &[("lab.rhai", lab)],
        r#"
section run; $NSS lab.rhai 2>&1; echo "code=$?"
section qdisc; tc -n a -j qdisc show dev eth0
section classes; tc -n a class show dev eth0 | grep -c htb || true
$NSS down lab >/dev/null || exit 1
section plan; $NSS plan lab.rhai > plan.sh; echo "code=$?"
section planrun; bash -e plan.sh >/dev/null 2>&1; echo "code=$?"
section planqdisc; tc -n a -j qdisc show dev eth0
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("run").contains("code=0"), "{}", run.section("run"));
    for section in ["qdisc", "planqdisc"] {
        let dump = run.json(section);
        let q = &arr(&dump)[0];
        assert_eq!((q["kind"].as_str(), q["handle"].as_str()), (Some("tbf"), Some("1:")), "{section}: {dump}");
    }
    assert_eq!(run.section("classes").trim(), "0", "the htb's classes went with it");
    assert!(run.section("planrun").contains("code=0"), "the plan's shell runs: {}", run.stderr);
}
