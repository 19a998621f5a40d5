//! Address arithmetic for scripts (Rhai has none): the n-th host of a network, the i-th
//! subnet of a block, prefix and network of an address. ipnetwork parses; the sums are
//! done on the address as an integer, IPv4 and IPv6 alike. Pure functions: they work
//! the same in a run, a plan and the REPL.

use super::registrar::{FnDoc, Registrar};
use super::{fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use ipnetwork::IpNetwork;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn parse(text: &str) -> RhaiResult<IpNetwork> {
    // A plain address is a host route (/32 or /128).
    if !text.contains('/') {
        return super::args::ip(text).map(IpNetwork::from);
    }
    super::args::cidr(text)
}

/// Address width in bits: 32 or 128.
fn width(net: &IpNetwork) -> u32 {
    if net.is_ipv4() {
        32
    } else {
        128
    }
}

fn to_int(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_int(v4: bool, n: u128) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(n))
    }
}

/// How many addresses `net` holds, saturating at u128::MAX for a /0 IPv6 block.
fn size(net: &IpNetwork) -> u128 {
    let host_bits = width(net) - u32::from(net.prefix());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// The n-th address of the network `cidr` (0 is the network address itself); a negative
/// n counts back from the end: -1 is the last usable host (the one before the IPv4
/// broadcast address; the last address for IPv6, /31 and /32).
fn host(cidr: &str, n: i64) -> RhaiResult<IpAddr> {
    let net = parse(cidr)?;
    let v4 = net.is_ipv4();
    let size = size(&net);
    let base = to_int(net.network());
    let has_broadcast = v4 && net.prefix() < 31;
    let last = if has_broadcast { size - 2 } else { size - 1 };
    let index: Option<u128> = if n >= 0 {
        Some(n as u128).filter(|i| *i <= last)
    } else {
        // Counting back never yields the network address of a network with a broadcast.
        (last + 1).checked_sub(u128::from(n.unsigned_abs())).filter(|i| *i >= u128::from(has_broadcast))
    };
    match index {
        Some(i) => Ok(from_int(v4, base + i)),
        None => Err(fail(
            Error::new(Code::OutsideSubnet, format!("{cidr} has no host number {n}"))
                .why(format!("its hosts are 1..{last} (and -1 for the last one)"))
                .help("use a bigger network, or a smaller host number"),
        )),
    }
}

/// The i-th subnet of length `prefix` inside the block `cidr`, as "NETWORK/PREFIX".
fn subnet(cidr: &str, prefix: i64, i: i64) -> RhaiResult<String> {
    let net = parse(cidr)?;
    let w = width(&net) as i64;
    if prefix < i64::from(net.prefix()) || prefix > w {
        return Err(fail(
            Error::new(Code::OutsideSubnet, format!("cannot cut /{prefix} subnets out of {cidr}"))
                .help(format!("the prefix must be between {} and {w}", net.prefix())),
        ));
    }
    let count = 1u128.checked_shl((prefix - i64::from(net.prefix())) as u32).unwrap_or(u128::MAX);
    if i < 0 || i as u128 >= count {
        return Err(fail(
            Error::new(Code::OutsideSubnet, format!("{cidr} has no /{prefix} subnet number {i}"))
                .why(format!("it holds {count} of them, numbered from 0"))
                .help("use a bigger block, or longer prefixes"),
        ));
    }
    let step = 1u128.checked_shl((w - prefix) as u32).unwrap_or(0);
    let addr = from_int(net.is_ipv4(), to_int(net.network()) + step * i as u128);
    Ok(format!("{addr}/{prefix}"))
}

/// Address arithmetic, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "cidr_host",
        "cidr_host(cidr, n) -> String",
        r#"the n-th address of cidr's network: cidr_host("10.1.0.0/24", 5) is "10.1.0.5"; -1 is the last usable host"#,
    ),
    FnDoc::new(
        "cidr_addr",
        "cidr_addr(cidr, n) -> String",
        r#"the n-th address with the prefix, for link.addr(): cidr_addr("10.1.0.0/24", 5) is "10.1.0.5/24""#,
    ),
    FnDoc::new(
        "cidr_subnet",
        "cidr_subnet(cidr, prefix, i) -> String",
        r#"the i-th /prefix subnet of the block: cidr_subnet("10.0.0.0/16", 30, 1) is "10.0.0.4/30""#,
    ),
    FnDoc::new("cidr_prefix", "cidr_prefix(cidr) -> i64", r#"the prefix length: cidr_prefix("10.1.0.5/24") is 24"#),
    FnDoc::new("cidr_ip", "cidr_ip(cidr) -> String", r#"the address without its prefix: cidr_ip("10.1.0.5/24") is "10.1.0.5""#),
    FnDoc::new(
        "cidr_network",
        "cidr_network(cidr) -> String",
        r#"the network in CIDR form, for routes: cidr_network("10.1.0.5/24") is "10.1.0.0/24""#,
    ),
    FnDoc::new("cidr_size", "cidr_size(cidr) -> i64", "how many addresses the network holds (network and broadcast included)"),
    FnDoc::new("cidr_contains", "cidr_contains(cidr, ip) -> bool", "whether ip lies inside the network cidr"),
];

/// Pure functions: the backend is not needed.
pub fn register(r: &mut Registrar, _: &Shared) {
    r.func("cidr_host", |cidr: &str, n: i64| -> RhaiResult<String> { host(cidr, n).map(|a| a.to_string()) });
    r.func("cidr_addr", |cidr: &str, n: i64| -> RhaiResult<String> {
        let prefix = parse(cidr)?.prefix();
        host(cidr, n).map(|a| format!("{a}/{prefix}"))
    });
    r.func("cidr_subnet", subnet);
    r.func("cidr_prefix", |cidr: &str| -> RhaiResult<i64> { parse(cidr).map(|n| i64::from(n.prefix())) });
    r.func("cidr_ip", |cidr: &str| -> RhaiResult<String> { parse(cidr).map(|n| n.ip().to_string()) });
    r.func("cidr_network", |cidr: &str| -> RhaiResult<String> { parse(cidr).map(|n| format!("{}/{}", n.network(), n.prefix())) });
    r.func("cidr_size", |cidr: &str| -> RhaiResult<i64> { parse(cidr).map(|n| i64::try_from(size(&n)).unwrap_or(i64::MAX)) });
    r.func("cidr_contains", |cidr: &str, ip: &str| -> RhaiResult<bool> {
        let net = parse(cidr)?;
        let ip = super::args::ip(ip.split('/').next().unwrap_or(ip))?;
        Ok(net.contains(ip))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: &str, n: i64) -> String {
        host(c, n).map(|a| a.to_string()).unwrap_or_else(|_| "ERR".into())
    }

    #[test]
    fn hosts_subnets_and_edges() {
        assert_eq!(h("10.1.0.0/24", 5), "10.1.0.5");
        assert_eq!(h("10.1.0.77/24", 1), "10.1.0.1");
        assert_eq!(h("10.1.0.0/24", -1), "10.1.0.254");
        assert_eq!(h("10.1.0.0/24", 0), "10.1.0.0");
        assert_eq!(h("10.1.0.0/24", 255), "ERR"); // broadcast
        assert_eq!(h("10.1.0.0/24", 256), "ERR");
        assert_eq!(h("10.1.0.0/24", -255), "ERR");
        assert_eq!(h("10.0.0.0/30", 2), "10.0.0.2");
        assert_eq!(h("10.0.0.0/30", 3), "ERR");
        assert_eq!(h("10.0.0.0/31", 1), "10.0.0.1");
        assert_eq!(h("fd00::/64", 1), "fd00::1");
        assert_eq!(h("fd00::/64", -1), "fd00::ffff:ffff:ffff:ffff");
        assert_eq!(subnet("10.0.0.0/16", 30, 0).unwrap(), "10.0.0.0/30");
        assert_eq!(subnet("10.0.0.0/16", 30, 65).unwrap(), "10.0.1.4/30");
        assert_eq!(subnet("10.0.0.0/16", 24, 255).unwrap(), "10.0.255.0/24");
        assert!(subnet("10.0.0.0/16", 24, 256).is_err());
        assert!(subnet("10.0.0.0/16", 8, 0).is_err());
        assert_eq!(subnet("fd00::/48", 64, 2).unwrap(), "fd00:0:0:2::/64");
    }
}
