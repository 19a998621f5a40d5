//! Issue 16: the lab's services. A DHCP relay (a client behind a router gets its lease
//! from the far server, with the router as its gateway), a DNS server (`resolve` and
//! busybox nslookup agree), IPv6 router advertisements (a host forms its SLAAC address
//! and reaches the router); each a dnsmasq with its own configuration only, stopped at
//! `down`. Observed with ip -j, dnsmasq's own lease file, /proc, nslookup and ping.

use crate::support::*;
use serde_json::Value;

/// `dnsmasqs LEDGER`: the command line of every process the ledger (a copy of it)
/// records that still runs, one a line. Only the lab's own pids are looked at.
const DNSMASQS: &str = r#"dnsmasqs() { for p in $(grep '"entry":"proc"' "$1" | grep -o '"pid":[0-9][0-9]*' | cut -d: -f2 | sort -u); do
  s=$(awk '{print $3}' /proc/$p/stat 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && tr '\0' ' ' < /proc/$p/cmdline && echo; done; true; }"#;

fn addrs(v: &Value, family: &str) -> Vec<Value> {
    v.as_array().unwrap().iter().flat_map(|l| l["addr_info"].as_array().unwrap().clone()).filter(|a| a["family"] == family).collect()
}

#[test]
fn relayed_clients_get_leases_from_the_far_server_and_resolve_the_labs_names() {
    let Some(run) = isolated(
        &[],
        &format!(
            r#"{DNSMASQS}
machine_files() {{ md5sum /etc/resolv.conf /etc/hosts 2>/dev/null; ls -l --time-style=+%s /var/lib/misc/ 2>/dev/null; }}
machine_files > before
$NSS $SCRIPTS/relay_dns.rhai > lab.out 2>&1 || {{ cat lab.out; exit 1; }}
section c1_addr; ip -n c1 -j addr show eth0
section c1_routes; ip -n c1 -j route
section c2_addr; ip -n c2 -j addr show eth0
section c1_mac; ip -n c1 -j link show eth0
section leases; cat /run/nsscript/labs/relay_dns/dnsmasq-srv-dhcp-eth0.leases
section nslookup; ip netns exec c1 busybox nslookup web.lab 10.0.1.1 2>&1; ip netns exec c1 busybox nslookup nope.lab 10.0.1.1 2>&1
cp /run/nsscript/labs/relay_dns/ledger.jsonl ledger
section dnsmasqs; dnsmasqs ledger
$NSS down relay_dns >/dev/null || exit 1
section after; dnsmasqs ledger; ls /run/nsscript/labs/ 2>/dev/null
machine_files > after
section machine; diff before after && echo same
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let c1 = addrs(&run.json("c1_addr"), "inet");
    let ip = c1[0]["local"].as_str().unwrap();
    let host: u32 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(ip.starts_with("10.0.2.") && (100..=150).contains(&host), "c1's lease is from the relayed range: {ip}");
    let default = run.json("c1_routes").as_array().unwrap().iter().find(|r| r["dst"] == "default").cloned().expect("a default route");
    assert_eq!(default["gateway"], "10.0.2.1", "the relay is c1's router");
    assert_eq!(addrs(&run.json("c2_addr"), "inet")[0]["local"], "10.0.2.10", "c2's fixed lease");
    // The far server's own record of the lease: c1's MAC and address, c2 by its name.
    let mac = run.json("c1_mac")[0]["address"].as_str().unwrap().to_string();
    let leases = run.section("leases");
    assert!(leases.lines().any(|l| l.contains(&mac) && l.contains(ip)), "srv's lease file:\n{leases}");
    assert!(leases.lines().any(|l| l.contains("02:00:00:00:02:10 10.0.2.10 printer")), "srv's lease file:\n{leases}");
    let ns = run.section("nslookup");
    assert!(ns.contains("Address: 10.0.1.80") && ns.contains("can't find nope.lab: NXDOMAIN"), "{ns}");
    // Three dnsmasqs, each with its own configuration only.
    let section = run.section("dnsmasqs");
    let procs: Vec<&str> = section.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(procs.len(), 3, "{procs:?}");
    for p in &procs {
        assert!(
            p.contains("--conf-file=/dev/null") && p.contains("--no-resolv") && p.contains("--no-hosts") && p.contains("--pid-file= "),
            "{p}"
        );
    }
    assert!(procs.iter().any(|p| p.contains("--dhcp-relay=10.0.2.1,10.0.1.1")), "{procs:?}");
    assert!(procs.iter().any(|p| p.contains("--host-record=web.lab,web,10.0.1.80")), "{procs:?}");
    assert!(run.section("after").trim().is_empty(), "down stops them and removes the lab: {}", run.section("after"));
    assert_eq!(run.section("machine").trim(), "same", "no file of the machine changed");
}

#[test]
fn resolve_answers_the_labs_names_gives_nothing_for_unknown_ones_and_names_a_server_that_does_not_answer() {
    let lab = r#"
let d = netns("d");
let c = netns("c");
connect(c, d, #{ ifname: "eth0", addr: "10.0.0.2/24", peer: "eth0", peer_addr: "10.0.0.53/24" });
dns_server(d, #{ records: #{ web: "10.0.0.80", six: "fd00::6", both: ["10.0.0.9", "fd00::9"] } });
print(`web ${resolve(c, "web")}`);
print(`WEB ${resolve(c, "WEB.")}`);
print(`six ${resolve(c, "six")}`);
print(`both4 ${resolve(c, "both", #{ family: 4 })}`);
print(`nope ${resolve(c, "nope")}`);
print(`local ${resolve(d, "web")}`);
if mode == "closed" { resolve(c, "web", #{ server: "10.0.0.2" }); }
if mode == "nobody" { resolve(c, "web", #{ server: "10.0.0.99", timeout: 300 }); }
if mode == "noroute" { resolve(c, "web", #{ server: "192.0.2.1" }); }
"#;
    let Some(run) = isolated(
        &[("dns.rhai", lab)],
        r#"$NSS --sandbox dns.rhai --var mode=ok 2>&1; echo "exit $?"
for m in closed nobody noroute; do section $m; $NSS --sandbox dns.rhai --var mode=$m 2>&1 | grep -v '^[a-z]* \['; echo "exit $?"; done
"#,
    ) else {
        return;
    };
    run.ok();
    let out = &run.stdout;
    for want in
        ["web [\"10.0.0.80\"]", "WEB [\"10.0.0.80\"]", "six [\"fd00::6\"]", "both4 [\"10.0.0.9\"]", "nope []", "local [\"10.0.0.80\"]"]
    {
        assert!(out.contains(want), "{want} in:\n{out}");
    }
    let flat = |s: &str| run.section(s).split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ");
    assert!(
        flat("closed").contains("nsscript::dns_failed") && flat("closed").contains("nothing listens on UDP port 53 of 10.0.0.2"),
        "{}",
        run.section("closed")
    );
    assert!(
        flat("nobody").contains("from the DNS server 10.0.0.99") && flat("nobody").contains("no answer within 300 ms"),
        "{}",
        run.section("nobody")
    );
    assert!(flat("noroute").contains("there is no route to 192.0.2.1"), "{}", run.section("noroute"));
}

#[test]
fn an_ipv6_host_forms_a_slaac_address_from_the_advertised_prefix_and_reaches_the_router() {
    let lab = r#"
let r = netns("r");
let h = netns("h");
connect(h, r, #{ ifname: "eth0", peer: "eth0", peer_addr: "fd00:1::1/64" });
router_adv(r, "eth0", #{ prefix: "fd00:1::/64", lifetime: "1h" });
let got = wait_addr(h, "eth0");
print(`slaac ${got}`);
let mine = addrs(h).filter(|a| a.link == "eth0" && a.scope == "global");
print(`flags ${mine[0].dynamic} ${mine[0].tentative}`);
assert_ping(h, "fd00:1::1");
"#;
    let Some(run) = isolated(
        &[("ra.rhai", lab)],
        &format!(
            r#"{DNSMASQS}
$NSS ra.rhai > lab.out 2>&1 || {{ cat lab.out; exit 1; }}
section out; cat lab.out
section addr; ip -n h -j -6 addr show dev eth0 scope global
section link; ip -n h -j link show eth0
section ping; ip netns exec h ping -6 -c 1 -W 1 fd00:1::1 >/dev/null && echo reached
cp /run/nsscript/labs/ra/ledger.jsonl ledger
section dnsmasqs; dnsmasqs ledger
$NSS down ra >/dev/null || exit 1
section after; dnsmasqs ledger
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let a = addrs(&run.json("addr"), "inet6");
    assert_eq!(a.len(), 1, "{a:?}");
    let ip = a[0]["local"].as_str().unwrap();
    assert!(ip.starts_with("fd00:1::") && a[0]["prefixlen"] == 64 && a[0]["dynamic"] == true, "SLAAC from the prefix: {a:?}");
    assert!(a[0]["tentative"].is_null(), "DAD is done: {a:?}");
    // Modified EUI-64 of the MAC: the kernel formed it, not nsscript.
    let mac: Vec<u8> = run.json("link")[0]["address"].as_str().unwrap().split(':').map(|b| u8::from_str_radix(b, 16).unwrap()).collect();
    let eui = format!(
        "fd00:1::{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([mac[0] ^ 2, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]])
    );
    assert_eq!(ip, eui);
    assert!(run.section("out").contains(&format!("slaac [\"{ip}\"]")), "wait_addr returns it: {}", run.section("out"));
    assert!(run.section("out").contains("flags true false"), "addrs() says dynamic, not tentative: {}", run.section("out"));
    assert_eq!(run.section("ping").trim(), "reached");
    let d = run.section("dnsmasqs");
    assert!(d.contains("--enable-ra") && d.contains("--dhcp-range=fd00:1::,ra-only,64,1h") && d.contains("--conf-file=/dev/null"), "{d}");
    assert!(run.section("after").trim().is_empty(), "{}", run.section("after"));
}

#[test]
fn a_host_that_forwards_takes_no_advertisement_and_wait_addr_says_why() {
    let lab = r#"
let r = netns("r");
let h = netns("h");
connect(h, r, #{ ifname: "eth0", peer: "eth0", peer_addr: "fd00:1::1/64" });
h.sysctl("net.ipv6.conf.eth0.forwarding", 1);
router_adv(r, "eth0");
wait_addr(h, "eth0", #{ timeout: 3000 });
"#;
    let Some(run) = isolated(&[("fwd.rhai", lab)], "$NSS --sandbox fwd.rhai 2>&1; echo \"exit $?\"") else {
        return;
    };
    let out = run.stdout.split_whitespace().filter(|w| *w != "|").collect::<Vec<_>>().join(" ");
    assert!(
        out.contains("nsscript::no_address") && out.contains("eth0 in namespace h has no global IPv6 address after 3000 ms"),
        "{}",
        run.stdout
    );
    assert!(out.contains("net.ipv6.conf.eth0.forwarding is 1: a router takes none unless accept_ra is 2"), "{}", run.stdout);
    assert!(out.contains("exit 1"), "{}", run.stdout);
}

#[test]
fn service_mistakes_are_refused_by_the_run_and_the_plan_alike() {
    let head = "let s = netns(\"s\");\nconnect(s, netns(\"t\"), #{ ifname: \"eth0\", addr: \"10.0.1.1/24\", peer_addr: \"10.0.1.2/24\" });\nconnect(s, netns(\"u\"), #{ ifname: \"eth1\" });\n";
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "norelayroute",
            r#"dhcp_server(s, #{ iface: "eth0", ranges: [["10.0.1.100", "10.0.1.110"], ["10.0.2.100", "10.0.2.110"]] });"#,
            &["the DHCP range 10.0.2.100 - 10.0.2.110 is outside the subnet of eth0", "behind a relay", "route(\"10.0.2.0/24\", ROUTER)"],
        ),
        (
            "lease",
            r#"dhcp_server(s, #{ iface: "eth0", range: ["10.0.1.100", "10.0.1.110"], lease: "1m" });"#,
            &["lease \"1m\" is too short"],
        ),
        (
            "host",
            r#"dhcp_server(s, #{ iface: "eth0", range: ["10.0.1.100", "10.0.1.110"], hosts: [#{ mac: "02:00:00:00:00:01", ip: "10.9.0.1" }] });"#,
            &["the fixed lease 10.9.0.1 of 02:00:00:00:00:01 is outside the served subnets"],
        ),
        ("relay", r#"dhcp_relay(s, #{ iface: "eth1", server: "10.0.1.2" });"#, &["nsscript::no_address", "eth1 has no IPv4 address"]),
        ("record", r#"dns_server(s, #{ records: #{ "bad name": "10.0.0.1" } });"#, &["invalid name \"bad name\""]),
        ("ra", r#"router_adv(s, "eth0");"#, &["nsscript::no_address", "eth0 has no global IPv6 /64 address"]),
        ("prefix", r#"router_adv(s, "eth0", #{ prefix: "fd00::/48" });"#, &["hosts form SLAAC addresses from a /64 only"]),
        ("noserver", r#"resolve(s, "web");"#, &["nsscript::missing_option", "no DNS server to ask"]),
    ];
    crate::firewall::refused_alike(head, cases);
}
