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
    "exec", "ns.exec(cmd: String | Array) -> #{ code, stdout, stderr }", "run a command inside ns (a string runs by sh -c; an array runs without a shell)";
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

/// The reference table of the README.
pub fn markdown() -> String {
    let mut out = String::from("| function | what it does |\n| --- | --- |\n");
    for f in FUNCTIONS {
        out.push_str(&format!("| `{}` | {} |\n", f.signature.replace('|', "\\|"), f.doc.replace('|', "\\|")));
    }
    out
}
