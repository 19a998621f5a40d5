//! `firewall(ns, #{ chain, action, ... })`: one rule of the filter table, typed. What
//! each option means is here once: the words iptables gets ([`FilterRule::rule`]), the
//! checks both backends make ([`FilterRule::validate`]), and what the rule does to a
//! ping's packets ([`FilterRule::matches`]), which the plan's model uses to judge
//! reachability through firewalls.

use super::Rule;
use crate::error::{Code, Error, Result};
use crate::ops::names::validate_ifname;
use ipnetwork::IpNetwork;
use std::net::IpAddr;

fn bad(func: &str, what: String) -> Error {
    Error::new(Code::BadValue, format!("{func}(): {what}"))
}

/// A built-in chain of the filter table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    Input,
    Forward,
    Output,
}

impl Chain {
    pub fn parse(func: &str, text: &str) -> Result<Chain> {
        match text.trim().to_ascii_lowercase().as_str() {
            "input" => Ok(Chain::Input),
            "forward" => Ok(Chain::Forward),
            "output" => Ok(Chain::Output),
            _ => Err(bad(func, format!("unknown chain {text:?}"))
                .help("the chains are \"input\" (to the namespace), \"forward\" (through it) and \"output\" (from it)")),
        }
    }

    /// As iptables names it.
    pub fn name(self) -> &'static str {
        match self {
            Chain::Input => "INPUT",
            Chain::Forward => "FORWARD",
            Chain::Output => "OUTPUT",
        }
    }
}

/// What a rule does to the packets it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    /// Drop and tell the sender (ICMP port unreachable, iptables' default).
    Reject,
}

impl Action {
    pub fn parse(func: &str, text: &str) -> Result<Action> {
        match text.trim().to_ascii_lowercase().as_str() {
            "accept" => Ok(Action::Accept),
            "drop" => Ok(Action::Drop),
            "reject" => Ok(Action::Reject),
            _ => Err(bad(func, format!("unknown action {text:?}")).help("the actions are \"accept\", \"drop\" and \"reject\"")),
        }
    }

    pub fn target(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Drop => "DROP",
            Action::Reject => "REJECT",
        }
    }
}

/// A connection's state as conntrack sees it (`-m conntrack --ctstate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    New,
    Established,
    Related,
    Invalid,
    /// Its destination was rewritten (a port forward's connection).
    Dnat,
}

impl CtState {
    pub fn parse(func: &str, text: &str) -> Result<CtState> {
        match text.trim().to_ascii_lowercase().as_str() {
            "new" => Ok(CtState::New),
            "established" => Ok(CtState::Established),
            "related" => Ok(CtState::Related),
            "invalid" => Ok(CtState::Invalid),
            _ => Err(bad(func, format!("unknown connection state {text:?}"))
                .help("the states are \"new\", \"established\", \"related\" and \"invalid\", e.g. state: [\"established\", \"related\"]")),
        }
    }

    fn word(self) -> &'static str {
        match self {
            CtState::New => "NEW",
            CtState::Established => "ESTABLISHED",
            CtState::Related => "RELATED",
            CtState::Invalid => "INVALID",
            CtState::Dnat => "DNAT",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl Proto {
    pub fn parse(func: &str, text: &str) -> Result<Proto> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            "icmpv6" | "ipv6-icmp" => Ok(Proto::Icmpv6),
            _ => Err(bad(func, format!("unknown protocol {text:?}")).help("the protocols are \"tcp\", \"udp\", \"icmp\" and \"icmpv6\"")),
        }
    }

    /// As `-p` takes it, and the match module of its options.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Proto::Tcp => ("tcp", "tcp"),
            Proto::Udp => ("udp", "udp"),
            Proto::Icmp => ("icmp", "icmp"),
            Proto::Icmpv6 => ("ipv6-icmp", "icmp6"),
        }
    }
}

/// ICMP message types by iptables' names: (names, type, code). A name without a code
/// matches every code of its type.
const ICMP4: &[(&[&str], u8, Option<u8>)] = &[
    (&["echo-reply", "pong"], 0, None),
    (&["destination-unreachable"], 3, None),
    (&["network-unreachable"], 3, Some(0)),
    (&["host-unreachable"], 3, Some(1)),
    (&["protocol-unreachable"], 3, Some(2)),
    (&["port-unreachable"], 3, Some(3)),
    (&["fragmentation-needed"], 3, Some(4)),
    (&["source-route-failed"], 3, Some(5)),
    (&["network-unknown"], 3, Some(6)),
    (&["host-unknown"], 3, Some(7)),
    (&["network-prohibited"], 3, Some(9)),
    (&["host-prohibited"], 3, Some(10)),
    (&["tos-network-unreachable"], 3, Some(11)),
    (&["tos-host-unreachable"], 3, Some(12)),
    (&["communication-prohibited"], 3, Some(13)),
    (&["host-precedence-violation"], 3, Some(14)),
    (&["precedence-cutoff"], 3, Some(15)),
    (&["source-quench"], 4, None),
    (&["redirect"], 5, None),
    (&["network-redirect"], 5, Some(0)),
    (&["host-redirect"], 5, Some(1)),
    (&["tos-network-redirect"], 5, Some(2)),
    (&["tos-host-redirect"], 5, Some(3)),
    (&["echo-request", "ping"], 8, None),
    (&["router-advertisement"], 9, None),
    (&["router-solicitation"], 10, None),
    (&["time-exceeded", "ttl-exceeded"], 11, None),
    (&["ttl-zero-during-transit"], 11, Some(0)),
    (&["ttl-zero-during-reassembly"], 11, Some(1)),
    (&["parameter-problem"], 12, None),
    (&["ip-header-bad"], 12, Some(0)),
    (&["required-option-missing"], 12, Some(1)),
    (&["timestamp-request"], 13, None),
    (&["timestamp-reply"], 14, None),
    (&["address-mask-request"], 17, None),
    (&["address-mask-reply"], 18, None),
];

const ICMP6: &[(&[&str], u8, Option<u8>)] = &[
    (&["destination-unreachable"], 1, None),
    (&["no-route"], 1, Some(0)),
    (&["communication-prohibited"], 1, Some(1)),
    (&["beyond-scope"], 1, Some(2)),
    (&["address-unreachable"], 1, Some(3)),
    (&["port-unreachable"], 1, Some(4)),
    (&["failed-policy"], 1, Some(5)),
    (&["reject-route"], 1, Some(6)),
    (&["packet-too-big"], 2, None),
    (&["time-exceeded", "ttl-exceeded"], 3, None),
    (&["ttl-zero-during-transit"], 3, Some(0)),
    (&["ttl-zero-during-reassembly"], 3, Some(1)),
    (&["parameter-problem"], 4, None),
    (&["bad-header"], 4, Some(0)),
    (&["unknown-header-type"], 4, Some(1)),
    (&["unknown-option"], 4, Some(2)),
    (&["echo-request", "ping"], 128, None),
    (&["echo-reply", "pong"], 129, None),
    (&["router-solicitation"], 133, None),
    (&["router-advertisement"], 134, None),
    (&["neighbour-solicitation", "neighbor-solicitation"], 135, None),
    (&["neighbour-advertisement", "neighbor-advertisement"], 136, None),
    (&["redirect"], 137, None),
];

/// An ICMP type as the rule was given it (a name of iptables' or `TYPE[/CODE]`), and
/// what it matches: None is "any".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcmpType {
    pub text: String,
    pub matches: Option<(u8, Option<u8>)>,
}

impl IcmpType {
    /// `v6`: an ICMPv6 type (ip6tables' names).
    pub fn parse(func: &str, text: &str, v6: bool) -> Result<IcmpType> {
        let t = text.trim().to_ascii_lowercase();
        let table = if v6 { ICMP6 } else { ICMP4 };
        let matches = if t == "any" && !v6 {
            None
        } else if let Some((_, ty, code)) = table.iter().find(|(names, ..)| names.contains(&t.as_str())) {
            Some((*ty, *code))
        } else {
            let mut parts = t.splitn(2, '/').map(|p| p.parse::<u8>());
            match (parts.next(), parts.next()) {
                (Some(Ok(ty)), None) => Some((ty, None)),
                (Some(Ok(ty)), Some(Ok(code))) => Some((ty, Some(code))),
                _ => {
                    return Err(bad(func, format!("unknown ICMP{} type {text:?}", if v6 { "v6" } else { "" })).help(format!(
                        "give a name iptables knows (`{} -p {} -h` lists them: echo-request, echo-reply, destination-unreachable, \
                         time-exceeded...) or a number, TYPE or TYPE/CODE",
                        if v6 { "ip6tables" } else { "iptables" },
                        if v6 { "ipv6-icmp" } else { "icmp" },
                    )));
                }
            }
        };
        Ok(IcmpType { text: t, matches })
    }
}

/// `firewall(ns, #{ chain, action, src?, dst?, iif?, oif?, proto?, sport?, dport?,
/// state?, icmp_type?, comment? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterRule {
    pub chain: Chain,
    pub action: Action,
    pub src: Option<IpNetwork>,
    pub dst: Option<IpNetwork>,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub proto: Option<Proto>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub state: Vec<CtState>,
    pub icmp_type: Option<IcmpType>,
    pub comment: Option<String>,
}

/// What a probe carries above IP, as the plan's model follows it: a ping, or a TCP or
/// UDP exchange with a server's port (None: a port the receiver binds when it runs).
/// The client's port is the kernel's choice, which a plan cannot know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried {
    Ping,
    Tcp(Option<u16>),
    Udp(Option<u16>),
}

/// A probe's packet as the plan's model sees it at one chain.
#[derive(Clone, Copy, Debug)]
pub struct ProbePacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub iif: Option<&'a str>,
    pub oif: Option<&'a str>,
    /// The answer (echo reply, the server's side; conntrack state ESTABLISHED), not the
    /// request (NEW).
    pub reply: bool,
    pub carried: Carried,
}

fn net_word(n: &IpNetwork) -> String {
    // iptables stores the network address; written that way, `-C` and `-S` agree.
    format!("{}/{}", n.network(), n.prefix())
}

/// `eth+` names every link whose name starts with `eth`, as iptables reads it.
fn iface_matches(pattern: &str, name: Option<&str>) -> bool {
    match (pattern.strip_suffix('+'), name) {
        (_, None) => false,
        (Some(prefix), Some(n)) => n.starts_with(prefix),
        (None, Some(n)) => n == pattern,
    }
}

impl FilterRule {
    /// A rule that only says where and what (the other matches unset).
    pub fn new(chain: Chain, action: Action) -> FilterRule {
        FilterRule {
            chain,
            action,
            src: None,
            dst: None,
            iif: None,
            oif: None,
            proto: None,
            sport: None,
            dport: None,
            state: Vec::new(),
            icmp_type: None,
            comment: None,
        }
    }

    /// ip6tables' rule rather than iptables': an IPv6 address or ICMPv6.
    pub fn ipv6(&self) -> bool {
        self.src.iter().chain(self.dst.iter()).any(|n| n.is_ipv6()) || self.proto == Some(Proto::Icmpv6)
    }

    pub fn validate(&self, func: &str) -> Result<()> {
        for name in self.iif.iter().chain(self.oif.iter()) {
            // A trailing + is iptables' wildcard ("eth+"), not part of a name.
            validate_ifname(name.strip_suffix('+').filter(|n| !n.is_empty()).unwrap_or(name))?;
        }
        match (self.chain, &self.iif, &self.oif) {
            (Chain::Output, Some(_), _) => {
                return Err(bad(func, "iif does not apply to the output chain".into())
                    .why("a packet the namespace sends has not come in by any interface")
                    .help("use oif in the output chain, iif in input and forward"))
            }
            (Chain::Input, _, Some(_)) => {
                return Err(bad(func, "oif does not apply to the input chain".into())
                    .why("a packet delivered to the namespace leaves by no interface")
                    .help("use iif in the input chain, oif in output and forward"))
            }
            _ => {}
        }
        if let (Some(s), Some(d)) = (&self.src, &self.dst) {
            if s.is_ipv4() != d.is_ipv4() {
                return Err(
                    bad(func, format!("src {s} and dst {d} are of two families")).help("a rule is IPv4 (iptables) or IPv6 (ip6tables)")
                );
            }
        }
        let v6_addr = self.src.iter().chain(self.dst.iter()).any(|n| n.is_ipv6());
        let v4_addr = self.src.iter().chain(self.dst.iter()).any(|n| n.is_ipv4());
        match self.proto {
            Some(Proto::Icmp) if v6_addr => {
                return Err(bad(func, "proto \"icmp\" with IPv6 addresses".into()).help("IPv6 has ICMPv6: proto: \"icmpv6\""))
            }
            Some(Proto::Icmpv6) if v4_addr => {
                return Err(bad(func, "proto \"icmpv6\" with IPv4 addresses".into()).help("IPv4 has ICMP: proto: \"icmp\""))
            }
            _ => {}
        }
        if (self.sport.is_some() || self.dport.is_some()) && !matches!(self.proto, Some(Proto::Tcp | Proto::Udp)) {
            return Err(bad(func, "sport and dport need proto \"tcp\" or \"udp\"".into())
                .help("ports belong to TCP and UDP: e.g. #{ proto: \"tcp\", dport: 22 }"));
        }
        if self.icmp_type.is_some() && !matches!(self.proto, Some(Proto::Icmp | Proto::Icmpv6)) {
            return Err(bad(func, "icmp_type needs proto \"icmp\" or \"icmpv6\"".into())
                .help("e.g. #{ proto: \"icmp\", icmp_type: \"echo-request\" }"));
        }
        if let Some(c) = &self.comment {
            // The iptables crate splits rule text at quotes (either kind); iptables keeps 256 bytes.
            if c.is_empty() || c.len() > 255 || c.contains(['"', '\'', '\n', '\r', '\\']) {
                return Err(bad(func, format!("comment {c:?} cannot be an iptables comment"))
                    .help("a comment is 1 to 255 bytes without quotes (' or \"), backslashes or line breaks"));
            }
        }
        Ok(())
    }

    /// The rule's words, in the order iptables-save prints them.
    pub fn rule(&self) -> Rule {
        let mut w: Vec<String> = Vec::new();
        let mut push = |words: &[&str]| w.extend(words.iter().map(|s| s.to_string()));
        if let Some(s) = &self.src {
            push(&["-s", &net_word(s)]);
        }
        if let Some(d) = &self.dst {
            push(&["-d", &net_word(d)]);
        }
        if let Some(i) = &self.iif {
            push(&["-i", i]);
        }
        if let Some(o) = &self.oif {
            push(&["-o", o]);
        }
        if let Some(p) = self.proto {
            let (name, module) = p.words();
            push(&["-p", name]);
            if self.sport.is_some() || self.dport.is_some() || self.icmp_type.is_some() {
                push(&["-m", module]);
            }
            if let Some(port) = self.sport {
                push(&["--sport", &port.to_string()]);
            }
            if let Some(port) = self.dport {
                push(&["--dport", &port.to_string()]);
            }
            if let Some(t) = &self.icmp_type {
                push(&[if p == Proto::Icmpv6 { "--icmpv6-type" } else { "--icmp-type" }, &t.text]);
            }
        }
        if !self.state.is_empty() {
            let states: Vec<&str> = self.state.iter().map(|s| s.word()).collect();
            push(&["-m", "conntrack", "--ctstate", &states.join(",")]);
        }
        if let Some(c) = &self.comment {
            push(&["-m", "comment", "--comment", c]);
        }
        push(&["-j", self.action.target()]);
        Rule { ipv6: self.ipv6(), ..Rule::new("filter", self.chain.name(), w) }
    }

    /// Whether the rule matches a probe's packet at its chain (request or reply); None
    /// when that depends on a port the plan cannot know (the client's, or one the
    /// receiver binds when it runs).
    pub fn matches(&self, p: &ProbePacket) -> Option<bool> {
        let v6 = p.dst.is_ipv6();
        if self.ipv6() != v6 {
            return Some(false); // the other family's table
        }
        let addr_ok = |net: &Option<IpNetwork>, ip: IpAddr| net.is_none_or(|n| n.contains(ip));
        let proto_ok = match (self.proto, p.carried) {
            (None, _) => true,
            (Some(Proto::Icmp), Carried::Ping) => !v6,
            (Some(Proto::Icmpv6), Carried::Ping) => v6,
            (Some(Proto::Tcp), Carried::Tcp(_)) | (Some(Proto::Udp), Carried::Udp(_)) => true,
            _ => false,
        };
        let ty = match (v6, p.reply) {
            (false, false) => 8,
            (false, true) => 0,
            (true, false) => 128,
            (true, true) => 129,
        };
        let type_ok = match self.icmp_type.as_ref().map(|t| t.matches) {
            None | Some(None) => true,
            Some(Some((t, code))) => t == ty && code.is_none_or(|c| c == 0),
        };
        // The server's port is the destination on the way there and the source on the
        // way back; the other side is the client's.
        let (server_side, client_side) = if p.reply { (self.sport, self.dport) } else { (self.dport, self.sport) };
        let server_port = match p.carried {
            Carried::Tcp(port) | Carried::Udp(port) => port,
            Carried::Ping => None,
        };
        let state = if p.reply { CtState::Established } else { CtState::New };
        let known = addr_ok(&self.src, p.src)
            && addr_ok(&self.dst, p.dst)
            && self.iif.as_deref().is_none_or(|i| iface_matches(i, p.iif))
            && self.oif.as_deref().is_none_or(|o| iface_matches(o, p.oif))
            && proto_ok
            && type_ok
            && (self.state.is_empty() || self.state.contains(&state));
        match (server_side, server_port) {
            _ if !known => Some(false),
            (Some(want), Some(port)) if want != port => Some(false),
            (Some(_), None) => None,
            _ if client_side.is_some() => None,
            _ => Some(true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> FilterRule {
        FilterRule::new(Chain::Input, Action::Accept)
    }

    #[test]
    fn words_are_what_iptables_save_prints() {
        let r = FilterRule {
            src: Some("10.0.0.7/24".parse().unwrap()),
            iif: Some("eth0".into()),
            proto: Some(Proto::Tcp),
            dport: Some(22),
            state: vec![CtState::New],
            comment: Some("ssh from the lan".into()),
            ..rule()
        };
        assert_eq!(
            r.rule().text(),
            "-s 10.0.0.0/24 -i eth0 -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -m comment --comment \"ssh from the lan\" -j ACCEPT"
        );
        let ping6 = FilterRule {
            proto: Some(Proto::Icmpv6),
            icmp_type: Some(IcmpType::parse("firewall", "echo-request", true).unwrap()),
            ..FilterRule::new(Chain::Input, Action::Drop)
        };
        let r6 = ping6.rule();
        assert!(r6.ipv6 && r6.program() == "ip6tables");
        assert_eq!(r6.text(), "-p ipv6-icmp -m icmp6 --icmpv6-type echo-request -j DROP");
    }

    #[test]
    fn validation_refuses_what_iptables_would() {
        let out = FilterRule { chain: Chain::Output, iif: Some("eth0".into()), ..rule() };
        assert!(out.validate("firewall").unwrap_err().to_string().contains("iif does not apply to the output chain"));
        let ports = FilterRule { dport: Some(80), ..rule() };
        assert!(ports.validate("firewall").is_err());
        let mixed = FilterRule { src: Some("10.0.0.0/8".parse().unwrap()), dst: Some("fd00::/8".parse().unwrap()), ..rule() };
        assert!(mixed.validate("firewall").is_err());
        let quote = FilterRule { comment: Some("a \"b\"".into()), ..rule() };
        assert!(quote.validate("firewall").is_err());
        assert!(IcmpType::parse("firewall", "echo-nonsense", false).is_err());
        assert_eq!(IcmpType::parse("firewall", "3/4", false).unwrap().matches, Some((3, Some(4))));
        assert_eq!(IcmpType::parse("firewall", "fragmentation-needed", false).unwrap().matches, Some((3, Some(4))));
        let wild = FilterRule { chain: Chain::Forward, iif: Some("veth+".into()), ..rule() };
        assert!(wild.validate("firewall").is_ok());
    }

    #[test]
    fn what_a_rule_does_to_a_ping() {
        let echo = |reply, iif| ProbePacket {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            iif,
            oif: None,
            reply,
            carried: Carried::Ping,
        };
        let established = FilterRule { state: vec![CtState::Established, CtState::Related], ..rule() };
        assert_eq!(established.matches(&echo(false, Some("eth0"))), Some(false));
        assert_eq!(established.matches(&echo(true, Some("eth0"))), Some(true));
        let lo = FilterRule { iif: Some("lo".into()), ..rule() };
        assert_eq!(lo.matches(&echo(false, Some("eth0"))), Some(false));
        assert_eq!(lo.matches(&echo(false, Some("lo"))), Some(true));
        let veths = FilterRule { iif: Some("veth+".into()), ..rule() };
        assert_eq!(veths.matches(&echo(false, Some("veth3"))), Some(true));
        assert_eq!(veths.matches(&echo(false, Some("eth0"))), Some(false));
        let ssh = FilterRule { proto: Some(Proto::Tcp), dport: Some(22), ..rule() };
        assert_eq!(ssh.matches(&echo(false, None)), Some(false));
        let pings = FilterRule { proto: Some(Proto::Icmp), icmp_type: Some(IcmpType::parse("f", "ping", false).unwrap()), ..rule() };
        assert_eq!(pings.matches(&echo(false, None)), Some(true));
        assert_eq!(pings.matches(&echo(true, None)), Some(false));
        let v6 = FilterRule { src: Some("fd00::/8".parse().unwrap()), ..rule() };
        assert_eq!(v6.matches(&echo(false, None)), Some(false), "an ip6tables rule does not see IPv4");
    }

    #[test]
    fn what_a_rule_does_to_a_tcp_or_udp_exchange() {
        let packet = |carried, reply| ProbePacket {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            iif: None,
            oif: None,
            reply,
            carried,
        };
        let web = FilterRule { proto: Some(Proto::Tcp), dport: Some(80), ..rule() };
        assert_eq!(web.matches(&packet(Carried::Tcp(Some(80)), false)), Some(true), "the request to port 80");
        assert_eq!(web.matches(&packet(Carried::Tcp(Some(443)), false)), Some(false), "another port");
        assert_eq!(web.matches(&packet(Carried::Udp(Some(80)), false)), Some(false), "UDP is not TCP");
        assert_eq!(web.matches(&packet(Carried::Ping, false)), Some(false), "a ping has no port");
        assert_eq!(web.matches(&packet(Carried::Tcp(Some(80)), true)), None, "the reply goes to the client's port");
        assert_eq!(web.matches(&packet(Carried::Tcp(None), false)), None, "a port bound when it runs");
        let from_web = FilterRule { proto: Some(Proto::Tcp), sport: Some(80), ..rule() };
        assert_eq!(from_web.matches(&packet(Carried::Tcp(Some(80)), true)), Some(true), "the server's answer");
        let any_udp = FilterRule { proto: Some(Proto::Udp), ..rule() };
        assert_eq!(any_udp.matches(&packet(Carried::Udp(Some(53)), false)), Some(true));
        assert_eq!(rule().matches(&packet(Carried::Tcp(Some(80)), false)), Some(true), "no matches: every packet");
    }
}
