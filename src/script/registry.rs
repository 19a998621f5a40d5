//! The registry of script functions with their signatures and one-line docs: the
//! single source for "did you mean", help text and the README reference.

pub struct FnDoc {
    pub name: &'static str,
    pub signature: &'static str,
    pub doc: &'static str,
}

macro_rules! docs {
    ($($name:literal, $sig:literal, $doc:literal;)*) => { &[$(FnDoc { name: $name, signature: $sig, doc: $doc }),*] };
}

pub const FUNCTIONS: &[FnDoc] = docs![
    "host", "host() -> Netns", "the namespace nsscript runs in (the machine's, or the sandbox's)";
    "netns", "netns(name) -> Netns", "create a named namespace (/run/netns/NAME, visible to `ip netns`) with lo up";
    "ns", "ns(name) -> Netns", "a handle on a namespace that already exists (not created, not owned by the lab)";
    "lab", "lab(name) / lab() -> String", "name the lab (before anything is created) / the lab's name";
    "forward", "ns.forward(on: bool) -> Netns", "IPv4 and IPv6 forwarding on or off in ns";
    "ipv6", "ns.ipv6(on: bool) -> Netns", "IPv6 on or off in ns (off keeps big labs quiet: no DAD/MLD multicast from every interface)";
    "exec", "ns.exec(cmd: String | Array, #{ timeout? }) -> #{ code, stdout, stderr }", "run a command inside ns (a string runs by sh -c; an array runs without a shell); past timeout ms it is killed, code 124";
    "route", "ns.route(dest, via) -> Netns", "add a route: dest is \"default\" or a CIDR, via a gateway IP or a device name";
    "sysctl", "ns.sysctl(key, value) -> Netns", "set a sysctl inside ns, e.g. \"net.ipv4.ip_forward\"";
    "bridge", "bridge(name) / bridge(ns, name) -> Link", "create a bridge (up) in the host namespace or in ns";
    "veth", "veth(a, b) -> Link", "a veth pair a/b in the host namespace, down, like `ip link add a type veth peer name b`; returns a";
    "link", "link(name) / link(ns, name) -> Link", "a handle on an existing link";
    "up", "link.up() -> Link", "bring the link up";
    "down", "link.down() -> Link", "bring the link down";
    "addr", "link.addr(cidr) -> Link", "add an IPv4 or IPv6 address (IPv6 without DAD delay)";
    "master", "link.master(bridge) -> Link", "enslave the link to a bridge in the same namespace";
    "nomaster", "link.nomaster() -> Link", "release the link from its bridge";
    "move_to", "link.move_to(ns) -> Link", "move the link into another namespace; returns the moved link";
    "rename", "link.rename(name) -> Link", "rename the link; returns the renamed link";
    "mtu", "link.mtu(n) -> Link", "set the MTU";
    "mac", "link.mac(\"02:00:00:00:00:01\") -> Link", "set the MAC address";
    "peer", "link.peer() -> Link", "the other end of a veth";
    "delete", "link.delete()", "delete the link (a veth takes its peer with it)";
    "connect", "connect(ns, bridge|netns, #{ ifname, peer, addr, gw, mtu, peer_addr }) -> Link", "a veth from ns to a bridge or another namespace, created in place, both ends up; returns the inner end";
    "links", "links(ns) -> [#{ name, index, kind, up, state, mtu, mac, master }]", "the links of ns";
    "addrs", "addrs(ns) -> [#{ link, addr, family }]", "the addresses of ns";
    "routes", "routes(ns) -> [#{ dest, via, dev, family }]", "the main-table routes of ns";
    "sleep", "sleep(ms)", "wait";
    "assert", "assert(condition, message)", "fail the script with message unless condition holds";
    "vxlan", "vxlan(ns, name, #{ id, remote, group, local, dev, dstport, mtu, up }) -> Link", "a VXLAN link (VNI id, UDP dstport 4789 unless given); group needs dev; down unless up: true";
    "fdb_append", "fdb_append(link, mac, dst) -> Link", "append MAC -> remote VTEP dst to a VXLAN's forwarding table (00:00:00:00:00:00 = flood list)";
    "fdb", "fdb(ns) -> [#{ mac, dev, master, dst, vlan, vni, state, self }]", "the bridge and VXLAN forwarding tables of ns (`bridge fdb show`)";
    "vlan", "vlan(link, id) / vlan(link, id, #{ name, mtu, up }) -> Link", "an 802.1Q sub-interface named PARENT.ID (needs the kernel's 8021q)";
    "vlan_filtering", "bridge.vlan_filtering(on) -> Link", "turn VLAN filtering on a bridge on or off";
    "bridge_vlan", "port.bridge_vlan(vid) / port.bridge_vlan(vid, #{ pvid, untagged }) -> Link", "allow VLAN vid on a bridge port (pvid + untagged: an access port)";
    "macvlan", "macvlan(parent, name, mode) / macvlan(parent, name, mode, #{ mtu, up }) -> Link", "a macvlan child of parent; mode is bridge, private, vepa or passthru";
    "tap", "tap(name) / tap(ns, name, #{ owner, group, mtu, up }) -> Link", "a persistent tap device for a VM or a userspace peer (qemu -netdev tap,ifname=NAME,script=no)";
    "shape", "link.shape(#{ rate, burst, latency, delay, loss }) -> Link", "limit the link's egress rate with tbf (rate \"10mbit\"); delay and loss need netem";
    "unshape", "link.unshape() -> Link", "remove the link's shaping";
    // Issue 3: router labs.
    "snat", "snat(ns, #{ src, to, out?, dst?, not_dst? })", "iptables -t nat POSTROUTING -s SRC [-d DST | ! -d NOT_DST] [-o OUT] -j SNAT --to-source TO, added once";
    "masquerade", "masquerade(ns, #{ src, out, not_dst? })", "iptables -t nat POSTROUTING -s SRC -o OUT -j MASQUERADE, added once";
    "dnat", "dnat(ns, #{ proto, dport, to: \"IP:PORT\", \"in\"? | iif? })", "forward a port of ns's own addresses to IP:PORT (PREROUTING and OUTPUT, so ns itself reaches it too)";
    "forward_accept", "forward_accept(ns, #{ \"in\"? | iif?, out? | oif? })", "iptables -A FORWARD [-i IN] [-o OUT] -j ACCEPT, added once";
    "iptables", "iptables(ns, \"args\") -> String", "any iptables command inside ns; -A/-I/-P are added once and undone at down, others run as given (returns the output)";
    "spawn", "spawn(ns, cmd: String | Array, #{ listen?, wait? }) -> pid", "start a background process inside ns, stopped at down (or when a --sandbox run ends); listen: wait until that TCP port listens";
    "dhcp_server", "dhcp_server(ns, #{ iface, range: [first, last], router?, dns? }) -> pid", "run dnsmasq as DHCP server on iface inside ns (no ping delay), stopped at down";
    "dhcp_client", "dhcp_client(ns, iface, #{ timeout? }) -> #{ addr, prefix, router, server, dns, lease, ms }", "obtain a DHCP lease on iface, add the address and the default route via the router (never touches /etc/resolv.conf)";
    "ping", "ping(ns, addr, #{ count?, interval?, timeout? }) -> #{ ok, sent, received, rtt_ms, ms }", "ICMP echo sent natively from inside ns (no ping process)";
    "assert_ping", "assert_ping(ns, addr, #{ timeout?, interval? })", "fail unless addr answers a ping from ns within the window (default 2000 ms); the report names the route used";
    "assert_no_ping", "assert_no_ping(ns, addr, #{ timeout?, interval? })", "fail if addr answers a ping from ns within the window (default 1000 ms)";
    "pingall", "pingall() / pingall(nodes, #{ timeout, static_arp, check }) -> #{ ok, pairs, reached, failed, matrix, elapsed_ms }", "native ICMP between every ordered pair of nodes (namespaces or #{ ns, addr }) at once; fails naming each unreachable pair";
    // Issue 8: address arithmetic for labs and the stdlib.
    "cidr_host", "cidr_host(cidr, n) -> String", "the n-th address of cidr's network: cidr_host(\"10.1.0.0/24\", 5) is \"10.1.0.5\"; -1 is the last usable host";
    "cidr_addr", "cidr_addr(cidr, n) -> String", "the n-th address with the prefix, for link.addr(): cidr_addr(\"10.1.0.0/24\", 5) is \"10.1.0.5/24\"";
    "cidr_subnet", "cidr_subnet(cidr, prefix, i) -> String", "the i-th /prefix subnet of the block: cidr_subnet(\"10.0.0.0/16\", 30, 1) is \"10.0.0.4/30\"";
    "cidr_prefix", "cidr_prefix(cidr) -> i64", "the prefix length: cidr_prefix(\"10.1.0.5/24\") is 24";
    "cidr_ip", "cidr_ip(cidr) -> String", "the address without its prefix: cidr_ip(\"10.1.0.5/24\") is \"10.1.0.5\"";
    "cidr_network", "cidr_network(cidr) -> String", "the network in CIDR form, for routes: cidr_network(\"10.1.0.5/24\") is \"10.1.0.0/24\"";
    "cidr_size", "cidr_size(cidr) -> i64", "how many addresses the network holds (network and broadcast included)";
    "cidr_contains", "cidr_contains(cidr, ip) -> bool", "whether ip lies inside the network cidr";
];

pub fn find(name: &str) -> Option<&'static FnDoc> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// Registry names close to `name` (edit distance at most 2), best first.
pub fn similar(name: &str) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &'static str)> =
        FUNCTIONS.iter().map(|f| (distance(name, f.name), f.name)).filter(|(d, _)| *d <= 2).collect();
    scored.sort();
    scored.into_iter().map(|(_, n)| n).collect()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The reference table of the README: built-in functions, then the stdlib modules'
/// documented functions (from their `///` comments).
pub fn markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("| function | what it does |\n| --- | --- |\n");
    for f in FUNCTIONS {
        out.push_str(&format!("| `{}` | {} |\n", cell(f.signature), cell(f.doc)));
    }
    out.push_str("\nstdlib modules (`import \"NAME\" as NAME;`, embedded in the binary):\n\n| function | what it does |\n| --- | --- |\n");
    for d in crate::stdlib::docs() {
        out.push_str(&format!("| `{}::{}` | {} |\n", d.module, cell(&d.signature), cell(&d.description)));
    }
    out
}

/// Longer help for `:help NAME` in the REPL: (name, description, example). A function
/// without an entry here shows its one-line doc; entries are optional, keyed by name,
/// so the `docs!` lines above stay three fields.
pub const DETAILS: &[(&str, &str, &str)] = &[
    ("netns", "Creates /run/netns/NAME (so `ip netns` sees it) with lo up. Creating a namespace the lab already has is a no-op; a name taken by someone else is an error.", "let vm1 = netns(\"vm1\");"),
    ("host", "The namespace nsscript itself runs in: the machine's, or the sandbox's with --sandbox.", "bridge(\"br0\");  // same as bridge(host(), \"br0\")"),
    ("ns", "A handle on a namespace made by someone else; nsscript does not own it and never deletes it.", "let other = ns(\"existing\");"),
    ("bridge", "A Linux bridge, created up. Give it an address to make it the gateway of the namespaces plugged into it.", "let br = bridge(\"br0\").addr(\"10.0.0.1/24\");"),
    ("veth", "Both ends in the host namespace and down, exactly like `ip link add a type veth peer name b`; move the ends with .move_to(ns). connect() does the same in one call, faster.", "veth(\"veth0\", \"veth1\");\nlink(\"veth1\").move_to(netns(\"ns1\"));"),
    ("connect", "A veth whose inner end (ifname, default the first free ethN) is created inside ns and whose outer end goes to the bridge (enslaved) or the other namespace; both ends up; then addr and a default route via gw.", "connect(netns(\"vm1\"), br, #{ ifname: \"eth0\", addr: \"10.0.0.2/24\", gw: \"10.0.0.1\" });"),
    ("link", "A handle on a link that exists now; an unknown name is an error that lists the links there.", "link(ns1, \"veth1\").addr(\"192.168.1.2/24\").up();"),
    ("addr", "Adds an address with its prefix length; IPv6 addresses skip duplicate address detection so they work at once.", "link(ns0, \"veth0\").addr(\"192.168.1.1/24\").up();"),
    ("up", "Sets the link up (`ip link set NAME up`).", "link(\"veth0\").up();"),
    ("master", "Enslaves the link to a bridge in the same namespace (`ip link set NAME master BR`).", "link(\"veth0\").master(br).up();"),
    ("move_to", "Moves the link into ns; the kernel takes it down and drops its addresses. Returns the handle in its new namespace.", "let inner = link(\"veth1\").move_to(ns1);"),
    ("rename", "Renames the link (it must be down on older kernels).", "link(rt, \"link-in-rt\").rename(\"eth0\");"),
    ("route", "dest is \"default\" or a network (host bits zero); via is a gateway address on a connected subnet, or a device name.", "vm1.route(\"default\", \"10.0.0.254\");\nrt.route(\"10.1.0.0/24\", \"eth1\");"),
    ("exec", "Runs a command inside ns and waits; a string runs by sh -c, an array without a shell. Returns #{ code, stdout, stderr }.", "let r = vm1.exec(\"ping -c1 -W1 10.0.0.254\");\nassert(r.code == 0, r.stderr);"),
    ("forward", "Sets net.ipv4.ip_forward (and IPv6 forwarding when IPv6 is on) inside ns.", "netns(\"rt\").forward(true);"),
    ("sysctl", "Writes /proc/sys inside ns; integers and booleans are accepted as values.", "rt.sysctl(\"net.ipv4.ip_forward\", 1);"),
    ("links", "The links of ns as maps; in `nsscript plan` the answer comes from the plan's model.", "for l in links(vm1) { print(`${l.name} ${l.state}`); }"),
    ("addrs", "The addresses of ns as maps.", "addrs(vm1).filter(|a| a.family == 4)"),
    ("routes", "The main-table routes of ns as maps.", "routes(vm1).map(|r| r.dest)"),
    ("lab", "Names the lab before it creates anything (the default is the script file's stem); lab() returns the name.", "lab(\"router\");"),
    ("assert", "Fails the script (and rolls back what it built) unless condition is true.", "assert(r.code == 0, \"vm1 reaches the router\");"),
];

/// Whether a function is called as a method (`x.name(...)`).
pub fn is_method(f: &FnDoc) -> bool {
    f.signature.split('(').next().is_some_and(|head| head.contains('.'))
}

/// Registry names starting with `prefix`, methods only when `methods`.
pub fn completions(prefix: &str, methods: bool) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = FUNCTIONS
        .iter()
        .filter(|f| f.name.starts_with(prefix) && (!methods || is_method(f) || METHOD_TOO.contains(&f.name)))
        .map(|f| f.name)
        .collect();
    out.dedup();
    out
}

/// Functions that are documented as functions but are just as often called as methods.
const METHOD_TOO: &[&str] = &["exec", "route", "sysctl", "forward", "peer", "links", "addrs", "routes"];

/// The text of `:help NAME` (a built-in function, or a stdlib one as `module::name`
/// or plain `name`).
pub fn help(name: &str) -> Option<String> {
    let Some(f) = find(name) else {
        let (module, fname) = name.split_once("::").map(|(m, n)| (Some(m), n)).unwrap_or((None, name));
        let d = crate::stdlib::docs().into_iter().find(|d| d.name == fname && module.is_none_or(|m| m == d.module))?;
        let mut out = format!("{}::{}  (import \"{}\" as {};)\n\n  {}\n", d.module, d.signature, d.module, d.module, d.description);
        if !d.example.is_empty() {
            out.push_str("\nexample:\n");
            for line in d.example.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        return Some(out);
    };
    let mut out = format!("{}\n  {}\n", f.signature, f.doc);
    if let Some((_, desc, example)) = DETAILS.iter().find(|(n, _, _)| *n == name) {
        out.push_str(&format!("\n  {desc}\n\nexample:\n"));
        for line in example.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    Some(out)
}
