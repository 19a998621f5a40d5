//! The request path to the kernel: plain synchronous netlink sockets, one per
//! namespace, that send requests in bursts and read their answers right after.
//!
//! The kernel handles a route request inside the sendmsg() that carries it, so its
//! ack is waiting by the time the call returns: a synchronous socket never blocks on
//! it. rtnetlink's tokio connection, by contrast, costs a task wake-up, an epoll round
//! and an extra recvfrom per request, and sends each request on its own; measured,
//! that was most of what nsscript added to the kernel's own work. Every request and
//! dump goes through here; the netlink module above the Kernel seam builds them.

use crate::backend::live::kernel::Answer;
use crate::error::{Code, Error, Result};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_DUMP, NLM_F_REQUEST};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::Socket;

const RTM_NEWLINK: u16 = 16;
const HEADER_LEN: usize = 16;
/// Bytes per sendmsg(): the answers of one burst always fit the receive buffer.
const BURST_BYTES: usize = 32 * 1024;

/// A netlink socket bound to one namespace (it was opened inside it).
pub struct Wire {
    socket: Socket,
    seq: u32,
}

/// Room for one answer datagram (an ack, or the echo of a created link). One buffer
/// serves every wire: a lab of 1000 namespaces has 1000 of them.
pub const ANSWER_BUF: usize = 64 * 1024;

impl Wire {
    pub fn new(socket: Socket) -> Self {
        Wire { socket, seq: 0 }
    }

    /// Send `requests` in order (their flags set by the caller, NLM_F_ACK included)
    /// and return one answer per request. A refusal does not stop the burst: the
    /// kernel goes on with the requests after it, as it does for `ip -batch`.
    pub fn exchange(&mut self, requests: Vec<NetlinkMessage<RouteNetlinkMessage>>, buf: &mut [u8]) -> Result<Vec<Answer>> {
        let mut answers: Vec<Answer> = Vec::with_capacity(requests.len());
        let mut out = Vec::new();
        let mut first = 0;
        for (i, mut req) in requests.into_iter().enumerate() {
            self.seq = self.seq.wrapping_add(1);
            req.header.sequence_number = self.seq;
            req.finalize();
            let at = out.len();
            out.resize(at + req.buffer_len(), 0);
            req.serialize(&mut out[at..]);
            answers.push(Answer::default());
            if out.len() >= BURST_BYTES {
                self.send_and_read(&out, &mut answers[first..=i], buf)?;
                out.clear();
                first = i + 1;
            }
        }
        if !out.is_empty() {
            self.send_and_read(&out, &mut answers[first..], buf)?;
        }
        Ok(answers)
    }

    /// A dump (`ip link show`...): every message of the answer, or the errno the
    /// kernel refused with.
    pub fn dump(&mut self, request: RouteNetlinkMessage, buf: &mut [u8]) -> Result<std::result::Result<Vec<RouteNetlinkMessage>, i32>> {
        let lost = |e: &std::io::Error| Error::io(Code::KernelRefused, "cannot talk to the kernel over netlink", e);
        let mut req = NetlinkMessage::from(request);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.seq = self.seq.wrapping_add(1);
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.socket.send(&out, 0).map_err(|e| lost(&e))?;
        let mut messages = Vec::new();
        loop {
            let n = recv(&self.socket, buf)?;
            for msg in messages_in(&buf[..n]).filter(|m| m.seq == self.seq) {
                if msg.kind == NLMSG_DONE {
                    return Ok(Ok(messages));
                }
                if let Some(errno) = msg.errno() {
                    return Ok(Err(errno));
                }
                // A message this version of netlink-packet-route cannot parse is left
                // out, as rtnetlink's own dumps do.
                if let Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(m), .. }) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg.bytes)
                {
                    messages.push(m);
                }
            }
        }
    }

    /// A request the kernel answers with one message (RTM_GETROUTE): that message, or
    /// the errno it refused with.
    pub fn ask(&mut self, request: RouteNetlinkMessage, buf: &mut [u8]) -> Result<std::result::Result<RouteNetlinkMessage, i32>> {
        let lost = |e: &std::io::Error| Error::io(Code::KernelRefused, "cannot talk to the kernel over netlink", e);
        let mut req = NetlinkMessage::from(request);
        req.header.flags = NLM_F_REQUEST;
        self.seq = self.seq.wrapping_add(1);
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.socket.send(&out, 0).map_err(|e| lost(&e))?;
        loop {
            let n = recv(&self.socket, buf)?;
            for msg in messages_in(&buf[..n]).filter(|m| m.seq == self.seq) {
                if let Some(errno) = msg.errno() {
                    return Ok(Err(errno));
                }
                if let Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(m), .. }) =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg.bytes)
                {
                    return Ok(Ok(m));
                }
            }
        }
    }

    /// One sendmsg() for the burst, then its answers (already queued on the socket).
    fn send_and_read(&mut self, burst: &[u8], answers: &mut [Answer], buf: &mut [u8]) -> Result<()> {
        let lost = |e: &std::io::Error| Error::io(Code::KernelRefused, "cannot talk to the kernel over netlink", e);
        self.socket.send(burst, 0).map_err(|e| lost(&e))?;
        let last_seq = self.seq;
        let first_seq = last_seq.wrapping_sub(answers.len() as u32 - 1);
        let mut acked = 0;
        while acked < answers.len() {
            let n = recv(&self.socket, buf)?;
            for msg in messages_in(&buf[..n]) {
                let slot = msg.seq.wrapping_sub(first_seq) as usize;
                if slot < answers.len() {
                    match msg.kind {
                        NLMSG_ERROR => {
                            answers[slot].errno = msg.errno();
                            acked += 1;
                        }
                        RTM_NEWLINK => {
                            if let Ok(NetlinkMessage { payload: NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)), .. }) =
                                NetlinkMessage::<RouteNetlinkMessage>::deserialize(msg.bytes)
                            {
                                answers[slot].echo = Some(m);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// Read one datagram; a kernel that has not answered within the socket's receive
/// timeout (see `nsexec::netlink_socket`) is not going to.
pub fn recv(socket: &Socket, buf: &mut [u8]) -> Result<usize> {
    match socket.recv(&mut &mut buf[..], 0) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            Err(Error::new(Code::KernelRefused, "the kernel did not answer a netlink request")
                .why("no answer within 30 s")
                .help("the machine may be overloaded; run the lab again"))
        }
        Err(e) => Err(Error::io(Code::KernelRefused, "cannot talk to the kernel over netlink", &e)),
    }
}

/// One netlink message of a datagram: its type, sequence number and whole bytes.
pub struct Message<'a> {
    pub kind: u16,
    pub seq: u32,
    pub bytes: &'a [u8],
}

impl Message<'_> {
    /// For an NLMSG_ERROR: None for a plain ack, else the errno the kernel refused with.
    pub fn errno(&self) -> Option<i32> {
        if self.kind != NLMSG_ERROR || self.bytes.len() < HEADER_LEN + 4 {
            return None;
        }
        let code = i32::from_ne_bytes(self.bytes[HEADER_LEN..HEADER_LEN + 4].try_into().expect("4 bytes"));
        (code != 0).then_some(-code)
    }
}

/// The messages of a datagram, in order (a truncated tail is left out).
pub fn messages_in(mut datagram: &[u8]) -> impl Iterator<Item = Message<'_>> {
    std::iter::from_fn(move || {
        if datagram.len() < HEADER_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(datagram[0..4].try_into().expect("4 bytes")) as usize;
        if len < HEADER_LEN || len > datagram.len() {
            return None;
        }
        let msg = Message {
            kind: u16::from_ne_bytes(datagram[4..6].try_into().expect("2 bytes")),
            seq: u32::from_ne_bytes(datagram[8..12].try_into().expect("4 bytes")),
            bytes: &datagram[..len],
        };
        datagram = &datagram[len.next_multiple_of(4).min(datagram.len())..];
        Some(msg)
    })
}
