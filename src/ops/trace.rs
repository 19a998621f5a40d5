//! `trace(ns, dst, #{ proto?, port?, timeout? })`: one probe sent from ns, captured on
//! every link of the lab at once, and explained hop by hop from what the kernel says
//! (route lookups, bridge forwarding tables, conntrack, firewall counters, sysctls).
//! The engine is `backend::live::trace`; this file holds what a trace is and what it
//! answers, and its shell text for `nsscript plan`.

use super::shell::{Sh, Step as ShellStep};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::Serialize;
use std::fmt;
use std::net::IpAddr;

/// What the probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Probe {
    /// An ICMP echo request.
    Icmp,
    /// A TCP SYN to a port.
    Tcp(u16),
    /// A UDP datagram to a port.
    Udp(u16),
}

impl Probe {
    /// What its packets carry, as the plan's model follows them through filter rules.
    pub fn carried(self) -> crate::ops::firewall::Carried {
        use crate::ops::firewall::Carried;
        match self {
            Probe::Icmp => Carried::Ping,
            Probe::Tcp(port) => Carried::Tcp(Some(port)),
            Probe::Udp(port) => Carried::Udp(Some(port)),
        }
    }

    /// The probe from `proto` ("icmp", "tcp", "udp") and `port` as a script or the CLI
    /// gives them.
    pub fn parse(proto: Option<&str>, port: Option<i64>) -> Result<Probe> {
        let port = match port {
            None => None,
            Some(p) if (1..=65535).contains(&p) => Some(p as u16),
            Some(p) => {
                return Err(Error::new(Code::BadValue, format!("trace: invalid port {p}")).help("a port is a number from 1 to 65535"))
            }
        };
        match (proto.unwrap_or(if port.is_some() { "tcp" } else { "icmp" }), port) {
            ("icmp", None) => Ok(Probe::Icmp),
            ("icmp", Some(_)) => Err(Error::new(Code::BadValue, "trace: an ICMP probe has no port")
                .help("leave the port out, or trace a port with #{ proto: \"tcp\", port: N }")),
            ("tcp", Some(p)) => Ok(Probe::Tcp(p)),
            ("udp", Some(p)) => Ok(Probe::Udp(p)),
            (p @ ("tcp" | "udp"), None) => Err(Error::new(Code::MissingOption, format!("trace: a {p} probe needs a port"))
                .help(format!("e.g. trace(ns, dst, #{{ proto: \"{p}\", port: 80 }})"))),
            (other, _) => {
                Err(Error::new(Code::BadValue, format!("trace: unknown protocol {other:?}")).help("proto is \"icmp\", \"tcp\" or \"udp\""))
            }
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Icmp => write!(f, "ICMP echo"),
            Probe::Tcp(p) => write!(f, "TCP SYN to port {p}"),
            Probe::Udp(p) => write!(f, "UDP to port {p}"),
        }
    }
}

/// One probe from ns to dst, followed on every link of the lab.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub ns: NsRef,
    pub dst: IpAddr,
    pub probe: Probe,
    /// How long to wait for the packet to come back (or for its last trace).
    pub timeout_ms: u32,
}

/// The default wait: a lab's veths and bridges answer in well under a millisecond, and
/// a lost packet is explained by what the kernel says, not by waiting longer.
pub const DEFAULT_TIMEOUT_MS: u32 = 1000;

impl Trace {
    pub fn validate(&self) -> Result<()> {
        if self.dst.is_ipv6() {
            return Err(Error::new(Code::BadValue, format!("trace probes IPv4 addresses; {} is IPv6", self.dst))
                .help("give an IPv4 destination (the probes are IPv4 raw sockets)"));
        }
        if !(10..=60_000).contains(&self.timeout_ms) {
            return Err(Error::new(Code::BadValue, format!("trace: timeout {} ms is out of range", self.timeout_ms))
                .help("a timeout from 10 to 60000 ms"));
        }
        Ok(())
    }

    /// For `nsscript plan`: the probe a user would send by hand (the plan sends
    /// nothing itself: a trace needs the real lab).
    pub fn shell(&self) -> ShellStep {
        let sh = match self.probe {
            Probe::Icmp => Sh::inside(&self.ns, "ping").raw("-c 1 -W 1").w(self.dst.to_string()),
            Probe::Tcp(p) => Sh::inside(&self.ns, "nc").raw("-z -w 1").w(self.dst.to_string()).w(p.to_string()),
            Probe::Udp(p) => Sh::inside(&self.ns, "nc").raw("-u -z -w 1").w(self.dst.to_string()).w(p.to_string()),
        };
        ShellStep::new(
            format!("trace: a {} from {} to {} (nsscript follows it on every link of the lab)", self.probe, self.ns, self.dst),
            vec![sh.or_true().done()],
        )
    }
}

/// One line of a trace: where it happened and what happened there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    pub ns: NsRef,
    pub link: String,
    pub text: String,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a trace found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TraceResult {
    /// The probe was answered (an echo reply, a SYN-ACK, a UDP datagram delivered
    /// with no ICMP error) and the answer reached ns again.
    pub ok: bool,
    pub steps: Vec<Step>,
    /// Where the probe (or its answer) was last seen, when it did not come back.
    pub stopped_at: Option<(NsRef, String)>,
    /// Why it stopped, from the kernel.
    pub reason: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
}

impl TraceResult {
    /// The trace as it is printed: one step per line, then where and why it stopped.
    pub fn text(&self) -> String {
        let mut out: Vec<String> = self.steps.iter().map(|s| s.text.clone()).collect();
        if let Some(reason) = &self.reason {
            let at = match &self.stopped_at {
                Some((ns, link)) if link.is_empty() => format!(" (in {})", ns.name().unwrap_or("the host namespace")),
                Some((ns, link)) => format!(" (last seen at {})", super::capture::Target { ns: ns.clone(), link: link.clone() }.place()),
                None => String::new(),
            };
            out.push(format!("stopped{at}: {reason}"));
        }
        if let Some(help) = &self.help {
            out.push(format!("help: {help}"));
        }
        out.join("\n")
    }
}

/// One connection-tracking entry (`conntrack -L`): the original direction's tuple and
/// the reply's, which differ where NAT rewrote the packet.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Conntrack {
    /// IPPROTO_*: 1 ICMP, 6 TCP, 17 UDP.
    pub proto: u8,
    pub orig: Tuple,
    pub reply: Tuple,
}

/// Addresses and ports (for ICMP: the echo id as both ports) of one direction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl fmt::Display for Conntrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (o, r) = (&self.orig, &self.reply);
        match self.proto {
            1 => write!(f, "icmp src={} dst={} id={} | reply src={} dst={} id={}", o.src, o.dst, o.sport, r.src, r.dst, r.sport),
            p => {
                let name = match p {
                    6 => "tcp".to_string(),
                    17 => "udp".to_string(),
                    n => format!("proto {n}"),
                };
                write!(
                    f,
                    "{name} src={} dst={} sport={} dport={} | reply src={} dst={} sport={} dport={}",
                    o.src, o.dst, o.sport, o.dport, r.src, r.dst, r.sport, r.dport
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_from_options() {
        assert_eq!(Probe::parse(None, None).unwrap(), Probe::Icmp);
        assert_eq!(Probe::parse(None, Some(80)).unwrap(), Probe::Tcp(80));
        assert_eq!(Probe::parse(Some("udp"), Some(53)).unwrap(), Probe::Udp(53));
        assert_eq!(Probe::parse(Some("tcp"), None).unwrap_err().code, Code::MissingOption);
        assert_eq!(Probe::parse(Some("icmp"), Some(1)).unwrap_err().code, Code::BadValue);
        assert_eq!(Probe::parse(Some("sctp"), Some(1)).unwrap_err().code, Code::BadValue);
        assert_eq!(Probe::parse(None, Some(70000)).unwrap_err().code, Code::BadValue);
    }

    #[test]
    fn the_plan_sends_the_probe_by_hand() {
        let t = Trace { ns: NsRef::named("vm 1"), dst: "10.0.0.2".parse().unwrap(), probe: Probe::Tcp(80), timeout_ms: 1000 };
        assert_eq!(t.shell().commands, vec!["ip netns exec 'vm 1' nc -z -w 1 10.0.0.2 80 || true"]);
    }
}
