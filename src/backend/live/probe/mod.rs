//! The service checks, above the kernel seam: every socket comes from
//! [`Kernel::socket_in`] (opened inside the namespace, non-blocking), and what is done
//! with it here is plain socket work against a deadline: a connect told apart by its
//! errno (RST, silence, no route), an exchange, an HTTP/1.1 GET, a DNS query, the
//! path MTU search, a bulk stream.

mod dns;
mod http;
mod mtu;
mod stream;

pub use mtu::checksum;

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::ops::probe::{DnsResult, Exchange, ExchangeResult, Failure, HttpResult, Probe, ProbeOutcome, Proto, StreamTo};
use crate::ops::query::route_for;
use crate::ops::NsRef;
use nix::sys::socket::{getsockopt, sockopt, MsgFlags, SockaddrStorage};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

pub fn domain(ip: IpAddr) -> i32 {
    if ip.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    }
}

fn sock_type(proto: Proto) -> i32 {
    match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    }
}

fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn errno_of(e: nix::errno::Errno) -> i32 {
    e as i32
}

/// A non-blocking socket (made inside its namespace) driven against deadlines.
pub struct Sock(pub OwnedFd);

impl Sock {
    /// poll(2) for `events` until the deadline: the events that came (0: none in time).
    pub fn wait(&self, events: i16, deadline: Instant) -> i16 {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd { fd: self.0.as_raw_fd(), events, revents: 0 };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return pfd.revents;
            }
            if n == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return 0;
            }
        }
    }

    /// The socket's pending error (SO_ERROR), if any.
    pub fn error(&self) -> Option<i32> {
        match getsockopt(&self.0, sockopt::SocketError) {
            Ok(0) => None,
            Ok(e) => Some(e),
            Err(e) => Some(errno_of(e)),
        }
    }

    /// connect(2) and wait for it: TCP's handshake, or UDP's default destination.
    pub fn connect(&self, to: SocketAddr, deadline: Instant) -> std::result::Result<(), Failure> {
        let addr = SockaddrStorage::from(to);
        match nix::sys::socket::connect(self.0.as_raw_fd(), &addr) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => return Err(Failure::from_errno(errno_of(e))),
        }
        let revents = self.wait(libc::POLLOUT, deadline);
        if revents == 0 {
            return Err(Failure::Timeout);
        }
        match self.error() {
            None => Ok(()),
            Some(e) => Err(Failure::from_errno(e)),
        }
    }

    pub fn bind(&self, to: SocketAddr) -> nix::Result<()> {
        nix::sys::socket::bind(self.0.as_raw_fd(), &SockaddrStorage::from(to))
    }

    pub fn local_port(&self) -> Option<u16> {
        let addr: SockaddrStorage = nix::sys::socket::getsockname(self.0.as_raw_fd()).ok()?;
        addr.as_sockaddr_in().map(|a| a.port()).or_else(|| addr.as_sockaddr_in6().map(|a| a.port()))
    }

    /// Send all of `data` before the deadline.
    pub fn send_all(&self, mut data: &[u8], deadline: Instant) -> std::result::Result<(), Failure> {
        while !data.is_empty() {
            match nix::sys::socket::send(self.0.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) => data = &data[n..],
                Err(nix::errno::Errno::EAGAIN) => {
                    if self.wait(libc::POLLOUT, deadline) == 0 {
                        return Err(Failure::Timeout);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Failure::from_errno(errno_of(e))),
            }
        }
        Ok(())
    }

    /// What arrives before the deadline (Ok(0): the peer closed; Err(Timeout): nothing came).
    pub fn recv(&self, buf: &mut [u8], deadline: Instant) -> std::result::Result<usize, Failure> {
        loop {
            match nix::sys::socket::recv(self.0.as_raw_fd(), buf, MsgFlags::empty()) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EAGAIN) => {
                    if self.wait(libc::POLLIN, deadline) == 0 {
                        return Err(Failure::Timeout);
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Failure::from_errno(errno_of(e))),
            }
        }
    }
}

/// A reply read until `done` says it is complete, the peer closes, or the deadline.
/// Returns what came and how the reading ended (None: `done`).
fn read_reply(sock: &Sock, deadline: Instant, done: impl Fn(&[u8]) -> bool) -> (Vec<u8>, Option<Failure>) {
    let mut reply = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        if done(&reply) {
            return (reply, None);
        }
        match sock.recv(&mut buf, deadline) {
            Ok(0) => return (reply, Some(Failure::Closed)),
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(f) => return (reply, Some(f)),
        }
    }
}

/// How long an exchange that sends without `expect` waits for a first reply.
const REPLY_GRACE: Duration = Duration::from_millis(200);

/// UDP datagrams are sent again this often until a reply comes (one may be lost
/// while a neighbour is resolved).
const UDP_RESEND: Duration = Duration::from_millis(500);

fn contains(haystack: &[u8], needle: &str) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn tcp_exchange(sock: &Sock, x: &Exchange, start: Instant, deadline: Instant) -> ExchangeResult {
    let done = |reply: Vec<u8>, failure: Option<Failure>| ExchangeResult { ms: ms_since(start), reply, failure };
    if let Err(f) = sock.connect(x.target, deadline) {
        return done(Vec::new(), Some(f));
    }
    if let Some(data) = &x.send {
        if let Err(f) = sock.send_all(data, deadline) {
            return done(Vec::new(), Some(f));
        }
    }
    match &x.expect {
        Some(expect) => {
            let (reply, ended) = read_reply(sock, deadline, |r| contains(r, expect));
            let failure = match ended {
                None => None,
                Some(Failure::Closed | Failure::Timeout) if !reply.is_empty() => Some(Failure::Mismatch),
                other => other,
            };
            done(reply, failure)
        }
        // The connection is the check; a reply to what was sent that comes at once is kept.
        None if x.send.is_some() => {
            let (reply, _) = read_reply(sock, deadline.min(Instant::now() + REPLY_GRACE), |r| !r.is_empty());
            done(reply, None)
        }
        None => done(Vec::new(), None),
    }
}

fn udp_exchange(sock: &Sock, x: &Exchange, start: Instant, deadline: Instant) -> ExchangeResult {
    let done = |reply: Vec<u8>, failure: Option<Failure>| ExchangeResult { ms: ms_since(start), reply, failure };
    if let Err(f) = sock.connect(x.target, deadline) {
        return done(Vec::new(), Some(f));
    }
    let data = x.send.clone().unwrap_or_default();
    let mut buf = [0u8; 65536];
    let mut last = Vec::new();
    loop {
        if let Err(f) = sock.send_all(&data, deadline) {
            return done(last, Some(f));
        }
        let resend = deadline.min(Instant::now() + UDP_RESEND);
        loop {
            match sock.recv(&mut buf, resend) {
                Ok(n) => {
                    let reply = buf[..n].to_vec();
                    if x.expect.as_deref().is_none_or(|e| contains(&reply, e)) {
                        return done(reply, None);
                    }
                    last = reply;
                }
                Err(Failure::Timeout) => break,
                Err(f) => return done(last, Some(f)),
            }
        }
        if Instant::now() >= deadline {
            let failure = if last.is_empty() { Failure::Timeout } else { Failure::Mismatch };
            return done(last, Some(failure));
        }
    }
}

impl<K: Kernel> LiveBackend<K> {
    fn probe_socket(&mut self, ns: &NsRef, ip: IpAddr, ty: i32, protocol: i32) -> Result<Sock> {
        self.nl.kernel().socket_in(ns, domain(ip), ty | libc::SOCK_NONBLOCK, protocol).map(Sock)
    }

    pub(super) fn probe(&mut self, probe: Probe) -> Result<ProbeOutcome> {
        probe.validate()?;
        match probe {
            Probe::Exchange(x) => {
                let sock = self.probe_socket(&x.ns, x.target.ip(), sock_type(x.proto), 0)?;
                let start = Instant::now();
                let deadline = start + Duration::from_millis(u64::from(x.timeout_ms));
                Ok(ProbeOutcome::Exchange(match x.proto {
                    Proto::Tcp => tcp_exchange(&sock, &x, start, deadline),
                    Proto::Udp => udp_exchange(&sock, &x, start, deadline),
                }))
            }
            Probe::Http(h) => {
                let sock = self.probe_socket(&h.ns, h.url.addr.ip(), libc::SOCK_STREAM, 0)?;
                let start = Instant::now();
                let deadline = start + Duration::from_millis(u64::from(h.timeout_ms));
                let response = sock.connect(h.url.addr, deadline).and_then(|()| http::get(&sock, &h, deadline));
                Ok(ProbeOutcome::Http(HttpResult { ms: ms_since(start), response }))
            }
            Probe::Dns(d) => {
                let server = match d.server {
                    Some(s) => Some(s),
                    None => dns::resolv_conf_server(&d.ns),
                };
                let Some(server) = server else {
                    return Ok(ProbeOutcome::Dns(DnsResult {
                        ms: 0.0,
                        server: None,
                        answer: Err(Failure::Protocol(format!("{} has no nameserver in its resolv.conf: pass #{{ server: IP }}", d.ns))),
                    }));
                };
                let sock = self.probe_socket(&d.ns, server.ip(), libc::SOCK_DGRAM, 0)?;
                let start = Instant::now();
                let answer = dns::ask(&sock, &d, server, start + Duration::from_millis(u64::from(d.timeout_ms)));
                Ok(ProbeOutcome::Dns(DnsResult { ms: ms_since(start), server: Some(server), answer }))
            }
            Probe::PathMtu(m) => {
                // The search starts at the MTU of the link the route leaves by.
                let routes = self.nl.routes(&m.ns)?;
                let dev = route_for(&routes, m.dst).and_then(|r| r.dev.clone());
                let first_hop = match dev {
                    Some(dev) => self.nl.links(&m.ns)?.into_iter().find(|l| l.name == dev).map(|l| l.mtu),
                    None => None,
                };
                let proto = if m.dst.is_ipv4() { libc::IPPROTO_ICMP } else { libc::IPPROTO_ICMPV6 };
                let sock = self.probe_socket(&m.ns, m.dst, libc::SOCK_RAW, proto)?;
                Ok(ProbeOutcome::Mtu(mtu::search(&sock, &m, first_hop)))
            }
            Probe::Throughput(t) => {
                let ty = sock_type(t.proto);
                let sender = self.probe_socket(&t.from, t.target(), ty, 0)?;
                let receiver = match &t.to {
                    StreamTo::Netns { ns, addr } => Some((self.probe_socket(ns, *addr, ty, 0)?, *addr)),
                    StreamTo::Listener(_) => None,
                };
                stream::measure(sender, receiver, &t).map(ProbeOutcome::Throughput)
            }
        }
    }
}
