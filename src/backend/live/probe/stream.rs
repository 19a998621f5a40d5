//! `throughput`: bytes sent from one namespace as fast as the path takes them. When
//! the receiver is a namespace, nsscript receives there itself (a thread with a socket
//! made inside it) and the rate is what arrived over the time it took to arrive; to a
//! listener the lab runs, TCP's acknowledgements say what arrived: the stream counts
//! until the kernel's send queue is empty.

use super::{ms_since, Sock};
use crate::error::{Code, Error, Result};
use crate::ops::probe::{Failure, Proto, StreamTo, Throughput, ThroughputResult};
use nix::sys::socket::MsgFlags;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a connection to the receiver may take.
const CONNECT: Duration = Duration::from_secs(3);
/// How long a stream may take to drain after the sender stops (a slow, shaped link
/// holds what the socket buffered).
const DRAIN: Duration = Duration::from_secs(30);
/// UDP datagrams: small enough for any path (IPv6's 1280 minus headers).
const DATAGRAM: usize = 1200;
/// The datagram that tells the receiver the stream is over.
const END: &[u8] = b"nsscript-throughput-end";

/// What the receiver counted: bytes, and when the first and the last of them came.
#[derive(Default)]
struct Received {
    bytes: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Received {
    fn got(&mut self, n: usize) {
        let now = Instant::now();
        self.bytes += n as u64;
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn seconds(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

/// Wait until `sock` has something to read: false when `cancel` (the read end of a
/// pipe whose write end the sender holds) closes first, or at `until`.
fn readable(sock: &Sock, cancel: &OwnedFd, until: Instant) -> bool {
    let left = until.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32;
    let mut fds = [
        libc::pollfd { fd: sock.0.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: cancel.as_raw_fd(), events: libc::POLLIN, revents: 0 },
    ];
    // SAFETY: two valid pollfds for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, left) };
    n > 0 && fds[0].revents != 0 && fds[1].revents == 0
}

/// TCP receiver: accept one connection, read to its end.
fn receive_tcp(listener: Sock, cancel: OwnedFd, until: Instant) -> Received {
    let mut got = Received::default();
    if !readable(&listener, &cancel, until) {
        return got;
    }
    let flags = nix::sys::socket::SockFlag::SOCK_NONBLOCK | nix::sys::socket::SockFlag::SOCK_CLOEXEC;
    let Ok(fd) = nix::sys::socket::accept4(listener.0.as_raw_fd(), flags) else {
        return got;
    };
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let conn = Sock(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut buf = vec![0u8; 1 << 18];
    while let Ok(n) = conn.recv(&mut buf, until) {
        if n == 0 {
            break;
        }
        got.got(n);
    }
    got
}

/// UDP receiver: count datagrams until the end marker, a quiet second, or `until`.
fn receive_udp(sock: Sock, cancel: OwnedFd, until: Instant) -> Received {
    let mut got = Received::default();
    let mut buf = vec![0u8; 65536];
    if !readable(&sock, &cancel, until) {
        return got;
    }
    loop {
        match sock.recv(&mut buf, until.min(Instant::now() + Duration::from_secs(1))) {
            Ok(n) if &buf[..n] == END => break,
            Ok(n) => got.got(n),
            Err(_) => break,
        }
    }
    got
}

/// Bytes not yet acknowledged by the peer (SIOCOUTQ).
fn unacked(sock: &Sock) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int.
    if unsafe { libc::ioctl(sock.0.as_raw_fd(), libc::TIOCOUTQ, &mut n) } != 0 {
        return 0;
    }
    n
}

/// Send for `length`: what was sent, or why the stream could not start. Whatever the
/// other end sends back (an echo server) is read and dropped so it never stalls.
fn send(sock: &Sock, proto: Proto, length: Duration) -> std::result::Result<u64, Failure> {
    let chunk = vec![0x5au8; if proto == Proto::Tcp { 1 << 17 } else { DATAGRAM }];
    let mut sink = vec![0u8; 1 << 16];
    let end = Instant::now() + length;
    let mut sent = 0u64;
    let fd = sock.0.as_raw_fd();
    while Instant::now() < end {
        match nix::sys::socket::send(fd, &chunk, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => sent += n as u64,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::ENOBUFS) => {
                let revents = sock.wait(libc::POLLOUT | libc::POLLIN, end);
                if revents & libc::POLLIN != 0 {
                    let _ = nix::sys::socket::recv(fd, &mut sink, MsgFlags::MSG_DONTWAIT);
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            // UDP: an ICMP error about an earlier datagram; the stream goes on.
            Err(nix::errno::Errno::ECONNREFUSED) if proto == Proto::Udp => {}
            Err(e) => return Err(Failure::from_errno(e as i32)),
        }
    }
    Ok(sent)
}

/// Run the stream of `t` from `sender`; `receiver` is nsscript's own socket in the
/// receiving namespace, with the address it binds.
pub fn measure(sender: Sock, receiver: Option<(Sock, IpAddr)>, t: &Throughput) -> Result<ThroughputResult> {
    let length = Duration::from_millis(u64::from(t.ms));
    let until = Instant::now() + CONNECT + length + DRAIN;
    let (target, thread) = match (receiver, &t.to) {
        (Some((sock, addr)), StreamTo::Netns { ns, .. }) => {
            sock.bind(SocketAddr::new(addr, 0)).map_err(|e| {
                Error::new(Code::BadValue, format!("throughput(): {addr} is not an address of {ns}"))
                    .errno(e as i32)
                    .help("the stream goes to an address the receiving namespace holds: pass #{ ns, addr } with one of its addresses")
            })?;
            if t.proto == Proto::Tcp {
                nix::sys::socket::listen(&sock.0, nix::sys::socket::Backlog::new(4).expect("a valid backlog"))
                    .map_err(|e| Error::new(Code::KernelRefused, "throughput(): cannot listen for the stream").errno(e as i32))?;
            }
            let port = sock.local_port().ok_or_else(|| Error::new(Code::Internal, "throughput(): the receiving socket has no port"))?;
            let (cancel, keep) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::new(Code::Internal, "throughput(): cannot make a pipe").errno(e as i32))?;
            let proto = t.proto;
            let thread = std::thread::spawn(move || match proto {
                Proto::Tcp => receive_tcp(sock, cancel, until),
                Proto::Udp => receive_udp(sock, cancel, until),
            });
            (SocketAddr::new(addr, port), Some((thread, keep)))
        }
        (_, StreamTo::Listener(a)) => (*a, None),
        (None, StreamTo::Netns { .. }) => unreachable!("a namespace receiver comes with its socket"),
    };
    let start = Instant::now();
    let outcome = sender.connect(target, start + CONNECT).and_then(|()| send(&sender, t.proto, length));
    let mut result = ThroughputResult::default();
    match outcome {
        Err(f) => {
            result.failure = Some(f);
            // The receiver waits for nothing more: closing the pipe's write end ends its wait.
            if let Some((thread, keep)) = thread {
                drop(keep);
                let _ = thread.join();
            }
            result.seconds = ms_since(start) / 1000.0;
        }
        Ok(sent) => {
            result.sent = sent;
            match t.proto {
                Proto::Tcp => {
                    let _ = nix::sys::socket::shutdown(sender.0.as_raw_fd(), nix::sys::socket::Shutdown::Write);
                }
                Proto::Udp => {
                    for _ in 0..5 {
                        let _ = nix::sys::socket::send(sender.0.as_raw_fd(), END, MsgFlags::empty());
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            match thread {
                Some((thread, _keep)) => {
                    let got = thread.join().unwrap_or_default();
                    result.bytes = got.bytes;
                    result.seconds = got.seconds();
                }
                None => {
                    // Acknowledged is arrived: wait for the send queue to empty.
                    while unacked(&sender) > 0 && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    result.bytes = sent - unacked(&sender).max(0) as u64;
                    result.seconds = start.elapsed().as_secs_f64();
                }
            }
        }
    }
    Ok(result)
}
