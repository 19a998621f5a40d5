//! Policy rules: `ns.rule(#{ from, to, iif, oif, fwmark, table, pref })` (`ip rule add`),
//! which pick the routing table a packet is looked up in; `rules(ns)` lists them.

use super::route::{table_name, TABLE_DEFAULT, TABLE_HELP, TABLE_LOCAL, TABLE_MAIN};
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// `ip [-6] rule add [from NET] [to NET] [iif DEV] [oif DEV] [fwmark N] table T [pref P]`.
/// Without `pref` the kernel numbers the rule itself, just before the lowest-numbered
/// rule after its local rule (32765, then 32764...). The ledger keeps it as it is when
/// the namespace outlives the lab; `down` deletes the rule the same fields name (the
/// kernel then matches any priority when none was given).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AddRule {
    pub ns: NsRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<IpNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<IpNetwork>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iif: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oif: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fwmark: Option<u32>,
    pub table: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pref: Option<u32>,
}

/// A rule as `rules(ns)` shows it (`ip rule`).
#[derive(Clone, Debug, PartialEq)]
pub struct RuleInfo {
    pub family: u8,
    pub pref: u32,
    /// `all`, an address, or a CIDR.
    pub from: String,
    pub to: String,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<u32>,
    /// 0 for rules that do not look up a table (unreachable, prohibit...).
    pub table: u32,
}

/// A selector as `ip rule` prints it: an address alone when it is a whole one.
pub fn selector(net: Option<IpNetwork>) -> String {
    match net {
        None => "all".into(),
        Some(n) if n.prefix() == if n.is_ipv4() { 32 } else { 128 } => n.ip().to_string(),
        Some(n) => n.to_string(),
    }
}

/// The rules every namespace starts with, per family: (pref, table).
pub fn kernel_rules(v6: bool) -> &'static [(u32, u32)] {
    if v6 {
        &[(0, TABLE_LOCAL), (32766, TABLE_MAIN)]
    } else {
        &[(0, TABLE_LOCAL), (32766, TABLE_MAIN), (32767, TABLE_DEFAULT)]
    }
}

impl AddRule {
    pub fn is_ipv6(&self) -> bool {
        self.from.or(self.to).is_some_and(|n| n.is_ipv6())
    }

    pub fn family(&self) -> u8 {
        if self.is_ipv6() {
            6
        } else {
            4
        }
    }

    pub fn validate(&self) -> Result<()> {
        let what = || format!("cannot add rule {} in {}", self.describe(), self.ns);
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f.is_ipv4() != t.is_ipv4() {
                return Err(Error::new(Code::BadValue, what())
                    .why("from and to are of different address families")
                    .help("a rule is IPv4 or IPv6: give both selectors in one family"));
            }
        }
        for net in [self.from, self.to].into_iter().flatten() {
            if net.ip() != net.network() {
                return Err(Error::new(Code::MalformedAddress, what())
                    .why(format!("{net} has host bits set for its prefix length"))
                    .help(format!("use the network address, e.g. \"{}/{}\", or a single address", net.network(), net.prefix())));
            }
        }
        for dev in [&self.iif, &self.oif].into_iter().flatten() {
            super::names::validate_ifname(dev)?;
        }
        if self.table == 0 {
            return Err(Error::new(Code::BadValue, what()).why("table 0 is no table").help(TABLE_HELP));
        }
        Ok(())
    }

    /// The rule in words, as `ip rule` prints it.
    pub fn describe(&self) -> String {
        let mut s = format!("from {}", selector(self.from));
        if self.to.is_some() {
            s.push_str(&format!(" to {}", selector(self.to)));
        }
        for (key, dev) in [("iif", &self.iif), ("oif", &self.oif)] {
            if let Some(d) = dev {
                s.push_str(&format!(" {key} {d}"));
            }
        }
        if let Some(m) = self.fwmark {
            s.push_str(&format!(" fwmark {m:#x}"));
        }
        s.push_str(&format!(" lookup {}", table_name(self.table)));
        if let Some(p) = self.pref {
            s.push_str(&format!(" pref {p}"));
        }
        s
    }

    /// Whether a packet matches the rule's selectors (what the kernel's fib_rule_match
    /// checks): `src` None is a packet whose source is not chosen yet (matches no
    /// `from`), `iif` "lo" one the namespace sends itself.
    pub fn matches(&self, src: Option<IpAddr>, dst: IpAddr, iif: &str, oif: Option<&str>, mark: u32) -> bool {
        let net_ok = |sel: Option<IpNetwork>, ip: Option<IpAddr>| sel.is_none_or(|n| ip.is_some_and(|ip| n.contains(ip)));
        net_ok(self.from, src)
            && net_ok(self.to, Some(dst))
            && self.iif.as_deref().is_none_or(|i| i == iif)
            && self.oif.as_deref().is_none_or(|o| Some(o) == oif)
            && self.fwmark.is_none_or(|m| m == mark)
    }

    /// The kernel refused the rule with `errno`.
    pub fn refused(&self, errno: i32) -> Error {
        let err = Error::new(Code::RuleRefused, format!("cannot add rule {} in {}", self.describe(), self.ns)).errno(errno);
        match errno {
            libc::EEXIST => err.help("a rule with this priority, these selectors and this table exists already (rules(ns) lists them)"),
            libc::EAFNOSUPPORT => err
                .help("this kernel has no policy routing for the family (CONFIG_IP_MULTIPLE_TABLES, CONFIG_IPV6_MULTIPLE_TABLES)")
                .with_code(Code::KernelLacksFeature),
            _ => err,
        }
    }

    /// The words after `ip rule add|del`: the same for both, so the undo names the same rule.
    fn spec(&self, c: Sh) -> Sh {
        let c = c.opt("from", self.from.map(|n| selector(Some(n)))).opt("to", self.to.map(|n| selector(Some(n))));
        let c = c.opt("iif", self.iif.as_ref()).opt("oif", self.oif.as_ref()).opt("fwmark", self.fwmark.map(|m| format!("{m:#x}")));
        c.raw("table").w(table_name(self.table)).opt("pref", self.pref)
    }

    pub fn shell(&self) -> Step {
        Step::new(
            format!("rule {} in {}", self.describe(), self.ns),
            vec![self.spec(Sh::ip_family(&self.ns, self.is_ipv6()).raw("rule add")).done()],
        )
    }

    /// `ip rule del ...` of the same rule (the plan's undo).
    pub fn undo_shell(&self) -> String {
        self.spec(Sh::ip_family(&self.ns, self.is_ipv6()).raw("rule del")).done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AddRule {
        AddRule {
            ns: NsRef::named("rt"),
            from: Some("10.0.0.12/32".parse().unwrap()),
            to: None,
            iif: None,
            oif: None,
            fwmark: None,
            table: 2,
            pref: None,
        }
    }

    #[test]
    fn reads_as_ip_rule_writes_it() {
        assert_eq!(rule().shell().commands, ["ip -n rt rule add from 10.0.0.12 table 2"]);
        let r = AddRule { to: Some("fd00::/8".parse().unwrap()), from: None, fwmark: Some(7), pref: Some(100), table: 254, ..rule() };
        assert_eq!(r.undo_shell(), "ip -n rt -6 rule del to fd00::/8 fwmark 0x7 table main pref 100");
        assert_eq!(r.describe(), "from all to fd00::/8 fwmark 0x7 lookup main pref 100");
    }

    #[test]
    fn selectors_match_like_the_kernels() {
        let r = rule();
        let dst = "203.0.113.1".parse().unwrap();
        assert!(r.matches(Some("10.0.0.12".parse().unwrap()), dst, "eth0", None, 0));
        assert!(!r.matches(None, dst, "lo", None, 0), "a source not chosen yet matches no from");
        let marked = AddRule { from: None, fwmark: Some(1), iif: Some("eth0".into()), ..rule() };
        assert!(marked.matches(None, dst, "eth0", None, 1));
        assert!(!marked.matches(None, dst, "eth0", None, 0));
        assert!(!marked.matches(None, dst, "lo", None, 1));
    }

    #[test]
    fn checks_both_backends_share() {
        assert_eq!(AddRule { from: Some("10.0.0.5/24".parse().unwrap()), ..rule() }.validate().unwrap_err().code, Code::MalformedAddress);
        assert_eq!(AddRule { to: Some("fd00::/8".parse().unwrap()), ..rule() }.validate().unwrap_err().code, Code::BadValue);
        assert_eq!(AddRule { table: 0, ..rule() }.validate().unwrap_err().code, Code::BadValue);
        assert_eq!(rule().refused(libc::EEXIST).code, Code::RuleRefused);
    }
}
