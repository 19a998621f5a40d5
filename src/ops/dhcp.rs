//! DHCP: `dhcp_server` runs dnsmasq (the program is the point), `dhcp_client`
//! obtains a lease and applies it as ordinary ops (address, default route).

use super::shell::{quote, Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::Ipv4Network;
use serde::Serialize;
use std::net::Ipv4Addr;

/// `dhcp_server(ns, #{ iface, range: [first, last], router?, dns? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpServer {
    pub ns: NsRef,
    pub iface: String,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

impl DhcpServer {
    fn what(&self) -> String {
        format!("cannot serve DHCP on {} in {}", self.iface, self.ns)
    }

    pub fn validate(&self) -> Result<()> {
        super::names::validate_ifname(&self.iface)?;
        if u32::from(self.first) > u32::from(self.last) {
            return Err(Error::new(Code::BadValue, self.what())
                .why(format!("the range starts at {} after its end {}", self.first, self.last))
                .help("write the range as [first, last] with first <= last"));
        }
        Ok(())
    }

    /// The subnet of `iface` (one of `nets`, its IPv4 networks) that holds the range.
    pub fn subnet(&self, nets: &[Ipv4Network]) -> Result<Ipv4Network> {
        let iface = &self.iface;
        if nets.is_empty() {
            return Err(Error::new(Code::NoAddress, self.what())
                .why(format!("{iface} has no IPv4 address, so dnsmasq cannot tell which subnet to serve"))
                .help(format!("give it one first, e.g. link(ns, \"{iface}\").addr(\"10.0.0.254/24\")")));
        }
        let Some(net) = nets.iter().find(|n| n.contains(self.first) && n.contains(self.last)) else {
            let have = nets.iter().map(|n| format!("{n} (subnet {}/{})", n.network(), n.prefix())).collect::<Vec<_>>().join(", ");
            let example = nets[0];
            let (lo, hi) = (u32::from(example.network()) + 100, u32::from(example.broadcast()) - 1);
            let hint = if example.prefix() <= 24 {
                format!(", e.g. [\"{}\", \"{}\"]", Ipv4Addr::from(lo), Ipv4Addr::from(lo + 9))
            } else {
                format!(" (up to {})", Ipv4Addr::from(hi))
            };
            return Err(Error::new(
                Code::OutsideSubnet,
                format!("the DHCP range {} - {} is outside the subnet of {iface}", self.first, self.last),
            )
            .why(format!("{iface} in {} has {have}", self.ns))
            .help(format!("choose first and last inside {}/{}{hint}", example.network(), example.prefix())));
        };
        for ip in [self.first, self.last] {
            if net.prefix() < 31 && (ip == net.network() || ip == net.broadcast()) {
                return Err(Error::new(Code::OutsideSubnet, self.what())
                    .why(format!(
                        "{ip} is the {} address of {}/{}",
                        if ip == net.network() { "network" } else { "broadcast" },
                        net.network(),
                        net.prefix()
                    ))
                    .help("leave the first and the last address of the subnet out of the range"));
            }
        }
        Ok(*net)
    }

    /// dnsmasq's arguments, the same for the run and the plan: its own configuration
    /// only (no file of the machine read), DHCP only (no DNS port), leases in `leases`.
    pub fn dnsmasq_args(&self, leases: &str) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--port=0".into(),
            "--bind-interfaces".into(),
            format!("--interface={}", self.iface),
            "--except-interface=lo".into(),
            format!("--dhcp-range={},{}", self.first, self.last),
            // dnsmasq pings an address before offering it (~3 s): not on a lab segment.
            "--no-ping".into(),
            "--dhcp-authoritative".into(),
            format!("--dhcp-leasefile={leases}"),
        ];
        if let Some(r) = self.router {
            args.push(format!("--dhcp-option=option:router,{r}"));
        }
        if !self.dns.is_empty() {
            args.push(format!("--dhcp-option=option:dns-server,{}", self.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")));
        }
        args
    }

    /// Where the walkthrough's dnsmasq keeps its pid, for the undo.
    pub fn plan_pid_file(&self) -> String {
        format!("/run/dnsmasq-{}.pid", self.ns.name().unwrap_or("host"))
    }

    pub fn plan_lease_file(&self, lab: &str) -> String {
        format!("/run/nsscript-plan-{lab}-{}-{}.leases", self.ns.name().unwrap_or("host"), self.iface)
    }

    pub fn shell(&self, lab: &str) -> Step {
        let mut args = self.dnsmasq_args(&self.plan_lease_file(lab));
        args.push(format!("--pid-file={}", self.plan_pid_file()));
        Step::new(format!("DHCP server on {} in {}", self.iface, self.ns), vec![Sh::inside(&self.ns, "dnsmasq").words(&args).done()])
    }

    /// A few words for reports.
    pub fn describe(&self) -> String {
        format!("dnsmasq (DHCP on {}, {} - {})", self.iface, self.first, self.last)
    }
}

/// Obtain a DHCP lease on `iface`; changes nothing (the caller applies it with ops).
#[derive(Clone, Debug, PartialEq)]
pub struct DhcpLease {
    pub ns: NsRef,
    pub iface: String,
    pub timeout_ms: u32,
}

impl DhcpLease {
    pub fn shell(&self) -> Step {
        Step::new(
            format!("DHCP client on {} in {}: nsscript's own client; the plan assumes the first free lease", self.iface, self.ns),
            vec![format!("# {}", Sh::inside(&self.ns, "dhclient").raw("-1").w(&self.iface).done())],
        )
    }

    /// No server answered.
    pub fn no_lease(&self, why: String) -> Error {
        Error::new(Code::NoLease, format!("no DHCP lease for {} in {}", self.iface, self.ns)).why(why)
    }
}

/// A DHCP lease as the server offered it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    pub dns: Vec<String>,
    pub lease_secs: Option<u32>,
    /// How long obtaining it took.
    pub ms: u64,
}

/// The undo of a walkthrough's dnsmasq.
pub fn plan_undo(server: &DhcpServer, lab: &str) -> Vec<String> {
    vec![
        format!("kill $(cat {})", quote(&server.plan_pid_file())),
        format!("rm -f {} {}", quote(&server.plan_pid_file()), quote(&server.plan_lease_file(lab))),
    ]
}
