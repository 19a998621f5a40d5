//! Routes: `ns.route(dest, via)` (`ip route add`).

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where a route goes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum RouteVia {
    Gateway(IpAddr),
    Device(String),
}

/// `ip route get DST [from SRC] [iif DEV] [mark N]`: which route the kernel would use
/// (RTM_GETROUTE). With `iif` the lookup is the one for a packet arriving on that link
/// (forwarding, reverse-path filtering), without it the one for a packet sent from ns.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteQuery {
    pub dst: IpAddr,
    pub from: Option<IpAddr>,
    pub iif: Option<String>,
    pub fwmark: Option<u32>,
}

/// The kernel's answer to a [`RouteQuery`]: the device and gateway it would use, the
/// source address it would pick, and the table the route is in (255 local, 254 main).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteAnswer {
    pub dev: Option<String>,
    pub via: Option<IpAddr>,
    pub src: Option<IpAddr>,
    pub table: u32,
}

/// `ip route add DEST via GW | dev DEV`. `dest` None is the default route (of the
/// gateway's family). The ledger keeps it as it is when the namespace outlives the lab.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AddRoute {
    pub ns: NsRef,
    pub dest: Option<IpNetwork>,
    pub via: RouteVia,
}

impl AddRoute {
    pub fn validate(&self) -> Result<()> {
        if let RouteVia::Device(dev) = &self.via {
            super::names::validate_ifname(dev)?;
        }
        if let (RouteVia::Gateway(gw), Some(d)) = (&self.via, self.dest) {
            if gw.is_ipv4() != d.is_ipv4() {
                return Err(Error::new(Code::BadValue, format!("cannot route {d} via {gw}"))
                    .why("the destination and the gateway are of different address families")
                    .help("use an IPv4 gateway for IPv4 destinations and an IPv6 one for IPv6"));
            }
        }
        Ok(())
    }

    /// The destination as the kernel gets it: the default route of the gateway's family.
    pub fn dest_or_default(&self) -> IpNetwork {
        match (self.dest, &self.via) {
            (Some(d), _) => d,
            (None, RouteVia::Gateway(IpAddr::V6(_))) => "::/0".parse().expect("valid"),
            (None, _) => "0.0.0.0/0".parse().expect("valid"),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.dest_or_default().is_ipv6()
    }

    pub fn describe(&self) -> String {
        describe_route(self.dest, &self.via)
    }

    /// The kernel refused the route with `errno`.
    pub fn refused(&self, errno: i32) -> Error {
        let err = Error::new(Code::RouteRefused, format!("cannot add route {} in {}", self.describe(), self.ns)).errno(errno);
        match errno {
            libc::ENETUNREACH => err.with_code(Code::GatewayUnreachable).help(
                "the gateway is not on any connected subnet of this namespace: add an address on its subnet (and bring the link up) first",
            ),
            libc::EEXIST => err.help("a route to this destination already exists"),
            _ => err,
        }
    }

    pub fn shell(&self) -> Step {
        let mut c = Sh::ip(&self.ns);
        if self.is_ipv6() {
            c = c.raw("-6");
        }
        c = c.raw("route add").w(self.dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into()));
        c = match &self.via {
            RouteVia::Gateway(gw) => c.raw("via").w(gw.to_string()),
            RouteVia::Device(dev) => c.raw("dev").w(dev),
        };
        Step::new(format!("route {} in {}", self.describe(), self.ns), vec![c.raw("proto static").done()])
    }
}

pub fn describe_route(dest: Option<IpNetwork>, via: &RouteVia) -> String {
    let d = dest.map(|d| d.to_string()).unwrap_or_else(|| "default".into());
    match via {
        RouteVia::Gateway(gw) => format!("{d} via {gw}"),
        RouteVia::Device(dev) => format!("{d} dev {dev}"),
    }
}
