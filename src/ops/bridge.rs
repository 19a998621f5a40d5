//! Bridge options: STP and its timers at `bridge(name, #{ stp, priority, ... })` (or on
//! a bridge the lab has, as a change), a port's options (`port.bridge_port(...)`), its
//! STP state (`bridge_ports(br)`), and waiting for STP to settle (`br.wait_stp()`).
//!
//! Times are given in milliseconds; the kernel counts them in hundredths of a second
//! (USER_HZ), so they must be whole multiples of 10 ms.

use super::shell::{quote, Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};

/// What `bridge(name, opts)` sets (`ip link add NAME type bridge stp_state 1 ...`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BridgeOpts {
    pub stp: Option<bool>,
    pub priority: Option<u16>,
    pub forward_delay_ms: Option<u64>,
    pub hello_time_ms: Option<u64>,
    pub max_age_ms: Option<u64>,
    pub ageing_ms: Option<u64>,
    pub mcast_snooping: Option<bool>,
}

/// The kernel's limits (net/bridge/br_private.h), in ms: forward delay with STP on,
/// hello time and max age always.
pub const FORWARD_DELAY_STP: (u64, u64) = (2_000, 30_000);
pub const HELLO_TIME: (u64, u64) = (1_000, 10_000);
pub const MAX_AGE: (u64, u64) = (6_000, 40_000);
/// The longest time a clock_t of hundredths fits in 32 bits.
const MAX_CENTIS_MS: u64 = u32::MAX as u64 * 10;

impl BridgeOpts {
    pub fn is_empty(&self) -> bool {
        *self == BridgeOpts::default()
    }

    /// The options as `ip link ... type bridge` words, in one fixed order.
    fn words(&self) -> Vec<(&'static str, String)> {
        let cs = |ms: u64| (ms / 10).to_string();
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        let mut w = Vec::new();
        if let Some(v) = self.forward_delay_ms {
            w.push(("forward_delay", cs(v)));
        }
        if let Some(v) = self.hello_time_ms {
            w.push(("hello_time", cs(v)));
        }
        if let Some(v) = self.max_age_ms {
            w.push(("max_age", cs(v)));
        }
        if let Some(v) = self.ageing_ms {
            w.push(("ageing_time", cs(v)));
        }
        if let Some(v) = self.stp {
            w.push(("stp_state", flag(v)));
        }
        if let Some(v) = self.priority {
            w.push(("priority", v.to_string()));
        }
        if let Some(v) = self.mcast_snooping {
            w.push(("mcast_snooping", flag(v)));
        }
        w
    }

    /// `ip link add|set NAME type bridge` with the options.
    fn shell(&self, c: Sh) -> Sh {
        self.words().into_iter().fold(c.raw("type bridge"), |c, (key, v)| c.raw(key).w(v))
    }

    /// The kernel's limits, checked before anything is asked: `stp_on` says whether STP
    /// is on once these options apply.
    pub fn validate(&self, bridge: &str, stp_on: bool) -> Result<()> {
        let bad =
            |what: String, help: String| Err(Error::new(Code::BadValue, format!("cannot set {what} on bridge {bridge:?}")).help(help));
        for (key, v) in [
            ("forward_delay", self.forward_delay_ms),
            ("hello_time", self.hello_time_ms),
            ("max_age", self.max_age_ms),
            ("ageing", self.ageing_ms),
        ] {
            let Some(ms) = v else { continue };
            if ms % 10 != 0 {
                return bad(
                    format!("{key} {ms} ms"),
                    "the kernel counts bridge times in hundredths of a second: give a multiple of 10 ms".into(),
                );
            }
            if ms > MAX_CENTIS_MS {
                return bad(format!("{key} {ms} ms"), format!("at most {MAX_CENTIS_MS} ms"));
            }
        }
        let range = |key: &str, v: Option<u64>, (lo, hi): (u64, u64), when: &str| match v {
            Some(ms) if ms < lo || ms > hi => {
                bad(format!("{key} {ms} ms"), format!("the kernel accepts {key} from {lo} to {hi} ms{when} (ERANGE otherwise)"))
            }
            _ => Ok(()),
        };
        if stp_on {
            range("forward_delay", self.forward_delay_ms, FORWARD_DELAY_STP, " with STP on")?;
        } else {
            range("forward_delay", self.forward_delay_ms, (0, FORWARD_DELAY_STP.1), "")?;
        }
        range("hello_time", self.hello_time_ms, HELLO_TIME, "")?;
        range("max_age", self.max_age_ms, MAX_AGE, "")
    }

    pub fn describe(&self) -> String {
        self.words().into_iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(" ")
    }
}

/// `ip link set BRIDGE type bridge ...` on a bridge the lab has (the options of
/// `bridge(name, opts)` when the bridge exists already).
pub fn change_shell(ns: &NsRef, bridge: &str, opts: &BridgeOpts) -> Step {
    Step::new(format!("options of bridge {bridge}"), vec![opts.shell(Sh::ip(ns).raw("link set").w(bridge)).done()])
}

/// `ip link add NAME type bridge OPTIONS`.
pub fn create_shell(ns: &NsRef, bridge: &str, opts: &BridgeOpts) -> String {
    opts.shell(Sh::ip(ns).raw("link add").w(bridge)).done()
}

/// The kernel refused the bridge's options.
pub fn options_refused(ns: &NsRef, bridge: &str, opts: &BridgeOpts, errno: i32) -> Error {
    let err = Error::new(Code::LinkChangeRefused, format!("cannot set {} on bridge {bridge:?} in {ns}", opts.describe())).errno(errno);
    match errno {
        libc::ERANGE => err.help(
            "a time is outside the kernel's limits: forward_delay 2000..30000 ms with STP, hello_time 1000..10000, max_age 6000..40000",
        ),
        _ => err,
    }
}

/// `bridge link set dev PORT cost N priority N learning on|off flood on|off hairpin on|off`.
#[derive(Clone, Debug, PartialEq)]
pub struct SetBridgePort {
    pub ns: NsRef,
    pub port: String,
    pub cost: Option<u32>,
    pub priority: Option<u16>,
    pub learning: Option<bool>,
    pub flood: Option<bool>,
    pub hairpin: Option<bool>,
}

impl SetBridgePort {
    pub fn validate(&self) -> Result<()> {
        let what = || format!("cannot set the bridge port options of {:?}", self.port);
        if self.cost.is_some_and(|c| !(1..=65535).contains(&c)) {
            return Err(Error::new(Code::BadValue, what()).help("a port's STP path cost is 1 to 65535"));
        }
        if self.priority.is_some_and(|p| p > 63) {
            return Err(Error::new(Code::BadValue, what()).help("a port's STP priority is 0 to 63"));
        }
        if self.cost.is_none() && self.priority.is_none() && self.learning.is_none() && self.flood.is_none() && self.hairpin.is_none() {
            return Err(Error::new(Code::MissingOption, what()).help("give cost, priority, learning, flood or hairpin"));
        }
        Ok(())
    }

    pub fn refused(&self, errno: i32) -> Error {
        let err = Error::new(Code::LinkChangeRefused, format!("cannot set the bridge port options of {:?} in {}", self.port, self.ns))
            .errno(errno);
        match errno {
            libc::EOPNOTSUPP | libc::EINVAL => {
                err.help("port.bridge_port() works on a link enslaved to a bridge: call port.master(br) first")
            }
            libc::ERANGE => err.help("cost is 1 to 65535, priority 0 to 63"),
            _ => err,
        }
    }

    pub fn shell(&self) -> Step {
        let onoff = |b: bool| if b { "on" } else { "off" };
        let c = Sh::inside(&self.ns, "bridge").raw("link set dev").w(&self.port).opt("cost", self.cost).opt("priority", self.priority);
        let c = c.opt("learning", self.learning.map(onoff)).opt("flood", self.flood.map(onoff)).opt("hairpin", self.hairpin.map(onoff));
        Step::new(format!("bridge port {}", self.port), vec![c.done()])
    }
}

/// A port of a bridge as `bridge_ports(br)` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgePortInfo {
    pub name: String,
    /// As `bridge link` prints it: disabled, listening, learning, forwarding, blocking.
    pub state: String,
    pub cost: u32,
    pub priority: u16,
}

/// The kernel's BR_STATE_* numbers in words.
pub fn port_state_name(state: u8) -> String {
    match state {
        0 => "disabled".into(),
        1 => "listening".into(),
        2 => "learning".into(),
        3 => "forwarding".into(),
        4 => "blocking".into(),
        n => format!("state {n}"),
    }
}

/// Whether STP is done with a port: it forwards, or it blocks a loop.
pub fn settled(state: &str) -> bool {
    state == "forwarding" || state == "blocking"
}

/// `br.wait_stp(#{ timeout })`: until every port forwards or blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitStp {
    pub ns: NsRef,
    pub bridge: String,
    pub timeout_ms: u64,
}

pub const DEFAULT_STP_WAIT_MS: u64 = 60_000;

impl WaitStp {
    /// The ports were still in these states at the timeout.
    pub fn timed_out(&self, ports: &[BridgePortInfo]) -> Error {
        let states: Vec<String> = ports.iter().map(|p| format!("{} {}", p.name, p.state)).collect();
        Error::new(Code::StpTimeout, format!("STP on bridge {:?} in {} did not settle within {} ms", self.bridge, self.ns, self.timeout_ms))
            .why(format!("ports: {}", if states.is_empty() { "none".into() } else { states.join(", ") }))
            .help(
                "a port whose link is down stays disabled; listening and learning take forward_delay each (15 s unless given: \
                 bridge(name, #{ stp: true, forward_delay: 2000 }) is the kernel's shortest), or give wait_stp a longer timeout",
            )
    }

    /// A shell loop that waits the same way (`bridge link show master BR`).
    pub fn shell(&self) -> Step {
        let inner =
            format!("while bridge link show master {} | grep -vqE 'state (forwarding|blocking)'; do sleep 0.1; done", quote(&self.bridge));
        let secs = self.timeout_ms.div_ceil(1000).max(1);
        let c = Sh::within(&self.ns).raw("timeout").w(secs.to_string()).raw("sh -c").w(inner);
        Step::new(format!("wait until STP on {} forwards or blocks every port", self.bridge), vec![c.done()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_in_the_kernels_units_and_limits() {
        let o = BridgeOpts { stp: Some(true), forward_delay_ms: Some(2000), priority: Some(4096), ..Default::default() };
        assert_eq!(
            create_shell(&NsRef::named("s1"), "br0", &o),
            "ip -n s1 link add br0 type bridge forward_delay 200 stp_state 1 priority 4096"
        );
        assert!(o.validate("br0", true).is_ok());
        let slow = BridgeOpts { forward_delay_ms: Some(1000), ..o.clone() };
        assert!(slow.validate("br0", true).unwrap_err().help.unwrap().contains("2000 to 30000 ms with STP on"));
        assert!(slow.validate("br0", false).is_ok(), "without STP the kernel takes any delay");
        assert_eq!(BridgeOpts { hello_time_ms: Some(1005), ..Default::default() }.validate("br0", false).unwrap_err().code, Code::BadValue);
        assert!(BridgeOpts { max_age_ms: Some(5000), ..Default::default() }.validate("br0", false).is_err());
    }

    #[test]
    fn port_options_and_the_wait() {
        let p = SetBridgePort {
            ns: NsRef::Host,
            port: "p1".into(),
            cost: Some(100),
            priority: None,
            learning: Some(false),
            flood: None,
            hairpin: None,
        };
        assert_eq!(p.shell().commands, ["bridge link set dev p1 cost 100 learning off"]);
        assert!(SetBridgePort { priority: Some(64), ..p.clone() }.validate().is_err());
        let w = WaitStp { ns: NsRef::named("s1"), bridge: "br0".into(), timeout_ms: 60_000 };
        assert_eq!(
            w.shell().commands,
            ["ip netns exec s1 timeout 60 sh -c 'while bridge link show master br0 | grep -vqE '\\''state (forwarding|blocking)'\\''; do sleep 0.1; done'"]
        );
        assert_eq!(port_state_name(4), "blocking");
    }
}
