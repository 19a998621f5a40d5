//! Traffic control: `link.shape(#{ rate, burst, latency, delay, loss })` and
//! `link.unshape()`. The parameters the kernel gets are resolved here, defaults
//! included, so the run and the plan build the same qdisc.

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};

/// Egress shaping of a link: tbf for the rate, netem for delay and loss. The root
/// qdisc always gets handle 1: (the run asks for it; the plan's `tc` says so too).
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// Bits per second.
    pub rate: Option<u64>,
    /// Bytes.
    pub burst: Option<u32>,
    /// Microseconds a packet may wait in the queue.
    pub latency_us: Option<u32>,
    /// netem: added delay in microseconds.
    pub delay_us: Option<u32>,
    /// netem: loss in percent.
    pub loss_pct: Option<f64>,
}

/// `shape` Some sets the link's root qdisc; None removes it.
#[derive(Clone, Debug, PartialEq)]
pub struct SetShape {
    pub ns: NsRef,
    pub link: String,
    pub shape: Option<Shape>,
}

/// A tbf root qdisc, every parameter resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tbf {
    pub rate_bits: u64,
    pub burst: u32,
    pub latency_us: u32,
}

/// A netem root qdisc.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Netem {
    pub delay_us: Option<u32>,
    pub loss_pct: Option<f64>,
    pub rate_bits: Option<u64>,
}

/// The qdisc a shape asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Qdisc {
    Tbf(Tbf),
    Netem(Netem),
}

impl Qdisc {
    pub fn kind(&self) -> &'static str {
        match self {
            Qdisc::Tbf(_) => "tbf",
            Qdisc::Netem(_) => "netem",
        }
    }
}

/// The burst a rate needs when none is given: 10 ms worth of bytes, at least 4 KiB
/// (more than one full frame, else tbf never lets a packet through).
pub fn default_burst(rate_bits: u64) -> u32 {
    (rate_bits / 8 / 100).clamp(4096, 16 << 20) as u32
}

pub const DEFAULT_LATENCY_US: u32 = 50_000;

impl Shape {
    /// The qdisc this shape is, with its defaults filled in.
    pub fn qdisc(&self) -> Result<Qdisc> {
        if self.delay_us.is_some() || self.loss_pct.is_some() {
            return Ok(Qdisc::Netem(Netem { delay_us: self.delay_us, loss_pct: self.loss_pct, rate_bits: self.rate }));
        }
        match self.rate {
            Some(rate) if rate / 8 == 0 => {
                Err(Error::new(Code::BadValue, "cannot shape to a rate below 8 bit/s").help("use a rate such as \"10mbit\""))
            }
            Some(rate) => Ok(Qdisc::Tbf(Tbf {
                rate_bits: rate,
                burst: self.burst.unwrap_or_else(|| default_burst(rate)),
                latency_us: self.latency_us.unwrap_or(DEFAULT_LATENCY_US),
            })),
            None => Err(Error::new(Code::MissingOption, "nothing to shape").help("give a rate, e.g. shape(link, #{ rate: \"10mbit\" })")),
        }
    }
}

impl SetShape {
    pub fn validate(&self) -> Result<()> {
        self.shape.as_ref().map(|s| s.qdisc().map(|_| ())).unwrap_or(Ok(()))
    }

    pub fn refused(&self, kind: &str, errno: i32) -> Error {
        lacks_qdisc(
            Error::new(Code::KernelRefused, format!("cannot shape link {:?} in {} ({kind})", self.link, self.ns)).errno(errno),
            kind,
        )
    }

    pub fn shell(&self) -> Result<Step> {
        let tc = || Sh::inside(&self.ns, "tc").raw("qdisc");
        let cmd = match self.shape.as_ref().map(Shape::qdisc).transpose()? {
            None => tc().raw("del dev").w(&self.link).raw("root 2>/dev/null || true").done(),
            Some(Qdisc::Tbf(t)) => tc()
                .raw("replace dev")
                .w(&self.link)
                .raw("root handle 1: tbf rate")
                .w(format!("{}bit", t.rate_bits))
                .raw("burst")
                .w(t.burst.to_string())
                .raw("latency")
                .w(format!("{}us", t.latency_us))
                .done(),
            Some(Qdisc::Netem(n)) => {
                let mut c = tc().raw("replace dev").w(&self.link).raw("root handle 1: netem");
                if let Some(d) = n.delay_us {
                    c = c.raw("delay").w(format!("{d}us"));
                }
                if let Some(l) = n.loss_pct {
                    c = c.raw("loss").w(format!("{l}%"));
                }
                if let Some(r) = n.rate_bits {
                    c = c.raw("rate").w(format!("{r}bit"));
                }
                // Kernels without sch_netem refuse it; nsscript then fails the call, which a
                // script may catch (shaping.rhai does). The walkthrough cannot know whether
                // it would, so it says so and goes on.
                c.raw("|| echo")
                    .w(format!("tc refused netem (does this kernel have sch_netem?): no delay or loss on {}", self.link))
                    .raw(">&2")
                    .done()
            }
        };
        Ok(Step::new(format!("shape {} in {}", self.link, self.ns), vec![cmd]))
    }
}

/// The kernel does not know the qdisc kind (ENOENT: "Specified qdisc kind is unknown").
pub fn lacks_qdisc(err: Error, kind: &str) -> Error {
    if !err.is_errno(libc::ENOENT) {
        return err;
    }
    match kind {
        "netem" => Error {
            code: Code::KernelLacksFeature,
            why: Some("this kernel lacks netem (sch_netem): Specified qdisc kind is unknown".into()),
            ..err
        }
        .help(
            "delay and loss need netem: load it with `modprobe sch_netem`, or use a kernel built with CONFIG_NET_SCH_NETEM; \
             a rate limit alone works without it: shape(link, #{ rate: \"10mbit\" })",
        ),
        k => Error {
            code: Code::KernelLacksFeature,
            why: Some(format!("this kernel lacks the {k} qdisc (sch_{k}): Specified qdisc kind is unknown")),
            ..err
        }
        .help(format!("load it with `modprobe sch_{k}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_resolved_once() {
        let s = Shape { rate: Some(10_000_000), burst: None, latency_us: None, delay_us: None, loss_pct: None };
        assert_eq!(s.qdisc().unwrap(), Qdisc::Tbf(Tbf { rate_bits: 10_000_000, burst: 12_500, latency_us: 50_000 }));
        let slow = Shape { rate: Some(100_000), ..s.clone() };
        assert_eq!(slow.qdisc().unwrap(), Qdisc::Tbf(Tbf { rate_bits: 100_000, burst: 4096, latency_us: 50_000 }));
        let plan = SetShape { ns: NsRef::named("a"), link: "eth0".into(), shape: Some(s) }.shell().unwrap();
        assert_eq!(
            plan.commands,
            ["ip netns exec a tc qdisc replace dev eth0 root handle 1: tbf rate 10000000bit burst 12500 latency 50000us"]
        );
    }
}
