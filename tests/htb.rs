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
