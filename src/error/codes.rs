//! The catalogue of errors: one code per situation a user can meet.
//!
//! Every [`Error`](super::Error) carries one of these, and so does every report
//! `diag` renders; `nsscript errors` prints this list and README.md's "Errors"
//! section mirrors it. A code names the situation, not the errno: the kernel's
//! answer is in the report's `why`, and one code covers all the ways the same thing
//! can go wrong. Adding a code needs a rendering test (tests/interactive.rs checks
//! that every code printed by `nsscript errors` is rendered by one).

macro_rules! catalogue {
    ($($variant:ident $name:literal: $description:literal, help: $help:literal;)*) => {
        /// A stable error code, shown as `nsscript::NAME`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in catalogue order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code's stable name (snake case, without the `nsscript::` prefix).
            pub fn name(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            /// One line: the situation the code stands for.
            pub fn description(self) -> &'static str {
                match self {
                    $(Code::$variant => $description,)*
                }
            }

            /// What to do about it in general, shown when the error has no help of its own.
            pub fn help(self) -> &'static str {
                match self {
                    $(Code::$variant => $help,)*
                }
            }
        }
    };
}

catalogue! {
    // ---- the script language (Rhai) ----
    Syntax "syntax":
        "a script (or a module it imports) does not parse",
        help: "the label points at the first place the parser could not read; the language is Rhai (https://rhai.rs/book/)";
    UnknownFunction "unknown_function":
        "a script calls a function that does not exist",
        help: "`nsscript functions` lists the functions a lab can call";
    WrongArguments "wrong_arguments":
        "a script calls a function that exists with arguments of the wrong number or types",
        help: "`nsscript functions` shows how each function is called";
    UnknownVariable "unknown_variable":
        "a script uses a variable that was never defined",
        help: "define it with `let NAME = ...;` before its first use, or pass it with --var NAME=VALUE";
    UnknownModule "unknown_module":
        "a script imports a module that is neither in stdlib/ nor a file beside the lab",
        help: "stdlib modules are imported by name (import \"topo\" as topo); other imports are files relative to the lab";
    ScriptLimit "script_limit":
        "a script grew a string, array or map past nsscript's limits (16 MiB, 1,048,576 items), or called itself too deep",
        help: "a lab never needs that much: look for a loop that doubles a value, or a function that calls itself without end";
    ScriptError "script_error":
        "the script failed by itself: throw, a type mismatch, an index out of range, a division by zero...",
        help: "the message is the script's own (or Rhai's): fix the script at the place shown";

    // ---- arguments and options ----
    UnknownOption "unknown_option":
        "an options map #{ ... } has a key the function does not know",
        help: "`nsscript functions` lists each function's options";
    MissingOption "missing_option":
        "a function needs an option (or an argument) that was not given",
        help: "`nsscript functions` shows what each function needs";
    BadValue "bad_value":
        "a value has the wrong type, is malformed (a rate, a size, a time, a port...) or is out of range",
        help: "`nsscript functions` shows the kind of value each argument and option takes";
    MalformedAddress "malformed_address":
        "an IP address, a CIDR (address/prefix), a route destination or a MAC address does not parse",
        help: "write IPv4 as \"10.0.0.1\", with a prefix as \"10.0.0.1/24\", IPv6 as \"fd00::1/64\", a MAC as \"02:00:00:00:00:01\"";
    InvalidName "invalid_name":
        "an interface, namespace or lab name breaks the kernel's or nsscript's naming rules (too long, '/', spaces...)",
        help: "interface names are 1 to 15 bytes without '/', ':' or white space; namespace and lab names use letters, digits, '-', '_' and '.'";
    OutsideSubnet "outside_subnet":
        "an address or a number lies outside the subnet it must be in (a host or subnet number, a DHCP range)",
        help: "pick it inside the subnet, away from its network and broadcast addresses";
    NoAddress "no_address":
        "a namespace or interface needs an address for this and has none (IPv4, or a usable IPv6 one: global, link-local, DAD done)",
        help: "give it an address first, e.g. link(ns, \"eth0\").addr(\"10.0.0.1/24\"), or wait for SLAAC with wait_addr(ns, iface)";
    BadWiring "bad_wiring":
        "the wiring asked for cannot exist: a namespace connected to itself, two veth ends with one name, a bridge port in another namespace...",
        help: "each end of a link needs its own name and place; a bridge and its ports share one namespace";
    SysctlRefused "sysctl_refused":
        "a sysctl key is not a network-namespace key, does not exist, or refused the value",
        help: "namespace sysctls live under net., e.g. \"net.ipv4.ip_forward\"; check the name with `sysctl -a`";

    // ---- the lab's objects ----
    UnknownNamespace "unknown_namespace":
        "a namespace is named that does not exist (or is not part of the lab)",
        help: "create it first with netns(\"NAME\"); `ip netns list` shows the namespaces there are";
    UnknownLink "unknown_link":
        "a link is named that does not exist in that namespace",
        help: "links(ns) lists the links of a namespace";
    NameTaken "name_taken":
        "a name is already taken by a link or namespace that does not belong to this lab",
        help: "choose another name, or remove the other link or namespace first";
    NoPeer "no_peer":
        ".peer() was asked of a link that is not one end of a veth pair",
        help: ".peer() works on veth links";
    NotOwned "not_owned":
        "nsscript refuses to change something its lab did not create (the machine's own links, other namespaces)",
        help: "nsscript only changes what its lab created or what lives in the lab's namespaces";

    // ---- the kernel refused ----
    LinkCreateRefused "link_create_refused":
        "the kernel refused to create a link (for another reason than its name being taken)",
        help: "the errno says why the kernel refused: check the link's options (mtu, parent, id...)";
    LinkChangeRefused "link_change_refused":
        "the kernel refused to change a link: up, down, mtu, address, master, name or namespace",
        help: "the errno says why the kernel refused; `ip -d link show` shows the link as it is";
    AddressRefused "address_refused":
        "the kernel refused to add or remove an address (it may be there already)",
        help: "`ip addr` in the namespace shows the addresses it has";
    RouteRefused "route_refused":
        "the kernel refused to add a route (it may be there already, or its device is down)",
        help: "`ip route` in the namespace shows the routes it has";
    GatewayUnreachable "gateway_unreachable":
        "a route's gateway is not on any subnet the namespace is connected to",
        help: "add an address on the gateway's subnet (and bring its link up) before the route";
    RuleRefused "rule_refused":
        "the kernel refused to add a policy rule (ip rule): one like it exists, or a selector is wrong",
        help: "rules(ns) lists the rules of a namespace (`ip rule` shows the same)";
    NoRoute "no_route":
        "route_get found no way for the packet: no route to it, or an unreachable, prohibit or blackhole route",
        help: "routes(ns, #{ table: \"all\" }) and rules(ns) show the tables and the rules that lead to them";
    KernelLacksFeature "kernel_lacks_feature":
        "this kernel lacks something the lab uses: VLAN, VXLAN, macvlan, a qdisc (netem), the tun driver...",
        help: "load the module (modprobe) or use a kernel built with it";
    KernelRefused "kernel_refused":
        "the kernel refused another request: a look-up, a delete, a forwarding entry, a qdisc, bringing lo up...",
        help: "the errno says why the kernel refused; `ip` would be refused the same way";
    NamespaceFailed "namespace_failed":
        "a network namespace could not be created, opened, entered or mounted under /run/netns",
        help: "nsscript needs a writable /run/netns and CAP_SYS_ADMIN; `ip netns add` would fail the same way";
    SandboxFailed "sandbox_failed":
        "--sandbox could not set up its private network and mount namespaces",
        help: "the sandbox needs root, or unprivileged user namespaces for a user who is not root";

    // ---- labs ----
    LabUp "lab_up":
        "a lab of that name is already up",
        help: "take it down with `nsscript down LAB`, rebuild it with --replace, or name this run otherwise with --name";
    LabNotUp "lab_not_up":
        "no lab of that name is up",
        help: "`nsscript ls` lists the labs that are up";
    LabBusy "lab_busy":
        "another nsscript run holds the lab's lock",
        help: "two runs never work on one lab at once: wait for the other run to end, then try again";
    LateLabName "late_lab_name":
        "lab(\"NAME\") was called after the script had created something",
        help: "call lab(\"NAME\") at the top of the script, before anything is created";
    LedgerTampered "ledger_tampered":
        "a lab's ledger (what `down` removes) is damaged or could have been written by someone else, so nothing is removed",
        help: "inspect the ledger under /run/nsscript/labs/LAB and remove what is left by hand";
    IoFailed "io_failed":
        "a file, directory or terminal nsscript needs could not be read or written (lab state under /run/nsscript, a log...)",
        help: "the errno says why the system refused; nsscript keeps its state under /run/nsscript";

    // ---- programs ----
    ProgramMissing "program_missing":
        "a program the lab needs is not installed (dnsmasq, udhcpc, iptables, a command given to exec or spawn)",
        help: "install the package that provides it, or fix the command's name";
    ExecFailed "exec_failed":
        "a command could not be run in a namespace (an empty command, or the system refused to start it)",
        help: "give the program and its arguments, e.g. exec(ns, [\"ip\", \"addr\"]) or exec(ns, \"ip addr\")";
    DaemonFailed "daemon_failed":
        "a background program (spawn, dnsmasq) exited or was killed at once, or did not listen in time",
        help: "run the same command with exec(ns, cmd) to see it fail in the foreground";
    IptablesRefused "iptables_refused":
        "iptables refused a rule (or could not be run)",
        help: "the message is iptables' own: check the rule's options (`man iptables`, `man iptables-extensions`)";
    DnsFailed "dns_failed":
        "a DNS query (resolve, assert_dns) got no answer: its server is unreachable, did not answer in time, or failed (SERVFAIL, REFUSED); or assert_dns's answer lacks the addresses expected",
        help: "check that a DNS server runs at that address (dns_server) and holds the record, and that the namespace reaches it";
    NoLease "no_lease":
        "a DHCP client got no lease",
        help: "start a DHCP server on the same segment first, check both ends are up and bridged, or give the client longer";

    // ---- checks ----
    AssertFailed "assert_failed":
        "an assert(...) in the script found its condition false",
        help: "the message is the script's: the lab does not look the way the script expects";
    PingFailed "ping_failed":
        "a ping check failed: no reply where one was expected, or a reply where none was",
        help: "check each hop's addresses and routes (routes(ns), addrs(ns)), forwarding, NAT and firewall rules";
    StpTimeout "stp_timeout":
        "wait_stp's bridge still had ports listening, learning or disabled when the time was up",
        help: "each port needs its link up; listening and learning take forward_delay each (bridge(name, #{ stp: true, forward_delay: 2000 }))";
    TcpFailed "tcp_failed":
        "a TCP check failed: the connection was refused (RST), went unanswered or had no route, or the reply was not the one expected",
        help: "the report says which; check the server listens (ss -ltn in its namespace), the routes both ways and the firewall";
    UdpFailed "udp_failed":
        "a UDP check got no reply (or ICMP port unreachable, or not the reply expected)",
        help: "check the server listens (ss -lun in its namespace), the routes both ways and the firewall";
    HttpFailed "http_failed":
        "an HTTP check failed: no connection, a broken answer, another status, or a body without the text expected",
        help: "the report says which; fetch the URL by hand (`nsscript exec LAB NS -- busybox wget -O - URL`)";
    MtuFailed "mtu_failed":
        "path_mtu found no path MTU: the destination answered no ping of any size",
        help: "path_mtu probes with pings: the destination must answer them (assert_ping)";
    ThroughputFailed "throughput_failed":
        "a throughput stream could not start: no connection to the receiver",
        help: "a stream needs a route there and back and a listener: check them with assert_tcp";
    ChecksFailed "checks_failed":
        "one or more checks of the lab failed (the script went on past each failed check block)",
        help: "each failed check was reported above where it failed; fix the lab, then run it again (or `nsscript check LAB`)";
    NeighbourLimit "neighbour_limit":
        "pingall would need more neighbour (ARP) entries than the kernel keeps",
        help: "pass #{ static_arp: true } to pingall, or probe fewer nodes at a time";
    BadFilter "bad_filter":
        "a capture filter is not tcpdump's filter syntax (libpcap cannot compile it)",
        help: "filters are tcpdump's syntax (man pcap-filter): \"icmp or arp\", \"tcp port 80\", \"host 10.0.0.1\"";

    // ---- the command line and the process ----
    NotRoot "not_root":
        "nsscript lacks the privilege it needs (root: CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_NET_RAW)",
        help: "run it with sudo, or try it without root with --sandbox or `nsscript plan`";
    MissingScript "missing_script":
        "the lab script (or a file loaded in the REPL) cannot be read",
        help: "check the path of the lab script";
    BadVar "bad_var":
        "a --var argument is not KEY=VALUE with a valid variable name",
        help: "write --var KEY=VALUE; KEY has letters, digits and '_' and does not start with a digit";
    Usage "usage":
        "the command line is not one nsscript understands (an unknown flag or subcommand, a missing argument)",
        help: "`nsscript --help` and `nsscript SUBCOMMAND --help` show the usage";
    UiFailed "ui_failed":
        "the live view (--ui, `nsscript ui`) could not listen on its address or serve the page",
        help: "give --listen an address of this machine and a free port (the default is 127.0.0.1 with a free port)";
    Interrupted "interrupted":
        "SIGINT (Ctrl-C) or SIGTERM stopped the run",
        help: "the build stops between two steps; what it created is rolled back, or kept with --keep";
    Internal "internal":
        "nsscript itself failed (a thread, a runtime, a file handle); cannot be caused from a script, so it is only tested by a unit test",
        help: "this is a bug or a broken environment: please report it with the command and the script";
}

impl Code {
    /// The code as miette shows it: `nsscript::link_exists`.
    pub fn qualified(self) -> String {
        format!("nsscript::{}", self.name())
    }

    /// The code named `name`, with or without the `nsscript::` prefix.
    pub fn by_name(name: &str) -> Option<Code> {
        let name = name.strip_prefix("nsscript::").unwrap_or(name);
        Code::ALL.iter().copied().find(|c| c.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Code;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_snake_case_and_described() {
        let mut seen = HashSet::new();
        for code in Code::ALL {
            let name = code.name();
            assert!(seen.insert(name), "{name} twice");
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name} is not snake case");
            assert!(!code.description().is_empty() && !code.description().contains('\n'), "{name}: one line of description");
            assert!(!code.help().is_empty(), "{name}: a help text");
            assert_eq!(Code::by_name(&code.qualified()), Some(*code));
        }
    }
}
