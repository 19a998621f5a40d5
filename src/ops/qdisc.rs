//! Traffic control: `link.shape(#{ rate, burst, latency, delay, loss })` and
//! `link.unshape()`. The parameters the kernel gets are resolved here, defaults
//! included, so the run and the plan build the same qdisc.

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::{Deserialize, Serialize};

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

    /// The plan's text. `there`: the kind of the root qdisc the lab set on the link
    /// before (None: none). `tc qdisc replace` cannot change a qdisc's kind at the same
    /// handle (the kernel refuses with EINVAL), so another kind is deleted first, as
    /// the run does.
    pub fn shell(&self, there: Option<&str>) -> Result<Step> {
        let tc = || Sh::inside(&self.ns, "tc").raw("qdisc");
        let qdisc = self.shape.as_ref().map(Shape::qdisc).transpose()?;
        let mut cmds = Vec::new();
        if let (Some(q), Some(kind)) = (&qdisc, there) {
            if q.kind() != kind {
                cmds.push(tc().raw("del dev").w(&self.link).raw("root").done());
            }
        }
        let cmd = match qdisc {
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
        cmds.push(cmd);
        Ok(Step::new(format!("shape {} in {}", self.link, self.ns), cmds))
    }
}

/// The kinds of root qdisc nsscript sets (each with handle 1:).
pub const LAB_QDISC_KINDS: &[&str] = &["htb", "tbf", "netem"];

/// A root qdisc the lab set on a link that outlives it (one it did not create, in a
/// namespace it does not own): the ledger's record, written before the change, with
/// the link's ifindex as it was then (the namespace's cookie is in the ledger's
/// `outside` entry, written first). `down` deletes that root qdisc again, so the
/// kernel's default comes back, only while the link is still that ifindex in that
/// namespace and its root qdisc is still one the lab set there (`kind`, handle 1:).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QdiscRecord {
    pub ns: NsRef,
    pub link: String,
    pub index: u32,
    /// One of [`LAB_QDISC_KINDS`].
    pub kind: String,
}

impl QdiscRecord {
    pub fn describe(&self) -> String {
        format!("qdisc {} 1: on link {} in {}", self.kind, self.link, self.ns)
    }
}

/// `tc qdisc del dev LINK root handle 1:`: the plan's undo of a root qdisc on a link that
/// outlives the lab (the kernel deletes it only while the root's handle is 1:).
pub fn undo_shell(ns: &NsRef, link: &str) -> String {
    Sh::inside(ns, "tc").raw("qdisc del dev").w(link).raw("root handle 1:").done()
}

/// A shaping refused on a link that outlives the lab: its root qdisc is not the kernel's
/// default nor one this lab set, so `down` could not give it back.
pub fn foreign_root(ns: &NsRef, link: &str, action: &str, kind: &str, handle: &str, lab: &str) -> Error {
    Error::new(Code::NotOwned, format!("refusing to {action} link {link:?} in {ns}"))
        .why(format!(
            "the link does not belong to lab {lab:?} and its root qdisc is a {kind} qdisc ({handle}) the lab did not set: \
             `down` could not put it back"
        ))
        .help(format!(
            "nsscript shapes a link it does not own only while the kernel's default qdisc is on it; \
             remove that qdisc first if it may go (`tc qdisc del dev {link} root`), or shape a link of the lab's own"
        ))
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
    fn htb_is_resolved_once_and_reads_as_tc_writes_it() {
        let op = SetHtb {
            ns: NsRef::named("a"),
            link: "eth0".into(),
            default: Some(0x30),
            classes: vec![
                HtbClassSpec {
                    id: 0x10,
                    rate: 10_000_000,
                    ceil: None,
                    prio: Some(1),
                    burst: None,
                    matches: Some(HtbMatch {
                        dst: Some("10.0.0.2/32".parse().unwrap()),
                        proto: Some(6),
                        dport: Some(5001),
                        ..Default::default()
                    }),
                },
                HtbClassSpec { id: 0x30, rate: 1_000_000, ceil: Some(30_000_000), prio: None, burst: None, matches: None },
            ],
        };
        let htb = op.resolve().unwrap();
        assert_eq!(htb.classes[0].rate_bits, 11_000_000, "the shared class carries both rates");
        assert_eq!(htb.classes[0].ceil_bits, 30_000_000, "and the highest ceil");
        assert_eq!(htb.classes[1].burst, 12_500);
        assert_eq!(htb.classes[1].quantum, 125_000, "10 Mbit/s is 1.25 MB/s, / r2q 10");
        assert_eq!(htb.classes[2].quantum, 12_500);
        assert_eq!(htb.classes[2].cburst, 37_500);
        let cmds = op.shell(false).unwrap().commands;
        assert_eq!(cmds[0], "ip netns exec a tc qdisc add dev eth0 root handle 1: htb default 30 r2q 10");
        assert_eq!(
            cmds[2],
            "ip netns exec a tc class add dev eth0 parent 1:1 classid 1:10 htb rate 10000000bit ceil 10000000bit burst 12500 cburst 12500 prio 1 quantum 125000"
        );
        assert_eq!(cmds[4], "ip netns exec a tc filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.2/32 match ip protocol 6 0xff match ip dport 5001 0xffff flowid 1:10");
        assert_eq!(htb_minor(10), Some(0x10));
        assert_eq!(htb_minor(0), None);
        let shared = SetHtb { classes: vec![HtbClassSpec { id: 1, ..op.classes[0].clone() }], ..op.clone() };
        assert!(shared.resolve().is_err(), "1:1 is nsscript's");
        let bad_default = SetHtb { default: Some(0x99), ..op.clone() };
        assert!(bad_default.resolve().is_err());
    }

    #[test]
    fn defaults_are_resolved_once() {
        let s = Shape { rate: Some(10_000_000), burst: None, latency_us: None, delay_us: None, loss_pct: None };
        assert_eq!(s.qdisc().unwrap(), Qdisc::Tbf(Tbf { rate_bits: 10_000_000, burst: 12_500, latency_us: 50_000 }));
        let slow = Shape { rate: Some(100_000), ..s.clone() };
        assert_eq!(slow.qdisc().unwrap(), Qdisc::Tbf(Tbf { rate_bits: 100_000, burst: 4096, latency_us: 50_000 }));
        let plan = SetShape { ns: NsRef::named("a"), link: "eth0".into(), shape: Some(s) }.shell(None).unwrap();
        assert_eq!(
            plan.commands,
            ["ip netns exec a tc qdisc replace dev eth0 root handle 1: tbf rate 10000000bit burst 12500 latency 50000us"]
        );
    }
}

/// What a filter sends to an HTB class: the IPv4 header fields tc's u32 matches
/// (`match ip src|dst|protocol|sport|dport`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HtbMatch {
    pub src: Option<ipnetwork::Ipv4Network>,
    pub dst: Option<ipnetwork::Ipv4Network>,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp).
    pub proto: Option<u8>,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
}

/// One class of `link.htb(#{ classes })` as the script gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct HtbClassSpec {
    /// As tc writes it after "1:": id 10 is class 1:10 (tc reads class numbers as hex).
    pub id: u16,
    /// Bits per second.
    pub rate: u64,
    pub ceil: Option<u64>,
    pub prio: Option<u32>,
    /// Bytes.
    pub burst: Option<u32>,
    pub matches: Option<HtbMatch>,
}

/// `link.htb(#{ default, classes })`: an HTB root qdisc (1:), a class 1:1 its classes
/// share (so a class with a ceil above its rate borrows what the others leave), one
/// class per entry under it, and a u32 filter per entry with a match.
#[derive(Clone, Debug, PartialEq)]
pub struct SetHtb {
    pub ns: NsRef,
    pub link: String,
    pub default: Option<u16>,
    pub classes: Vec<HtbClassSpec>,
}

/// An HTB class with every parameter resolved: what the kernel gets and the plan writes.
#[derive(Clone, Debug, PartialEq)]
pub struct HtbClass {
    /// The class's minor number (1:MINOR), and its parent's (0: the qdisc itself).
    pub minor: u16,
    pub parent: u16,
    pub rate_bits: u64,
    pub ceil_bits: u64,
    pub burst: u32,
    pub cburst: u32,
    pub quantum: u32,
    pub prio: u32,
    pub matches: Option<HtbMatch>,
}

/// The whole HTB tree of a link, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Htb {
    /// The class unclassified traffic goes to (0: none; it passes unshaped).
    pub default: u16,
    /// The shared class 1:1 first, then the script's classes in order.
    pub classes: Vec<HtbClass>,
}

/// The class the script's classes hang under (1:1).
pub const HTB_SHARED: u16 = 1;
/// tc's r2q: the quantum is rate / r2q, bounded as the kernel bounds it.
pub const HTB_R2Q: u32 = 10;

/// A class id as the script writes it (10) into the minor number tc means by `1:10`.
pub fn htb_minor(id: i64) -> Option<u16> {
    if !(1..=0xffff).contains(&id) {
        return None;
    }
    u16::from_str_radix(&id.to_string(), 16).ok()
}

impl HtbMatch {
    pub fn is_empty(&self) -> bool {
        *self == HtbMatch::default()
    }
}

impl SetHtb {
    fn bad(&self, why: String, help: &str) -> Error {
        Error::new(Code::BadValue, format!("cannot shape link {:?} in {} with htb", self.link, self.ns)).why(why).help(help.to_string())
    }

    /// The tree the kernel gets, every default resolved here (once, for the run and the plan).
    pub fn resolve(&self) -> Result<Htb> {
        if self.classes.is_empty() {
            return Err(Error::new(Code::MissingOption, format!("htb() on {:?} needs classes", self.link))
                .help("e.g. link.htb(#{ classes: [#{ id: 10, rate: \"10mbit\", \"match\": #{ dst: \"10.0.0.2\" } }] })"));
        }
        let mut classes = Vec::new();
        for c in &self.classes {
            if c.id == HTB_SHARED {
                return Err(self.bad(
                    "class 1:1 is the one nsscript makes for the classes to share".into(),
                    "give the classes ids from 2 up, e.g. 10, 20, 30",
                ));
            }
            if classes.iter().any(|x: &HtbClass| x.minor == c.id) {
                return Err(self.bad(format!("class id {:x} is given twice", c.id), "each class needs its own id"));
            }
            if c.rate / 8 == 0 {
                return Err(self.bad(format!("class {:x} has a rate below 8 bit/s", c.id), "use a rate such as \"10mbit\""));
            }
            let ceil = c.ceil.unwrap_or(c.rate);
            if ceil < c.rate {
                return Err(self.bad(
                    format!("class {:x}: ceil {ceil} bit/s is below its rate {} bit/s", c.id, c.rate),
                    "ceil is what a class may borrow up to: at least its rate",
                ));
            }
            if c.prio.is_some_and(|p| p > 7) {
                return Err(self
                    .bad(format!("class {:x}: prio {} is out of range", c.id, c.prio.unwrap_or(0)), "HTB priorities are 0 (first) to 7"));
            }
            if let Some(m) = &c.matches {
                if (m.sport.is_some() || m.dport.is_some()) && !matches!(m.proto, Some(6) | Some(17)) {
                    return Err(
                        self.bad(format!("class {:x} matches a port without a protocol", c.id), "ports need proto: \"tcp\" or \"udp\"")
                    );
                }
            }
            let burst = c.burst.unwrap_or_else(|| default_burst(c.rate));
            classes.push(HtbClass {
                minor: c.id,
                parent: HTB_SHARED,
                rate_bits: c.rate,
                ceil_bits: ceil,
                burst,
                cburst: default_burst(ceil).max(burst),
                quantum: htb_quantum(c.rate),
                prio: c.prio.unwrap_or(0),
                matches: c.matches.clone().filter(|m| !m.is_empty()),
            });
        }
        if let Some(d) = self.default {
            if !classes.iter().any(|c| c.minor == d) {
                return Err(
                    self.bad(format!("default class {d:x} is not one of the classes"), "default names the id of a class given in classes")
                );
            }
        }
        // The shared class carries them all at their rates, and any one up to its ceil.
        let sum: u64 = classes.iter().map(|c| c.rate_bits).sum();
        let ceil = classes.iter().map(|c| c.ceil_bits).max().unwrap_or(sum).max(sum);
        let shared = HtbClass {
            minor: HTB_SHARED,
            parent: 0,
            rate_bits: sum,
            ceil_bits: ceil,
            burst: default_burst(sum),
            cburst: default_burst(ceil),
            quantum: htb_quantum(sum),
            prio: 0,
            matches: None,
        };
        Ok(Htb { default: self.default.unwrap_or(0), classes: std::iter::once(shared).chain(classes).collect() })
    }

    pub fn validate(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }

    pub fn refused(&self, errno: i32) -> Error {
        lacks_qdisc(
            Error::new(Code::KernelRefused, format!("cannot shape link {:?} in {} with htb", self.link, self.ns)).errno(errno),
            "htb",
        )
    }

    pub fn shell(&self, replacing: bool) -> Result<Step> {
        let htb = self.resolve()?;
        let tc = |what: &'static str| Sh::inside(&self.ns, "tc").raw(what);
        let mut cmds = Vec::new();
        if replacing {
            cmds.push(tc("qdisc").raw("del dev").w(&self.link).raw("root").done());
        }
        cmds.push(
            tc("qdisc")
                .raw("add dev")
                .w(&self.link)
                .raw("root handle 1: htb default")
                .w(format!("{:x}", htb.default))
                .raw("r2q")
                .w(HTB_R2Q.to_string())
                .done(),
        );
        for c in &htb.classes {
            let parent = if c.parent == 0 { "1:".to_string() } else { format!("1:{:x}", c.parent) };
            cmds.push(
                tc("class")
                    .raw("add dev")
                    .w(&self.link)
                    .raw("parent")
                    .w(parent)
                    .raw("classid")
                    .w(format!("1:{:x}", c.minor))
                    .raw("htb rate")
                    .w(format!("{}bit", c.rate_bits))
                    .raw("ceil")
                    .w(format!("{}bit", c.ceil_bits))
                    .raw("burst")
                    .w(c.burst.to_string())
                    .raw("cburst")
                    .w(c.cburst.to_string())
                    .raw("prio")
                    .w(c.prio.to_string())
                    .raw("quantum")
                    .w(c.quantum.to_string())
                    .done(),
            );
        }
        for c in htb.classes.iter().filter(|c| c.matches.is_some()) {
            let m = c.matches.as_ref().expect("filtered");
            let mut f = tc("filter").raw("add dev").w(&self.link).raw("parent 1: protocol ip prio 1 u32");
            // In this order the keys are the ones the run encodes (src, dst, protocol, ports).
            if let Some(n) = m.src {
                f = f.raw("match ip src").w(n.to_string());
            }
            if let Some(n) = m.dst {
                f = f.raw("match ip dst").w(n.to_string());
            }
            if let Some(p) = m.proto {
                f = f.raw("match ip protocol").w(p.to_string()).raw("0xff");
            }
            if let Some(p) = m.sport {
                f = f.raw("match ip sport").w(p.to_string()).raw("0xffff");
            }
            if let Some(p) = m.dport {
                f = f.raw("match ip dport").w(p.to_string()).raw("0xffff");
            }
            cmds.push(f.raw("flowid").w(format!("1:{:x}", c.minor)).done());
        }
        Ok(Step::new(format!("htb on {} in {}", self.link, self.ns), cmds))
    }
}

/// What the kernel computes when given no quantum (rate / r2q, kept within
/// 1000..200000 bytes), given explicitly so that it is the same everywhere.
pub fn htb_quantum(rate_bits: u64) -> u32 {
    (rate_bits / 8 / u64::from(HTB_R2Q)).clamp(1000, 200_000) as u32
}

/// A qdisc or an HTB class as `qdiscs(ns)` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct QdiscInfo {
    pub link: String,
    pub kind: String,
    /// As tc prints it: `1:` for a qdisc, `1:10` for a class.
    pub handle: String,
    /// `root`, or the handle of the parent.
    pub parent: String,
    /// An HTB class, not a qdisc.
    pub class: bool,
    /// Bits per second (tbf, htb classes).
    pub rate: Option<u64>,
    pub ceil: Option<u64>,
}

/// A tc handle as tc prints it: `1:` (a qdisc), `1:10` (a class), `root`.
pub fn handle_text(major: u16, minor: u16) -> String {
    if minor == 0 {
        format!("{major:x}:")
    } else {
        format!("{major:x}:{minor:x}")
    }
}
