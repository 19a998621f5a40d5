//! DNS in the live backend: `dns_server` (a dnsmasq, started as the others are) and
//! `resolve`, a query sent natively from a UDP socket opened inside the namespace: no
//! `dig` process, no /etc/resolv.conf. The messages are built and read by simple-dns.
//!
//! [`LiveBackend::resolve_in`] is the call for other checks (`assert_dns`): a name, the
//! records asked, and the addresses answered, `[]` for a name without them.

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::ops::dns::{DnsServer, Resolve};
use crate::ops::probe::DnsAnswer;
use crate::ops::query::AddrInfo;
use crate::ops::{NsRef, Outcome};
use simple_dns::{rdata::RData, Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, TYPE};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// What resolve() asks when the script names no server: the DNS servers DHCP leases
/// named, by namespace, and the lab's own DNS servers, in the order they started.
#[derive(Default)]
pub struct Known {
    leased: HashMap<NsRef, Vec<IpAddr>>,
    servers: Vec<IpAddr>,
}

impl Known {
    pub fn leased(&mut self, ns: &NsRef, servers: Vec<IpAddr>) {
        if !servers.is_empty() {
            self.leased.insert(ns.clone(), servers);
        }
    }
}

/// Where a DNS server of ns listens (for resolve's default): the first IPv4 address of
/// its interface, or of any interface but lo; else an IPv6 one.
fn listen_addr(op: &DnsServer, addrs: &[AddrInfo]) -> Option<IpAddr> {
    let candidates: Vec<IpAddr> = addrs
        .iter()
        .filter(|a| op.iface.as_ref().map_or(a.link != "lo", |i| &a.link == i) && a.scope == "global")
        .filter_map(|a| a.addr.split('/').next()?.parse().ok())
        .collect();
    candidates.iter().find(|a| a.is_ipv4()).or(candidates.first()).copied()
}

impl<K: Kernel> LiveBackend<K> {
    pub(super) fn dns_server(&mut self, op: DnsServer) -> Result<Outcome> {
        op.validate()?;
        if let Some(i) = &op.iface {
            self.nl.require_link(&op.ns, i)?;
        }
        let addrs = self.nl.addrs(&op.ns)?;
        let pid = self.start_dnsmasq(&op.dnsmasq(), "dns_server()")?;
        self.dns.servers.extend(listen_addr(&op, &addrs));
        Ok(Outcome::Spawned { pid })
    }

    pub(super) fn resolve(&mut self, op: Resolve) -> Result<Outcome> {
        op.validate()?;
        let leased = self.dns.leased.get(&op.ns).cloned().unwrap_or_default();
        let server = op.server(&leased, &self.dns.servers)?;
        let mut found = Vec::new();
        for family in op.families() {
            found.extend(self.resolve_in(&op, server, family)?);
        }
        Ok(Outcome::Ips(found))
    }

    /// One query from inside `op.ns` to `server` for the A (family 4) or AAAA (6)
    /// records of `op.name`: the addresses (none: no such name, or no such record).
    pub fn resolve_in(&mut self, op: &Resolve, server: IpAddr, family: u8) -> Result<Vec<IpAddr>> {
        let domain = if server.is_ipv6() { libc::AF_INET6 } else { libc::AF_INET };
        let socket: UdpSocket = self.nl.kernel().socket_in(&op.ns, domain, libc::SOCK_DGRAM, 0)?.into();
        let timeout = Duration::from_millis(u64::from(op.timeout_ms));
        query(&socket, SocketAddr::new(server, 53), &op.name, family, timeout).map_err(|why| op.failed(server, why))
    }
}

/// The DNS message asking for `name`'s A (family 4) or AAAA (6) records, recursion
/// desired. With [`answer`], the one place nsscript's DNS clients (resolve, assert_dns)
/// write and read DNS, through simple-dns.
pub fn question(id: u16, name: &str, family: u8) -> std::result::Result<Vec<u8>, String> {
    let mut packet = Packet::new_query(id);
    packet.set_flags(PacketFlag::RECURSION_DESIRED);
    let qname = Name::new(name).map_err(|e| format!("{name:?} is not a DNS name: {e}"))?;
    let qtype = if family == 4 { TYPE::A } else { TYPE::AAAA };
    packet.questions.push(Question::new(qname, QTYPE::TYPE(qtype), QCLASS::CLASS(CLASS::IN), false));
    packet.build_bytes_vec().map_err(|e| format!("cannot build the query: {e}"))
}

/// `msg` read as the answer to question `id`: None when it is not that answer (another
/// id: a late answer to another question; or a question), Err when it carries the id
/// but cannot be read; else its code, addresses and aliases.
pub fn answer(id: u16, msg: &[u8]) -> Option<std::result::Result<DnsAnswer, String>> {
    if msg.len() < 2 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return None;
    }
    let packet = match Packet::parse(msg) {
        Ok(p) => p,
        Err(e) => return Some(Err(format!("a DNS answer of {} bytes that cannot be read ({e})", msg.len()))),
    };
    if !packet.has_flags(PacketFlag::RESPONSE) {
        return None;
    }
    let mut out = DnsAnswer { rcode: packet.rcode() as u8, ..Default::default() };
    for rr in &packet.answers {
        match &rr.rdata {
            RData::A(a) => out.addrs.push(IpAddr::from(std::net::Ipv4Addr::from(a.address))),
            RData::AAAA(a) => out.addrs.push(IpAddr::from(std::net::Ipv6Addr::from(a.address))),
            RData::CNAME(c) => out.cnames.push(c.0.to_string()),
            _ => {}
        }
    }
    Some(Ok(out))
}

/// A new question id: unpredictable enough that a late answer to another run's question
/// is not taken for this one's.
pub fn question_id() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    (std::process::id() as u16) ^ (nanos as u16) ^ ((nanos >> 16) as u16)
}

/// Ask `server` once (and once more after half the time without an answer: UDP may
/// lose the first) for `name`'s records of `family`. Err: why there is no answer, in words.
pub fn query(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    family: u8,
    timeout: Duration,
) -> std::result::Result<Vec<IpAddr>, String> {
    let id = question_id();
    let bytes = question(id, name, family)?;
    // connect(): an ICMP "port unreachable" comes back as ECONNREFUSED.
    socket.connect(server).map_err(|e| in_words(&e, server))?;
    let deadline = Instant::now() + timeout;
    let mut resend = Instant::now() + timeout / 2;
    socket.send(&bytes).map_err(|e| in_words(&e, server))?;
    let mut buf = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("no answer within {} ms (UDP port {} of {})", timeout.as_millis(), server.port(), server.ip()));
        }
        let wait = if now < resend { resend - now } else { deadline - now };
        socket.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).map_err(|e| e.to_string())?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if Instant::now() >= resend && resend < deadline {
                    resend = deadline;
                    socket.send(&bytes).map_err(|e| in_words(&e, server))?;
                }
                continue;
            }
            Err(e) => return Err(in_words(&e, server)),
        };
        let Some(answer) = answer(id, &buf[..n]) else { continue };
        let answer = answer?;
        return match answer.rcode {
            0 | 3 => Ok(answer.addrs.into_iter().filter(|a| if family == 4 { a.is_ipv4() } else { a.is_ipv6() }).collect()),
            _ => Err(format!("the server answered {} (it cannot resolve the name itself, or refuses to)", answer.rcode_name())),
        };
    }
}

fn in_words(e: &std::io::Error, server: SocketAddr) -> String {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => {
            format!("nothing listens on UDP port {} of {} (it answered \"port unreachable\")", server.port(), server.ip())
        }
        Some(libc::ENETUNREACH) => format!("there is no route to {}", server.ip()),
        Some(libc::EHOSTUNREACH) => format!("{} is unreachable (no neighbour answers for it)", server.ip()),
        _ => format!("{} ({e})", server.ip()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::RCODE;

    /// A DNS server of one record on a loopback port, answering in its own thread.
    fn fake_server(rcode: RCODE) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            let q = Packet::parse(&buf[..n]).unwrap();
            let mut reply = Packet::new_reply(q.id());
            *reply.rcode_mut() = rcode;
            let question = q.questions[0].clone();
            if rcode == RCODE::NoError && question.qname.to_string() == "web.lab" {
                let rr = simple_dns::ResourceRecord::new(
                    question.qname.clone(),
                    CLASS::IN,
                    60,
                    RData::A(simple_dns::rdata::A { address: u32::from(std::net::Ipv4Addr::new(10, 0, 0, 80)) }),
                );
                reply.answers.push(rr);
            }
            reply.questions.push(question);
            server.send_to(&reply.build_bytes_vec().unwrap(), from).unwrap();
        });
        (addr, t)
    }

    #[test]
    fn a_query_gets_the_records_or_none_and_a_silent_server_is_named() {
        let ask = |addr, name: &str| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            query(&socket, addr, name, 4, Duration::from_millis(500))
        };
        let (addr, t) = fake_server(RCODE::NoError);
        assert_eq!(ask(addr, "web.lab").unwrap(), ["10.0.0.80".parse::<IpAddr>().unwrap()]);
        t.join().unwrap();
        let (addr, t) = fake_server(RCODE::NameError);
        assert_eq!(ask(addr, "nope.lab").unwrap(), Vec::<IpAddr>::new());
        t.join().unwrap();
        let (addr, t) = fake_server(RCODE::Refused);
        assert!(ask(addr, "web.lab").unwrap_err().contains("REFUSED"));
        t.join().unwrap();
        // Nothing there: loopback answers "port unreachable".
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(ask(closed, "web.lab").unwrap_err().contains(&format!("nothing listens on UDP port {} of 127.0.0.1", closed.port())));
    }

    #[test]
    fn a_question_and_its_answer_with_an_alias_by_pointers() {
        let q = question(0x1234, "web.lab", 4).unwrap();
        assert_eq!(q, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'w', b'e', b'b', 3, b'l', b'a', b'b', 0, 0, 1, 0, 1]);
        // The answer echoes the question, then a CNAME and an A record, both named by
        // pointers into the question.
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2; // two answers
        a.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'w', b'w', b'w', 0xc0, 16]);
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        let got = answer(0x1234, &a).unwrap().unwrap();
        assert_eq!(got.rcode, 0);
        assert_eq!(got.addrs, [IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(got.cnames, ["www.lab"]);
        // NXDOMAIN, no records.
        let mut nx = q.clone();
        nx[2] = 0x81;
        nx[3] = 0x83;
        let got = answer(0x1234, &nx).unwrap().unwrap();
        assert_eq!((got.rcode_name().as_str(), got.addrs.len()), ("NXDOMAIN", 0));
        assert!(answer(0x1234, &a[..a.len() - 2]).unwrap().is_err(), "cut short");
        assert!(answer(0x9999, &a).is_none(), "another question's answer");
        assert!(answer(0x1234, &q).is_none(), "a question");
    }
}
