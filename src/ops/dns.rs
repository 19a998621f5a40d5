//! DNS: `dns_server` (dnsmasq answering the lab's own names, see `ops::dnsmasq`) and
//! `resolve` (a query sent natively from inside a namespace: no `dig` process).

use super::dnsmasq::{base_args, validate_dns_name, Dnsmasq, Service};
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use std::net::IpAddr;

/// `dns_server(ns, #{ iface?, records, domain?, upstream? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsServer {
    pub ns: NsRef,
    /// Where it listens (None: every interface of ns).
    pub iface: Option<String>,
    /// name -> addresses (A or AAAA by each address's family), in the script's order.
    pub records: Vec<(String, Vec<IpAddr>)>,
    pub domain: Option<String>,
    /// Where names it does not know are asked; none: they do not exist (NXDOMAIN).
    pub upstream: Vec<IpAddr>,
}

impl DnsServer {
    pub fn validate(&self) -> Result<()> {
        if let Some(i) = &self.iface {
            super::names::validate_ifname(i)?;
        }
        if let Some(d) = &self.domain {
            validate_dns_name("dns_server", "domain", d)?;
        }
        for (name, addrs) in &self.records {
            validate_dns_name("dns_server", "name", name)?;
            if addrs.is_empty() {
                return Err(Error::new(Code::BadValue, format!("dns_server(): the name {name:?} has no address"))
                    .help("records map each name to an address or an array of them: #{ web: \"10.0.0.80\" }"));
            }
        }
        Ok(())
    }

    /// The names a record answers to: as given, and in the lab's domain too when it is
    /// unqualified.
    pub fn names_of<'a>(&'a self, name: &'a str) -> Vec<String> {
        match &self.domain {
            Some(d) if !name.contains('.') => vec![format!("{name}.{d}"), name.to_string()],
            _ => vec![name.trim_end_matches('.').to_string()],
        }
    }

    /// What it answers for `name` of `family` (4 or 6), as dnsmasq does: exact names,
    /// case-insensitive.
    pub fn answer(&self, name: &str, family: u8) -> Vec<IpAddr> {
        let want = name.trim_end_matches('.').to_ascii_lowercase();
        self.records
            .iter()
            .filter(|(n, _)| self.names_of(n).iter().any(|x| x.to_ascii_lowercase() == want))
            .flat_map(|(_, addrs)| addrs.iter().filter(|a| a.is_ipv4() == (family == 4)).copied())
            .collect()
    }

    pub fn dnsmasq(&self) -> Dnsmasq {
        let mut args = base_args();
        if let Some(i) = &self.iface {
            args.extend([format!("--interface={i}"), "--except-interface=lo".into()]);
        }
        for (name, addrs) in &self.records {
            // One record per address: dnsmasq answers all the records of a name.
            for a in addrs {
                args.push(format!("--host-record={},{a}", self.names_of(name).join(",")));
            }
        }
        if let Some(d) = &self.domain {
            args.extend([format!("--domain={d}"), format!("--local=/{d}/")]);
        }
        if self.upstream.is_empty() {
            // No upstream: every other name does not exist (rather than "refused").
            args.push("--local=/#/".into());
        }
        args.extend(self.upstream.iter().map(|u| format!("--server={u}")));
        let n = self.records.len();
        let names = if n == 1 { "1 name".to_string() } else { format!("{n} names") };
        Dnsmasq {
            ns: self.ns.clone(),
            service: Service::Dns,
            iface: self.iface.clone(),
            args,
            leases: false,
            describe: format!("dnsmasq (DNS{}, {names})", self.iface.as_ref().map(|i| format!(" on {i}")).unwrap_or_default()),
            label: format!(
                "dns{} ({names}{})",
                self.iface.as_ref().map(|i| format!(" {i}")).unwrap_or_default(),
                self.domain.as_ref().map(|d| format!(", .{d}")).unwrap_or_default()
            ),
        }
    }
}

/// `resolve(ns, name, #{ server?, family?, timeout? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolve {
    pub ns: NsRef,
    pub name: String,
    /// None: the DNS server ns learnt from its DHCP lease, or else the lab's DNS server.
    pub server: Option<IpAddr>,
    /// 4 (A), 6 (AAAA), or None for both.
    pub family: Option<u8>,
    pub timeout_ms: u32,
}

impl Resolve {
    pub fn validate(&self) -> Result<()> {
        validate_dns_name("resolve", "name", &self.name)
    }

    /// The record types asked, in order.
    pub fn families(&self) -> Vec<u8> {
        match self.family {
            Some(f) => vec![f],
            None => vec![4, 6],
        }
    }

    /// The server to ask: the one given, else the first a DHCP lease of ns named
    /// (`leased`), else the lab's first DNS server (`lab`).
    pub fn server(&self, leased: &[IpAddr], lab: &[IpAddr]) -> Result<IpAddr> {
        if let Some(s) = self.server.or(leased.first().copied()).or(lab.first().copied()) {
            return Ok(s);
        }
        Err(Error::new(Code::MissingOption, format!("resolve(): no DNS server to ask for {:?} from {}", self.name, self.ns))
            .why("the script gave none, no DHCP lease of the namespace named one, and the lab runs no dns_server")
            .help("name one: resolve(ns, name, #{ server: \"10.0.0.53\" }), or start one with dns_server(ns, #{ records })"))
    }

    /// The server did not answer: it is named, with what happened.
    pub fn failed(&self, server: IpAddr, why: String) -> Error {
        Error::new(Code::DnsFailed, format!("no answer for {:?} from the DNS server {server} (asked from {})", self.name, self.ns))
            .why(why)
            .help(format!(
                "check that a DNS server runs at {server} (dns_server(ns, #{{ records }})) and that {} reaches it (routes, firewall); \
                 a longer wait: #{{ timeout: ms }}",
                self.ns
            ))
    }

    /// The plan's probe: a comment with the query a user would type, and the answer it expects.
    pub fn shell(&self, server: IpAddr, expect: &[IpAddr]) -> Step {
        let kinds = self.families().iter().map(|f| if *f == 4 { "A" } else { "AAAA" }).collect::<Vec<_>>().join(" and ");
        let answer =
            if expect.is_empty() { "no address".to_string() } else { expect.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ") };
        Step::new(
            format!("resolve {} ({kinds}) from {} at {server}: nsscript's own query; the plan expects {answer}", self.name, self.ns),
            vec![format!("# {}", Sh::inside(&self.ns, "dig").raw("+short").w(format!("@{server}")).w(&self.name).done())],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_answer_in_the_labs_domain_and_by_family() {
        let s = DnsServer {
            ns: NsRef::named("d"),
            iface: Some("eth0".into()),
            records: vec![
                ("web".into(), vec!["10.0.0.80".parse().unwrap(), "fd00::80".parse().unwrap()]),
                ("db.other".into(), vec!["10.0.0.5".parse().unwrap()]),
            ],
            domain: Some("lab".into()),
            upstream: vec![],
        };
        assert_eq!(s.answer("WEB.lab.", 4), ["10.0.0.80".parse::<IpAddr>().unwrap()]);
        assert_eq!(s.answer("web", 6), ["fd00::80".parse::<IpAddr>().unwrap()]);
        assert!(s.answer("db.other.lab", 4).is_empty() && s.answer("nope", 4).is_empty());
        let args = s.dnsmasq().args;
        for want in [
            "--host-record=web.lab,web,10.0.0.80",
            "--host-record=web.lab,web,fd00::80",
            "--host-record=db.other,10.0.0.5",
            "--local=/lab/",
            "--local=/#/",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
        }
        let r = Resolve { ns: NsRef::named("c"), name: "web".into(), server: None, family: None, timeout_ms: 1000 };
        assert_eq!(r.server(&[], &["10.0.0.53".parse().unwrap()]).unwrap().to_string(), "10.0.0.53");
        assert_eq!(r.server(&[], &[]).unwrap_err().code, Code::MissingOption);
    }
}
