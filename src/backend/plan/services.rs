//! The plan of the lab's dnsmasqs (`dhcp_server`, `dhcp_relay`, `dns_server`,
//! `router_adv`) and of what asks them (`dhcp_client`, `resolve`, `wait_addr`): checked
//! as the run checks them (the same `place`, `local`, `prefix_of` and their errors),
//! written as the same dnsmasq command, and answered from the model: a lease from the
//! server (or relay) on the client's segment, the records of the DNS server asked, the
//! address SLAAC forms from an advertised prefix.

use super::{PLink, PlanBackend};
use crate::error::Result;
use crate::ops::address::WaitAddr;
use crate::ops::dhcp::{DhcpLease, DhcpRelay, DhcpServer, Lease, PlacedRange};
use crate::ops::dns::{DnsServer, Resolve};
use crate::ops::dnsmasq::{duration, Dnsmasq};
use crate::ops::query::AddrInfo;
use crate::ops::ra::{eui64, RouterAdv};
use crate::ops::{address::AddAddr, NsRef, Outcome};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use std::net::{IpAddr, Ipv4Addr};

/// A dnsmasq of the plan: how it runs, and what it serves.
#[derive(Clone, Debug, PartialEq)]
pub struct PService {
    pub run: Dnsmasq,
    pub serves: Serves,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Serves {
    Dhcp(DhcpServer, Vec<PlacedRange>),
    /// A relay and its address on the clients' segment.
    Relay(DhcpRelay, Ipv4Addr),
    /// A DNS server and where it listens (None: every address of its namespace).
    Dns(DnsServer),
    Ra(RouterAdv, Ipv6Network),
}

impl PlanBackend {
    fn ipv4_nets(&self, ns: &NsRef, iface: &str) -> Vec<Ipv4Network> {
        self.model
            .addrs_of(ns, iface)
            .into_iter()
            .filter_map(|a| match a {
                IpNetwork::V4(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    fn started(&mut self, run: Dnsmasq, before: Vec<String>, serves: Serves) -> Result<Outcome> {
        self.push(run.shell(&self.lab, before));
        self.ran_in(&run.ns);
        self.model.services.push(PService { run, serves });
        Ok(Outcome::Spawned { pid: 0 })
    }

    pub(super) fn dhcp_server(&mut self, op: DhcpServer) -> Result<Outcome> {
        op.validate()?;
        self.require_link(&op.ns, &op.iface)?;
        let placed = op.place(&self.ipv4_nets(&op.ns, &op.iface), &self.model.routes_in(&op.ns))?;
        self.started(op.dnsmasq(&placed), Vec::new(), Serves::Dhcp(op, placed))
    }

    pub(super) fn dhcp_relay(&mut self, op: DhcpRelay) -> Result<Outcome> {
        op.validate()?;
        self.require_link(&op.ns, &op.iface)?;
        let local = op.local(&self.ipv4_nets(&op.ns, &op.iface))?;
        self.started(op.dnsmasq(local), Vec::new(), Serves::Relay(op, local))
    }

    pub(super) fn dns_server(&mut self, op: DnsServer) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        if let Some(i) = &op.iface {
            self.require_link(&op.ns, i)?;
        }
        self.started(op.dnsmasq(), Vec::new(), Serves::Dns(op))
    }

    pub(super) fn router_adv(&mut self, op: RouterAdv) -> Result<Outcome> {
        op.validate()?;
        let link = self.require_link(&op.ns, &op.iface)?.clone();
        let prefix = op.prefix_of(&self.model.addrs_in(&op.ns))?;
        // The run waits for the router's link-local address; one never comes on a link
        // that is down or without IPv6.
        let v6_off = self
            .model
            .sysctls
            .iter()
            .rev()
            .find(|(n, k, _)| *n == op.ns && k == "net.ipv6.conf.all.disable_ipv6")
            .is_some_and(|(.., v)| v == "1");
        if !link.up || v6_off {
            let hint = v6_off.then(|| format!("IPv6 is off in {} (ns.ipv6(false)): turn it on with ns.ipv6(true)", op.ns));
            return Err(op.no_link_local(5000, &self.model.addrs_in(&op.ns), hint));
        }
        let before = vec![op.wait_link_local_shell()];
        self.started(op.dnsmasq(prefix), before, Serves::Ra(op, prefix))
    }

    /// The links on the same L2 segment as (ns, name): veth peers and the ports of the
    /// bridges on the way (an overlay's far side is not followed).
    fn segment(&self, ns: &NsRef, name: &str) -> Vec<&PLink> {
        let Some(start) = self.model.link(ns, name) else { return Vec::new() };
        let mut seen: Vec<&PLink> = vec![start];
        let mut i = 0;
        while i < seen.len() {
            let l = seen[i];
            let mut next: Vec<&PLink> = l.peer.and_then(|p| self.model.by_id(p)).into_iter().collect();
            if let Some(br) = &l.master {
                next.extend(self.model.link(&l.ns, br));
            }
            if l.kind == "bridge" {
                next.extend(self.model.links.iter().filter(|p| p.ns == l.ns && p.master.as_deref() == Some(l.name.as_str())));
            }
            for n in next {
                if !seen.iter().any(|s| s.id == n.id) {
                    seen.push(n);
                }
            }
            i += 1;
        }
        seen
    }

    fn on_segment(&self, segment: &[&PLink], ns: &NsRef, iface: &str) -> bool {
        segment.iter().any(|l| &l.ns == ns && l.name == iface)
    }

    /// The lease a client would get from the server on its segment, or through the
    /// relay on it: its fixed address if its MAC has one, else the first free address
    /// of the range (the plan cannot know which one dnsmasq picks).
    pub(super) fn dhcp_lease(&mut self, op: DhcpLease) -> Result<Outcome> {
        let client = self.require_link(&op.ns, &op.iface)?.clone();
        let segment = self.segment(&op.ns, &op.iface);
        let mut found = None;
        for s in &self.model.services {
            match &s.serves {
                Serves::Dhcp(d, placed) if self.on_segment(&segment, &d.ns, &d.iface) => {
                    if let Some(r) = placed.iter().find(|r| !r.relayed) {
                        let server_ip = self.ipv4_nets(&d.ns, &d.iface).first().map(|n| n.ip());
                        // Without a router option dnsmasq offers its own address as the router.
                        found = Some((d.clone(), *r, d.router.or(server_ip), server_ip));
                        break;
                    }
                }
                Serves::Relay(relay, local) if self.on_segment(&segment, &relay.ns, &relay.iface) => {
                    let far = self.model.services.iter().find_map(|f| match &f.serves {
                        Serves::Dhcp(d, placed) => placed.iter().find(|r| r.relayed && r.net.contains(*local)).map(|r| (d.clone(), *r)),
                        _ => None,
                    });
                    if let Some((d, r)) = far {
                        let server_ip = self.ipv4_nets(&d.ns, &d.iface).first().map(|n| n.ip());
                        found = Some((d, r, Some(*local), server_ip));
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some((server, range, router, server_ip)) = found else {
            return Err(op.no_lease("no DHCP server (or relay) in this plan is on its segment".into()).help(
                "start one first with dhcp_server(ns, #{ iface, range, router }) on the same segment, or dhcp_relay on the clients' router",
            ));
        };
        let mac = client.mac.as_deref().unwrap_or("");
        let fixed = server.hosts.iter().find(|h| crate::ops::link::format_mac(&h.mac) == mac).map(|h| h.ip);
        let taken: Vec<IpAddr> =
            self.model.addrs.iter().map(|a| a.addr.ip()).chain(server.hosts.iter().map(|h| IpAddr::V4(h.ip))).collect();
        let addr = fixed.unwrap_or_else(|| {
            (u32::from(range.first)..=u32::from(range.last))
                .map(Ipv4Addr::from)
                .find(|a| !taken.contains(&IpAddr::V4(*a)))
                .unwrap_or(range.first)
        });
        let lease_secs = server.lease.as_deref().and_then(|l| duration("dhcp_server", "lease", l).ok()).map_or(Some(3600), |(_, s)| s);
        let lease = Lease {
            addr,
            prefix: range.net.prefix(),
            router,
            server: server_ip,
            dns: server.dns.iter().map(|d| d.to_string()).collect(),
            domain: server.domain.clone(),
            lease_secs,
            ms: 0,
        };
        self.model.leased_dns.retain(|(n, _)| *n != op.ns);
        self.model.leased_dns.push((op.ns.clone(), lease.dns_servers()));
        self.push(op.shell());
        Ok(Outcome::Lease(lease))
    }

    /// The DNS server of the plan at `server`: one that listens there.
    fn dns_at(&self, server: IpAddr) -> Option<&DnsServer> {
        let (ns, link) = self.model.owner_of(&server)?;
        self.model.services.iter().find_map(|s| match &s.serves {
            Serves::Dns(d) if &d.ns == ns && d.iface.as_deref().is_none_or(|i| i == link) => Some(d),
            _ => None,
        })
    }

    /// Where the lab's DNS servers listen, for resolve's default: their interface's (or
    /// namespace's) first address, IPv4 first.
    fn dns_addrs(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for s in &self.model.services {
            if let Serves::Dns(d) = &s.serves {
                let addrs: Vec<IpAddr> = self
                    .model
                    .addrs
                    .iter()
                    .filter(|a| a.ns == d.ns && d.iface.as_ref().is_none_or(|i| &a.link == i))
                    .map(|a| a.addr.ip())
                    .collect();
                out.extend(addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()));
            }
        }
        out
    }

    pub(super) fn resolve(&mut self, op: Resolve) -> Result<Outcome> {
        op.validate()?;
        self.require_ns(&op.ns)?;
        let leased = self.model.leased_dns.iter().find(|(n, _)| *n == op.ns).map(|(_, d)| d.clone()).unwrap_or_default();
        let server = op.server(&leased, &self.dns_addrs())?;
        let answer: Vec<IpAddr> = match self.dns_at(server) {
            Some(d) => op.families().into_iter().flat_map(|f| d.answer(&op.name, f)).collect(),
            None => {
                crate::warnings::warning!(
                    "plan: not checked (needs the real lab): resolve({}, {:?}): no dns_server of the lab listens at {server}",
                    op.ns.name().unwrap_or("host()"),
                    op.name
                );
                Vec::new()
            }
        };
        self.push(op.shell(server, &answer));
        Ok(Outcome::Ips(answer))
    }

    /// The addresses iface has of the family, or the SLAAC address a router advertising
    /// on its segment makes it form (from its MAC; a stand-in when the plan does not know
    /// the MAC, and it says so). Without either, the run would time out: so does the plan.
    pub(super) fn wait_addr(&mut self, op: WaitAddr) -> Result<Outcome> {
        let link = self.require_link(&op.ns, &op.iface)?.clone();
        self.push(op.shell());
        let have = self.model.addrs_in(&op.ns);
        let ready: Vec<AddrInfo> = op.ready(&have).into_iter().cloned().collect();
        if !ready.is_empty() {
            return Ok(Outcome::Addrs(ready));
        }
        let segment = self.segment(&op.ns, &op.iface);
        let prefix = self.model.services.iter().find_map(|s| match &s.serves {
            Serves::Ra(ra, p) if op.family == 6 && self.on_segment(&segment, &ra.ns, &ra.iface) && ra.ns != op.ns => Some(*p),
            _ => None,
        });
        let Some(prefix) = prefix.filter(|_| link.up) else { return Err(op.timed_out(&have, None)) };
        let mac = link.mac.as_deref().and_then(parse_mac).unwrap_or_else(|| {
            crate::warnings::warning!(
                "plan: not checked (needs the real lab): the SLAAC address of {} in {} comes from its MAC, which the plan does not know (set one with .mac() to know it)",
                op.iface,
                op.ns
            );
            stand_in_mac(&op.ns, &op.iface)
        });
        let addr =
            AddAddr { ns: op.ns.clone(), link: op.iface.clone(), addr: IpNetwork::new(IpAddr::V6(eui64(prefix, mac)), 64).expect("a /64") };
        self.model.addrs.push(addr.clone());
        self.model.slaac.push(addr.clone());
        Ok(Outcome::Addrs(vec![AddrInfo { dynamic: true, ..AddrInfo::permanent(&addr.link, addr.addr) }]))
    }
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let b: Vec<u8> = text.split(':').filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
    b.try_into().ok()
}

/// A made-up local MAC for a link whose real one the plan cannot know, the same at
/// every plan of the lab.
fn stand_in_mac(ns: &NsRef, iface: &str) -> [u8; 6] {
    let h = format!("{ns}/{iface}").bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let b = h.to_be_bytes();
    [0x02, b[1], b[2], b[3], b[4], b[5]]
}
