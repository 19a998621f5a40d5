//! Checking and parsing script arguments into typed values, with errors that say what
//! was expected. Rhai integers are i64: every number is range-checked here.

use super::{fail, RhaiResult};
use crate::error::{Code, Error};
use ipnetwork::IpNetwork;
use rhai::{Dynamic, Map};
use std::net::IpAddr;

pub fn cidr(text: &str) -> RhaiResult<IpNetwork> {
    text.trim().parse::<IpNetwork>().map_err(|e| {
        fail(
            Error::new(Code::MalformedAddress, format!("malformed address {text:?}"))
                .why(e.to_string())
                .help("write an address with its prefix length, e.g. \"10.0.0.1/24\" or \"fd00::1/64\""),
        )
    })
}

/// A CIDR, or a plain address meaning that one host (as iptables reads `-s 10.0.0.1`).
pub fn net_or_host(text: &str) -> RhaiResult<IpNetwork> {
    if text.contains('/') {
        return cidr(text);
    }
    let ip = ip(text)?;
    Ok(IpNetwork::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("a host prefix is valid"))
}

pub fn ip(text: &str) -> RhaiResult<IpAddr> {
    text.trim().parse::<IpAddr>().map_err(|e| {
        fail(
            Error::new(Code::MalformedAddress, format!("malformed IP address {text:?}"))
                .why(e.to_string())
                .help("write a plain address without prefix, e.g. \"10.0.0.254\""),
        )
    })
}

/// A route destination: `default` or a network in CIDR form (host bits must be zero,
/// as `ip route` demands).
pub fn route_dest(text: &str) -> RhaiResult<Option<IpNetwork>> {
    if text.trim() == "default" {
        return Ok(None);
    }
    let net = cidr(text)?;
    if net.ip() != net.network() {
        return Err(fail(
            Error::new(Code::MalformedAddress, format!("invalid route destination {text:?}"))
                .why("the address has host bits set for its prefix length")
                .help(format!("use the network address, e.g. \"{}/{}\"", net.network(), net.prefix())),
        ));
    }
    Ok(Some(net))
}

pub fn mac(text: &str) -> RhaiResult<[u8; 6]> {
    let parts: Vec<&str> = text.split(':').collect();
    let bytes: Option<Vec<u8>> = parts.iter().map(|p| if p.len() == 2 { u8::from_str_radix(p, 16).ok() } else { None }).collect();
    match bytes {
        Some(b) if b.len() == 6 => {
            if b[0] & 1 == 1 {
                return Err(fail(
                    Error::new(Code::MalformedAddress, format!("invalid MAC address {text:?}"))
                        .why("it is a multicast address (lowest bit of the first byte set)")
                        .help("use a unicast address such as \"02:00:00:00:00:01\""),
                ));
            }
            Ok([b[0], b[1], b[2], b[3], b[4], b[5]])
        }
        _ => Err(fail(
            Error::new(Code::MalformedAddress, format!("malformed MAC address {text:?}"))
                .help("write six hex bytes separated by ':', e.g. \"02:00:00:00:00:01\""),
        )),
    }
}

pub fn u32_in(what: &str, n: i64, min: i64, max: i64) -> RhaiResult<u32> {
    if n < min || n > max {
        return Err(fail(
            Error::new(Code::BadValue, format!("{what} {n} is out of range")).help(format!("use a value from {min} to {max}")),
        ));
    }
    Ok(n as u32)
}

/// Options maps: only known keys, each of the right type.
pub struct Opts<'a> {
    map: &'a Map,
    func: &'a str,
}

impl<'a> Opts<'a> {
    pub fn new(func: &'a str, map: &'a Map, known: &[&str]) -> RhaiResult<Self> {
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                return Err(fail(
                    Error::new(Code::UnknownOption, format!("unknown option {key:?} for {func}()"))
                        .help(format!("the options are: {}", known.join(", "))),
                ));
            }
        }
        Ok(Opts { map, func })
    }

    fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }

    pub fn string(&self, key: &str) -> RhaiResult<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.clone().into_immutable_string() {
                Ok(s) => Ok(Some(s.to_string())),
                Err(ty) => Err(fail(Error::new(Code::BadValue, format!("option {key:?} of {}() must be a string, not {ty}", self.func)))),
            },
        }
    }

    pub fn int(&self, key: &str) -> RhaiResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_int()
                .map(Some)
                .map_err(|ty| fail(Error::new(Code::BadValue, format!("option {key:?} of {}() must be an integer, not {ty}", self.func)))),
        }
    }
}

impl Opts<'_> {
    /// A value as given (None when absent or unit), for options of more than one type.
    pub fn value(&self, key: &str) -> Option<&Dynamic> {
        self.get(key)
    }

    pub fn flag(&self, key: &str) -> RhaiResult<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).map_err(|ty| {
                fail(
                    Error::new(Code::BadValue, format!("option {key:?} of {}() must be true or false, not {ty}", self.func))
                        .help(format!("write {key}: true")),
                )
            }),
        }
    }

    /// An integer option within min..=max.
    pub fn int_in(&self, key: &str, min: i64, max: i64) -> RhaiResult<Option<u32>> {
        self.int(key)?.map(|n| u32_in(key, n, min, max)).transpose()
    }

    /// A routing table option: a number or "main", "local", "default".
    pub fn table(&self, key: &str) -> RhaiResult<Option<u32>> {
        self.get(key).map(|v| table(v, key)).transpose()
    }
}

/// A routing table: 1..4294967295, or "main", "local", "default" (nsscript never reads or
/// writes /etc/iproute2/rt_tables: other tables are numbers).
pub fn table(v: &Dynamic, what: &str) -> RhaiResult<u32> {
    use crate::ops::route::{table_by_name, TABLE_HELP};
    let bad = |shown: String| fail(Error::new(Code::BadValue, format!("{what} {shown} is not a routing table")).help(TABLE_HELP));
    if let Ok(n) = v.as_int() {
        return u32::try_from(n).ok().filter(|t| *t > 0).ok_or_else(|| bad(n.to_string()));
    }
    match v.clone().into_immutable_string() {
        Ok(s) => table_by_name(s.as_str()).ok_or_else(|| bad(format!("{:?}", s.as_str()))),
        Err(ty) => Err(bad(format!("(a {ty})"))),
    }
}
