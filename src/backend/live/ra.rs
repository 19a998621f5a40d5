//! IPv6 in the live backend: `router_adv` (dnsmasq's router advertisements, started
//! once the router's link-local address can send them) and `wait_addr` (until an
//! interface has a global address that finished DAD, e.g. one SLAAC formed).

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::ops::address::{ra_hint, WaitAddr};
use crate::ops::query::AddrInfo;
use crate::ops::ra::RouterAdv;
use crate::ops::{NsRef, Outcome};
use std::time::{Duration, Instant};

impl<K: Kernel> LiveBackend<K> {
    /// Dump the addresses of ns every 20 ms until `done` holds or `timeout` has passed:
    /// whether it held, and the addresses last seen.
    fn poll_addrs(&mut self, ns: &NsRef, timeout: Duration, done: impl Fn(&[AddrInfo]) -> bool) -> Result<(bool, Vec<AddrInfo>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let addrs = self.nl.addrs(ns)?;
            if done(&addrs) {
                return Ok((true, addrs));
            }
            if Instant::now() >= deadline {
                return Ok((false, addrs));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Why iface in ns may form no SLAAC address, from its sysctls.
    fn slaac_hint(&mut self, ns: &NsRef, iface: &str) -> Option<String> {
        let k = self.nl.kernel();
        let mut read = |key: &str| k.sysctl_read(ns, &format!("net.ipv6.conf.{iface}.{key}")).unwrap_or_default();
        let (off, fwd, ra, auto) = (read("disable_ipv6"), read("forwarding"), read("accept_ra"), read("autoconf"));
        ra_hint(iface, &off, &fwd, &ra, &auto)
    }

    pub(super) fn router_adv(&mut self, op: RouterAdv) -> Result<Outcome> {
        op.validate()?;
        self.nl.require_link(&op.ns, &op.iface)?;
        let prefix = op.prefix_of(&self.nl.addrs(&op.ns)?)?;
        // Hosts drop an advertisement that does not come from a link-local address.
        let wait = Duration::from_secs(5);
        let link_local = |a: &[AddrInfo]| a.iter().any(|x| x.link == op.iface && x.scope == "link" && x.family == 6 && !x.tentative);
        let (ready, addrs) = self.poll_addrs(&op.ns, wait, link_local)?;
        if !ready {
            let hint = self.slaac_hint(&op.ns, &op.iface).filter(|h| h.contains("disable_ipv6"));
            return Err(op.no_link_local(wait.as_millis() as u64, &addrs, hint));
        }
        let pid = self.start_dnsmasq(&op.dnsmasq(prefix), "router_adv()")?;
        Ok(Outcome::Spawned { pid })
    }

    pub(super) fn wait_addr(&mut self, op: WaitAddr) -> Result<Outcome> {
        self.nl.require_link(&op.ns, &op.iface)?;
        let (ready, addrs) = self.poll_addrs(&op.ns, Duration::from_millis(u64::from(op.timeout_ms)), |a| !op.ready(a).is_empty())?;
        if ready {
            return Ok(Outcome::Addrs(op.ready(&addrs).into_iter().cloned().collect()));
        }
        let hint = if op.family == 6 { self.slaac_hint(&op.ns, &op.iface) } else { None };
        Err(op.timed_out(&addrs, hint))
    }
}
