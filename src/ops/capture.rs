//! Seeing the packets: `capture(target, opts)` and its handle's `stop()` / `packets()`.
//! A capture runs in the background (one thread, a packet socket per link, opened
//! inside each link's namespace) until it is stopped or has seen `count` packets; the
//! engine is `backend::live::capture`. This file says what a capture is: its targets,
//! its options and their limits, the packets it hands back, and its shell text for
//! `nsscript plan` (tcpdump on each link, which is what a user would run by hand).

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::Serialize;
use std::path::PathBuf;

/// One link to capture on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Target {
    pub ns: NsRef,
    pub link: String,
}

impl Target {
    /// How a packet's link is named in a pcapng file, in Wireshark and in the CLI:
    /// `NS/LINK` (`host/LINK` for the host namespace's links).
    pub fn file_name(&self) -> String {
        format!("{}/{}", self.ns.name().unwrap_or("host"), self.link)
    }

    /// How a step of a trace or a printed packet names the link: `NS LINK`, or just the
    /// link for the host namespace's (bridges and the host ends of veths).
    pub fn place(&self) -> String {
        match &self.ns {
            NsRef::Host => self.link.clone(),
            NsRef::Named(n) => format!("{n} {}", self.link),
        }
    }
}

/// tcpdump's default snapshot length: whole packets.
pub const DEFAULT_SNAPLEN: u32 = 262_144;

/// `capture(target, #{ filter?, count?, snaplen?, file? })`.
#[derive(Clone, Debug, PartialEq)]
pub struct StartCapture {
    pub targets: Vec<Target>,
    /// tcpdump's filter syntax, compiled by libpcap.
    pub filter: Option<String>,
    /// Stop after this many packets (all links together).
    pub count: Option<u64>,
    pub snaplen: u32,
    /// Write pcapng there, one interface per link named `NS/LINK`.
    pub file: Option<PathBuf>,
}

impl StartCapture {
    pub fn validate(&self) -> Result<()> {
        if self.targets.is_empty() {
            return Err(Error::new(Code::BadValue, "capture() has no link to capture on")
                .help("give a link, a namespace (all its links) or an array of them: capture(link(ns, \"eth0\"), #{})"));
        }
        for t in &self.targets {
            super::names::validate_ifname(&t.link)?;
        }
        if !(64..=DEFAULT_SNAPLEN).contains(&self.snaplen) {
            return Err(Error::new(Code::BadValue, format!("capture(): snaplen {} is out of range", self.snaplen))
                .help(format!("a snapshot length is 64 to {DEFAULT_SNAPLEN} bytes (the default: whole packets)")));
        }
        if self.count == Some(0) {
            return Err(
                Error::new(Code::BadValue, "capture(): count 0 would capture nothing").help("count is how many packets to keep, 1 or more")
            );
        }
        Ok(())
    }

    /// For `nsscript plan`: a tcpdump per link in the background (what one would run by
    /// hand; a pcapng of them all is nsscript's own), stopped by [`stop_shell`].
    pub fn shell(&self, id: u64) -> Step {
        let commands = self
            .targets
            .iter()
            .map(|t| {
                let sh = Sh::inside(&t.ns, "tcpdump").raw("-n -U -i").w(&t.link).raw("-s").w(self.snaplen.to_string());
                let sh = sh.opt("-c", self.count);
                let sh = match &self.file {
                    Some(f) => sh.raw("-w").w(format!("{}.{}.{}.pcap", f.display(), t.ns.name().unwrap_or("host"), t.link)),
                    None => sh,
                };
                let sh = match &self.filter {
                    Some(f) => sh.w(f),
                    None => sh,
                };
                // The pids are kept in CAPTURE_ID (a number of ours) for the stop.
                format!("{} & CAPTURE_{id}=\"${{CAPTURE_{id}:-}} $!\"", sh.done())
            })
            .collect();
        Step::new(
            format!("capture {} link(s) in the background (nsscript captures them natively, in one pcapng)", self.targets.len()),
            commands,
        )
    }
}

/// For `nsscript plan`: `cap.stop()` ends the tcpdumps of capture `id`.
pub fn stop_shell(id: u64) -> Step {
    Step::new("stop the capture", vec![format!("kill $CAPTURE_{id} 2>/dev/null || true")])
}

/// What a capture handle is asked.
#[derive(Clone, Debug, PartialEq)]
pub enum CaptureOp {
    Start(StartCapture),
    /// Stop capture `id`: its counts.
    Stop(u64),
    /// The packets capture `id` has seen so far.
    Packets(u64),
}

/// What `cap.stop()` answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CaptureStats {
    pub packets: u64,
    /// Packets the kernel dropped because the capture did not keep up (PACKET_STATISTICS).
    pub dropped: u64,
    pub file: Option<PathBuf>,
}

/// Which way a packet crossed its link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Dir {
    In,
    Out,
}

impl Dir {
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// One packet as `cap.packets()` gives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Packet {
    /// Seconds since the epoch (the kernel's timestamp, nanosecond resolution).
    pub time: f64,
    pub target: Target,
    pub dir: Dir,
    /// Its length on the wire (it may have been cut to snaplen).
    pub len: u32,
    /// `arp`, `icmp`, `icmp6`, `tcp`, `udp`, `vxlan`, `dhcp`, `ip`, `ip6` or `eth`.
    pub proto: String,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// One line, as tcpdump -n prints it.
    pub summary: String,
}

impl Packet {
    /// The line `nsscript capture` prints: time, `NS:LINK`, direction, summary.
    pub fn line(&self) -> String {
        let secs = self.time.rem_euclid(86_400.0);
        let (h, m, s) = ((secs / 3600.0) as u32, ((secs % 3600.0) / 60.0) as u32, secs % 60.0);
        let place = format!("{}:{}", self.target.ns.name().unwrap_or("host"), self.target.link);
        format!("{h:02}:{m:02}:{s:09.6} {place} {:<3} {}", self.dir.as_str(), self.summary)
    }
}

/// A filter libpcap could not compile.
pub fn bad_filter(filter: &str, why: &str) -> Error {
    Error::new(Code::BadFilter, format!("cannot compile the capture filter {filter:?}"))
        .why(why.to_string())
        .help("filters are tcpdump's syntax (man pcap-filter): e.g. \"icmp or arp\", \"tcp port 80\", \"host 10.0.0.1 and udp\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> StartCapture {
        StartCapture {
            targets: vec![Target { ns: NsRef::named("vm1"), link: "eth0".into() }],
            filter: Some("icmp and host 10.0.0.1".into()),
            count: Some(5),
            snaplen: DEFAULT_SNAPLEN,
            file: Some("out'x".into()),
        }
    }

    #[test]
    fn limits_are_checked() {
        assert!(start().validate().is_ok());
        assert_eq!(StartCapture { targets: vec![], ..start() }.validate().unwrap_err().code, Code::BadValue);
        assert_eq!(StartCapture { snaplen: 10, ..start() }.validate().unwrap_err().code, Code::BadValue);
        assert_eq!(StartCapture { count: Some(0), ..start() }.validate().unwrap_err().code, Code::BadValue);
    }

    #[test]
    fn the_plan_runs_tcpdump_per_link_with_every_word_quoted() {
        let step = start().shell(3);
        assert_eq!(
            step.commands,
            vec!["ip netns exec vm1 tcpdump -n -U -i eth0 -s 262144 -c 5 -w 'out'\\''x.vm1.eth0.pcap' 'icmp and host 10.0.0.1' & CAPTURE_3=\"${CAPTURE_3:-} $!\""]
        );
        assert_eq!(stop_shell(3).commands, vec!["kill $CAPTURE_3 2>/dev/null || true"]);
    }

    #[test]
    fn names_of_links() {
        let t = Target { ns: NsRef::Host, link: "br-in".into() };
        assert_eq!((t.file_name(), t.place()), ("host/br-in".to_string(), "br-in".to_string()));
        let t = Target { ns: NsRef::named("rt"), link: "eth1".into() };
        assert_eq!((t.file_name(), t.place()), ("rt/eth1".to_string(), "rt eth1".to_string()));
    }
}
