//! The path MTU: ICMP echo requests with DF set (IP_PMTUDISC_PROBE: the kernel sets DF
//! and sends what we ask, whatever it has learnt of the path) from a raw socket made
//! inside the namespace. A router that cannot forward a probe answers "fragmentation
//! needed" (IPv6: "packet too big") with its next hop's MTU, and the next probe has
//! that size; a path that drops large packets silently is bisected. The answer is the
//! largest probe that came back as an echo reply.

use super::Sock;
use crate::ops::probe::{Failure, MtuResult, PathMtu};
use nix::sys::socket::{MsgFlags, SockaddrStorage};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The Internet checksum (RFC 1071).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { u16::from(chunk[0]) << 8 };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An echo request of `len` bytes of ICMP (header included). The kernel fills in the
/// ICMPv6 checksum; the IPv4 one is ours.
pub fn echo_request(v6: bool, ident: u16, seq: u16, len: usize) -> Vec<u8> {
    let mut pkt = vec![if v6 { 128 } else { 8 }, 0, 0, 0];
    pkt.extend_from_slice(&ident.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend((0..len.saturating_sub(8)).map(|i| b"nsscript-path-mtu-"[i % 18]));
    if !v6 {
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    pkt
}

/// What became of one probe.
#[derive(Debug, PartialEq)]
enum Answer {
    Reply,
    /// A router could not forward it; its next hop's MTU when it said (0: it did not).
    TooBig(u32),
    /// Nothing came back in time.
    Silence,
    Failed(Failure),
}

struct Prober<'a> {
    sock: &'a Sock,
    dst: IpAddr,
    ident: u16,
    seq: u16,
    wait: Duration,
    probes: u32,
}

impl Prober<'_> {
    fn v6(&self) -> bool {
        self.dst.is_ipv6()
    }

    fn header(&self) -> u32 {
        if self.v6() {
            40
        } else {
            20
        }
    }

    /// The ICMP message in a datagram read from the socket (IPv4 raw sockets hand over
    /// the IP header too).
    fn icmp<'b>(&self, data: &'b [u8]) -> Option<&'b [u8]> {
        if self.v6() {
            return Some(data);
        }
        let ihl = usize::from(*data.first()? & 0x0f) * 4;
        data.get(ihl..)
    }

    /// Whether the packet quoted in an ICMP error (after its 8-byte header) is our probe `seq`.
    fn quotes_ours(&self, quoted: &[u8], seq: u16) -> bool {
        let inner = if self.v6() {
            quoted.get(40..)
        } else {
            let ihl = usize::from(quoted.first().map(|b| b & 0x0f).unwrap_or(0)) * 4;
            quoted.get(ihl..)
        };
        matches!(inner, Some(i) if i.len() >= 8 && u16::from_be_bytes([i[4], i[5]]) == self.ident && u16::from_be_bytes([i[6], i[7]]) == seq)
    }

    fn classify(&self, from: Option<IpAddr>, icmp: &[u8], seq: u16) -> Option<Answer> {
        if icmp.len() < 8 {
            return None;
        }
        let (kind, code) = (icmp[0], icmp[1]);
        let quoted = &icmp[8..];
        let ours = |q: &[u8]| self.quotes_ours(q, seq);
        match (self.v6(), kind) {
            (false, 0) | (true, 129) => {
                let id_seq = (u16::from_be_bytes([icmp[4], icmp[5]]), u16::from_be_bytes([icmp[6], icmp[7]]));
                (from == Some(self.dst) && id_seq == (self.ident, seq)).then_some(Answer::Reply)
            }
            (false, 3) if code == 4 && ours(quoted) => Some(Answer::TooBig(u32::from(u16::from_be_bytes([icmp[6], icmp[7]])))),
            (true, 2) if ours(quoted) => Some(Answer::TooBig(u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]]))),
            (false, 3) | (true, 1) if ours(quoted) => {
                let net = if self.v6() { code == 0 } else { code == 0 || code == 6 };
                Some(Answer::Failed(if net { Failure::NoRoute(libc::ENETUNREACH) } else { Failure::Unreachable(libc::EHOSTUNREACH) }))
            }
            (false, 11) | (true, 3) if ours(quoted) => {
                Some(Answer::Failed(Failure::Protocol("a router says the time to live ran out (a routing loop?)".into())))
            }
            _ => None,
        }
    }

    /// Send one probe of `size` bytes (IP header included) and wait for what it gets.
    fn probe(&mut self, size: u32) -> Answer {
        self.seq = self.seq.wrapping_add(1);
        self.probes += 1;
        let seq = self.seq;
        let pkt = echo_request(self.v6(), self.ident, seq, (size - self.header()) as usize);
        let to = SockaddrStorage::from(SocketAddr::new(self.dst, 0));
        let fd = self.sock.0.as_raw_fd();
        match nix::sys::socket::sendto(fd, &pkt, &to, MsgFlags::empty()) {
            Ok(_) => {}
            // Larger than the first hop takes (or than what the kernel learnt of the path).
            Err(nix::errno::Errno::EMSGSIZE) => return Answer::TooBig(0),
            Err(e) => return Answer::Failed(Failure::from_errno(e as i32)),
        }
        let deadline = Instant::now() + self.wait;
        let mut buf = vec![0u8; 70000];
        loop {
            if self.sock.wait(libc::POLLIN, deadline) == 0 {
                return Answer::Silence;
            }
            match nix::sys::socket::recvfrom::<SockaddrStorage>(fd, &mut buf) {
                Ok((n, from)) => {
                    let from = from.and_then(|a| {
                        a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())).or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                    });
                    if let Some(answer) = self.icmp(&buf[..n]).and_then(|icmp| self.classify(from, icmp, seq)) {
                        return answer;
                    }
                }
                // The kernel's own report of the "fragmentation needed" we read as a packet.
                Err(nix::errno::Errno::EMSGSIZE | nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => return Answer::Failed(Failure::from_errno(e as i32)),
            }
        }
    }
}

/// Set IP(V6)_MTU_DISCOVER to PROBE: DF on every probe, sizes as asked.
fn probe_mode(sock: &Sock, v6: bool) -> Result<(), Failure> {
    const IP_PMTUDISC_PROBE: libc::c_int = 3;
    let (level, opt) = if v6 { (libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER) } else { (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER) };
    let value = IP_PMTUDISC_PROBE;
    // SAFETY: setsockopt with a pointer to an int that lives through the call.
    let r = unsafe {
        libc::setsockopt(
            sock.0.as_raw_fd(),
            level,
            opt,
            &value as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if r != 0 {
        return Err(Failure::from_errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)));
    }
    Ok(())
}

/// The path MTU from the socket's namespace to `m.dst`; `first_hop`: the MTU of the
/// link the route leaves by.
pub fn search(sock: &Sock, m: &PathMtu, first_hop: Option<u32>) -> MtuResult {
    let start = Instant::now();
    let v6 = m.dst.is_ipv6();
    let first_hop = first_hop.unwrap_or(1500);
    let mut result = MtuResult { first_hop, ..Default::default() };
    if let Err(f) = probe_mode(sock, v6) {
        result.failure = Some(f);
        return result;
    }
    let ident = (std::process::id() as u16) ^ 0x4d54;
    let mut p = Prober { sock, dst: m.dst, ident, seq: 0, wait: Duration::from_millis(u64::from(m.timeout_ms)), probes: 0 };
    // The smallest probe: a plain ping's size (IPv6's minimum MTU is 1280).
    let smallest = if v6 { 1280 } else { 84 }.min(first_hop);
    // lo: the largest size that came back; hi: the smallest known not to.
    let (mut lo, mut hi) = (0u32, first_hop + 1);
    let mut size = first_hop;
    // Whether `size` is what a router said its next hop takes (then its reply settles it).
    let mut hinted = false;
    let outcome = loop {
        if p.probes >= 40 {
            break Ok(());
        }
        match p.probe(size) {
            Answer::Reply => {
                lo = size;
                if hinted || lo + 1 >= hi {
                    break Ok(());
                }
                hinted = false;
                size = lo + (hi - lo) / 2;
            }
            Answer::TooBig(next) => {
                hi = hi.min(size);
                hinted = next > lo && next < size && next >= smallest;
                size = if hinted { next } else { lo.max(smallest) + (hi - lo.max(smallest)) / 2 };
            }
            Answer::Silence if lo == 0 && size > smallest => {
                // Dropped silently: first make sure dst answers at all.
                hi = size;
                hinted = false;
                size = smallest;
            }
            Answer::Silence if lo == 0 => break Err(Failure::Timeout),
            Answer::Silence => {
                hi = size;
                hinted = false;
                size = lo + (hi - lo) / 2;
            }
            Answer::Failed(f) => break Err(f),
        }
        if lo > 0 && lo + 1 >= hi {
            break Ok(());
        }
        if size <= lo || size >= hi {
            size = lo + (hi - lo) / 2;
            if size <= lo {
                break Ok(());
            }
        }
    };
    result.probes = p.probes;
    result.ms = start.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(()) if lo > 0 => result.mtu = Some(lo),
        Ok(()) => result.failure = Some(Failure::Timeout),
        Err(f) => result.failure = Some(f),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_requests_carry_their_checksum() {
        // type 8, id 1, seq 1, no payload: 0xf7fd.
        assert_eq!(checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
        let pkt = echo_request(false, 1, 1, 1472);
        assert_eq!(pkt.len(), 1472);
        assert_eq!(checksum(&pkt), 0, "a packet with its checksum sums to zero");
        assert_eq!(echo_request(true, 1, 1, 100)[..4], [128, 0, 0, 0]);
    }
}
