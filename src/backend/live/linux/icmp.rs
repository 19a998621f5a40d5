//! Native ping: ICMP echo from a raw socket opened inside the namespace (a socket
//! stays in the namespace it was created in, so only its creation needs the switch).
//! No `ping` process, no setuid helper, and `ping_group_range` does not matter.

use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::check::{PingResult, PingSpec};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

fn checksum(data: &[u8]) -> u16 {
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

fn open_socket(ns: BorrowedFd<'_>, v6: bool) -> Result<OwnedFd> {
    nsexec::in_netns(ns, move || {
        let (family, proto) = if v6 { (libc::AF_INET6, libc::IPPROTO_ICMPV6) } else { (libc::AF_INET, libc::IPPROTO_ICMP) };
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return Err(
                Error::io(Code::NotRoot, "cannot open a raw ICMP socket", &e).help("raw sockets need CAP_NET_RAW: run nsscript as root")
            );
        }
        // SAFETY: fd was just returned by socket(2).
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}

fn sockaddr(addr: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match SocketAddr::new(addr, 0) {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(a.ip().octets()) },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn source(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            Some(IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// Send echo requests to `addr` from inside `ns` as `spec` says; count the replies.
pub fn ping(ns: BorrowedFd<'_>, addr: IpAddr, spec: &PingSpec) -> Result<PingResult> {
    let v6 = addr.is_ipv6();
    let sock = open_socket(ns, v6)?;
    let fd = sock.as_raw_fd();
    let (sa, salen) = sockaddr(addr);
    static SEQ_ID: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let ident = (std::process::id() as u16) ^ SEQ_ID.fetch_add(0x1111, std::sync::atomic::Ordering::Relaxed);
    let (req_type, rep_type) = if v6 { (128u8, 129u8) } else { (8u8, 0u8) };

    let start = Instant::now();
    let interval = Duration::from_millis(u64::from(spec.interval_ms.max(1)));
    let mut sent_at: HashMap<u16, Instant> = HashMap::new();
    let mut rtts: Vec<f64> = Vec::new();
    let mut sent = 0u32;
    let mut unsent: Option<String> = None;
    let mut buf = [0u8; 2048];
    let count = spec.count.max(1);
    for seq in 0..count {
        let seq16 = seq as u16;
        let mut pkt = vec![req_type, 0, 0, 0];
        pkt.extend_from_slice(&ident.to_be_bytes());
        pkt.extend_from_slice(&seq16.to_be_bytes());
        pkt.extend_from_slice(b"nsscript-ping-payload-0123456789abcdef-");
        if !v6 {
            let c = checksum(&pkt);
            pkt[2..4].copy_from_slice(&c.to_be_bytes());
        }
        // SAFETY: sending from a valid buffer to a valid address on our socket.
        let n =
            unsafe { libc::sendto(fd, pkt.as_ptr() as *const libc::c_void, pkt.len(), 0, &sa as *const _ as *const libc::sockaddr, salen) };
        // A failed send (no route yet) counts as not sent; the caller reports the route
        // and why the kernel refused it.
        if n < 0 {
            unsent = std::io::Error::last_os_error().raw_os_error().map(crate::error::errno_words);
        }
        if n >= 0 {
            sent += 1;
            sent_at.insert(seq16, Instant::now());
        }
        let until =
            if seq + 1 == count { Instant::now() + Duration::from_millis(u64::from(spec.wait_ms)) } else { start + interval * (seq + 1) };
        // Replies until the next request is due.
        loop {
            let now = Instant::now();
            if now >= until || (spec.stop_on_reply && !rtts.is_empty()) || (rtts.len() as u32 == count) {
                break;
            }
            let ms = (until - now).as_millis().clamp(1, i32::MAX as u128) as i32;
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r <= 0 {
                continue;
            }
            // SAFETY: receiving into our buffers.
            let mut from: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut fromlen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut fromlen,
                )
            };
            if n <= 0 || source(&from) != Some(addr) {
                continue;
            }
            let data = &buf[..n as usize];
            // An IPv4 raw socket hands over the IP header too; ICMPv6 does not.
            let icmp = if v6 {
                data
            } else {
                let ihl = usize::from(data[0] & 0x0f) * 4;
                if data.len() < ihl + 8 {
                    continue;
                }
                &data[ihl..]
            };
            if icmp.len() < 8 || icmp[0] != rep_type || u16::from_be_bytes([icmp[4], icmp[5]]) != ident {
                continue;
            }
            let seq = u16::from_be_bytes([icmp[6], icmp[7]]);
            if let Some(t) = sent_at.remove(&seq) {
                rtts.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        if (spec.stop_on_reply && !rtts.is_empty()) || rtts.len() as u32 == count {
            break;
        }
    }
    let received = rtts.len() as u32;
    Ok(PingResult {
        unsent: if sent == 0 { unsent } else { None },
        sent,
        received,
        rtt_ms: if rtts.is_empty() { None } else { Some(rtts.iter().sum::<f64>() / f64::from(received)) },
        waited_ms: start.elapsed().as_millis() as u64,
    })
}

/// A raw ICMP socket for pingall, in the calling thread's namespace: non-blocking, echo
/// replies only (ICMP_FILTER), with room for thousands of them.
pub fn pingall_socket() -> Result<OwnedFd> {
    // SAFETY: socket(2) and setsockopt(2) on the fd we own at once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, libc::IPPROTO_ICMP);
        if fd < 0 {
            return Err(Error::io(Code::NotRoot, "cannot open a raw ICMP socket", &std::io::Error::last_os_error())
                .help("raw sockets need CAP_NET_RAW: run nsscript as root"));
        }
        let fd = OwnedFd::from_raw_fd(fd);
        const SOL_RAW: libc::c_int = 255;
        const ICMP_FILTER: libc::c_int = 1;
        let filter: u32 = !(1u32 << 0); // pass echo replies (type 0) only
        libc::setsockopt(fd.as_raw_fd(), SOL_RAW, ICMP_FILTER, &filter as *const u32 as *const libc::c_void, 4);
        let rcvbuf: libc::c_int = 4 << 20;
        libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &rcvbuf as *const _ as *const libc::c_void, 4);
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn checksum_of_an_echo_request() {
        // type 8, id 1, seq 1, no payload: 0xf7fd.
        assert_eq!(super::checksum(&[8, 0, 0, 0, 0, 1, 0, 1]), 0xf7fd);
    }
}
