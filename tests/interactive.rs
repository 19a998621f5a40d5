//! Issue 5: graph, shell and exec into a running lab, the diagnostics catalogue,
//! completions and --help, and the REPL driven through a real pseudo-terminal. (The plan's
//! walkthrough is tested in `plan`.)

use crate::support::*;
use serde_json::Value;
use std::collections::BTreeSet;

// ---- graph ----

fn graph_json(lab: &str) -> Value {
    let run = plain(&[], &format!("$NSS graph --format json $SCRIPTS/{lab}.rhai 2>/dev/null"));
    run.ok();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn ids(g: &Value) -> BTreeSet<String> {
    g["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_string()).collect()
}

fn edges(g: &Value) -> BTreeSet<(String, String, String)> {
    g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (a, b) = (e["a"].as_str().unwrap().to_string(), e["b"].as_str().unwrap().to_string());
            let (a, b) = if a < b { (a, b) } else { (b, a) };
            (a, b, e["kind"].as_str().unwrap().to_string())
        })
        .collect()
}

fn set<const N: usize>(items: [&str; N]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn edge(a: &str, b: &str, kind: &str) -> (String, String, String) {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    (a.into(), b.into(), kind.into())
}

#[test]
fn graph_of_seed000_has_its_boxes_and_links() {
    let g = graph_json("seed000_router");
    assert_eq!(ids(&g), set(["br:br-in", "br:br-ex", "ns:rt", "ns:vm1", "ns:vm2", "ns:wan", "ns:inet"]));
    let want: BTreeSet<_> = [
        edge("ns:rt", "br:br-in", "veth"),
        edge("ns:rt", "br:br-ex", "veth"),
        edge("ns:vm1", "br:br-in", "veth"),
        edge("ns:vm2", "br:br-in", "veth"),
        edge("ns:wan", "br:br-ex", "veth"),
        edge("ns:wan", "ns:inet", "veth"),
    ]
    .into_iter()
    .collect();
    assert_eq!(edges(&g), want);
    let rt = g["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "ns:rt").unwrap();
    let lines: Vec<&str> = rt["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    // Its dnsmasq is a label on it.
    assert_eq!(lines, ["eth0", "10.0.0.254/24", "eth1", "192.168.100.11/24", "[dhcp eth0 10.0.0.151 - 10.0.0.160]"]);
}

#[test]
fn graph_of_vxlan_unicast_has_the_tunnel() {
    let g = graph_json("vxlan_unicast");
    assert_eq!(ids(&g), set(["br:switch", "ns:peer1", "ns:peer2"]));
    assert_eq!(
        edges(&g),
        [edge("ns:peer1", "br:switch", "veth"), edge("ns:peer2", "br:switch", "veth"), edge("ns:peer1", "ns:peer2", "vxlan")]
            .into_iter()
            .collect()
    );
}

#[test]
fn graph_ascii_dot_and_mermaid_draw_seed004() {
    let run = plain(
        &[],
        r#"for f in ascii dot mermaid; do section $f; $NSS graph --format $f $SCRIPTS/seed004_bridge.rhai 2>/dev/null || exit 1; done"#,
    );
    run.ok();
    let ascii = run.section("ascii");
    // The seed-000 look: boxes with the name, the interface and its address.
    for want in [
        "| bridge test-bridge |",
        "|   172.19.0.1/24    |",
        "|  namespace2   |",
        "| 172.19.0.3/24 |",
        "+------------------+------------------+",
    ] {
        assert!(ascii.contains(want), "missing {want:?} in\n{ascii}");
    }
    assert!(ascii.contains("test-bridge veth2 <--veth--> namespace2 veth3"), "{ascii}");
    let dot = run.section("dot");
    assert!(dot.starts_with("graph \"seed004_bridge\" {"), "{dot}");
    assert_eq!(dot.matches("\" -- \"").count(), 3, "{dot}");
    assert!(dot.contains(r#""ns:namespace1" [label="namespace1\nveth1\n172.19.0.2/24"];"#), "{dot}");
    let mermaid = run.section("mermaid");
    assert!(mermaid.starts_with("graph TD\n"), "{mermaid}");
    assert_eq!(mermaid.matches(" ---|").count(), 3, "{mermaid}");
}

// ---- into a node ----

#[test]
fn exec_and_shell_run_inside_a_lab_namespace() {
    let Some(run) = isolated(
        &[],
        r#"
$NSS $SCRIPTS/seed002_veth.rhai >/dev/null 2>&1 || exit 1
section exec; $NSS exec seed002_veth ns0 -- ip -br addr show veth0
section code; $NSS exec seed002_veth ns1 -- sh -c 'exit 7'; echo "code $?"
section netns_inode; $NSS exec seed002_veth ns0 -- sh -c 'stat -L -c %i /proc/self/ns/net'; stat -L -c %i /run/netns/ns0
section shell; printf 'echo "inside $NSSCRIPT_NS"\nip -br link show veth1\nexit 3\n' | $NSS shell seed002_veth ns1 2>&1; echo "code $?"
section prompt; printf 'echo "PS1=$PS1"\n' | $NSS shell seed002_veth ns1 2>/dev/null
section bad_ns; $NSS exec seed002_veth nope -- true 2>&1; echo "code $?"
section bad_lab; $NSS exec nolab ns0 -- true 2>&1; echo "code $?"
$NSS down seed002_veth >/dev/null
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("exec").contains("192.168.1.1/24"), "{}", run.stdout);
    assert_eq!(run.section("code").trim(), "code 7");
    let inodes = run.section("netns_inode");
    let inodes: Vec<&str> = inodes.lines().collect();
    assert_eq!(inodes.len(), 2, "{inodes:?}");
    assert_eq!(inodes[0], inodes[1], "exec runs in the namespace itself");
    let shell = run.section("shell");
    assert!(shell.contains("inside ns1"), "{shell}");
    assert!(shell.contains("veth1"), "{shell}");
    assert!(shell.trim_end().ends_with("code 3"), "{shell}");
    assert!(run.section("prompt").contains("PS1=ns1> "), "{}", run.section("prompt"));
    let bad = run.section("bad_ns");
    assert!(bad.contains(r#"lab "seed002_veth" has no namespace "nope""#) && bad.contains("its namespaces: ns0, ns1"), "{bad}");
    assert!(bad.trim_end().ends_with("code 2"), "{bad}");
    assert!(run.section("bad_lab").contains(r#"no lab named "nolab" is up"#), "{}", run.section("bad_lab"));
}

// ---- completions and --help ----

#[test]
fn completions_and_help_for_every_subcommand() {
    let run = plain(
        &[],
        r#"
for s in bash zsh fish; do section comp-$s; $NSS completions $s || exit 1; done
for c in down ls functions repl plan graph shell exec check test errors completions; do section help-$c; $NSS $c --help || exit 1; done
section bash-load; bash -c 'source <($NSS completions bash) && complete -p nsscript'
"#,
    );
    run.ok();
    assert!(run.section("comp-bash").contains("_nsscript()"));
    assert!(run.section("comp-zsh").starts_with("#compdef nsscript"));
    assert!(run.section("comp-fish").contains("complete -c nsscript"));
    assert!(run.section("bash-load").contains("nsscript"));
    for sub in ["plan", "graph", "shell", "exec", "errors"] {
        assert!(run.section("comp-bash").contains(sub), "bash completes {sub}");
    }
    assert!(run.section("help-graph").contains("ascii") && run.section("help-graph").contains("mermaid"));
    assert!(run.section("help-repl").contains("--on-exit"));
    assert!(run.section("help-exec").contains("Usage: nsscript exec [OPTIONS] <LAB> <NS> -- <CMD>..."), "{}", run.section("help-exec"));
    assert!(run.section("help-errors").contains("Usage: nsscript errors [OPTIONS] [CODE]"), "{}", run.section("help-errors"));
    assert!(run.section("help-check").contains("Usage: nsscript check [OPTIONS] <LAB> [SCRIPT]"), "{}", run.section("help-check"));
    let test = run.section("help-test");
    assert!(
        test.contains("--junit <FILE>") && test.contains("--tap") && test.contains("--filter <TEXT>") && test.contains("--jobs"),
        "{test}"
    );
}

// ---- the diagnostics catalogue ----

/// Renders one error the way a user sees it when stderr is not a terminal. An entry that
/// meets no kernel ([`needs_no_kernel`]) runs as any user ([`plain`]); the others run in
/// the test's own namespaces and are skipped (`None`) where those cannot be made.
fn diagnostic(files: &[(&str, &str)], cmd: &str) -> Option<String> {
    let bash = format!("{cmd} 2>&1 >/dev/null; echo \"exit $?\"");
    let run = if needs_no_kernel(cmd) { plain(files, &bash) } else { isolated(files, &bash)? };
    Some(without_measured_times(&without_iptables_version(&run.stdout)))
}

/// Entries whose nsscript only plans, only parses its command line, or runs as a user
/// who may build nothing (the not-root refusal).
fn needs_no_kernel(cmd: &str) -> bool {
    cmd.starts_with("$NSS plan ") || cmd.starts_with("$NSS --bogus ") || cmd.ends_with("&& as_nobody $NSS lab.rhai")
}

/// A check's report says how long it waited ("waited 3 ms: ..."), which differs
/// between runs.
fn without_measured_times(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("waited ") {
        let after = &rest[at + 7..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        out.push_str(&rest[..at + 7]);
        if digits > 0 && after[digits..].starts_with(" ms") {
            out.push('N');
            rest = &after[digits..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// iptables starts its messages with its version and backend ("iptables v1.8.9
/// (nf_tables): ..."), which differ between machines.
fn without_iptables_version(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("iptables v") {
        let Some(colon) = rest[at..].find(':') else { break };
        out.push_str(&rest[..at]);
        out.push_str("iptables VERSION");
        rest = &rest[at + colon..];
    }
    out.push_str(rest);
    out
}

macro_rules! catalogue {
    ($($name:ident: $files:expr, $cmd:expr;)*) => {
        $(
            #[test]
            fn $name() {
                let Some(rendered) = diagnostic(&$files, $cmd) else { return };
                insta::assert_snapshot!(stringify!($name), rendered);
            }
        )*

        /// The names of the catalogue's tests (and so of their snapshots).
        const CATALOGUE: &[&str] = &[$(stringify!($name),)*];
    };
}

// One entry per situation: a small lab (or command) that meets it, rendered plainly.
// `plan` where no kernel is needed, `--sandbox` where the kernel must refuse, and a
// plain run (as root, inside the test's own namespaces) where the lab's state under
// /run matters. Every code of `nsscript errors` is rendered by at least one entry
// (checked by every_error_code_has_a_rendered_catalogue_entry).
catalogue! {
    // the script language
    diag_parse_error_points_at_the_span: [("lab.rhai", "let a = netns(\"a\");\nlet b = ;\n")], "$NSS plan lab.rhai";
    diag_unknown_function_suggests_from_the_registry: [("lab.rhai", "let a = netsn(\"a\");\n")], "$NSS plan lab.rhai";
    diag_wrong_argument_types_show_the_signature: [("lab.rhai", "netns(\"a\");\nnetns(42);\n")], "$NSS plan lab.rhai";
    diag_wrong_method_arguments_show_the_signature: [("lab.rhai", "let br = bridge(\"br0\");\nbr.mtu(\"big\");\n")], "$NSS plan lab.rhai";
    diag_unknown_variable: [("lab.rhai", "connect(vm1, bridge(\"br0\"));\n")], "$NSS plan lab.rhai";
    diag_unknown_module: [("lab.rhai", "import \"topology\" as t;\n")], "$NSS plan lab.rhai";
    diag_script_error_thrown_by_the_script: [("lab.rhai", "let n = 3;\nif n > 2 { throw \"at most 2 routers\"; }\n")], "$NSS plan lab.rhai";
    diag_error_in_user_function_shows_the_call_chain: [("lab.rhai", "fn plug(ns, name) {\n    link(ns, name).up()\n}\nfn node(name) {\n    plug(netns(name), \"eth0\")\n}\nnode(\"vm1\");\n")], "$NSS plan lab.rhai";
    diag_error_in_stdlib_shows_the_call_chain: [("lab.rhai", "import \"topo\" as topo;\ntopo::star(2, #{ subnet: \"10.1.0.0/24\", bridge: \"br-much-too-long-name\" });\n")], "$NSS plan lab.rhai";
    // arguments and options
    diag_unknown_option: [("lab.rhai", "connect(netns(\"a\"), bridge(\"br0\"), #{ ifnmae: \"eth0\" });\n")], "$NSS plan lab.rhai";
    diag_missing_option: [("lab.rhai", "dnat(netns(\"a\"), #{ proto: \"tcp\" });\n")], "$NSS plan lab.rhai";
    diag_value_out_of_range: [("lab.rhai", "bridge(\"br0\").mtu(-5);\n")], "$NSS plan lab.rhai";
    diag_malformed_address: [("lab.rhai", "bridge(\"br0\").addr(\"10.0.0.300/24\");\n")], "$NSS plan lab.rhai";
    diag_interface_name_too_long: [("lab.rhai", "bridge(\"a-very-long-bridge-name\");\n")], "$NSS plan lab.rhai";
    diag_host_number_outside_the_subnet: [("lab.rhai", "let gw = cidr_host(\"10.0.0.0/24\", 300);\n")], "$NSS plan lab.rhai";
    diag_pingall_node_without_an_address: [("lab.rhai", "pingall([netns(\"a\"), netns(\"b\")]);\n")], "$NSS --sandbox lab.rhai";
    diag_namespace_connected_to_itself: [("lab.rhai", "let a = netns(\"a\");\nconnect(a, a);\n")], "$NSS plan lab.rhai";
    diag_unknown_sysctl_errno_in_words: [("lab.rhai", "netns(\"a\").sysctl(\"net.ipv4.nosuchkey\", \"1\");\n")], "$NSS --sandbox lab.rhai";
    diag_script_grows_past_the_limit: [("lab.rhai", "let s = \"x\";\nloop { s += s; }\n")], "$NSS plan lab.rhai";
    // the lab's objects
    diag_unknown_namespace: [("lab.rhai", "let a = ns(\"ghost\");\n")], "$NSS plan lab.rhai";
    diag_unknown_link_lists_the_links: [("lab.rhai", "let a = netns(\"a\");\nconnect(a, bridge(\"br0\"), #{ ifname: \"eth0\" });\nlink(a, \"eth1\").up();\n")], "$NSS plan lab.rhai";
    diag_link_exists_errno_in_words: [("lab.rhai", "veth(\"v0\", \"v1\");\nveth(\"v1\", \"v2\");\n")], "$NSS --sandbox lab.rhai";
    diag_peer_of_a_bridge: [("lab.rhai", "bridge(\"br0\").peer();\n")], "$NSS plan lab.rhai";
    diag_changing_a_link_the_lab_does_not_own: [("lab.rhai", "link(\"lo\").down();\n")], "$NSS --sandbox lab.rhai";
    // the kernel refuses
    diag_kernel_refuses_a_macvlan_on_loopback: [("lab.rhai", "macvlan(link(\"lo\"), \"mv0\", \"bridge\");\n")], "$NSS --sandbox lab.rhai";
    diag_kernel_refuses_a_veth_as_master: [("lab.rhai", "let a = veth(\"v0\", \"v1\");\nlet b = veth(\"v2\", \"v3\");\na.master(b);\n")], "$NSS --sandbox lab.rhai";
    diag_address_added_twice: [("lab.rhai", "let b = bridge(\"br0\");\nb.addr(\"10.0.0.1/24\");\nb.addr(\"10.0.0.1/24\");\n")], "$NSS --sandbox lab.rhai";
    diag_route_added_twice: [("lab.rhai", "let a = netns(\"a\");\nconnect(a, bridge(\"br0\"), #{ ifname: \"eth0\", addr: \"10.0.0.2/24\" });\na.route(\"10.9.0.0/16\", \"10.0.0.1\");\na.route(\"10.9.0.0/16\", \"10.0.0.1\");\n")], "$NSS --sandbox lab.rhai";
    diag_stp_does_not_settle: [("lab.rhai", "let s = netns(\"s\");\nlet br = bridge(s, \"br0\", #{ stp: true, forward_delay: 2000 });\nconnect(s, br, #{ ifname: \"loose\", peer: \"p1\" });\nlink(s, \"loose\").down();\nbr.wait_stp(#{ timeout: 1000 });\n")], "$NSS --sandbox lab.rhai";
    diag_rule_added_twice: [("lab.rhai", "let a = netns(\"a\");\na.rule(#{ from: \"10.0.0.0/24\", table: 2, pref: 100 });\na.rule(#{ from: \"10.0.0.0/24\", table: 2, pref: 100 });\n")], "$NSS --sandbox lab.rhai";
    diag_route_get_finds_no_route: [("lab.rhai", "let a = netns(\"a\");\nlet r = route_get(a, \"203.0.113.1\");\n")], "$NSS --sandbox lab.rhai";
    diag_gateway_unreachable_errno_in_words: [("lab.rhai", "let a = netns(\"a\");\na.route(\"default\", \"10.9.9.1\");\n")], "$NSS --sandbox lab.rhai";
    // (the tun device hidden under an empty /dev/net, in the test's own mount namespace)
    diag_tap_without_the_tun_device: [("lab.rhai", "tap(\"tap0\");\n")], "mount -t tmpfs tmpfs /dev/net && $NSS --sandbox lab.rhai";
    diag_kernel_refuses_to_delete_lo: [("lab.rhai", "link(netns(\"a\"), \"lo\").delete();\n")], "$NSS --sandbox lab.rhai";
    diag_netns_directory_read_only: [("lab.rhai", "netns(\"a\");\n")], "mkdir -p /run/netns && mount -t tmpfs -o ro tmpfs /run/netns && $NSS lab.rhai";
    // (user namespaces off: a limit of 0 inside a user namespace of the test's own)
    diag_sandbox_without_user_namespaces: [("lab.rhai", "netns(\"a\");\n")], "chmod 755 . && chmod 644 lab.rhai && unshare --user --map-root-user bash -c \"echo 0 > /proc/sys/user/max_user_namespaces && setpriv --securebits +noroot,+noroot_locked --inh-caps=-all --bounding-set=-all $NSS --sandbox lab.rhai\"";
    // labs
    diag_lab_already_up: [("lab.rhai", "netns(\"a\");\n")], "$NSS lab.rhai >/dev/null 2>&1 && $NSS lab.rhai";
    diag_exec_in_a_lab_that_is_not_up: [], "$NSS exec nolab ns0 -- true";
    // (the shell holds the lab's lock, as a running nsscript would, with its pid in it)
    diag_lab_busy: [("lab.rhai", "netns(\"a\");\n")], "mkdir -p /run/nsscript/locks && echo '4242 building it' > /run/nsscript/locks/lab.lock && exec 9</run/nsscript/locks/lab.lock && flock -n 9 && $NSS lab.rhai";
    diag_lab_named_too_late: [("lab.rhai", "netns(\"a\");\nlab(\"other\");\n")], "$NSS plan lab.rhai";
    diag_ledger_open_to_other_users: [("lab.rhai", "netns(\"a\");\n")], "$NSS lab.rhai >/dev/null 2>&1 && chmod 644 /run/nsscript/labs/lab/ledger.jsonl && $NSS down lab";
    diag_state_directory_unwritable: [("lab.rhai", "netns(\"a\");\n")], "touch /run/nsscript && $NSS lab.rhai";
    // programs
    diag_program_missing: [("lab.rhai", "netns(\"a\").exec([\"no-such-program\", \"--version\"]);\n")], "$NSS --sandbox lab.rhai";
    diag_empty_command: [("lab.rhai", "netns(\"a\").exec([]);\n")], "$NSS --sandbox lab.rhai";
    // (listen: the run waits for a port that never opens, so it sees the exit however slow the machine)
    diag_spawned_program_exits_at_once: [("lab.rhai", "spawn(netns(\"a\"), \"echo no config; exit 3\", #{ listen: 8080, wait: 30000 });\n")], "$NSS --sandbox lab.rhai";
    diag_iptables_refuses_a_rule: [("lab.rhai", "iptables(netns(\"a\"), \"-A FORWARD -j NOSUCHTARGET\");\n")], "$NSS --sandbox lab.rhai";
    diag_iptables_old_negation_says_how_iptables_1_8_writes_it: [("lab.rhai", "let gw = netns(\"gw\");\niptables(gw, \"-A INPUT -i ! ppp0 -j ACCEPT\");\n")], "$NSS plan lab.rhai";
    diag_no_dhcp_lease: [("lab.rhai", "let a = netns(\"a\");\nconnect(a, bridge(\"br0\"), #{ ifname: \"eth0\" });\ndhcp_client(a, \"eth0\");\n")], "$NSS plan lab.rhai";
    diag_resolve_names_the_dns_server_that_does_not_answer: [("lab.rhai", "let a = netns(\"a\");\nconnect(a, netns(\"b\"), #{ ifname: \"eth0\", addr: \"10.0.0.1/24\" });\nresolve(a, \"web.lab\", #{ server: \"10.0.0.99\", timeout: 200 });\n")], "$NSS --sandbox lab.rhai";
    // checks
    diag_assertion_failed: [("lab.rhai", "let r = netns(\"a\").exec(\"exit 3\");\nassert(r.code == 0, `exit code ${r.code}`);\n")], "$NSS --sandbox lab.rhai";
    diag_pingall_pairs_without_reply: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.1.2/24\" });\npingall([a, b], #{ timeout: 200 });\n")], "$NSS --sandbox lab.rhai";
    // service checks (a and b joined by a veth, nothing listening unless the lab says)
    diag_tcp_refused_in_a_check_block: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\ncheck(\"web\", || assert_tcp(a, \"10.0.0.2:80\"));\nprint(\"the script goes on\");\n")], "$NSS --sandbox lab.rhai";
    diag_udp_port_unreachable: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\nassert_udp(a, \"10.0.0.2:53\", #{ send: \"ping\" });\n")], "$NSS --sandbox lab.rhai";
    diag_http_answers_another_status: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\nserve(b, 80, #{ proto: \"http\" });\nassert_http(a, \"http://10.0.0.2/\", #{ status: 404 });\n")], "$NSS --sandbox lab.rhai";
    diag_dns_server_not_running: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\nassert_dns(a, \"web.lab\", \"10.0.0.2\", #{ server: \"10.0.0.2\" });\n")], "$NSS --sandbox lab.rhai";
    diag_path_mtu_without_an_answer: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\nprint(path_mtu(a, \"10.0.0.9\", #{ timeout: 100 }));\n")], "$NSS --sandbox lab.rhai";
    diag_throughput_without_a_listener: [("lab.rhai", "let a = netns(\"a\");\nlet b = netns(\"b\");\nconnect(a, b, #{ addr: \"10.0.0.1/24\", peer_addr: \"10.0.0.2/24\" });\nthroughput(a, \"10.0.0.2:5001\");\n")], "$NSS --sandbox lab.rhai";
    diag_bad_capture_filter: [("lab.rhai", "let a = netns(\"a\");\nconnect(a, netns(\"b\"));\nlet cap = capture(a, #{ filter: \"tcp port\" });\n")], "$NSS plan lab.rhai";
    // (33 nodes on one /24 need 33 * 32 entries; a namespace has no gc_thresh3 of its own: 1024)
    diag_pingall_beyond_the_neighbour_table: [("lab.rhai", "import \"topo\" as topo;\nlet s = topo::star(33);\npingall(s.nodes);\n")], "$NSS --sandbox lab.rhai";
    // the command line and the process
    diag_not_root: [("lab.rhai", "netns(\"a\");\n")], "chmod 755 . && chmod 644 lab.rhai && as_nobody $NSS lab.rhai";
    diag_missing_script_file: [], "$NSS plan nothere.rhai";
    diag_bad_var_argument: [], "$NSS plan --var 1x=2 lab.rhai";
    diag_unknown_flag: [], "$NSS --bogus lab.rhai";
    diag_ui_listen_is_not_an_address: [], "$NSS ui somelab --listen 127.0.0.1";
    // (the lab signals nsscript, its parent, and waits until nsscript has taken the signal,
    // so that the next step is where the run stops)
    diag_interrupted: [("lab.rhai", "let a = netns(\"a\");\na.exec(\"kill -INT $PPID; while :; do :; done\");\nnetns(\"never\");\n")], "$NSS --sandbox lab.rhai";
}

/// Codes whose situation cannot be caused from outside; src/diag.rs renders them in a
/// unit test instead.
const RENDERED_BY_UNIT_TESTS: &[&str] = &["internal"];

/// The `nsscript::NAME` lines of a rendered report (the first line of each error).
fn codes_in(rendered: &str) -> BTreeSet<String> {
    rendered
        .lines()
        .filter_map(|l| l.strip_prefix("nsscript::"))
        .filter(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_error_code_has_a_rendered_catalogue_entry() {
    let run = plain(&[], "$NSS errors");
    run.ok();
    let listed: BTreeSet<String> =
        run.stdout.lines().map(|l| l.split_whitespace().next().unwrap_or("").trim_start_matches("nsscript::").to_string()).collect();
    assert!(listed.len() >= 40, "nsscript errors lists the catalogue:\n{}", run.stdout);
    let mut rendered = BTreeSet::new();
    for name in CATALOGUE {
        let path = format!("{}/tests/snapshots/lib__interactive__{name}.snap", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (run the catalogue tests first)"));
        let codes = codes_in(&text);
        assert!(!codes.is_empty(), "{name} renders no nsscript:: code:\n{text}");
        rendered.extend(codes);
    }
    rendered.extend(RENDERED_BY_UNIT_TESTS.iter().map(|s| s.to_string()));
    let untested: Vec<_> = listed.difference(&rendered).collect();
    let unknown: Vec<_> = rendered.difference(&listed).collect();
    assert!(untested.is_empty(), "codes without a catalogue entry in tests/interactive.rs: {untested:?}");
    assert!(unknown.is_empty(), "catalogue snapshots show codes `nsscript errors` does not list: {unknown:?}");
}

#[test]
fn readme_lists_every_error_code() {
    let run = plain(&[], "$NSS errors");
    run.ok();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    let start = readme.find("\n## Errors").expect("README has an ## Errors section");
    let section = &readme[start..];
    let section = &section[..section[1..].find("\n## ").map(|i| i + 1).unwrap_or(section.len())];
    for line in run.stdout.lines() {
        let (code, description) = line.split_once(char::is_whitespace).expect("CODE  DESCRIPTION");
        let row = format!("| `{code}` | {} |", description.trim().replace('|', "\\|"));
        assert!(section.contains(&row), "README's ## Errors lacks (or differs from `nsscript errors` in) the row\n{row}");
    }
}

#[test]
fn errors_subcommand_explains_one_code() {
    let run = plain(&[], "$NSS errors name_taken; section unknown; $NSS errors no_such_code 2>&1; echo \"exit $?\"");
    run.ok();
    assert!(run.stdout.starts_with("nsscript::name_taken\n  a name is already taken"), "{}", run.stdout);
    assert!(run.stdout.contains("  help: choose another name"), "{}", run.stdout);
    let unknown = run.section("unknown");
    assert!(unknown.contains("nsscript::usage") && unknown.contains("no error code \"no_such_code\""), "{unknown}");
    assert!(unknown.trim_end().ends_with("exit 2"), "{unknown}");
}

// ---- the REPL through a real terminal ----

/// Wait for a fresh prompt: one that starts a new line edit (rustyline turns bracketed
/// paste on then), not a redraw of the current line; keys typed before it would be
/// flushed when the terminal goes back to raw mode.
fn prompt<E: expectrl::Expect>(p: &mut E, which: &str) {
    let re = format!(r"\x1b\[\?2004h[\s\S]{{0,24}}?{}> ", regex_escape(which));
    if let Err(e) = p.expect(expectrl::Regex(re.as_str())) {
        panic!("no fresh {which:?} prompt: {e}");
    }
}

fn regex_escape(s: &str) -> String {
    s.chars().map(|c| if c.is_alphanumeric() { c.to_string() } else { format!("\\{c}") }).collect()
}

#[test]
fn repl_in_a_terminal_completes_names_keeps_functions_and_survives_errors() {
    use expectrl::{ControlCode, Expect, Regex};
    use std::time::Duration;
    let home = tempfile::tempdir().unwrap();
    let Some(mut cmd) = isolated_nsscript("repl --on-exit down") else { return };
    cmd.env("TERM", "xterm").env("HOME", home.path()).env_remove("NO_COLOR");
    let mut p = expectrl::Session::spawn(cmd).expect("spawn in a pty");
    p.set_expect_timeout(Some(Duration::from_secs(30)));
    prompt(&mut p, "nsscript");

    p.send_line(r#"let a = netns("alpha1"); connect(a, netns("beta"), #{ ifname: "eth0", addr: "10.7.0.1/24" });"#).unwrap();
    prompt(&mut p, "nsscript");

    // Tab inside a string literal completes the live namespace's name.
    p.send(r#"ns("alp"#).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send("\t").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send_line(r#"").name + "!""#).unwrap();
    p.expect("alpha1!").unwrap();
    prompt(&mut p, "nsscript");

    // Tab completes a function name (no other registry function starts with "conn").
    p.send("conn").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.send("\t").unwrap();
    // Before Tab the rest is only a hint ("conn" + dim "ect"); after it, the line holds it.
    p.expect("> connect").unwrap();
    p.send("\x15").unwrap(); // Ctrl-U: drop the line, we only watched it complete
    p.send_line("").unwrap();
    prompt(&mut p, "nsscript");

    // A function over several lines, called in a later entry.
    p.send_line("fn twice(x) {").unwrap();
    prompt(&mut p, "...");
    p.send_line("    x * 2").unwrap();
    prompt(&mut p, "...");
    p.send_line("}").unwrap();
    prompt(&mut p, "nsscript");
    p.send_line("twice(21) + 1000").unwrap();
    p.expect("1042").unwrap();
    prompt(&mut p, "nsscript");

    // An error is rendered; the session goes on with its state.
    p.send_line(r#"netsn("x")"#).unwrap();
    p.expect("nsscript::unknown_function").unwrap();
    p.expect("did you mean").unwrap();
    prompt(&mut p, "nsscript");
    p.send_line("twice(600) + 137").unwrap();
    p.expect("1337").unwrap();
    prompt(&mut p, "nsscript");

    // Ctrl-C abandons an unfinished entry.
    p.send_line("let y = [1,").unwrap();
    prompt(&mut p, "...");
    p.send(ControlCode::EndOfText).unwrap();
    p.expect("(entry dropped)").unwrap();
    prompt(&mut p, "nsscript");

    // :show is like ip -br; :help NAME comes from the registry.
    p.send_line(":show alpha1").unwrap();
    p.expect(Regex(r"eth0\s+\S+\s+10\.7\.0\.1/24")).unwrap();
    prompt(&mut p, "nsscript");
    p.send_line(":help connect").unwrap();
    p.expect("example:").unwrap();
    prompt(&mut p, "nsscript");

    // Ctrl-D leaves; --on-exit down takes the lab down.
    p.send(ControlCode::EndOfTransmission).unwrap();
    p.expect(Regex(r"removed \d+ object")).unwrap();
}

#[test]
fn repl_completion_and_hints_come_from_the_registry() {
    // Without a terminal: the REPL reads entries line by line; check :help and errors.
    let Some(run) = isolated(&[], r#"printf ':help\n:help nope_fn\n:help netns\nnetns("n1");\n:ls\n:down\n:ls\n' | $NSS repl 2>&1"#) else {
        return;
    };
    run.ok();
    assert!(run.stdout.contains("connect"), "{}", run.stdout);
    assert!(run.stdout.contains("no function \"nope_fn\""), "{}", run.stdout);
    assert!(run.stdout.contains("netns(name) -> Netns"), "{}", run.stdout);
    assert!(run.stdout.contains("  netns n1"), "{}", run.stdout);
    assert!(run.stdout.contains("removed 1 object"), "{}", run.stdout);
    assert!(run.stdout.contains("nothing built yet"), "{}", run.stdout);
}

#[test]
fn repl_renders_coded_errors_and_the_session_goes_on() {
    // Errors of the script, of the language and of the kernel, each rendered with its
    // code; the entries after them still run in the same session.
    let entries = [
        r#"let a = netns("r1");"#,
        r#"link(a, "nope").up();"#,
        "let x = ;",
        r#"veth("rv0", "rv1"); veth("rv1", "rv2");"#,
        r#"netns("r2"); print(`still here: ${a.name}`);"#,
        ":ls",
        ":down",
    ];
    let Some(run) = isolated(&[], &format!("printf '%s\\n' {} | $NSS repl 2>&1", entries.map(|e| format!("'{e}'")).join(" "))) else {
        return;
    };
    run.ok();
    for code in ["nsscript::unknown_link", "nsscript::syntax", "nsscript::name_taken"] {
        assert!(run.stdout.contains(code), "{code} in\n{}", run.stdout);
    }
    assert!(run.stdout.contains("still here: r1"), "{}", run.stdout);
    assert!(run.stdout.contains("  netns r2"), "{}", run.stdout);
}
