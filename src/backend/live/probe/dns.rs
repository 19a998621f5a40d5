//! A DNS question over UDP, and the addresses of the answer (RFC 1035): enough to
//! check that a lab's server answers a name, no resolver library.
//!
//! (When `resolve(ns, name, ...)` lands, assert_dns can ask through it instead; the
//! message format stays here.)

use super::Sock;
use crate::ops::probe::{DnsAnswer, DnsQuery, Failure};
use crate::ops::NsRef;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;

/// The question `name` (A or AAAA), recursion desired.
pub fn question(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut msg = Vec::with_capacity(32 + name.len());
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x01, 0x00]); // RD
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.') {
        msg.push(label.len() as u8);
        msg.extend_from_slice(label.as_bytes());
    }
    msg.push(0);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes()); // IN
    msg
}

/// A name at `at` (labels and compression pointers); the offset after it.
fn name_at(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at)? as usize;
        match len {
            0 => {
                return Some((labels.join("."), end.unwrap_or(at + 1)));
            }
            l if l & 0xc0 == 0xc0 => {
                let pointer = (usize::from(msg[at] & 0x3f) << 8) | usize::from(*msg.get(at + 1)?);
                end.get_or_insert(at + 2);
                at = pointer;
            }
            l => {
                labels.push(String::from_utf8_lossy(msg.get(at + 1..at + 1 + l)?).into_owned());
                at += 1 + l;
            }
        }
    }
    None
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// The answer to question `id`: its code, addresses and aliases.
pub fn answer(id: u16, msg: &[u8]) -> Result<DnsAnswer, String> {
    let short = || format!("a DNS message of {} bytes is cut short", msg.len());
    if msg.len() < 12 || u16_at(msg, 0) != Some(id) {
        return Err(short());
    }
    if msg[2] & 0x80 == 0 {
        return Err("the message is a question, not an answer".into());
    }
    let rcode = msg[3] & 0x0f;
    let (qd, an) = (u16_at(msg, 4).ok_or_else(short)?, u16_at(msg, 6).ok_or_else(short)?);
    let mut at = 12;
    for _ in 0..qd {
        at = name_at(msg, at).ok_or_else(short)?.1 + 4;
    }
    let mut out = DnsAnswer { rcode, ..Default::default() };
    for _ in 0..an {
        let (_, after) = name_at(msg, at).ok_or_else(short)?;
        let rtype = u16_at(msg, after).ok_or_else(short)?;
        let len = usize::from(u16_at(msg, after + 8).ok_or_else(short)?);
        let data = msg.get(after + 10..after + 10 + len).ok_or_else(short)?;
        match (rtype, len) {
            (TYPE_A, 4) => out.addrs.push(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))),
            (TYPE_AAAA, 16) => {
                let mut b = [0u8; 16];
                b.copy_from_slice(data);
                out.addrs.push(IpAddr::V6(Ipv6Addr::from(b)));
            }
            (TYPE_CNAME, _) => out.cnames.push(name_at(msg, after + 10).ok_or_else(short)?.0),
            _ => {}
        }
        at = after + 10 + len;
    }
    Ok(out)
}

/// The first nameserver of the namespace's resolv.conf, where `ip netns exec` would
/// find it: /etc/netns/NS/resolv.conf, else /etc/resolv.conf.
pub fn resolv_conf_server(ns: &NsRef) -> Option<SocketAddr> {
    let own = ns.name().map(|n| format!("/etc/netns/{n}/resolv.conf"));
    let text = own.and_then(|p| std::fs::read_to_string(p).ok()).or_else(|| std::fs::read_to_string("/etc/resolv.conf").ok())?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
}

/// Ask `server` (a UDP socket made in the querying namespace), resending now and then.
pub fn ask(sock: &Sock, q: &DnsQuery, server: SocketAddr, deadline: Instant) -> Result<DnsAnswer, Failure> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let id = (std::process::id() as u16) ^ (nanos as u16);
    let msg = question(id, &q.name, if q.ipv6 { TYPE_AAAA } else { TYPE_A });
    sock.connect(server, deadline)?;
    let mut buf = [0u8; 4096];
    loop {
        sock.send_all(&msg, deadline)?;
        let resend = deadline.min(Instant::now() + Duration::from_millis(700));
        loop {
            match sock.recv(&mut buf, resend) {
                // Another id is a late answer to someone else's question: wait on.
                Ok(n) if u16_at(&buf[..n], 0) != Some(id) => continue,
                Ok(n) => return answer(id, &buf[..n]).map_err(Failure::Protocol),
                Err(Failure::Timeout) => break,
                Err(f) => return Err(f),
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_and_its_answer() {
        let q = question(0x1234, "web.lab", TYPE_A);
        assert_eq!(q, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'e', b'b', 3, b'l', b'a', b'b', 0, 0, 1, 0, 1]);
        // The answer echoes the question, then a CNAME and an A record, both named by
        // pointers into the question.
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2; // two answers
        a.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'w', b'w', 0xc0, 16]);
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        let got = answer(0x1234, &a).unwrap();
        assert_eq!(got.rcode, 0);
        assert_eq!(got.addrs, [IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(got.cnames, ["www.lab"]);
        // NXDOMAIN, no records.
        let mut nx = q.clone();
        nx[2] = 0x81;
        nx[3] = 0x83;
        let got = answer(0x1234, &nx).unwrap();
        assert_eq!((got.rcode_name().as_str(), got.addrs.len()), ("NXDOMAIN", 0));
        assert!(answer(0x1234, &a[..a.len() - 2]).is_err());
        assert!(answer(0x9999, &a).is_err());
        assert!(answer(0x1234, &q).is_err());
    }
}
