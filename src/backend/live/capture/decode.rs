//! What a frame is, and its one-line summary as `tcpdump -n` prints it: ARP who-has /
//! reply, ICMP echo and errors, TCP flags, UDP, DHCP's message type, VXLAN with its VNI
//! and the frame inside. The fields a trace compares (addresses, ports, ids, TTL,
//! flags) are kept beside the text. Fixed-offset header reading, no allocation but
//! the summary.

use crate::ops::link::format_mac;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const VXLAN_PORT: u16 = 4789;
/// The kernel's own default VXLAN port (what `ip link add ... type vxlan` uses without
/// dstport), decoded as VXLAN too.
pub const VXLAN_LINUX_PORT: u16 = 8472;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub eth_src: [u8; 6],
    pub eth_dst: [u8; 6],
    pub proto: &'static str,
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub ttl: Option<u8>,
    pub arp: Option<Arp>,
    pub icmp: Option<Icmp>,
    /// TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10) and sequence number.
    pub tcp: Option<(u8, u32)>,
    /// VXLAN: the VNI and the frame it carries.
    pub vxlan: Option<(u32, Box<Decoded>)>,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arp {
    pub request: bool,
    pub sender_mac: [u8; 6],
    pub sender: Ipv4Addr,
    pub target: Ipv4Addr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Icmp {
    pub kind: u8,
    pub code: u8,
    /// Echo id and sequence number.
    pub id: u16,
    pub seq: u16,
    /// For an error: the header of the packet it is about (its addresses and ports).
    pub quoted: Option<Box<Decoded>>,
}

impl Decoded {
    /// The frame a VXLAN packet carries, or the frame itself.
    pub fn innermost(&self) -> &Decoded {
        match &self.vxlan {
            Some((_, inner)) => inner.innermost(),
            None => self,
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn mac_at(b: &[u8], at: usize) -> [u8; 6] {
    b.get(at..at + 6).and_then(|m| m.try_into().ok()).unwrap_or_default()
}

fn v4_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(at..at + 4)?).ok()?))
}

/// An Ethernet frame.
pub fn decode(frame: &[u8]) -> Decoded {
    let mut d = Decoded { eth_dst: mac_at(frame, 0), eth_src: mac_at(frame, 6), proto: "eth", ..Default::default() };
    let Some(mut ethertype) = u16_at(frame, 12) else {
        d.summary = format!("[|ether], length {}", frame.len());
        return d;
    };
    let mut at = 14;
    // An 802.1Q tag (this kernel has no VLANs, but frames from elsewhere may carry one).
    if ethertype == 0x8100 {
        ethertype = u16_at(frame, 16).unwrap_or(0);
        at = 18;
    }
    let payload = &frame[at.min(frame.len())..];
    match ethertype {
        0x0806 => arp(payload, &mut d),
        0x0800 => ipv4(payload, &mut d),
        0x86dd => ipv6(payload, &mut d),
        other => d.summary = format!("ethertype 0x{other:04x}, length {}", frame.len()),
    }
    d
}

fn arp(p: &[u8], d: &mut Decoded) {
    d.proto = "arp";
    let (Some(op), Some(sender), Some(target)) = (u16_at(p, 6), v4_at(p, 14), v4_at(p, 24)) else {
        d.summary = "ARP, [|arp]".into();
        return;
    };
    let sender_mac = mac_at(p, 8);
    d.src = Some(sender.into());
    d.dst = Some(target.into());
    d.summary = match op {
        1 => format!("ARP, Request who-has {target} tell {sender}, length 28"),
        2 => format!("ARP, Reply {sender} is-at {}, length 28", format_mac(&sender_mac)),
        n => format!("ARP, op {n}, length 28"),
    };
    d.arp = Some(Arp { request: op == 1, sender_mac, sender, target });
}

fn ipv4(p: &[u8], d: &mut Decoded) {
    d.proto = "ip";
    let (Some(first), Some(total), Some(src), Some(dst)) = (p.first(), u16_at(p, 2), v4_at(p, 12), v4_at(p, 16)) else {
        d.summary = "IP [|ip]".into();
        return;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    let proto = p.get(9).copied().unwrap_or(0);
    let (src, dst) = (IpAddr::V4(src), IpAddr::V4(dst));
    d.src = Some(src);
    d.dst = Some(dst);
    d.ttl = p.get(8).copied();
    let end = usize::from(total).clamp(ihl, p.len().max(ihl));
    let l4 = p.get(ihl..end).unwrap_or_default();
    let l4_len = usize::from(total).saturating_sub(ihl);
    transport(proto, l4, l4_len, "IP", src, dst, d);
}

fn ipv6(p: &[u8], d: &mut Decoded) {
    d.proto = "ip6";
    let (Some(plen), Some(next)) = (u16_at(p, 4), p.get(6).copied()) else {
        d.summary = "IP6 [|ip6]".into();
        return;
    };
    let addr = |at: usize| p.get(at..at + 16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(Ipv6Addr::from);
    let (Some(src), Some(dst)) = (addr(8), addr(24)) else {
        d.summary = "IP6 [|ip6]".into();
        return;
    };
    let (src, dst) = (IpAddr::V6(src), IpAddr::V6(dst));
    d.src = Some(src);
    d.dst = Some(dst);
    d.ttl = p.get(7).copied();
    let l4 = p.get(40..).unwrap_or_default();
    transport(next, l4, usize::from(plen), "IP6", src, dst, d);
}

fn transport(proto: u8, l4: &[u8], l4_len: usize, ip: &str, src: IpAddr, dst: IpAddr, d: &mut Decoded) {
    let mut s = String::new();
    match proto {
        1 | 58 => {
            let v6 = proto == 58;
            d.proto = if v6 { "icmp6" } else { "icmp" };
            let (kind, code) = (l4.first().copied().unwrap_or(0), l4.get(1).copied().unwrap_or(0));
            let (id, seq) = (u16_at(l4, 4).unwrap_or(0), u16_at(l4, 6).unwrap_or(0));
            let mut icmp = Icmp { kind, code, id, seq, quoted: None };
            let _ = write!(s, "{ip} {src} > {dst}: ");
            if v6 {
                let what = match kind {
                    1 => "destination unreachable".to_string(),
                    3 => "time exceeded in-transit".to_string(),
                    128 => format!("echo request, id {id}, seq {seq}"),
                    129 => format!("echo reply, id {id}, seq {seq}"),
                    133 => "router solicitation".to_string(),
                    134 => "router advertisement".to_string(),
                    135 => format!(
                        "neighbor solicitation, who has {}",
                        l4.get(8..24)
                            .and_then(|b| <[u8; 16]>::try_from(b).ok())
                            .map(Ipv6Addr::from)
                            .map(|a| a.to_string())
                            .unwrap_or_default()
                    ),
                    136 => "neighbor advertisement".to_string(),
                    143 => "multicast listener report v2".to_string(),
                    k => format!("type {k}"),
                };
                let _ = write!(s, "ICMP6, {what}, length {l4_len}");
            } else {
                // An error quotes the IP header (and 8 bytes or more) of what it is about.
                if matches!(kind, 3 | 11 | 12) {
                    let mut q = Decoded { proto: "ip", ..Default::default() };
                    ipv4(l4.get(8..).unwrap_or_default(), &mut q);
                    icmp.quoted = Some(Box::new(q));
                }
                let quoted = icmp.quoted.as_deref();
                let what = match (kind, code) {
                    (0, _) => format!("echo reply, id {id}, seq {seq}"),
                    (8, _) => format!("echo request, id {id}, seq {seq}"),
                    (3, 3) => match quoted {
                        Some(q) => format!(
                            "{} {} port {} unreachable",
                            q.dst.map(|a| a.to_string()).unwrap_or_default(),
                            q.proto,
                            q.dport.unwrap_or(0)
                        ),
                        None => "port unreachable".into(),
                    },
                    (3, 0) => format!("net {} unreachable", quoted.and_then(|q| q.dst).map(|a| a.to_string()).unwrap_or_default()),
                    (3, 1) => format!("host {} unreachable", quoted.and_then(|q| q.dst).map(|a| a.to_string()).unwrap_or_default()),
                    (3, 13) => format!(
                        "host {} unreachable - admin prohibited filter",
                        quoted.and_then(|q| q.dst).map(|a| a.to_string()).unwrap_or_default()
                    ),
                    (3, c) => format!("{} unreachable (code {c})", quoted.and_then(|q| q.dst).map(|a| a.to_string()).unwrap_or_default()),
                    (11, 0) => "time exceeded in-transit".into(),
                    (11, _) => "ip reassembly time exceeded".into(),
                    (5, _) => "redirect".into(),
                    (k, c) => format!("type {k}, code {c}"),
                };
                let _ = write!(s, "ICMP {what}, length {l4_len}");
            }
            if matches!(kind, 0 | 8 | 128 | 129) {
                d.sport = Some(id);
                d.dport = Some(id);
            }
            d.icmp = Some(icmp);
        }
        6 => {
            d.proto = "tcp";
            let (sport, dport) = (u16_at(l4, 0).unwrap_or(0), u16_at(l4, 2).unwrap_or(0));
            let (seq, ack) = (u32_at(l4, 4).unwrap_or(0), u32_at(l4, 8).unwrap_or(0));
            let off = usize::from(l4.get(12).copied().unwrap_or(0x50) >> 4) * 4;
            let flags = l4.get(13).copied().unwrap_or(0);
            let win = u16_at(l4, 14).unwrap_or(0);
            d.sport = Some(sport);
            d.dport = Some(dport);
            d.tcp = Some((flags, seq));
            let mut f = String::new();
            for (bit, c) in [(0x02, 'S'), (0x01, 'F'), (0x04, 'R'), (0x08, 'P'), (0x20, 'U'), (0x40, 'E'), (0x80, 'W')] {
                if flags & bit != 0 {
                    f.push(c);
                }
            }
            if flags & 0x10 != 0 {
                f.push('.');
            }
            let data = l4_len.saturating_sub(off);
            let _ = write!(s, "{ip} {src}.{sport} > {dst}.{dport}: Flags [{f}], seq {seq}");
            if flags & 0x10 != 0 {
                let _ = write!(s, ", ack {ack}");
            }
            let _ = write!(s, ", win {win}, length {data}");
        }
        17 => {
            d.proto = "udp";
            let (sport, dport) = (u16_at(l4, 0).unwrap_or(0), u16_at(l4, 2).unwrap_or(0));
            let len = usize::from(u16_at(l4, 4).unwrap_or(8)).saturating_sub(8);
            d.sport = Some(sport);
            d.dport = Some(dport);
            let data = l4.get(8..).unwrap_or_default();
            let _ = write!(s, "{ip} {src}.{sport} > {dst}.{dport}: ");
            if (dport == VXLAN_PORT || dport == VXLAN_LINUX_PORT) && data.len() >= 8 && data[0] & 0x08 != 0 {
                let vni = u32_at(data, 4).unwrap_or(0) >> 8;
                let inner = decode(&data[8..]);
                let _ = write!(s, "VXLAN, flags [I] (0x{:02x}), vni {vni}: {}", data[0], inner.summary);
                d.proto = "vxlan";
                d.vxlan = Some((vni, Box::new(inner)));
            } else if matches!((sport, dport), (67 | 68, 67 | 68)) && data.len() >= 240 {
                d.proto = "dhcp";
                let op = if data[0] == 1 { "Request" } else { "Reply" };
                let _ = write!(s, "BOOTP/DHCP, {op} from {}, length {len}", format_mac(&mac_at(data, 28)));
                if let Some(t) = dhcp_message_type(&data[240..]) {
                    let _ = write!(s, ", DHCP {t}");
                }
            } else {
                let _ = write!(s, "UDP, length {len}");
            }
        }
        p => {
            let _ = write!(s, "{ip} {src} > {dst}: ip-proto-{p} {l4_len}");
        }
    }
    d.summary = s;
}

/// Option 53 of a DHCP message's options (after the magic cookie).
fn dhcp_message_type(mut opts: &[u8]) -> Option<&'static str> {
    while let [code, rest @ ..] = opts {
        match code {
            0 => opts = rest,
            255 => return None,
            _ => {
                let (len, value) = rest.split_first()?;
                if *code == 53 {
                    return Some(match value.first()? {
                        1 => "Discover",
                        2 => "Offer",
                        3 => "Request",
                        4 => "Decline",
                        5 => "ACK",
                        6 => "NAK",
                        7 => "Release",
                        8 => "Inform",
                        _ => "message",
                    });
                }
                opts = value.get(usize::from(*len)..)?;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = B.to_vec();
        f.extend(A);
        f.extend(ethertype.to_be_bytes());
        f.extend(payload);
        f
    }

    fn ip(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
        p[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        p.extend(src);
        p.extend(dst);
        p.extend(l4);
        p
    }

    #[test]
    fn arp_as_tcpdump_prints_it() {
        let mut req = vec![0, 1, 8, 0, 6, 4, 0, 1];
        req.extend(A);
        req.extend([10, 0, 0, 1]);
        req.extend([0; 6]);
        req.extend([10, 0, 0, 254]);
        assert_eq!(decode(&eth(0x0806, &req)).summary, "ARP, Request who-has 10.0.0.254 tell 10.0.0.1, length 28");
        req[7] = 2;
        assert_eq!(decode(&eth(0x0806, &req)).summary, "ARP, Reply 10.0.0.1 is-at 02:00:00:00:00:01, length 28");
    }

    #[test]
    fn icmp_echo_and_errors() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1, b'x', b'y'];
        let d = decode(&eth(0x0800, &ip(1, [10, 0, 0, 1], [203, 0, 113, 1], &echo)));
        assert_eq!(d.summary, "IP 10.0.0.1 > 203.0.113.1: ICMP echo request, id 4660, seq 1, length 10");
        assert_eq!((d.proto, d.ttl), ("icmp", Some(64)));
        // Port unreachable, quoting a UDP datagram to port 9.
        let udp = [0x30, 0x39, 0, 9, 0, 8, 0, 0];
        let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
        err.extend(ip(17, [10, 0, 0, 1], [10, 0, 0, 2], &udp));
        let d = decode(&eth(0x0800, &ip(1, [10, 0, 0, 2], [10, 0, 0, 1], &err)));
        assert_eq!(d.summary, "IP 10.0.0.2 > 10.0.0.1: ICMP 10.0.0.2 udp port 9 unreachable, length 36");
        assert_eq!(d.icmp.unwrap().quoted.unwrap().sport, Some(12345));
    }

    #[test]
    fn tcp_flags_and_udp() {
        let mut syn = vec![0x9c, 0x40, 0, 80, 0, 0, 0, 7, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0];
        let d = decode(&eth(0x0800, &ip(6, [10, 0, 0, 1], [10, 0, 0, 2], &syn)));
        assert_eq!(d.summary, "IP 10.0.0.1.40000 > 10.0.0.2.80: Flags [S], seq 7, win 64240, length 0");
        syn[13] = 0x14;
        let d = decode(&eth(0x0800, &ip(6, [10, 0, 0, 2], [10, 0, 0, 1], &syn)));
        assert_eq!(d.summary, "IP 10.0.0.2.40000 > 10.0.0.1.80: Flags [R.], seq 7, ack 0, win 64240, length 0");
        let udp = [0x13, 0x88, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4];
        assert_eq!(
            decode(&eth(0x0800, &ip(17, [10, 0, 0, 1], [10, 0, 0, 2], &udp))).summary,
            "IP 10.0.0.1.5000 > 10.0.0.2.53: UDP, length 4"
        );
    }

    #[test]
    fn vxlan_shows_its_vni_and_the_inner_frame() {
        let inner = eth(0x0800, &ip(1, [192, 168, 1, 204], [192, 168, 1, 205], &[8, 0, 0, 0, 0, 1, 0, 1]));
        let mut udp = vec![0xd4, 0x31, 0x12, 0xb5, 0, 0, 0, 0, 0x08, 0, 0, 0, 0, 0, 24, 0];
        udp.extend(&inner);
        let len = udp.len() as u16;
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        let d = decode(&eth(0x0800, &ip(17, [10, 230, 4, 204], [10, 230, 4, 205], &udp)));
        assert_eq!(
            d.summary,
            "IP 10.230.4.204.54321 > 10.230.4.205.4789: VXLAN, flags [I] (0x08), vni 24: IP 192.168.1.204 > 192.168.1.205: ICMP echo request, id 1, seq 1, length 8"
        );
        assert_eq!(d.proto, "vxlan");
        assert_eq!(d.innermost().dst, Some("192.168.1.205".parse().unwrap()));
    }

    #[test]
    fn dhcp_message_type() {
        let mut bootp = vec![0u8; 240];
        bootp[0] = 1;
        bootp[28..34].copy_from_slice(&A);
        bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
        bootp.extend([53, 1, 1, 255]);
        let mut udp = vec![0, 68, 0, 67, 0, 0, 0, 0];
        let len = (8 + bootp.len()) as u16;
        udp[4..6].copy_from_slice(&len.to_be_bytes());
        udp.extend(bootp);
        let d = decode(&eth(0x0800, &ip(17, [0, 0, 0, 0], [255, 255, 255, 255], &udp)));
        assert_eq!(d.summary, "IP 0.0.0.0.68 > 255.255.255.255.67: BOOTP/DHCP, Request from 02:00:00:00:00:01, length 244, DHCP Discover");
    }
}
