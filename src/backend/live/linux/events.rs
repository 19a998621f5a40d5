//! The kernel's own change notifications: a NETLINK_ROUTE socket opened inside a
//! namespace and joined to the rtnetlink multicast groups of links, addresses and
//! routes, so a watcher learns of a change (ours, a user's `ip link set ... down`, a
//! DHCP client's address) as it happens instead of polling for it.

use crate::error::{Code, Error, Result};
use crate::nsexec;
use rtnetlink::sys::Socket;
use std::os::fd::BorrowedFd;

// Multicast groups (linux/rtnetlink.h, enum rtnetlink_groups).
const RTNLGRP_LINK: u32 = 1;
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV4_ROUTE: u32 = 7;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTNLGRP_IPV6_ROUTE: u32 = 11;
const GROUPS: [u32; 5] = [RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE];

// Message types (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;

/// A socket in the namespace `ns` that receives its link, address and route
/// notifications, non-blocking (a runtime's reactor waits for it). The socket stays
/// bound to `ns` whoever reads it: it is made on the namespace worker, never on the
/// caller's thread.
pub fn subscribe(ns: BorrowedFd<'_>) -> Result<Socket> {
    let mut sock = nsexec::run_in(ns, nsexec::route_socket)?;
    let failed =
        |e: std::io::Error| Error::io(Code::KernelRefused, "cannot subscribe to the kernel's link, address and route notifications", &e);
    sock.bind_auto().map_err(failed)?;
    for g in GROUPS {
        sock.add_membership(g).map_err(failed)?;
    }
    sock.set_non_blocking(true).map_err(failed)?;
    Ok(sock)
}

/// What a batch of notifications was about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub links: bool,
    pub addrs: bool,
    pub routes: bool,
    /// The socket's buffer overflowed (ENOBUFS): notifications were lost, so whatever
    /// is known of this namespace must be read again in full.
    pub lost: bool,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.links || self.addrs || self.routes || self.lost
    }
}

/// Read every notification queued on `sock` (until it would block) and say what they
/// were about. A closed or broken socket is an error.
pub fn drain(sock: &Socket, buf: &mut [u8]) -> Result<Changes> {
    let mut c = Changes::default();
    loop {
        match sock.recv(&mut &mut buf[..], 0) {
            Ok(0) => return Ok(c),
            Ok(n) => {
                for m in super::wire::messages_in(&buf[..n]) {
                    match m.kind {
                        RTM_NEWLINK | RTM_DELLINK => c.links = true,
                        RTM_NEWADDR | RTM_DELADDR => c.addrs = true,
                        RTM_NEWROUTE | RTM_DELROUTE => c.routes = true,
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(c),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => c.lost = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(Code::KernelRefused, "cannot read the kernel's notifications", &e)),
        }
    }
}
