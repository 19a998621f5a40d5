//! IPv6 router advertisements: `router_adv(ns, iface, #{ prefix?, lifetime?, managed? })`
//! runs dnsmasq's RA (see `ops::dnsmasq`); hosts on the link form their own address
//! from the prefix (SLAAC: the kernel does it where accept_ra allows, see
//! `address::ra_hint`), and `wait_addr` waits until they have.

use super::dnsmasq::{base_args, Dnsmasq, Service};
use super::query::AddrInfo;
use super::shell::Sh;
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::{IpNetwork, Ipv6Network};

#[derive(Clone, Debug, PartialEq)]
pub struct RouterAdv {
    pub ns: NsRef,
    pub iface: String,
    /// The /64 advertised (None: every global /64 of iface).
    pub prefix: Option<Ipv6Network>,
    /// The prefix's valid lifetime, as dnsmasq takes a time (`1h`).
    pub lifetime: Option<String>,
    /// The M flag: hosts are told to ask DHCPv6 for an address too (dnsmasq serves it,
    /// from ::1000 - ::1fff of the prefix), beside the one SLAAC forms.
    pub managed: bool,
}

impl RouterAdv {
    fn what(&self) -> String {
        format!("cannot advertise a prefix on {} in {}", self.iface, self.ns)
    }

    pub fn validate(&self) -> Result<()> {
        super::names::validate_ifname(&self.iface)?;
        if let Some(p) = self.prefix.filter(|p| p.prefix() != 64) {
            return Err(Error::new(Code::BadValue, self.what())
                .why(format!("{p} is a /{}; hosts form SLAAC addresses from a /64 only", p.prefix()))
                .help("advertise a /64, e.g. prefix: \"fd00:1::/64\""));
        }
        if let Some(p) = self.prefix.filter(|p| p.ip() != p.network()) {
            return Err(Error::new(Code::MalformedAddress, self.what())
                .why(format!("{p} has host bits set"))
                .help(format!("write the prefix as its network: \"{}/64\"", p.network())));
        }
        if let Some(l) = &self.lifetime {
            super::dnsmasq::duration("router_adv", "lifetime", l)?;
        }
        Ok(())
    }

    /// The prefix advertised, from iface's addresses (`addrs`: the namespace's): dnsmasq
    /// advertises a prefix only where the interface has an address in it.
    pub fn prefix_of(&self, addrs: &[AddrInfo]) -> Result<Ipv6Network> {
        let globals: Vec<Ipv6Network> = addrs
            .iter()
            .filter(|a| a.link == self.iface && a.scope == "global")
            .filter_map(|a| match a.addr.parse::<IpNetwork>() {
                Ok(IpNetwork::V6(n)) if n.prefix() == 64 => Some(Ipv6Network::new(n.network(), 64).expect("a /64")),
                _ => None,
            })
            .collect();
        let found = match self.prefix {
            Some(p) => globals.into_iter().find(|g| *g == p),
            None => globals.into_iter().next(),
        };
        found.ok_or_else(|| {
            let example = self.prefix.map(|p| format!("{}1/64", p.network())).unwrap_or_else(|| "fd00:1::1/64".into());
            Error::new(Code::NoAddress, self.what())
                .why(match self.prefix {
                    Some(p) => {
                        format!("{} has no address in {p}: dnsmasq advertises the prefixes of the interface's own addresses", self.iface)
                    }
                    None => format!("{} has no global IPv6 /64 address to take the prefix from", self.iface),
                })
                .help(format!("give the router an address in it first: link(ns, \"{}\").addr(\"{example}\")", self.iface))
        })
    }

    pub fn dnsmasq(&self, prefix: Ipv6Network) -> Dnsmasq {
        let mut args = base_args();
        args.extend(["--port=0".to_string(), format!("--interface={}", self.iface), "--except-interface=lo".into(), "--enable-ra".into()]);
        let net = prefix.network();
        let lifetime = self.lifetime.as_ref().map(|l| format!(",{l}")).unwrap_or_default();
        args.push(if self.managed {
            let seg = net.segments();
            let at = |last: u16| std::net::Ipv6Addr::new(seg[0], seg[1], seg[2], seg[3], 0, 0, 0, last);
            format!("--dhcp-range={},{},slaac,64{lifetime}", at(0x1000), at(0x1fff))
        } else {
            format!("--dhcp-range={net},ra-only,64{lifetime}")
        });
        Dnsmasq {
            ns: self.ns.clone(),
            service: Service::Ra,
            iface: Some(self.iface.clone()),
            args,
            leases: true,
            describe: format!("dnsmasq (router advertisements of {prefix} on {})", self.iface),
            label: format!("ra {} {prefix}{}", self.iface, if self.managed { " (managed)" } else { "" }),
        }
    }

    /// Advertisements go out from the router's link-local address, which is usable only
    /// once DAD is done (~1-2 s after the link came up): hosts drop an RA from any other
    /// source. The run waits for it; so does the plan's walkthrough (this command).
    pub fn wait_link_local_shell(&self) -> String {
        let show = Sh::ip(&self.ns).raw("-6 addr show dev").w(&self.iface).raw("scope link -tentative").done();
        format!("timeout 5 sh -c {}", super::shell::quote(&format!("until {show} | grep -q inet6; do sleep 0.1; done")))
    }

    /// The link-local address did not become usable.
    pub fn no_link_local(&self, waited_ms: u64, addrs: &[AddrInfo], hint: Option<String>) -> Error {
        let have: Vec<String> = addrs
            .iter()
            .filter(|a| a.link == self.iface && a.family == 6)
            .map(|a| format!("{}{}", a.addr, if a.tentative { " (tentative)" } else { "" }))
            .collect();
        Error::new(Code::NoAddress, self.what())
            .why(format!(
                "{} has no usable link-local IPv6 address after {waited_ms} ms ({}): router advertisements are sent from it",
                self.iface,
                if have.is_empty() { "it has no IPv6 address".to_string() } else { format!("it has {}", have.join(", ")) }
            ))
            .help(hint.unwrap_or_else(|| format!("bring {} up (with a carrier: its peer up too) before router_adv", self.iface)))
    }
}

/// The address SLAAC forms from a /64 and a MAC (modified EUI-64, RFC 4291), as the
/// kernel does with addr_gen_mode 0.
pub fn eui64(prefix: Ipv6Network, mac: [u8; 6]) -> std::net::Ipv6Addr {
    let p = prefix.network().segments();
    let id = [
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    ];
    std::net::Ipv6Addr::new(p[0], p[1], p[2], p[3], id[0], id[1], id[2], id[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_comes_from_the_routers_own_address() {
        let ra = RouterAdv { ns: NsRef::named("r"), iface: "eth0".into(), prefix: None, lifetime: Some("1h".into()), managed: false };
        let addrs =
            vec![AddrInfo::permanent("eth0", "fe80::1/64".parse().unwrap()), AddrInfo::permanent("eth0", "fd00:1::1/64".parse().unwrap())];
        let p = ra.prefix_of(&addrs).unwrap();
        assert_eq!(p.to_string(), "fd00:1::/64");
        assert!(ra.dnsmasq(p).args.contains(&"--dhcp-range=fd00:1::,ra-only,64,1h".to_string()));
        let managed = RouterAdv { managed: true, ..ra.clone() };
        assert!(managed.dnsmasq(p).args.contains(&"--dhcp-range=fd00:1::1000,fd00:1::1fff,slaac,64,1h".to_string()));
        let other = RouterAdv { prefix: Some("fd00:2::/64".parse().unwrap()), ..ra.clone() };
        assert_eq!(other.prefix_of(&addrs).unwrap_err().code, Code::NoAddress);
        assert!(RouterAdv { prefix: Some("fd00:2::/48".parse().unwrap()), ..ra }.validate().is_err());
        assert_eq!(eui64(p, [0xae, 0xce, 0x9f, 0xb3, 0x38, 0xcf]).to_string(), "fd00:1::acce:9fff:feb3:38cf");
    }
}
