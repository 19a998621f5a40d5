//! assert_dns's question over a non-blocking socket with a deadline; the message
//! itself is written and read where resolve()'s is (`live::dns`).

use super::Sock;
use crate::backend::live::dns;
use crate::ops::probe::{DnsAnswer, DnsQuery, Failure};
use crate::ops::NsRef;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

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
    let id = dns::question_id();
    let msg = dns::question(id, &q.name, if q.ipv6 { 6 } else { 4 }).map_err(Failure::Protocol)?;
    sock.connect(server, deadline)?;
    let mut buf = [0u8; 4096];
    loop {
        sock.send_all(&msg, deadline)?;
        let resend = deadline.min(Instant::now() + Duration::from_millis(700));
        loop {
            match sock.recv(&mut buf, resend) {
                // Not this question's answer (a late one to someone else's): wait on.
                Ok(n) => match dns::answer(id, &buf[..n]) {
                    None => continue,
                    Some(a) => return a.map_err(Failure::Protocol),
                },
                Err(Failure::Timeout) => break,
                Err(f) => return Err(f),
            }
        }
        if Instant::now() >= deadline {
            return Err(Failure::Timeout);
        }
    }
}
