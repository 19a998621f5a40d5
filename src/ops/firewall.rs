//! Firewall and NAT: `snat`, `masquerade`, `dnat` (one back end or several, spread
//! evenly), `forward_accept`, `firewall` (one filter rule), `policy`, `clamp_mss` as
//! typed ops, and `iptables(ns, "...")` as the escape (`-N CHAIN` made once). Each typed
//! op knows its iptables rules (the words `iptables -A` gets, written in one place) and
//! what it means to a packet, so the plan simulates NAT and filtering from data. Rules
//! are IPv4 (iptables) unless a filter rule names IPv6 (ip6tables).

mod filter;

pub use filter::{Action, Carried, Chain, CtState, FilterRule, IcmpType, ProbePacket, Proto};

use super::names::validate_ifname;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::{IpNetwork, Ipv4Network};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

/// One iptables rule: `-t TABLE -A CHAIN WORDS...` (ip6tables when `ipv6`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: String,
    pub chain: String,
    pub words: Vec<String>,
    pub ipv6: bool,
}

impl Rule {
    pub fn new(table: &str, chain: &str, words: Vec<String>) -> Rule {
        Rule { table: table.to_string(), chain: chain.to_string(), words, ipv6: false }
    }

    /// The program that takes the rule: `iptables` or `ip6tables`.
    pub fn program(&self) -> &'static str {
        if self.ipv6 {
            "ip6tables"
        } else {
            "iptables"
        }
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
        let mut c = Sh::inside(ns, self.program()).raw("-t").w(&self.table).raw(verb).w(&self.chain);
        if let Some(p) = pos {
            c = c.w(p.to_string());
        }
        c.words(&self.words).done()
    }

    /// Whether two rules are the same rule (iptables compares them word by word).
    pub fn same(&self, other: &Rule) -> bool {
        self.table == other.table && self.chain == other.chain && self.words == other.words && self.ipv6 == other.ipv6
    }

    /// How reports name the rule: `iptables -t nat -A POSTROUTING -s ...`.
    pub fn describe(&self) -> String {
        format!("{} -t {} -A {} {}", self.program(), self.table, self.chain, self.text())
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

/// `dnat(ns, #{ proto, dport, to, iif?, dst? })`: a port of the namespace's own
/// addresses (or of `dst`) forwarded to `to`; several back ends share the connections
/// evenly (see [`PortForward::rules`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PortForward {
    pub proto: String,
    pub dport: u16,
    pub to: Vec<SocketAddrV4>,
    pub iif: Option<String>,
    pub dst: Option<Ipv4Network>,
}

/// `forward_accept(ns, #{ iif?, oif?, src?, dst? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardAccept {
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub src: Option<IpNetwork>,
    pub dst: Option<IpNetwork>,
}

/// `clamp_mss(ns, #{ oif?, mss? })`: the MSS of forwarded SYNs cut to the path MTU (or
/// to `mss`), so that TCP works across a link with a smaller MTU whose ICMP "fragmentation
/// needed" does not come back.
#[derive(Clone, Debug, PartialEq)]
pub struct ClampMss {
    pub oif: Option<String>,
    pub mss: Option<u16>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FwOp {
    Snat(Snat),
    Masquerade(Masquerade),
    PortForward(PortForward),
    ForwardAccept(ForwardAccept),
    /// `firewall(ns, #{ ... })`: one filter rule, added once.
    Filter(FilterRule),
    ClampMss(ClampMss),
    /// `-A CHAIN RULE` from `iptables(...)`, added once.
    Append(Rule),
    /// `-I CHAIN POS RULE` from `iptables(...)`, added once.
    Insert {
        rule: Rule,
        pos: u32,
    },
    /// `-P CHAIN POLICY` of a built-in chain (`policy(ns, chain, action)`, or `iptables`).
    Policy {
        table: String,
        chain: String,
        policy: String,
    },
    /// `-N CHAIN` from `iptables(...)`: a chain, made once.
    NewChain {
        table: String,
        chain: String,
    },
    /// `iptables ARGS` as given (listing, -D, -F, -X...): answered with its output, not recorded.
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
    /// One rule per back end in each of PREROUTING (traffic arriving at the router)
    /// and OUTPUT (the router itself; not over loopback: 127/8 cannot be forwarded),
    /// for the router's own addresses unless `dst` names the address. With N back ends
    /// the i-th rule takes every (N-i)-th new connection that reaches it (`-m statistic
    /// --mode nth`, a counter per rule): the first takes 1/N of them, the second 1/(N-1)
    /// of the rest, ... the last the rest, so each back end gets an equal share. (A DNAT
    /// rule sees a connection's first packet only.)
    pub fn rules(&self) -> Vec<Rule> {
        let n = self.to.len();
        let mut out = Vec::new();
        for chain in ["PREROUTING", "OUTPUT"] {
            for (i, backend) in self.to.iter().enumerate() {
                let mut w: Vec<String> = Vec::new();
                match (&self.dst, chain) {
                    (Some(d), _) => w.extend(["-d".into(), net(d)]),
                    (None, "OUTPUT") => w.extend(["!".into(), "-d".into(), "127.0.0.0/8".into()]),
                    _ => {}
                }
                if let (Some(iif), "PREROUTING") = (&self.iif, chain) {
                    w.extend(["-i".into(), iif.clone()]);
                }
                w.extend(["-p".into(), self.proto.clone()]);
                if self.dst.is_none() {
                    w.extend(["-m", "addrtype", "--dst-type", "LOCAL"].map(String::from));
                }
                w.extend(["-m".into(), self.proto.clone(), "--dport".into(), self.dport.to_string()]);
                if i + 1 < n {
                    w.extend(["-m", "statistic", "--mode", "nth", "--every"].map(String::from));
                    w.extend([(n - i).to_string(), "--packet".into(), "0".into()]);
                }
                w.extend(["-j".into(), "DNAT".into(), "--to-destination".into(), backend.to_string()]);
                out.push(Rule::new("nat", chain, w));
            }
        }
        out
    }

    /// When FORWARD drops by default: the rule that lets the forwarded connection through.
    pub fn forward_filter() -> FilterRule {
        FilterRule { state: vec![CtState::Dnat, CtState::Established, CtState::Related], ..FilterRule::new(Chain::Forward, Action::Accept) }
    }

    fn validate(&self) -> Result<()> {
        if !matches!(self.proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(Error::new(Code::BadValue, format!("dnat(): invalid protocol {:?}", self.proto))
                .help("port forwarding needs a protocol with ports: \"tcp\", \"udp\" or \"sctp\""));
        }
        if self.to.is_empty() {
            return Err(Error::new(Code::MissingOption, "dnat(): to names no back end").help("e.g. to: [\"10.0.0.1:80\", \"10.0.0.2:80\"]"));
        }
        if let Some(dup) = self.to.iter().enumerate().find_map(|(i, a)| self.to[..i].contains(a).then_some(a)) {
            return Err(Error::new(Code::BadValue, format!("dnat(): the back end {dup} is named twice"))
                .help("name each back end once: they share the connections evenly"));
        }
        if let Some(d) = self.dst.filter(|d| d.ip().is_loopback()) {
            return Err(Error::new(Code::BadValue, format!("dnat(): dst {d} is a loopback address"))
                .why("the kernel does not forward what is sent to 127.0.0.0/8")
                .help("give the address the clients connect to, or leave dst out for the router's own addresses"));
        }
        self.iif.iter().try_for_each(|n| validate_ifname(n))
    }
}

impl ForwardAccept {
    /// What the rule is, as a filter rule (its words are written there).
    pub fn filter(&self) -> FilterRule {
        FilterRule {
            iif: self.iif.clone(),
            oif: self.oif.clone(),
            src: self.src,
            dst: self.dst,
            ..FilterRule::new(Chain::Forward, Action::Accept)
        }
    }
}

impl ClampMss {
    pub fn rule(&self) -> Rule {
        let mut w = Vec::new();
        if let Some(o) = &self.oif {
            w.extend(["-o".to_string(), o.clone()]);
        }
        w.extend(["-p", "tcp", "-m", "tcp", "--tcp-flags", "SYN,RST", "SYN", "-j", "TCPMSS"].map(String::from));
        match self.mss {
            Some(m) => w.extend(["--set-mss".to_string(), m.to_string()]),
            None => w.push("--clamp-mss-to-pmtu".into()),
        }
        Rule::new("mangle", "FORWARD", w)
    }

    fn validate(&self) -> Result<()> {
        if let Some(m) = self.mss.filter(|m| !(88..=65495).contains(m)) {
            return Err(Error::new(Code::BadValue, format!("clamp_mss(): mss {m} is out of range"))
                .why("TCP's smallest MSS is 88 bytes (the kernel's TCP_MIN_MSS), its largest 65495")
                .help("give the MTU of the narrow link minus 40 (IPv4 and TCP headers), e.g. 1360 for an MTU of 1400"));
        }
        self.oif.iter().try_for_each(|n| validate_ifname(n))
    }
}

/// The built-in chains of an iptables table (the ones with a policy).
fn built_in_chains(table: &str) -> &'static [&'static str] {
    match table {
        "filter" | "security" => &["INPUT", "FORWARD", "OUTPUT"],
        "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        "raw" => &["PREROUTING", "OUTPUT"],
        _ => &[],
    }
}

/// A name `iptables -N` takes: 1 to 28 bytes, no white space, not an option and not a
/// target's or a built-in chain's name. (Also what a ledger may name, see lab::verify.)
pub fn validate_chain_name(table: &str, chain: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(Code::BadValue, format!("invalid chain name {chain:?}"))
            .why(why.to_string())
            .help("a chain of your own is 1 to 28 letters, digits, '-', '_' or '.', e.g. \"LAB-IN\""))
    };
    if built_in_chains("filter").iter().chain(built_in_chains("mangle")).any(|c| *c == chain)
        || ["ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG", "DNAT", "SNAT", "MASQUERADE", "TCPMSS"].contains(&chain)
    {
        return bad("it is the name of a built-in chain or a target");
    }
    if !["filter", "nat", "mangle", "raw", "security"].contains(&table) {
        return Err(Error::new(Code::BadValue, format!("unknown iptables table {table:?}"))
            .help("the tables are filter, nat, mangle, raw and security"));
    }
    if chain.is_empty() || chain.len() > 28 {
        return bad("iptables takes 1 to 28 bytes");
    }
    if chain.starts_with('-') || !chain.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return bad("it starts with '-' or has a character other than letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// A table and chain a ledger may name: a built-in chain, or one `-N` could make.
pub fn validate_table_chain(table: &str, chain: &str) -> Result<()> {
    if built_in_chains(table).contains(&chain) {
        return Ok(());
    }
    validate_chain_name(table, chain)
}

impl Firewall {
    pub fn validate(&self) -> Result<()> {
        let names: Vec<&String> = match &self.op {
            FwOp::Snat(s) => s.out.iter().collect(),
            FwOp::Masquerade(m) => vec![&m.out],
            FwOp::PortForward(p) => return p.validate(),
            FwOp::ForwardAccept(f) => return f.filter().validate("forward_accept"),
            FwOp::Filter(f) => return f.validate("firewall"),
            FwOp::ClampMss(c) => return c.validate(),
            FwOp::NewChain { table, chain } => return validate_chain_name(table, chain),
            FwOp::Policy { table, chain, policy } => {
                if !built_in_chains(table).contains(&chain.as_str()) {
                    return Err(Error::new(Code::BadValue, format!("the chain {chain} of table {table} has no policy"))
                        .why("only built-in chains have policies")
                        .help(format!("the built-in chains of {table} are {}", built_in_chains(table).join(", "))));
                }
                if policy != "ACCEPT" && policy != "DROP" {
                    return Err(Error::new(Code::BadValue, format!("invalid policy {policy:?} for {chain}"))
                        .help("a chain's policy is ACCEPT or DROP (reject with a rule: firewall(ns, #{ chain, action: \"reject\" }))"));
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        names.into_iter().try_for_each(|n| validate_ifname(n))
    }

    /// The rules a typed op adds, in order (None for the policy, chains and the raw escape).
    /// A port forward's FORWARD rule depends on the chain's policy: see [`PortForward::forward_filter`].
    pub fn rules(&self) -> Option<Vec<Rule>> {
        Some(match &self.op {
            FwOp::Snat(s) => vec![s.rule()],
            FwOp::Masquerade(m) => vec![m.rule()],
            FwOp::PortForward(p) => p.rules(),
            FwOp::ForwardAccept(f) => vec![f.filter().rule()],
            FwOp::Filter(f) => vec![f.rule()],
            FwOp::ClampMss(c) => vec![c.rule()],
            FwOp::Append(r) | FwOp::Insert { rule: r, .. } => vec![r.clone()],
            FwOp::Policy { .. } | FwOp::NewChain { .. } | FwOp::Raw { .. } => return None,
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

    /// What the op's filter rule does to packets, for the plan's model (None: it adds no
    /// filter rule, or one the model does not know the meaning of: a raw one).
    pub fn filter(&self) -> Option<FilterRule> {
        match &self.op {
            FwOp::Filter(f) => Some(f.clone()),
            FwOp::ForwardAccept(f) => Some(f.filter()),
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
            FwOp::NewChain { table, chain } => vec![Sh::inside(ns, "iptables").raw("-t").w(table).raw("-N").w(chain).done()],
            FwOp::Raw { args } => vec![Sh::inside(ns, "iptables").words(args).done()],
            _ => self.rules().unwrap_or_default().iter().map(|r| r.shell(ns, "-A", None)).collect(),
        };
        Step::new(format!("iptables in {ns}"), cmds)
    }
}

/// The undo of a chain of the lab's own (`-N`): emptied, then deleted (the rules that
/// jump to it are gone by then), as shell.
pub fn chain_undo_shell(ns: &NsRef, table: &str, chain: &str) -> [String; 2] {
    [
        Sh::inside(ns, "iptables").raw("-t").w(table).raw("-F").w(chain).done(),
        Sh::inside(ns, "iptables").raw("-t").w(table).raw("-X").w(chain).done(),
    ]
}

/// What the ledger keeps of a firewall change in a namespace that outlives the lab.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FwRecord {
    pub ns: NsRef,
    pub table: String,
    pub chain: String,
    pub undo: FwUndo,
    /// An ip6tables rule (ledgers written before IPv6 rules existed have none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
}

/// How to undo an iptables change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FwUndo {
    /// Delete this rule from the chain (`-D CHAIN RULE`, the rule as [`Rule::text`]).
    Rule(String),
    /// Put this policy back.
    Policy(String),
    /// A chain of the lab's own (`-N`): emptied and deleted, after the rules (which may
    /// jump to it).
    Chain,
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
    old_negation(&words)?;
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
            "-A" | "--append" | "-I" | "--insert" | "-P" | "--policy" | "-N" | "--new-chain" if command.is_none() => {
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
        Some((c, chain, _)) if c == "-A" || c == "--append" => FwOp::Append(Rule::new(&table, &chain, rest)),
        Some((c, chain, pos)) if c == "-I" || c == "--insert" => {
            FwOp::Insert { rule: Rule::new(&table, &chain, rest), pos: pos.and_then(|p| p.parse().ok()).unwrap_or(1) }
        }
        Some((c, chain, _)) if (c == "-N" || c == "--new-chain") && rest.is_empty() => FwOp::NewChain { table, chain },
        Some((c, chain, policy)) if (c == "-P" || c == "--policy") && rest.is_empty() => {
            FwOp::Policy { table, chain, policy: policy.unwrap_or_default() }
        }
        _ => FwOp::Raw { args: words },
    })
}

/// The netfilter HOWTO (and iptables before 1.4.3) negated a match after its option:
/// `-i ! ppp0`. iptables 1.8 takes `!` there for the option's value and refuses the word
/// after it ("Bad argument `ppp0'"), so the rule is refused here, by both backends, with
/// how iptables 1.8 writes it.
fn old_negation(words: &[String]) -> Result<()> {
    for w in words.windows(3) {
        let (option, bang, value) = (&w[0], &w[1], &w[2]);
        if option.starts_with('-') && option.len() > 1 && bang == "!" && !value.starts_with('-') {
            return Err(Error::new(Code::IptablesRefused, format!("iptables refuses `{option} ! {value}`"))
                .why(format!(
                    "that is how iptables before 1.4.3 (and the netfilter HOWTO) negated a match; iptables 1.8 reads `!` as the \
                     value of {option} and refuses {value} (\"Bad argument `{value}'\")"
                ))
                .help(format!("iptables 1.8 writes the negation before the option: `! {option} {value}`")));
        }
    }
    Ok(())
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

/// The chain a raw `iptables [-t TABLE] -X CHAIN` deletes, with its table.
pub fn deleted_chain(args: &[String]) -> Option<(String, String)> {
    let (table, rest) = split_table(args);
    match rest.as_slice() {
        [x, chain] if x == "-X" || x == "--delete-chain" => Some((table, chain.clone())),
        _ => None,
    }
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

    #[test]
    fn a_load_balancer_gives_each_back_end_its_share() {
        let lb = PortForward {
            proto: "tcp".into(),
            dport: 80,
            to: ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:8080"].iter().map(|a| a.parse().unwrap()).collect(),
            iif: Some("eth1".into()),
            dst: None,
        };
        let texts: Vec<String> = lb.rules().iter().map(|r| format!("{} {}", r.chain, r.text())).collect();
        let stat = |every: &str| format!("-m statistic --mode nth --every {every} --packet 0 ");
        let pre = "PREROUTING -i eth1 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 80";
        let out = "OUTPUT ! -d 127.0.0.0/8 -p tcp -m addrtype --dst-type LOCAL -m tcp --dport 80";
        assert_eq!(
            texts,
            [
                format!("{pre} {}-j DNAT --to-destination 10.0.0.1:80", stat("3")),
                format!("{pre} {}-j DNAT --to-destination 10.0.0.2:80", stat("2")),
                format!("{pre} -j DNAT --to-destination 10.0.0.3:8080"),
                format!("{out} {}-j DNAT --to-destination 10.0.0.1:80", stat("3")),
                format!("{out} {}-j DNAT --to-destination 10.0.0.2:80", stat("2")),
                format!("{out} -j DNAT --to-destination 10.0.0.3:8080"),
            ]
        );
        // A virtual address instead of the router's own ones.
        let vip = PortForward { dst: Some("10.9.9.9/32".parse().unwrap()), to: lb.to[..1].to_vec(), iif: None, ..lb.clone() };
        assert_eq!(vip.rules()[0].text(), "-d 10.9.9.9/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.0.0.1:80");
        let twice = PortForward { to: vec![lb.to[0], lb.to[0]], ..lb };
        assert!(Firewall { ns: NsRef::Host, op: FwOp::PortForward(twice) }.validate().is_err());
    }

    #[test]
    fn chains_mss_clamping_and_the_howtos_old_negation() {
        assert_eq!(parse("-t mangle -N LAB-MARK").unwrap(), FwOp::NewChain { table: "mangle".into(), chain: "LAB-MARK".into() });
        assert!(Firewall { ns: NsRef::Host, op: parse("-N INPUT").unwrap() }.validate().is_err());
        assert!(Firewall { ns: NsRef::Host, op: parse("-N has space").unwrap() }.validate().is_ok(), "-N with words after is raw");
        assert_eq!(deleted_chain(&words("-t mangle -X LAB-MARK")), Some(("mangle".into(), "LAB-MARK".into())));
        let clamp = ClampMss { oif: Some("wan0".into()), mss: None };
        assert_eq!(clamp.rule().text(), "-o wan0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu");
        assert_eq!(ClampMss { oif: None, mss: Some(1200) }.rule().text(), "-p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1200");
        assert!(Firewall { ns: NsRef::Host, op: FwOp::ClampMss(ClampMss { oif: None, mss: Some(40) }) }.validate().is_err());
        let old = parse("-A INPUT -i ! ppp0 -j ACCEPT").unwrap_err();
        assert_eq!(old.code, Code::IptablesRefused);
        assert_eq!(old.help.as_deref(), Some("iptables 1.8 writes the negation before the option: `! -i ppp0`"));
        assert!(parse("-A INPUT ! -i ppp0 -j ACCEPT").is_ok());
        assert!(parse("-A INPUT -m conntrack ! --ctstate NEW -j ACCEPT").is_ok());
        let policy = |p: &str| Firewall { ns: NsRef::Host, op: parse(p).unwrap() }.validate();
        assert!(policy("-P FORWARD DROP").is_ok() && policy("-P FORWARD REJECT").is_err() && policy("-t nat -P FORWARD DROP").is_err());
    }
}
