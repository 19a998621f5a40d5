//! Addresses: `link.addr(cidr)` (`ip addr add`), and `wait_addr` (until an interface
//! has a usable global address: SLAAC, DAD done).

use super::query::AddrInfo;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// `ip addr add ADDR dev LINK` (IPv6 without duplicate address detection: labs want
/// it usable at once). The ledger keeps it as it is when the link outlives the lab.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AddAddr {
    pub ns: NsRef,
    pub link: String,
    pub addr: IpNetwork,
}

impl AddAddr {
    pub fn refused(&self, errno: i32) -> Error {
        let err =
            Error::new(Code::AddressRefused, format!("cannot add address {} to {:?} in {}", self.addr, self.link, self.ns)).errno(errno);
        if errno == libc::EEXIST {
            err.help(format!("{} already has {}", self.link, self.addr))
        } else {
            err
        }
    }

    pub fn shell(&self) -> Step {
        let mut c = Sh::ip(&self.ns).raw("addr add").w(self.addr.to_string()).raw("dev").w(&self.link);
        if self.addr.is_ipv6() {
            c = c.raw("nodad");
        }
        Step::more(vec![c.done()])
    }

    pub fn describe(&self) -> String {
        format!("address {} on {} in {}", self.addr, self.link, self.ns)
    }
}

/// `wait_addr(ns, iface, #{ family?, timeout? })`: until `iface` has a global address of
/// `family` that is no longer tentative (DAD done), at most `timeout_ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitAddr {
    pub ns: NsRef,
    pub iface: String,
    /// 4 or 6.
    pub family: u8,
    pub timeout_ms: u32,
}

impl WaitAddr {
    /// The addresses it waits for, of those `iface` has now (`addrs`: the namespace's).
    pub fn ready<'a>(&self, addrs: &'a [AddrInfo]) -> Vec<&'a AddrInfo> {
        addrs.iter().filter(|a| a.link == self.iface && a.family == self.family && a.usable_global()).collect()
    }

    /// Past the timeout: what the interface has instead, and (for IPv6) why the kernel may
    /// form no address from router advertisements (see [`ra_hint`]).
    pub fn timed_out(&self, addrs: &[AddrInfo], hint: Option<String>) -> Error {
        let have: Vec<String> = addrs
            .iter()
            .filter(|a| a.link == self.iface && a.family == self.family)
            .map(|a| format!("{} ({}{})", a.addr, if a.tentative { "tentative, " } else { "" }, a.scope))
            .collect();
        let has = if have.is_empty() { format!("it has no IPv{} address", self.family) } else { format!("it has {}", have.join(", ")) };
        let err = Error::new(
            Code::NoAddress,
            format!("{} in {} has no global IPv{} address after {} ms", self.iface, self.ns, self.family, self.timeout_ms),
        )
        .why(has);
        match hint {
            Some(h) => err.help(h),
            None if self.family == 6 => err.help(
                "a SLAAC address needs router advertisements on the link (router_adv(router, iface)) and ~2 s of DAD; \
                 give it longer with #{ timeout: ms }",
            ),
            None => err.help("an IPv4 address comes by link.addr() or dhcp_client(); give it longer with #{ timeout: ms }"),
        }
    }

    pub fn shell(&self) -> Step {
        let show = Sh::ip(&self.ns)
            .raw(if self.family == 6 { "-6" } else { "-4" })
            .raw("addr show dev")
            .w(&self.iface)
            .raw("scope global -tentative")
            .done();
        let secs = f64::from(self.timeout_ms) / 1000.0;
        Step::new(
            format!("wait until {} in {} has a global IPv{} address (DAD done)", self.iface, self.ns, self.family),
            vec![format!("timeout {secs} sh -c {}", super::shell::quote(&format!("until {show} | grep -q inet; do sleep 0.1; done")))],
        )
    }
}

/// Why a Linux interface forms no SLAAC address, from its sysctls (None: they allow it).
pub fn ra_hint(iface: &str, disable_ipv6: &str, forwarding: &str, accept_ra: &str, autoconf: &str) -> Option<String> {
    let key = |k: &str| format!("net.ipv6.conf.{iface}.{k}");
    if disable_ipv6 == "1" {
        return Some(format!("IPv6 is off on {iface} ({} is 1): turn it on with ns.ipv6(true)", key("disable_ipv6")));
    }
    if accept_ra == "0" || (forwarding == "1" && accept_ra != "2") {
        return Some(format!(
            "{iface} ignores router advertisements ({} is {accept_ra}{}): set it to {} in the host's namespace",
            key("accept_ra"),
            if forwarding == "1" {
                format!(", and {} is 1: a router takes none unless accept_ra is 2", key("forwarding"))
            } else {
                String::new()
            },
            if forwarding == "1" { "2, or forwarding to 0" } else { "1" }
        ));
    }
    if autoconf == "0" {
        return Some(format!("{iface} forms no address from a prefix ({} is 0): set it to 1", key("autoconf")));
    }
    None
}
