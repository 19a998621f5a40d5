//! Firewall and NAT: `snat`, `masquerade`, `dnat`, `forward_accept` as typed ops, and
//! `iptables(ns, "...")` as the escape. Each typed op knows its iptables rules (the
//! words `iptables -A` gets) and what it means to a packet, so the plan simulates NAT
//! from data. Rules are IPv4 (iptables).

use super::names::validate_ifname;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::Ipv4Network;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

/// One iptables rule: `-t TABLE -A CHAIN WORDS...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub words: Vec<String>,
}

impl Rule {
    fn new(table: &str, chain: &str, words: Vec<String>) -> Rule {
        Rule { table: table.to_string(), chain: chain.to_string(), words }
    }

    /// The rule's words as one string, quoted the way the iptables crate splits them
    /// back (`"a b"` stays one word).
    pub fn text(&self) -> String {
        self.words
            .iter()
            .map(|w| if w.contains(' ') || w.is_empty() { format!("\"{w}\"") } else { w.clone() })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `iptables -t TABLE VERB CHAIN [POS] WORDS...` inside ns, every word quoted.
    pub fn shell(&self, ns: &NsRef, verb: &'static str, pos: Option<u32>) -> String {
        let mut c = Sh::inside(ns, "iptables").raw("-t").w(&self.table).raw(verb).w(&self.chain);
        if let Some(p) = pos {
            c = c.w(p.to_string());
        }
        c.words(&self.words).done()
    }

    /// Whether two rules are the same rule (iptables compares them word by word).
    pub fn same(&self, other: &Rule) -> bool {
        self.table == other.table && self.chain == other.chain && self.words == other.words
    }
}

/// Source NAT as the plan's model simulates it: which packets, and what their source
/// becomes (`to` None: the address of the link they leave by, as MASQUERADE does).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceNat {
    pub src: Ipv4Network,
    pub dst: Option<Ipv4Network>,
    pub not_dst: Option<Ipv4Network>,
    pub out: Option<String>,
    pub to: Option<Ipv4Addr>,
}

impl SourceNat {
    /// Whether a packet from `src` to `dst` leaving by `out` is rewritten.
    pub fn applies(&self, src: IpAddr, dst: IpAddr, out: &str) -> bool {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src, dst) else { return false };
        self.src.contains(s)
            && self.dst.is_none_or(|n| n.contains(d))
            && self.not_dst.is_none_or(|n| !n.contains(d))
            && self.out.as_deref().is_none_or(|o| o == out)
    }
}

/// `snat(ns, #{ src, to, out?, dst?, not_dst? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snat {
    pub src: Ipv4Network,
    pub to: Ipv4Addr,
    pub out: Option<String>,
    pub dst: Option<Ipv4Network>,
    pub not_dst: Option<Ipv4Network>,
}

/// `masquerade(ns, #{ src, out, not_dst? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct Masquerade {
    pub src: Ipv4Network,
    pub out: String,
    pub not_dst: Option<Ipv4Network>,
}

/// `dnat(ns, #{ proto, dport, to, iif? })`: a port of the namespace's own addresses
/// forwarded to `to:to_port`.
#[derive(Clone, Debug, PartialEq)]
pub struct PortForward {
    pub proto: String,
    pub dport: u16,
    pub to: Ipv4Addr,
    pub to_port: u16,
    pub iif: Option<String>,
}

/// `forward_accept(ns, #{ iif?, oif? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardAccept {
    pub iif: Option<String>,
    pub oif: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FwOp {
    Snat(Snat),
    Masquerade(Masquerade),
    PortForward(PortForward),
    ForwardAccept(ForwardAccept),
    /// `-A CHAIN RULE` from `iptables(...)`, added once.
    Append(Rule),
    /// `-I CHAIN POS RULE` from `iptables(...)`, added once.
    Insert {
        rule: Rule,
        pos: u32,
    },
    /// `-P CHAIN POLICY` of a built-in chain.
    Policy {
        table: String,
        chain: String,
        policy: String,
    },
    /// `iptables ARGS` as given (listing, -N, -D, -F...): answered with its output, not recorded.
    Raw {
        args: Vec<String>,
    },
}

/// A firewall change inside a namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Firewall {
    pub ns: NsRef,
    pub op: FwOp,
}

fn net(n: &Ipv4Network) -> String {
    // iptables stores the network address; write it that way so `-C` and `-S` agree.
    format!("{}/{}", n.network(), n.prefix())
}

impl Snat {
    pub fn rule(&self) -> Rule {
        let mut w = vec!["-s".to_string(), net(&self.src)];
        if let Some(d) = &self.dst {
            w.extend(["-d".into(), net(d)]);
        }
        if let Some(d) = &self.not_dst {
            w.extend(["!".into(), "-d".into(), net(d)]);
        }
        if let Some(o) = &self.out {
            w.extend(["-o".into(), o.clone()]);
        }
        w.extend(["-j".into(), "SNAT".into(), "--to-source".into(), self.to.to_string()]);
        Rule::new("nat", "POSTROUTING", w)
    }

    pub fn source_nat(&self) -> SourceNat {
        SourceNat { src: self.src, dst: self.dst, not_dst: self.not_dst, out: self.out.clone(), to: Some(self.to) }
    }
}

impl Masquerade {
    pub fn rule(&self) -> Rule {
        let mut w = vec!["-s".to_string(), net(&self.src)];
        if let Some(d) = &self.not_dst {
            w.extend(["!".into(), "-d".into(), net(d)]);
        }
        w.extend(["-o".into(), self.out.clone(), "-j".into(), "MASQUERADE".into()]);
        Rule::new("nat", "POSTROUTING", w)
    }

    pub fn source_nat(&self) -> SourceNat {
        SourceNat { src: self.src, dst: None, not_dst: self.not_dst, out: Some(self.out.clone()), to: None }
    }
}

impl PortForward {
    fn matcher(&self) -> Vec<String> {
        let p = self.proto.clone();
        ["-p", &p, "-m", "addrtype", "--dst-type", "LOCAL", "-m", &p, "--dport", &self.dport.to_string(), "-j", "DNAT", "--to-destination"]
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once(format!("{}:{}", self.to, self.to_port)))
            .collect()
    }

    /// PREROUTING for traffic arriving at the router, OUTPUT for the router itself
    /// (both only for the router's own addresses; not over loopback: 127/8 cannot be
    /// forwarded).
    pub fn rules(&self) -> Vec<Rule> {
        let mut pre = Vec::new();
        if let Some(i) = &self.iif {
            pre.extend(["-i".to_string(), i.clone()]);
        }
        pre.extend(self.matcher());
        let mut out = vec!["!".to_string(), "-d".into(), "127.0.0.0/8".into()];
        out.extend(self.matcher());
        vec![Rule::new("nat", "PREROUTING", pre), Rule::new("nat", "OUTPUT", out)]
    }

    /// When FORWARD drops by default: the rule that lets the forwarded connection through.
    pub fn forward_rule() -> Rule {
        Rule::new(
            "filter",
            "FORWARD",
            ["-m", "conntrack", "--ctstate", "DNAT,ESTABLISHED,RELATED", "-j", "ACCEPT"].map(String::from).to_vec(),
        )
    }
}

impl ForwardAccept {
    pub fn rule(&self) -> Rule {
        let mut w = Vec::new();
        if let Some(i) = &self.iif {
            w.extend(["-i".to_string(), i.clone()]);
        }
        if let Some(o) = &self.oif {
            w.extend(["-o".to_string(), o.clone()]);
        }
        w.extend(["-j".to_string(), "ACCEPT".into()]);
        Rule::new("filter", "FORWARD", w)
    }
}

impl Firewall {
    pub fn validate(&self) -> Result<()> {
        let names: Vec<&String> = match &self.op {
            FwOp::Snat(s) => s.out.iter().collect(),
            FwOp::Masquerade(m) => vec![&m.out],
            FwOp::PortForward(p) => {
                if !matches!(p.proto.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(Error::new(Code::BadValue, format!("dnat(): invalid protocol {:?}", p.proto))
                        .help("port forwarding needs a protocol with ports: \"tcp\", \"udp\" or \"sctp\""));
                }
                p.iif.iter().collect()
            }
            FwOp::ForwardAccept(f) => f.iif.iter().chain(f.oif.iter()).collect(),
            _ => Vec::new(),
        };
        names.into_iter().try_for_each(|n| validate_ifname(n))
    }

    /// The rules a typed op adds, in order (None for the policy and the raw escape).
    /// A port forward's FORWARD rule depends on the chain's policy: see [`PortForward::forward_rule`].
    pub fn rules(&self) -> Option<Vec<Rule>> {
        Some(match &self.op {
            FwOp::Snat(s) => vec![s.rule()],
            FwOp::Masquerade(m) => vec![m.rule()],
            FwOp::PortForward(p) => p.rules(),
            FwOp::ForwardAccept(f) => vec![f.rule()],
            FwOp::Append(r) | FwOp::Insert { rule: r, .. } => vec![r.clone()],
            FwOp::Policy { .. } | FwOp::Raw { .. } => return None,
        })
    }

    /// What the op means to a packet's source, for the plan's model.
    pub fn source_nat(&self) -> Option<SourceNat> {
        match &self.op {
            FwOp::Snat(s) => Some(s.source_nat()),
            FwOp::Masquerade(m) => Some(m.source_nat()),
            _ => None,
        }
    }

    /// The shell of the op (the FORWARD rule of a port forward is written by the caller,
    /// which knows the chain's policy).
    pub fn shell(&self) -> Step {
        let ns = &self.ns;
        let cmds = match &self.op {
            FwOp::Insert { rule, pos } => vec![rule.shell(ns, "-I", Some(*pos))],
            FwOp::Policy { table, chain, policy } => {
                vec![Sh::inside(ns, "iptables").raw("-t").w(table).raw("-P").w(chain).w(policy).done()]
            }
            FwOp::Raw { args } => vec![Sh::inside(ns, "iptables").words(args).done()],
            _ => self.rules().unwrap_or_default().iter().map(|r| r.shell(ns, "-A", None)).collect(),
        };
        Step::new(format!("iptables in {ns}"), cmds)
    }
}

/// What the ledger keeps of a firewall change in a namespace that outlives the lab.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FwRecord {
    pub ns: NsRef,
    pub table: String,
    pub chain: String,
    pub undo: FwUndo,
}

/// How to undo an iptables change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FwUndo {
    /// Delete this rule from the chain (`-D CHAIN RULE`, the rule as [`Rule::text`]).
    Rule(String),
    /// Put this policy back.
    Policy(String),
}

/// iptables refused: its own message, verbatim, under our explanation.
pub fn iptables_refused(what: String, message: &str, exit_code: i32) -> Error {
    let msg = message.trim();
    Error::new(Code::IptablesRefused, what)
        .why(if msg.is_empty() { format!("iptables exited with code {exit_code}") } else { msg.to_string() })
        .help(
            "the message is iptables' own: check the rule's options (`man iptables`, `man iptables-extensions`), \
             or try the same arguments with `ip netns exec NS iptables ...`",
        )
}

/// Split a shell-like argument string: quotes group words, a backslash escapes.
pub fn split_words(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => match chars.next() {
                Some(n) => cur.push(n),
                None => return Err("it ends with a lone backslash".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                continue;
            }
            (None, c) => cur.push(c),
        }
        in_word = true;
    }
    if let Some(q) = quote {
        return Err(format!("a {q} quote is not closed"));
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `iptables(ns, "...")`: -A / -I / -P become recorded, idempotent changes; anything
/// else runs as given.
pub fn parse(text: &str) -> Result<FwOp> {
    let words =
        split_words(text).map_err(|why| Error::new(Code::BadValue, format!("cannot parse the iptables arguments {text:?}")).why(why))?;
    let mut table = "filter".to_string();
    let mut rest = Vec::new();
    let mut command: Option<(String, String, Option<String>)> = None;
    let mut it = words.iter().peekable();
    let need = |what: &str| {
        Error::new(Code::BadValue, format!("iptables {text}: {what} needs a chain"))
            .help("e.g. iptables(ns, \"-t nat -A POSTROUTING -o eth1 -j MASQUERADE\")")
    };
    while let Some(w) = it.next() {
        match w.as_str() {
            "-t" | "--table" => {
                table = it.next().cloned().ok_or_else(|| Error::new(Code::BadValue, format!("iptables {text}: -t needs a table")))?
            }
            "-A" | "--append" | "-I" | "--insert" | "-P" | "--policy" if command.is_none() => {
                let chain = it.next().cloned().ok_or_else(|| need(w))?;
                let extra = match w.as_str() {
                    "-I" | "--insert" => it.next_if(|n| n.parse::<u32>().is_ok()).cloned(),
                    "-P" | "--policy" => Some(
                        it.next()
                            .cloned()
                            .ok_or_else(|| Error::new(Code::BadValue, format!("iptables {text}: -P needs a policy (ACCEPT or DROP)")))?,
                    ),
                    _ => None,
                };
                command = Some((w.clone(), chain, extra));
            }
            _ => rest.push(w.clone()),
        }
    }
    Ok(match command {
        Some((c, chain, _)) if c == "-A" || c == "--append" => FwOp::Append(Rule { table, chain, words: rest }),
        Some((c, chain, pos)) if c == "-I" || c == "--insert" => {
            FwOp::Insert { rule: Rule { table, chain, words: rest }, pos: pos.and_then(|p| p.parse().ok()).unwrap_or(1) }
        }
        Some((_, chain, policy)) if rest.is_empty() => FwOp::Policy { table, chain, policy: policy.unwrap_or_default() },
        _ => FwOp::Raw { args: words },
    })
}

/// The rule a raw `iptables [-t TABLE] -D CHAIN RULE` deletes; None for other commands.
pub fn deleted_rule(args: &[String]) -> Option<Rule> {
    let i = args.iter().position(|a| a == "-D" || a == "--delete")?;
    let chain = args.get(i + 1)?;
    let t = args.iter().position(|a| a == "-t" || a == "--table");
    let table = t.and_then(|t| args.get(t + 1)).map_or("filter", |t| t.as_str());
    let skipped = |k: usize| k == i || k == i + 1 || t.is_some_and(|t| k == t || k == t + 1);
    let words = args.iter().enumerate().filter(|(k, _)| !skipped(*k)).map(|(_, a)| a.clone()).collect();
    Some(Rule::new(table, chain, words))
}

/// `-t nat -A X` -> ("nat", ["-A", "X"]); no -t: the filter table.
pub fn split_table(args: &[String]) -> (String, Vec<String>) {
    let mut table = "filter".to_string();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-t" || a == "--table" {
            if let Some(t) = it.next() {
                table = t.clone();
            }
        } else if let Some(t) = a.strip_prefix("--table=") {
            table = t.to_string();
        } else if let Some(t) = a.strip_prefix("-t").filter(|t| !t.is_empty() && !a.starts_with("--")) {
            table = t.to_string();
        } else {
            rest.push(a.clone());
        }
    }
    (table, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(t: &str) -> Vec<String> {
        t.split(' ').map(String::from).collect()
    }

    #[test]
    fn splitting_words() {
        assert_eq!(split_words(r#"-m comment --comment "a b" -j ACCEPT"#).unwrap(), ["-m", "comment", "--comment", "a b", "-j", "ACCEPT"]);
        assert_eq!(split_words("  -t nat   -S ").unwrap(), ["-t", "nat", "-S"]);
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn iptables_commands() {
        assert_eq!(
            parse("-t nat -A POSTROUTING -s 10.0.0.0/24 -j MASQUERADE").unwrap(),
            FwOp::Append(Rule::new("nat", "POSTROUTING", words("-s 10.0.0.0/24 -j MASQUERADE")))
        );
        assert_eq!(
            parse("-I FORWARD 2 -i br0 -j ACCEPT").unwrap(),
            FwOp::Insert { rule: Rule::new("filter", "FORWARD", words("-i br0 -j ACCEPT")), pos: 2 }
        );
        assert_eq!(
            parse("-P FORWARD DROP").unwrap(),
            FwOp::Policy { table: "filter".into(), chain: "FORWARD".into(), policy: "DROP".into() }
        );
        assert_eq!(parse("-t nat -S").unwrap(), FwOp::Raw { args: words("-t nat -S") });
        assert_eq!(split_table(&words("-tmangle -S")), ("mangle".to_string(), vec!["-S".to_string()]));
        assert_eq!(
            Rule::new("f", "C", vec!["-m".into(), "comment".into(), "--comment".into(), "a b".into()]).text(),
            "-m comment --comment \"a b\""
        );
    }

    #[test]
    fn typed_rules_are_what_iptables_is_given_and_deleted_by() {
        let snat = Snat {
            src: "10.0.0.7/24".parse().unwrap(),
            to: "192.168.100.11".parse().unwrap(),
            out: None,
            dst: None,
            not_dst: Some("10.0.0.0/24".parse().unwrap()),
        };
        assert_eq!(snat.rule().text(), "-s 10.0.0.0/24 ! -d 10.0.0.0/24 -j SNAT --to-source 192.168.100.11");
        let deleted =
            deleted_rule(&words("-t nat -D POSTROUTING -s 10.0.0.0/24 ! -d 10.0.0.0/24 -j SNAT --to-source 192.168.100.11")).unwrap();
        assert!(deleted.same(&snat.rule()));
        let nat = snat.source_nat();
        assert!(nat.applies("10.0.0.1".parse().unwrap(), "203.0.113.1".parse().unwrap(), "eth1"));
        assert!(!nat.applies("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "eth0"));
        let evil = Firewall {
            ns: NsRef::named("rt"),
            op: FwOp::Masquerade(Masquerade { src: "10.0.0.0/24".parse().unwrap(), out: "e;touch${IFS}M;".into(), not_dst: None }),
        };
        // A valid interface name to the kernel and iptables: quoted, it stays a name.
        assert_eq!(
            evil.shell().commands,
            ["ip netns exec rt iptables -t nat -A POSTROUTING -s 10.0.0.0/24 -o 'e;touch${IFS}M;' -j MASQUERADE"]
        );
        let comment = Firewall { ns: NsRef::Host, op: parse("-A INPUT -m comment --comment $(touch${IFS}P10) -j ACCEPT").unwrap() };
        assert_eq!(comment.shell().commands, ["iptables -t filter -A INPUT -m comment --comment '$(touch${IFS}P10)' -j ACCEPT"]);
    }
}
