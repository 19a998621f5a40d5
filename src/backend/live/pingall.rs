//! `pingall`: every ordered pair of nodes probed at once with native ICMP: one raw
//! socket per source namespace (opened inside it), every echo request sent back to
//! back, replies collected with poll, unanswered pairs retried until the timeout.
//!
//! The kernel's neighbour table is one for all namespaces and capped
//! (`net.ipv4.neigh.default.gc_thresh3`): a mesh that needs more entries than that
//! fails with "neighbor table overflow". We count before we start, and refuse with the
//! way out rather than report a healthy lab as broken.

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::{Code, Error, Result};
use crate::ops::check::{PingAll, PingAllResult};
use crate::ops::NsRef;
use ipnetwork::IpNetwork;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How many neighbour entries the kernel keeps at most (all namespaces together).
fn neighbour_limit() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(1024)
}

/// A node's interfaces: (link, ifindex, mac, network).
type Ifaces = Vec<(String, u32, [u8; 6], IpNetwork)>;

impl<K: Kernel> LiveBackend<K> {
    fn ifaces(&mut self, ns: &NsRef) -> Result<Ifaces> {
        let links = self.nl.links(ns)?;
        let addrs = self.nl.addrs(ns)?;
        Ok(addrs
            .into_iter()
            .filter_map(|a| {
                let link = links.iter().find(|l| l.name == a.link)?;
                let net: IpNetwork = a.addr.parse().ok()?;
                let mut mac = [0u8; 6];
                for (i, byte) in link.mac.split(':').enumerate().take(6) {
                    mac[i] = u8::from_str_radix(byte, 16).ok()?;
                }
                Some((a.link, link.index, mac, net))
            })
            .filter(|(name, ..)| name != "lo")
            .collect())
    }

    pub(super) fn pingall(&mut self, spec: PingAll) -> Result<PingAllResult> {
        let nodes = &spec.nodes;
        if let Some(v6) = nodes.iter().find(|n| n.addr.is_ipv6()) {
            return Err(Error::new(Code::BadValue, format!("pingall probes IPv4 addresses; {} is IPv6", v6.addr))
                .help("give each node its IPv4 address, e.g. #{ ns: n, addr: \"10.0.0.2\" }"));
        }
        let ifaces: Vec<Ifaces> = nodes.iter().map(|n| self.ifaces(&n.ns)).collect::<Result<_>>()?;
        // Pairs that need a neighbour entry: the target is on one of the source's subnets.
        let mut on_link: Vec<(usize, usize, u32)> = Vec::new();
        for (i, src) in ifaces.iter().enumerate() {
            for (j, dst) in nodes.iter().enumerate() {
                if let Some((_, index, ..)) = src.iter().find(|(.., net)| i != j && net.contains(dst.addr)) {
                    on_link.push((i, j, *index));
                }
            }
        }
        let limit = neighbour_limit();
        if spec.static_arp {
            for (i, node) in nodes.iter().enumerate() {
                if !self.state.owns_ns(&node.ns) {
                    return Err(Error::new(
                        Code::NotOwned,
                        format!("static_arp would add neighbour entries in {}, which this lab does not own", node.ns),
                    )
                    .help("use static_arp only with the lab's own namespaces"));
                }
                let entries: Vec<(u32, IpAddr, [u8; 6])> = on_link
                    .iter()
                    .filter(|(s, ..)| *s == i)
                    .filter_map(|(_, j, index)| {
                        let target = &nodes[*j];
                        ifaces[*j].iter().find(|(.., net)| net.ip() == target.addr).map(|(_, _, mac, _)| (*index, target.addr, *mac))
                    })
                    .collect();
                self.nl.add_permanent_neighbours(&node.ns, &entries)?;
            }
        } else if on_link.len() > limit {
            return Err(Error::new(Code::NeighbourLimit, format!("pingall of {} nodes needs {} neighbour (ARP) entries, more than the kernel keeps", nodes.len(), on_link.len()))
                .why(format!("net.ipv4.neigh.default.gc_thresh3 is {limit}, shared by all namespaces; past it pings fail with \"neighbor table overflow\""))
                .help("pass #{ static_arp: true } to install permanent entries for the lab's own addresses (they do not count), or probe fewer nodes at a time"));
        }
        let mut sockets = Vec::with_capacity(nodes.len());
        for n in nodes {
            sockets.push(self.nl.kernel().icmp_socket(&n.ns)?);
        }
        let targets: Vec<IpAddr> = nodes.iter().map(|n| n.addr).collect();
        Ok(probe(&sockets, &targets, Duration::from_millis(u64::from(spec.timeout_ms))))
    }
}

/// A raw ICMP socket that only sees echo replies (ICMP_FILTER).
fn echo_request(ident: u16, seq: u16) -> [u8; 16] {
    let mut pkt = [8u8, 0, 0, 0, 0, 0, 0, 0, b'n', b's', b's', b'c', b'r', b'i', b'p', b't'];
    pkt[4..6].copy_from_slice(&ident.to_be_bytes());
    pkt[6..8].copy_from_slice(&seq.to_be_bytes());
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt
}

/// The Internet checksum (RFC 1071) of `data`, an odd last byte padded with zero: what
/// ICMP, and TCP and UDP over their pseudo-header, carry (pingall's echoes, trace's probes).
pub(super) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// `pkt` sent on a raw IPv4 socket to `dst` (the kernel adds the IP header); IPv6 is
/// refused with EAFNOSUPPORT.
pub(super) fn send_to(fd: &OwnedFd, pkt: &[u8], dst: IpAddr) -> std::io::Result<()> {
    let IpAddr::V4(v4) = dst else { return Err(std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT)) };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(v4.octets()) },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid buffer and sockaddr_in for our socket.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr() as *const libc::c_void,
            pkt.len(),
            0,
            &sin as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Probe every ordered pair: source i (socket i) to target j. Requests carry
/// ident = base + i and seq = j, so each reply names its pair.
fn probe(sockets: &[OwnedFd], targets: &[IpAddr], timeout: Duration) -> PingAllResult {
    let n = targets.len();
    let start = Instant::now();
    let base = (std::process::id() as u16).wrapping_mul(31);
    let mut rtt: Vec<Vec<Option<f64>>> = vec![vec![None; n]; n];
    let mut sent_at: Vec<Vec<Option<Instant>>> = vec![vec![None; n]; n];
    let mut missing = n * n.saturating_sub(1);
    let resend_every = Duration::from_millis(200);
    let mut next_round = start;
    let mut buf = [0u8; 1500];
    let mut pfds: Vec<libc::pollfd> =
        sockets.iter().map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    while missing > 0 {
        let now = Instant::now();
        if now >= next_round {
            if now.duration_since(start) >= timeout {
                break;
            }
            for (i, sock) in sockets.iter().enumerate() {
                for j in (0..n).filter(|&j| j != i && rtt[i][j].is_none()) {
                    // A failed send (no route) is simply an unanswered pair.
                    let _ = send_to(sock, &echo_request(base.wrapping_add(i as u16), j as u16), targets[j]);
                    sent_at[i][j].get_or_insert_with(Instant::now);
                }
            }
            next_round = now + resend_every;
        }
        let wait = next_round.saturating_duration_since(Instant::now()).as_millis().clamp(1, 1000) as i32;
        // SAFETY: pfds is a valid array of pollfd for our sockets.
        let ready = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait) };
        if ready <= 0 {
            continue;
        }
        for (i, pfd) in pfds.iter_mut().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            pfd.revents = 0;
            loop {
                // SAFETY: reading into our buffer from our non-blocking socket.
                let got = unsafe { libc::recv(sockets[i].as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
                if got <= 0 {
                    break;
                }
                let data = &buf[..got as usize];
                let ihl = usize::from(data[0] & 0x0f) * 4;
                let Some(icmp) = data.get(ihl..ihl + 8) else { continue };
                let (ident, seq) = (u16::from_be_bytes([icmp[4], icmp[5]]), usize::from(u16::from_be_bytes([icmp[6], icmp[7]])));
                let src = IpAddr::from([data[12], data[13], data[14], data[15]]);
                if icmp[0] != 0
                    || ident != base.wrapping_add(i as u16)
                    || seq >= n
                    || seq == i
                    || targets[seq] != src
                    || rtt[i][seq].is_some()
                {
                    continue;
                }
                rtt[i][seq] = sent_at[i][seq].map(|t| t.elapsed().as_secs_f64() * 1000.0);
                missing -= 1;
            }
        }
    }
    PingAllResult { rtt_ms: rtt, elapsed_ms: start.elapsed().as_secs_f64() * 1000.0 }
}
