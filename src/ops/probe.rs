//! Service checks beyond ping: a TCP or UDP exchange (`assert_tcp`, `tcp_probe`,
//! `assert_udp`), an HTTP GET (`http_get`, `assert_http`), a DNS query (`assert_dns`),
//! the path MTU (`path_mtu`), a bulk stream (`throughput`), and `serve`, a tiny
//! responder to check against. Every socket is opened inside the namespace through
//! the kernel seam: no helper process, no `socat`, no `curl`.
//!
//! What a failure means is written here once: [`Failure`] tells a refused connection
//! (RST) from silence (a firewall DROP, a host that is down) from a missing route, and
//! [`Report`] turns it into the error a check raises, naming the source, the target,
//! the route the source would use and how long it waited.

use super::shell::{quote, Sh, Step};
use super::NsRef;
use crate::error::{errno_words, Code, Error, Result};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    pub fn parse(func: &str, text: &str) -> Result<Proto> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(Error::new(Code::BadValue, format!("{func}(): unknown proto {other:?}")).help("proto is \"tcp\" or \"udp\"")),
        }
    }
}

/// `IP:PORT` (IPv6 as `[fd00::1]:80`), as checks take their targets.
pub fn parse_target(func: &str, text: &str) -> Result<SocketAddr> {
    text.trim().parse::<SocketAddr>().map_err(|_| {
        let why = if text.contains(':') { "not an address and a port" } else { "no port" };
        Error::new(Code::MalformedAddress, format!("{func}(): malformed target {text:?}"))
            .why(why)
            .help("write the target as \"IP:PORT\", e.g. \"10.0.0.1:80\" or \"[fd00::1]:80\"")
    })
}

/// Why a check's exchange did not go through.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// TCP: the SYN was answered by a reset (ECONNREFUSED). UDP: ICMP port unreachable.
    Refused,
    /// Nothing came back within the window.
    Timeout,
    /// The source has no route there (ENETUNREACH), or a router said so.
    NoRoute(i32),
    /// EHOSTUNREACH: no neighbour answered ARP, or a router sent ICMP host unreachable.
    Unreachable(i32),
    /// The peer closed or reset the connection before the reply was complete.
    Closed,
    /// A reply came, without what was expected in it.
    Mismatch,
    /// The answer broke its protocol (an HTTP status line, a DNS message).
    Protocol(String),
    /// The kernel refused otherwise.
    Errno(i32),
}

impl Failure {
    pub fn from_errno(errno: i32) -> Failure {
        match errno {
            libc::ECONNREFUSED => Failure::Refused,
            libc::ETIMEDOUT => Failure::Timeout,
            libc::ENETUNREACH => Failure::NoRoute(errno),
            libc::EHOSTUNREACH | libc::EHOSTDOWN => Failure::Unreachable(errno),
            libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => Failure::Closed,
            other => Failure::Errno(other),
        }
    }

    /// One word for a probe's result map (`error`).
    pub fn short(&self) -> &'static str {
        match self {
            Failure::Refused => "refused",
            Failure::Timeout => "timeout",
            Failure::NoRoute(_) => "no route",
            Failure::Unreachable(_) => "unreachable",
            Failure::Closed => "closed",
            Failure::Mismatch => "unexpected reply",
            Failure::Protocol(_) => "protocol",
            Failure::Errno(_) => "error",
        }
    }

    /// What happened, in words (`proto` and `target` say where it was sent).
    pub fn words(&self, proto: Proto, target: SocketAddr) -> String {
        let port = target.port();
        match (self, proto) {
            (Failure::Refused, Proto::Tcp) => {
                format!("refused (RST): nothing listens on TCP port {port} at {}, or a firewall rejects it", target.ip())
            }
            (Failure::Refused, Proto::Udp) => {
                format!("ICMP port unreachable: nothing listens on UDP port {port} at {}, or a firewall rejects it", target.ip())
            }
            (Failure::Timeout, _) => {
                "no answer (timeout): the packets are dropped on the way (a firewall DROP, no route back) or the host is down".into()
            }
            (Failure::NoRoute(e), _) => format!("no route to {} ({})", target.ip(), errno_words(*e)),
            (Failure::Unreachable(e), _) => {
                format!("{} is unreachable ({}): no neighbour answered ARP, or a router said so", target.ip(), errno_words(*e))
            }
            (Failure::Closed, _) => "the connection was closed before the reply was complete".into(),
            (Failure::Mismatch, _) => "a reply came, but not the one expected".into(),
            (Failure::Protocol(why), _) => why.clone(),
            (Failure::Errno(e), _) => errno_words(*e),
        }
    }
}

/// A TCP connection (then, if asked, bytes sent and a reply awaited) or a UDP datagram
/// and its reply.
#[derive(Clone, Debug, PartialEq)]
pub struct Exchange {
    pub ns: NsRef,
    pub proto: Proto,
    pub target: SocketAddr,
    pub timeout_ms: u32,
    pub send: Option<Vec<u8>>,
    /// The reply must contain this; without it any reply (TCP: the connection) will do.
    pub expect: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExchangeResult {
    /// How long the exchange took, or how long it waited before it gave up.
    pub ms: f64,
    pub reply: Vec<u8>,
    pub failure: Option<Failure>,
}

/// `http://HOST[:PORT]/PATH`, HOST an address (a name is looked up with assert_dns or
/// resolve first; the Host header can carry it).
#[derive(Clone, Debug, PartialEq)]
pub struct Url {
    pub text: String,
    pub host: String,
    pub addr: SocketAddr,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url> {
        let bad = |why: &str| {
            Error::new(Code::MalformedAddress, format!("malformed URL {text:?}"))
                .why(why.to_string())
                .help("write it as http://ADDRESS[:PORT]/PATH, e.g. \"http://10.0.0.1/\" or \"http://[fd00::1]:8080/index.html\"")
        };
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad("https is not supported: the check speaks plain HTTP/1.1"))
            }
            Some(_) => return Err(bad("the scheme is not http")),
            None => return Err(bad("no http:// in front")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the path holds white space or control characters"));
        }
        let host_port = |host: &str, port: Option<&str>| -> Result<(IpAddr, u16)> {
            let ip = host
                .parse::<IpAddr>()
                .map_err(|_| bad("the host is not an address (look the name up first, or send it as the Host header)"))?;
            let port = match port {
                None => 80,
                Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not a number from 1 to 65535"))?,
            };
            Ok((ip, port))
        };
        let (ip, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 host needs its closing ]"))?;
            host_port(host, after.strip_prefix(':'))?
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => host_port(host, Some(port))?,
                None => host_port(authority, None)?,
            }
        };
        Ok(Url { text: text.to_string(), host: authority.to_string(), addr: SocketAddr::new(ip, port), path: path.to_string() })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpGet {
    pub ns: NsRef,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u32,
}

impl HttpGet {
    pub fn validate(&self) -> Result<()> {
        for (k, v) in &self.headers {
            let bad_name = k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if bad_name || v.contains(['\r', '\n']) {
                return Err(Error::new(Code::BadValue, format!("http_get(): invalid header {k:?}: {v:?}"))
                    .help("header names are letters, digits and '-'; values are one line"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HttpResult {
    pub ms: f64,
    pub response: std::result::Result<HttpResponse, Failure>,
}

/// A DNS question: A (IPv4) or AAAA (IPv6) records of `name`, asked of `server`
/// (None: the first nameserver of the namespace's resolv.conf, as `ip netns exec`
/// would read it).
#[derive(Clone, Debug, PartialEq)]
pub struct DnsQuery {
    pub ns: NsRef,
    pub name: String,
    pub server: Option<SocketAddr>,
    pub ipv6: bool,
    pub timeout_ms: u32,
}

impl DnsQuery {
    pub fn validate(&self) -> Result<()> {
        let name = self.name.trim_end_matches('.');
        let bad = |why: &str| {
            Err(Error::new(Code::BadValue, format!("assert_dns(): invalid name {:?}", self.name))
                .why(why.to_string())
                .help("a DNS name is dot-separated labels of letters, digits, '-' and '_', 63 bytes each, 253 in all"))
        };
        if name.is_empty() || name.len() > 253 {
            return bad("empty or longer than 253 bytes");
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("a label is empty or longer than 63 bytes");
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return bad("a label holds a character other than letters, digits, '-' and '_'");
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct DnsAnswer {
    /// The response code: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN...
    pub rcode: u8,
    pub addrs: Vec<IpAddr>,
    pub cnames: Vec<String>,
}

impl DnsAnswer {
    pub fn rcode_name(&self) -> String {
        match self.rcode {
            0 => "NOERROR".into(),
            1 => "FORMERR".into(),
            2 => "SERVFAIL".into(),
            3 => "NXDOMAIN".into(),
            4 => "NOTIMP".into(),
            5 => "REFUSED".into(),
            n => format!("rcode {n}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct DnsResult {
    pub ms: f64,
    /// The server asked (from the query or the namespace's resolv.conf).
    pub server: Option<SocketAddr>,
    pub answer: std::result::Result<DnsAnswer, Failure>,
}

/// The path MTU from ns towards dst: ICMP echo requests with DF set, sized down by the
/// routers' "fragmentation needed" answers, then by halving when something drops
/// large packets silently.
#[derive(Clone, Debug, PartialEq)]
pub struct PathMtu {
    pub ns: NsRef,
    pub dst: IpAddr,
    /// How long each probe waits for its answer.
    pub timeout_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct MtuResult {
    pub ms: f64,
    /// The largest packet (IP header included) that reached dst and came back.
    pub mtu: Option<u32>,
    /// The MTU of the first hop (where the search started).
    pub first_hop: u32,
    pub probes: u32,
    pub failure: Option<Failure>,
}

/// Where a throughput stream goes.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamTo {
    /// nsscript itself receives, on a socket inside ns (bound to an ephemeral port).
    Netns { ns: NsRef, addr: IpAddr },
    /// A listener the lab runs (`serve`, a program of its own).
    Listener(SocketAddr),
}

/// `throughput(from, to, #{ seconds?, proto? })`: bytes sent as fast as the path takes
/// them for `ms`.
#[derive(Clone, Debug, PartialEq)]
pub struct Throughput {
    pub from: NsRef,
    pub to: StreamTo,
    pub ms: u32,
    pub proto: Proto,
}

impl Throughput {
    pub fn validate(&self) -> Result<()> {
        if self.proto == Proto::Udp && matches!(self.to, StreamTo::Listener(_)) {
            return Err(Error::new(Code::BadValue, "throughput(): a UDP stream needs a namespace as its receiver")
                .why("only the receiver knows how many datagrams arrived")
                .help("pass the receiving namespace as `to` (nsscript receives there), or use proto: \"tcp\""));
        }
        Ok(())
    }

    pub fn target(&self) -> IpAddr {
        match &self.to {
            StreamTo::Netns { addr, .. } => *addr,
            StreamTo::Listener(a) => a.ip(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ThroughputResult {
    /// Bytes that arrived (TCP to a listener of the lab: bytes the receiver acknowledged).
    pub bytes: u64,
    /// Over how long they arrived.
    pub seconds: f64,
    /// Bytes sent (UDP: the difference was lost).
    pub sent: u64,
    pub failure: Option<Failure>,
}

impl ThroughputResult {
    pub fn bits_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds
        } else {
            0.0
        }
    }
}

/// A check that sends from a namespace.
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    Exchange(Exchange),
    Http(HttpGet),
    Dns(DnsQuery),
    PathMtu(PathMtu),
    Throughput(Throughput),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ProbeOutcome {
    Exchange(ExchangeResult),
    Http(HttpResult),
    Dns(DnsResult),
    Mtu(MtuResult),
    Throughput(ThroughputResult),
}

fn secs(ms: u32) -> String {
    let s = f64::from(ms) / 1000.0;
    format!("{s}")
}

/// socat's address of a target: `TCP:10.0.0.1:80`, `UDP:[fd00::1]:53`.
fn socat_addr(proto: Proto, target: SocketAddr) -> String {
    format!("{}:{target}", proto.name().to_ascii_uppercase())
}

impl Probe {
    /// The namespace the probe sends from.
    pub fn source(&self) -> &NsRef {
        match self {
            Probe::Exchange(x) => &x.ns,
            Probe::Http(h) => &h.ns,
            Probe::Dns(d) => &d.ns,
            Probe::PathMtu(m) => &m.ns,
            Probe::Throughput(t) => &t.from,
        }
    }

    /// The address it sends to.
    pub fn target(&self) -> IpAddr {
        match self {
            Probe::Exchange(x) => x.target.ip(),
            Probe::Http(h) => h.url.addr.ip(),
            Probe::Dns(d) => d.server.map(|s| s.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1])),
            Probe::PathMtu(m) => m.dst,
            Probe::Throughput(t) => t.target(),
        }
    }

    /// What its packets carry, as the plan's model follows them through filter rules.
    pub fn carried(&self) -> crate::ops::firewall::Carried {
        use crate::ops::firewall::Carried;
        let stream = |proto: Proto, port: Option<u16>| match proto {
            Proto::Tcp => Carried::Tcp(port),
            Proto::Udp => Carried::Udp(port),
        };
        match self {
            Probe::Exchange(x) => stream(x.proto, Some(x.target.port())),
            Probe::Http(h) => Carried::Tcp(Some(h.url.addr.port())),
            Probe::Dns(d) => Carried::Udp(Some(d.server.map_or(53, |s| s.port()))),
            Probe::PathMtu(_) => Carried::Ping,
            // nsscript's own receiver binds a port of the kernel's choosing.
            Probe::Throughput(t) => match t.to {
                StreamTo::Listener(a) => stream(t.proto, Some(a.port())),
                StreamTo::Netns { .. } => stream(t.proto, None),
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        match self {
            Probe::Http(h) => h.validate(),
            Probe::Dns(d) => d.validate(),
            Probe::Throughput(t) => t.validate(),
            Probe::Exchange(_) | Probe::PathMtu(_) => Ok(()),
        }
    }

    /// The probe as a walkthrough does it by hand (it never stops the walkthrough).
    pub fn shell(&self) -> Step {
        match self {
            Probe::Exchange(x) => {
                let t = secs(x.timeout_ms);
                let timeout = match x.proto {
                    Proto::Tcp => format!("{},connect-timeout={t}", socat_addr(x.proto, x.target)),
                    Proto::Udp => socat_addr(x.proto, x.target),
                };
                let cmd = match &x.send {
                    Some(bytes) => format!(
                        "printf '%s' {} | {}",
                        quote(&String::from_utf8_lossy(bytes)),
                        Sh::inside(&x.ns, "socat").raw("-T").w(&t).raw("-").w(timeout).or_true().done()
                    ),
                    None => Sh::inside(&x.ns, "socat").raw("-T").w(&t).raw("/dev/null").w(timeout).or_true().done(),
                };
                Step::new(format!("{} exchange with {} from {}", x.proto.name().to_ascii_uppercase(), x.target, x.ns), vec![cmd])
            }
            Probe::Http(h) => {
                let mut sh = Sh::inside(&h.ns, "timeout").w(secs(h.timeout_ms)).raw("busybox wget -q -O -");
                for (k, v) in &h.headers {
                    sh = sh.raw("--header").w(format!("{k}: {v}"));
                }
                Step::new(format!("HTTP GET {} from {}", h.url.text, h.ns), vec![sh.w(&h.url.text).or_true().done()])
            }
            Probe::Dns(d) => {
                let mut sh = Sh::inside(&d.ns, "busybox").raw("nslookup").raw(if d.ipv6 { "-type=AAAA" } else { "-type=A" }).w(&d.name);
                if let Some(s) = d.server {
                    sh = sh.w(s.ip().to_string());
                }
                Step::new(format!("DNS query for {} from {}", d.name, d.ns), vec![sh.or_true().done()])
            }
            Probe::PathMtu(m) => Step::new(
                format!("path MTU from {} to {}", m.ns, m.dst),
                vec![Sh::inside(&m.ns, "tracepath").raw("-n").w(m.dst.to_string()).or_true().done()],
            ),
            Probe::Throughput(t) => {
                let secs = secs(t.ms);
                let cmds = match (&t.to, t.proto) {
                    (StreamTo::Netns { ns, addr }, proto) => {
                        let mut client = Sh::inside(&t.from, "iperf3").raw("-c").w(addr.to_string()).raw("-t").w(&secs);
                        if proto == Proto::Udp {
                            client = client.raw("-u -b 0");
                        }
                        vec![Sh::inside(ns, "iperf3").raw("-s -1 -D").done(), "sleep 0.2".to_string(), client.or_true().done()]
                    }
                    (StreamTo::Listener(target), _) => vec![Sh::inside(&t.from, "timeout")
                        .w(&secs)
                        .raw("socat -u /dev/zero")
                        .w(socat_addr(Proto::Tcp, *target))
                        .or_true()
                        .done()],
                };
                Step::new(format!("throughput from {} to {}", t.from, t.target()), cmds)
            }
        }
    }
}

/// What `serve` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeProto {
    /// Every connection: the reply at once (then anything sent is read and dropped),
    /// or without a reply an echo of what it sends.
    Tcp,
    /// Every datagram: the reply, or itself.
    Udp,
    /// Every request: 200 OK with the reply as its body.
    Http,
}

impl ServeProto {
    pub fn name(self) -> &'static str {
        match self {
            ServeProto::Tcp => "tcp",
            ServeProto::Udp => "udp",
            ServeProto::Http => "http",
        }
    }

    pub fn parse(text: &str) -> Result<ServeProto> {
        match text.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(ServeProto::Tcp),
            "udp" => Ok(ServeProto::Udp),
            "http" => Ok(ServeProto::Http),
            other => {
                Err(Error::new(Code::BadValue, format!("serve(): unknown proto {other:?}")).help("proto is \"tcp\", \"udp\" or \"http\""))
            }
        }
    }
}

/// `serve(ns, port, #{ proto?, reply? })`: nsscript's own responder (the binary in a
/// hidden mode, `__serve`), started inside ns like `spawn` and stopped at `down`.
#[derive(Clone, Debug, PartialEq)]
pub struct Serve {
    pub ns: NsRef,
    pub port: u16,
    pub proto: ServeProto,
    pub reply: Option<String>,
}

impl Serve {
    /// The hidden mode's arguments after the program.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["__serve".to_string(), self.proto.name().to_string(), self.port.to_string()];
        if let Some(r) = &self.reply {
            args.push("--reply".into());
            args.push(r.clone());
        }
        args
    }

    /// How the ledger and reports name it (and `nsscript check` finds it again).
    pub fn what(&self) -> String {
        format!("serve {} {}", self.proto.name(), self.port)
    }

    /// Started in the background by `exe` (nsscript's own path), then waited for.
    pub fn shell(&self, exe: &str, host_pids: &str) -> Step {
        let mut cmds = vec![format!("{} &", Sh::within(&self.ns).w(exe).words(self.args()).done())];
        if self.ns == NsRef::Host {
            cmds.push(format!("echo $! >> {}", quote(host_pids)));
        }
        let listing = if self.proto == ServeProto::Udp { "-Hlun" } else { "-Hltn" };
        let ss = Sh::inside(&self.ns, "ss").raw(listing).done();
        cmds.push(format!("until {ss} | grep -q ':{} '; do sleep 0.1; done", self.port));
        Step::new(format!("nsscript's own {} responder on port {} in {}", self.proto.name(), self.port, self.ns), cmds)
    }
}

/// What a failed check says: the source, the target, the route the source would use
/// and how long it waited, in the shape of `assert_ping`'s report.
pub struct Report<'a> {
    pub src: &'a NsRef,
    /// `namespace a sends it by the route ...`, or that it has none (see `query::route_words`).
    pub route: String,
    pub waited_ms: f64,
}

impl Report<'_> {
    /// `waited 500 ms: WHAT HAPPENED`.
    fn waited(&self, what: impl fmt::Display) -> String {
        format!("waited {:.0} ms: {what}", self.waited_ms)
    }

    /// assert_tcp / assert_no_tcp / assert_udp.
    pub fn exchange(&self, x: &Exchange, r: &ExchangeResult, want_accept: bool) -> Error {
        let (code, proto) = match x.proto {
            Proto::Tcp => (Code::TcpFailed, "TCP"),
            Proto::Udp => (Code::UdpFailed, "UDP"),
        };
        if !want_accept {
            return Error::new(code, format!("{} accepts a {proto} connection from {}, which was expected to fail", x.target, self.src))
                .why(format!("connected after {:.0} ms", self.waited_ms))
                .help(format!("{}; something listens there: stop it, or check the firewall rule that should refuse it", self.route));
        }
        let what = match (x.proto, &r.failure) {
            (_, Some(Failure::Mismatch)) => format!("{} did not answer {} with the reply expected", x.target, self.src),
            (Proto::Tcp, _) => format!("{} does not accept a TCP connection from {}", x.target, self.src),
            (Proto::Udp, _) => format!("{} does not answer a UDP datagram from {}", x.target, self.src),
        };
        let failure = r.failure.clone().unwrap_or(Failure::Timeout);
        let mut why = self.waited(failure.words(x.proto, x.target));
        if let (Failure::Mismatch | Failure::Closed, Some(expect)) = (&failure, &x.expect) {
            why.push_str(&format!(": expected {expect:?}, got {:?}", String::from_utf8_lossy(&r.reply)));
        }
        let advice = match failure {
            Failure::Refused => "start the server (serve(ns, port), spawn(ns, cmd, #{ listen: port })) or open the port",
            Failure::Timeout => {
                "check each hop's routes back, forwarding, and FORWARD/INPUT rules that DROP; a longer window: #{ timeout: ms }"
            }
            Failure::NoRoute(_) | Failure::Unreachable(_) => "add the route, or check that the target's address is on a link that is up",
            _ => "check what the server sends",
        };
        Error::new(code, what).why(why).help(format!("{}; {advice}", self.route))
    }

    /// assert_http.
    pub fn http(&self, h: &HttpGet, r: &HttpResult, want_status: Option<u16>, contains: Option<&str>) -> Error {
        let what = format!("GET {} from {} failed", h.url.text, self.src);
        match &r.response {
            Err(f) => Error::new(Code::HttpFailed, what).why(self.waited(f.words(Proto::Tcp, h.url.addr))).help(format!(
                "{}; check that an HTTP server listens on {} (serve(ns, port, #{{ proto: \"http\" }}), busybox httpd)",
                self.route, h.url.addr
            )),
            Ok(resp) => {
                let why = match (want_status, contains) {
                    (Some(want), _) if resp.status != want => {
                        format!("the status is {} {}, not {want}", resp.status, resp.reason)
                    }
                    (_, Some(text)) => {
                        let body = String::from_utf8_lossy(&resp.body);
                        let shown: String = body.chars().take(120).collect();
                        format!("the body ({} bytes) does not contain {text:?}: {shown:?}", resp.body.len())
                    }
                    _ => format!("the status is {} {}", resp.status, resp.reason),
                };
                Error::new(Code::HttpFailed, what).why(why).help("the server answered: check what it serves at that path")
            }
        }
    }

    /// assert_dns.
    pub fn dns(&self, d: &DnsQuery, r: &DnsResult, expected: &[IpAddr]) -> Error {
        let want = expected.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
        let server = r.server.map(|s| s.to_string()).unwrap_or_else(|| "no server".into());
        let what = format!("{} does not resolve to {want} from {} (asking {server})", d.name, self.src);
        match &r.answer {
            Err(f) => {
                let target = r.server.unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 53));
                Error::new(Code::DnsFailed, what).why(self.waited(f.words(Proto::Udp, target))).help(format!(
                    "{}; check that a DNS server runs there and listens on UDP port {}",
                    self.route,
                    target.port()
                ))
            }
            Ok(a) => {
                let got = if a.addrs.is_empty() {
                    format!("{} with no {} record", a.rcode_name(), if d.ipv6 { "AAAA" } else { "A" })
                } else {
                    a.addrs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
                };
                Error::new(Code::DnsFailed, what)
                    .why(format!("the answer is {got}"))
                    .help("the server answered: check its records (dnsmasq --address=/NAME/IP, --host-record)")
            }
        }
    }

    /// path_mtu when nothing came back at all.
    pub fn mtu(&self, m: &PathMtu, r: &MtuResult) -> Error {
        let target = SocketAddr::new(m.dst, 0);
        let failure = r.failure.clone().unwrap_or(Failure::Timeout);
        Error::new(Code::MtuFailed, format!("cannot find the path MTU from {} to {}", self.src, m.dst))
            .why(format!("{} ({} probes)", self.waited(failure.words(Proto::Udp, target)), r.probes))
            .help(format!("{}; path_mtu needs {} to answer pings: check that it does (assert_ping)", self.route, m.dst))
    }

    /// throughput when the stream could not start.
    pub fn throughput(&self, t: &Throughput, r: &ThroughputResult) -> Error {
        let target = match &t.to {
            StreamTo::Listener(a) => *a,
            StreamTo::Netns { addr, .. } => SocketAddr::new(*addr, 0),
        };
        let failure = r.failure.clone().unwrap_or(Failure::Timeout);
        Error::new(
            Code::ThroughputFailed,
            format!("no {} stream from {} to {}", t.proto.name().to_ascii_uppercase(), self.src, target.ip()),
        )
        .why(self.waited(failure.words(t.proto, target)))
        .help(format!("{}; a stream needs what a connection needs: a route there and back, and a listener", self.route))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_with_an_address() {
        let u = Url::parse("http://10.0.0.1/index.html").unwrap();
        assert_eq!((u.addr, u.path.as_str(), u.host.as_str()), ("10.0.0.1:80".parse().unwrap(), "/index.html", "10.0.0.1"));
        let u = Url::parse("http://[fd00::1]:8080").unwrap();
        assert_eq!((u.addr, u.path.as_str()), ("[fd00::1]:8080".parse().unwrap(), "/"));
        assert_eq!(Url::parse("HTTP://10.0.0.1:81/a?b=c").unwrap().addr.port(), 81);
        for bad in ["https://10.0.0.1/", "10.0.0.1/", "http://web.lab/", "http://10.0.0.1:0/", "http://10.0.0.1/a b", "ftp://10.0.0.1/"] {
            assert_eq!(Url::parse(bad).unwrap_err().code, Code::MalformedAddress, "{bad}");
        }
    }

    #[test]
    fn errnos_become_the_reason_a_check_reports() {
        assert_eq!(Failure::from_errno(libc::ECONNREFUSED), Failure::Refused);
        assert_eq!(Failure::from_errno(libc::ETIMEDOUT), Failure::Timeout);
        assert_eq!(Failure::from_errno(libc::ENETUNREACH), Failure::NoRoute(libc::ENETUNREACH));
        assert_eq!(Failure::from_errno(libc::EHOSTUNREACH).short(), "unreachable");
        let t: SocketAddr = "10.0.0.1:80".parse().unwrap();
        assert!(Failure::Refused.words(Proto::Tcp, t).contains("RST"));
        assert!(Failure::Refused.words(Proto::Udp, t).contains("ICMP port unreachable"));
        assert!(Failure::NoRoute(libc::ENETUNREACH).words(Proto::Tcp, t).contains("ENETUNREACH"));
    }

    #[test]
    fn targets_need_a_port_and_names_are_checked() {
        assert_eq!(parse_target("t", "10.0.0.1:80").unwrap().port(), 80);
        assert_eq!(parse_target("t", "[fd00::1]:53").unwrap().port(), 53);
        assert!(parse_target("t", "10.0.0.1").unwrap_err().why.unwrap().contains("no port"));
        let q = |name: &str| DnsQuery { ns: NsRef::Host, name: name.into(), server: None, ipv6: false, timeout_ms: 1 }.validate();
        assert!(q("web.lab").is_ok() && q("web.lab.").is_ok() && q("_sip._udp.x").is_ok());
        assert!(q("").is_err() && q("a..b").is_err() && q("a b").is_err() && q(&"x".repeat(64)).is_err());
    }

    #[test]
    fn the_plan_quotes_every_value() {
        let x = Exchange {
            ns: NsRef::named("a b"),
            proto: Proto::Tcp,
            target: "10.0.0.1:80".parse().unwrap(),
            timeout_ms: 2000,
            send: Some(b"$(touch F)'".to_vec()),
            expect: None,
        };
        assert_eq!(
            Probe::Exchange(x).shell().commands,
            ["printf '%s' '$(touch F)'\\''' | ip netns exec 'a b' socat -T 2 - TCP:10.0.0.1:80,connect-timeout=2 || true"]
        );
        let s = Serve { ns: NsRef::named("web"), port: 80, proto: ServeProto::Http, reply: Some("it's up".into()) };
        assert_eq!(
            s.shell("/usr/bin/nsscript", "/run/p").commands[0],
            "ip netns exec web /usr/bin/nsscript __serve http 80 --reply 'it'\\''s up' &"
        );
    }
}
