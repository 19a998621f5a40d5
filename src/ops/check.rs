//! Reachability checks: `ping`, `assert_ping`, `assert_no_ping`, `pingall`. ICMP is
//! sent natively from inside the namespace (raw sockets), no ping process.

use super::shell::Sh;
use super::NsRef;
use serde::Serialize;
use std::net::IpAddr;

/// How to ping: up to `count` echo requests `interval_ms` apart, then wait `wait_ms`
/// for late replies; `stop_on_reply` ends at the first reply.
#[derive(Clone, Debug, PartialEq)]
pub struct PingSpec {
    pub count: u32,
    pub interval_ms: u32,
    pub wait_ms: u32,
    pub stop_on_reply: bool,
}

/// ICMP echo from a raw socket opened inside ns.
#[derive(Clone, Debug, PartialEq)]
pub struct Ping {
    pub ns: NsRef,
    pub addr: IpAddr,
    pub spec: PingSpec,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PingResult {
    pub sent: u32,
    pub received: u32,
    /// Average round trip of the replies.
    pub rtt_ms: Option<f64>,
    pub waited_ms: u64,
    /// Why an echo request could not be sent, in words (the last refusal of the send).
    pub unsent: Option<String>,
}

/// One node of `pingall`: where it probes from and the address it answers on.
#[derive(Clone, Debug, PartialEq)]
pub struct PingNode {
    pub ns: NsRef,
    pub addr: IpAddr,
}

/// Every ordered pair of nodes probed at once.
#[derive(Clone, Debug, PartialEq)]
pub struct PingAll {
    pub nodes: Vec<PingNode>,
    /// How long unanswered pairs are retried.
    pub timeout_ms: u32,
    /// Install permanent neighbour entries for the nodes' own addresses first (they do
    /// not count against the kernel's shared neighbour table limit).
    pub static_arp: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PingAllResult {
    /// `rtt_ms[src][dst]`: None when dst never answered src (and on the diagonal).
    pub rtt_ms: Vec<Vec<Option<f64>>>,
    pub elapsed_ms: f64,
}

/// A planned reachability check: one probe that shows it, never a failure of the
/// walkthrough (a plan checks nothing; the real run retries and decides). A probe the
/// model expects to go unanswered waits 0.2 s, not a whole second: on a lab's veths and
/// bridges an answer takes well under a millisecond.
pub fn planned_ping(ns: &NsRef, addr: IpAddr, expect_answer: bool) -> String {
    let wait = if expect_answer { "1" } else { "0.2" };
    Sh::inside(ns, "ping").raw("-c 1 -W").raw(wait).w(addr.to_string()).or_true().done()
}
