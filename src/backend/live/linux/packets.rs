//! Sockets for seeing packets, each opened inside its namespace (a socket stays in the
//! namespace it was made in; only its creation needs the switch, done by nsexec): a
//! packet socket per captured link, a raw socket for trace's probe, and the two
//! questions a trace asks netfilter (conntrack's table, the filter table's counters).

use super::nft::{self, attributes, NETLINK_NETFILTER};
use super::wire;
use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::trace::{Conntrack, Tuple};
use rtnetlink::packet_core::{NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::socket;

/// A non-blocking AF_PACKET socket in `ns`, bound to `ifindex` with protocol 0 (it
/// receives nothing until the capture engine arms it).
pub fn packet_socket(ns: BorrowedFd<'_>, ifindex: u32) -> Result<OwnedFd> {
    nsexec::run_in(ns, move || {
        let fd = socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, 0, "a packet socket")?;
        // SAFETY: all-zero is a valid sockaddr_ll; bind(2) on our socket.
        let rc = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::io(
                Code::KernelRefused,
                format!("cannot bind a packet socket to link #{ifindex}"),
                &std::io::Error::last_os_error(),
            ));
        }
        Ok(fd)
    })
}

/// A raw IPv4 socket of `protocol` in `ns` (the kernel adds the IP header).
pub fn raw_socket(ns: BorrowedFd<'_>, protocol: i32) -> Result<OwnedFd> {
    nsexec::run_in(ns, move || socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_NONBLOCK, protocol, "a raw IP socket"))
}

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;

/// `conntrack -L` (IPv4) in `ns`, over ctnetlink.
pub fn conntrack(ns: BorrowedFd<'_>) -> Result<Vec<Conntrack>> {
    let mut request = vec![0u8; 16];
    request.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]);
    let len = request.len() as u32;
    request[0..4].copy_from_slice(&len.to_ne_bytes());
    request[4..6].copy_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    request[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    request[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let what = "cannot read the connection-tracking table";
    nsexec::run_in(ns, move || {
        let socket = nsexec::netlink_socket(NETLINK_NETFILTER)?;
        socket.send(&request, 0).map_err(|e| Error::io(Code::KernelRefused, what, &e))?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::new();
        loop {
            let n = wire::recv(&socket, &mut buf)?;
            for msg in wire::messages_in(&buf[..n]) {
                match msg.kind {
                    NLMSG_DONE => return Ok(out),
                    // No conntrack in this namespace yet: an empty table.
                    NLMSG_ERROR => return if msg.errno().is_none() { Ok(out) } else { Ok(Vec::new()) },
                    k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                        out.extend(entry(msg.bytes.get(20..).unwrap_or_default()));
                    }
                    _ => {}
                }
            }
        }
    })
}

/// One CT_NEW message's attributes as an entry.
pub fn entry(attrs: &[u8]) -> Option<Conntrack> {
    let (mut orig, mut reply, mut proto) = (None, None, 0);
    for (kind, value) in attributes(attrs) {
        match kind {
            CTA_TUPLE_ORIG => orig = tuple(value, &mut proto),
            CTA_TUPLE_REPLY => reply = tuple(value, &mut proto),
            _ => {}
        }
    }
    Some(Conntrack { proto, orig: orig?, reply: reply? })
}

fn tuple(attrs: &[u8], proto: &mut u8) -> Option<Tuple> {
    let (mut src, mut dst, mut sport, mut dport) = (None, None, 0, 0);
    let v4 = |v: &[u8]| <[u8; 4]>::try_from(v).ok().map(|b| IpAddr::V4(Ipv4Addr::from(b)));
    let be16 = |v: &[u8]| <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes).unwrap_or(0);
    for (kind, value) in attributes(attrs) {
        match kind {
            CTA_TUPLE_IP => {
                for (k, v) in attributes(value) {
                    match k {
                        CTA_IP_V4_SRC => src = v4(v),
                        CTA_IP_V4_DST => dst = v4(v),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, v) in attributes(value) {
                    match k {
                        CTA_PROTO_NUM => *proto = v.first().copied().unwrap_or(0),
                        CTA_PROTO_SRC_PORT => sport = be16(v),
                        CTA_PROTO_DST_PORT => dport = be16(v),
                        CTA_PROTO_ICMP_ID => {
                            sport = be16(v);
                            dport = sport;
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Tuple { src: src?, dst: dst?, sport, dport })
}

/// The filter table's rules with their counters, or None when `ns` has none (asked
/// of nftables, or of /proc for legacy iptables: no process for a namespace without).
pub fn filter_counters(ns: BorrowedFd<'_>) -> Result<Option<String>> {
    let legacy =
        nsexec::run_in(ns, || Ok(std::fs::read_to_string("/proc/net/ip_tables_names").unwrap_or_default()))?.lines().any(|t| t == "filter");
    if !legacy && !nft::table_exists(ns, "filter")? {
        return Ok(None);
    }
    let args: Vec<String> = ["-L", "-v", "-x", "-n"].iter().map(|s| s.to_string()).collect();
    super::iptables::raw(ns, &args, "cannot read the firewall's counters".into()).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = ((4 + value.len()) as u16).to_ne_bytes().to_vec();
        a.extend(kind.to_ne_bytes());
        a.extend(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn a_nat_entry_reads_as_conntrack_shows_it() {
        let tuple = |src: [u8; 4], dst: [u8; 4], id: u16| {
            let ip = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
            let proto = [attr(CTA_PROTO_NUM, &[1]), attr(CTA_PROTO_ICMP_ID, &id.to_be_bytes())].concat();
            [attr(CTA_TUPLE_IP | 0x8000, &ip), attr(CTA_TUPLE_PROTO | 0x8000, &proto)].concat()
        };
        let msg = [
            attr(CTA_TUPLE_ORIG | 0x8000, &tuple([10, 0, 0, 1], [203, 0, 113, 1], 7)),
            attr(CTA_TUPLE_REPLY | 0x8000, &tuple([203, 0, 113, 1], [192, 168, 100, 11], 7)),
        ]
        .concat();
        let e = entry(&msg).unwrap();
        assert_eq!(e.to_string(), "icmp src=10.0.0.1 dst=203.0.113.1 id=7 | reply src=203.0.113.1 dst=192.168.100.11 id=7");
    }
}
