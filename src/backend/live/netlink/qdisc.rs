//! Traffic control messages: a root qdisc replaced or deleted. netlink-packet-route
//! has no types for tbf's and netem's `TCA_OPTIONS`, so the kernel structs are written
//! here byte for byte, the way `tc` does; the parameters come resolved from
//! `ops::qdisc`, where the plan reads them too.

use super::{acked, Netlink};
use crate::backend::live::kernel::{Kernel, Request};
use crate::error::{Code, Error, Result};
use crate::ops::qdisc::{handle_text, HtbClass, HtbMatch, Netem, Qdisc, QdiscInfo, SetHtb, SetShape, Tbf, HTB_R2Q};
use crate::ops::NsRef;
use rtnetlink::packet_core::{DefaultNla, Nla, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::tc::{
    TcAttribute, TcFilterU32Option, TcHandle, TcMessage, TcOption, TcU32Key, TcU32Selector, TcU32SelectorFlags,
};
use rtnetlink::packet_route::RouteNetlinkMessage;

impl<K: Kernel> Netlink<K> {
    /// `tc qdisc replace dev LINK root ...`, or `tc qdisc del dev LINK root` for no shape
    /// (no qdisc of ours there counts as done).
    pub fn shape(&mut self, op: &SetShape) -> Result<()> {
        let index = self.require_link(&op.ns, &op.link)?;
        let mut msg = TcMessage::with_index(index as i32);
        msg.header.parent = TcHandle::ROOT;
        let Some(shape) = &op.shape else {
            let what = || format!("cannot remove the shaping of link {:?} in {}", op.link, op.ns);
            return match self.request_now(&op.ns, RouteNetlinkMessage::DelQueueDiscipline(msg), 0, |errno| {
                Error::new(Code::KernelRefused, what()).errno(errno)
            }) {
                Err(e) if e.is_errno(libc::ENOENT) || e.is_errno(libc::EINVAL) => Ok(()),
                other => other,
            };
        };
        let qdisc = shape.qdisc()?;
        let options = match &qdisc {
            Qdisc::Tbf(t) => tbf_options(t),
            Qdisc::Netem(n) => netem_options(n),
        };
        msg.header.handle = TcHandle { major: 1, minor: 0 };
        msg.attributes.push(TcAttribute::Kind(qdisc.kind().to_string()));
        // TCA_OPTIONS, raw: netem's payload is a struct followed by attributes.
        msg.attributes.push(TcAttribute::Other(DefaultNla::new(2, options)));
        let replace = |nl: &mut Self| {
            nl.request_now(&op.ns, RouteNetlinkMessage::NewQueueDiscipline(msg.clone()), NLM_F_CREATE | NLM_F_REPLACE, |errno| {
                op.refused(qdisc.kind(), errno)
            })
        };
        match replace(self) {
            // A replace cannot change the kind of the qdisc at 1: (an htb the lab set
            // before, say): the kernel says EINVAL. That one goes first, then the new one
            // (what `tc qdisc del` then `add` would do; the callers checked it is ours).
            Err(e) if e.is_errno(libc::EINVAL) => match self.root_qdisc(&op.ns, index)? {
                Some((kind, TcHandle { major: 1, minor: 0 })) if kind != qdisc.kind() => {
                    self.delete_root_qdisc(&op.ns, index, &kind, &format!("the {kind} qdisc of link {:?} in {}", op.link, op.ns))?;
                    replace(self)
                }
                _ => Err(e),
            },
            other => other,
        }
    }
}

impl<K: Kernel> Netlink<K> {
    /// `link.htb(...)`: whatever root qdisc the link has goes, then the HTB qdisc, its
    /// classes and their filters, in one burst in that order (the kernel applies them in
    /// order). A refusal takes the HTB root away again, so nothing is left half-built.
    pub fn htb(&mut self, op: &SetHtb) -> Result<()> {
        let htb = op.resolve()?;
        let index = self.require_link(&op.ns, &op.link)? as i32;
        let mut requests: Vec<Request> = vec![acked(RouteNetlinkMessage::DelQueueDiscipline(root(index, TcHandle::UNSPEC)), 0)];
        let mut qdisc = root(index, TcHandle { major: 1, minor: 0 });
        qdisc.attributes.push(TcAttribute::Kind("htb".into()));
        qdisc.attributes.push(TcAttribute::Other(DefaultNla::new(2, htb_glob(htb.default))));
        requests.push(acked(RouteNetlinkMessage::NewQueueDiscipline(qdisc), NLM_F_CREATE | NLM_F_EXCL));
        for c in &htb.classes {
            let mut class = TcMessage::with_index(index);
            class.header.handle = TcHandle { major: 1, minor: c.minor };
            class.header.parent = TcHandle { major: 1, minor: c.parent };
            class.attributes.push(TcAttribute::Kind("htb".into()));
            class.attributes.push(TcAttribute::Other(DefaultNla::new(2, htb_class_options(c))));
            requests.push(acked(RouteNetlinkMessage::NewTrafficClass(class), NLM_F_CREATE | NLM_F_EXCL));
        }
        for c in htb.classes.iter().filter(|c| c.matches.is_some()) {
            let mut filter = TcMessage::with_index(index);
            filter.header.parent = TcHandle { major: 1, minor: 0 };
            // tcm_info: the filter's priority (1) and protocol (ETH_P_IP, in network order).
            filter.header.info = (1 << 16) | u32::from(0x0800u16.to_be());
            filter.attributes.push(TcAttribute::Kind("u32".into()));
            filter.attributes.push(TcAttribute::Options(vec![
                TcOption::U32(TcFilterU32Option::ClassId(TcHandle { major: 1, minor: c.minor })),
                TcOption::U32(TcFilterU32Option::Selector(u32_selector(c.matches.as_ref().expect("filtered")))),
            ]));
            requests.push(acked(RouteNetlinkMessage::NewTrafficFilter(filter), NLM_F_CREATE | NLM_F_EXCL));
        }
        self.flush()?;
        let answers = self.exchange(&op.ns, requests)?;
        // The first answer is the old root's deletion: none there is fine.
        if let Some(errno) = answers.iter().skip(1).find_map(|a| a.errno) {
            let undo = acked(RouteNetlinkMessage::DelQueueDiscipline(root(index, TcHandle { major: 1, minor: 0 })), 0);
            let _ = self.exchange(&op.ns, vec![undo]);
            return Err(op.refused(errno));
        }
        Ok(())
    }

    /// The root qdisc of link `index` in ns as the kernel has it now: its kind and
    /// handle (0: is the kernel's default, which no one set). None when the dump shows
    /// none (a link that is down has the built-in noop, which is not dumped).
    pub fn root_qdisc(&mut self, ns: &NsRef, index: u32) -> Result<Option<(String, TcHandle)>> {
        let what = || format!("cannot list the qdiscs of {ns}");
        for m in self.dump(ns, RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()), what)? {
            let RouteNetlinkMessage::NewQueueDiscipline(m) = m else { continue };
            if m.header.index as u32 != index || m.header.parent != TcHandle::ROOT {
                continue;
            }
            let kind = m.attributes.iter().find_map(|a| match a {
                TcAttribute::Kind(k) => Some(k.clone()),
                _ => None,
            });
            return Ok(Some((kind.unwrap_or_default(), m.header.handle)));
        }
        Ok(None)
    }

    /// `tc qdisc del dev #index root handle 1: KIND`: the kernel deletes the root qdisc
    /// only while it is still that kind with that handle (and refuses with EINVAL
    /// otherwise, ENOENT when the default is there), in the same request.
    pub fn delete_root_qdisc(&mut self, ns: &NsRef, index: u32, kind: &str, what: &str) -> Result<()> {
        let mut msg = root(index as i32, TcHandle { major: 1, minor: 0 });
        msg.attributes.push(TcAttribute::Kind(kind.to_string()));
        self.request_now(ns, RouteNetlinkMessage::DelQueueDiscipline(msg), 0, |errno| {
            Error::new(Code::KernelRefused, format!("cannot remove {what}")).errno(errno)
        })
    }

    /// The qdiscs of ns and the classes of its HTB qdiscs (`tc qdisc show`, `tc class show`).
    pub fn qdiscs(&mut self, ns: &NsRef) -> Result<Vec<QdiscInfo>> {
        let names = super::decode::names_by_index(&self.dump_links(ns)?);
        let what = || format!("cannot list the qdiscs of {ns}");
        let mut out = Vec::new();
        let mut classful = Vec::new();
        for m in self.dump(ns, RouteNetlinkMessage::GetQueueDiscipline(TcMessage::default()), what)? {
            let RouteNetlinkMessage::NewQueueDiscipline(m) = m else { continue };
            let info = tc_info(&m, &names, false);
            if info.kind == "htb" {
                classful.push(m.header.index);
            }
            out.push(info);
        }
        for index in classful {
            let what = || format!("cannot list the classes of {ns}");
            for m in self.dump(ns, RouteNetlinkMessage::GetTrafficClass(TcMessage::with_index(index)), what)? {
                let RouteNetlinkMessage::NewTrafficClass(m) = m else { continue };
                out.push(tc_info(&m, &names, true));
            }
        }
        Ok(out)
    }
}

/// A request about the root qdisc of a link (`handle`: the qdisc's own, or none).
fn root(index: i32, handle: TcHandle) -> TcMessage {
    let mut msg = TcMessage::with_index(index);
    msg.header.parent = TcHandle::ROOT;
    msg.header.handle = handle;
    msg
}

/// A qdisc or class message in the words of `qdiscs(ns)`.
fn tc_info(m: &TcMessage, names: &std::collections::HashMap<u32, String>, class: bool) -> QdiscInfo {
    let kind = m.attributes.iter().find_map(|a| match a {
        TcAttribute::Kind(k) => Some(k.clone()),
        _ => None,
    });
    let options = m.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(o) => o.iter().find_map(|o| match o {
            TcOption::Other(nla) => {
                let mut value = vec![0u8; nla.value_len()];
                nla.emit_value(&mut value);
                Some(value)
            }
            _ => None,
        }),
        _ => None,
    });
    let (rate, ceil) = match (kind.as_deref(), &options) {
        (Some("htb"), Some(o)) if class => rates(o, 1, &[(8, 7), (20, 8)]),
        (Some("tbf"), Some(o)) => rates(o, 1, &[(8, 4)]),
        _ => (None, None),
    };
    let parent = if m.header.parent == TcHandle::ROOT { "root".into() } else { handle_text(m.header.parent.major, m.header.parent.minor) };
    QdiscInfo {
        link: names.get(&(m.header.index as u32)).cloned().unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        handle: handle_text(m.header.handle.major, m.header.handle.minor),
        parent,
        class,
        rate: rate.map(|r| r * 8),
        ceil: ceil.map(|c| c * 8),
    }
}

/// Rates (bytes/s) from a qdisc's or class's TCA_OPTIONS: in attribute `parms`, a u32 at
/// each offset, replaced by the 64-bit attribute named beside it when that is there.
fn rates(options: &[u8], parms: u16, at: &[(usize, u16)]) -> (Option<u64>, Option<u64>) {
    let attrs = nlas(options);
    let found = |(offset, wide): (usize, u16)| -> Option<u64> {
        if let Some(v) = attrs.iter().find(|(k, _)| *k == wide).and_then(|(_, v)| v.get(..8)) {
            return Some(u64::from_ne_bytes(v.try_into().ok()?));
        }
        let p = attrs.iter().find(|(k, _)| *k == parms)?.1;
        Some(u64::from(u32::from_ne_bytes(p.get(offset..offset + 4)?.try_into().ok()?)))
    };
    (at.first().and_then(|a| found(*a)), at.get(1).and_then(|a| found(*a)))
}

/// The netlink attributes in `bytes`: (type without flags, payload).
fn nlas(mut bytes: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        if len < 4 || len > bytes.len() {
            break;
        }
        out.push((kind, &bytes[4..len]));
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    out
}

/// TCA_OPTIONS of an HTB qdisc: TCA_HTB_INIT, `struct tc_htb_glob`.
fn htb_glob(default: u16) -> Vec<u8> {
    let mut glob = Vec::with_capacity(20);
    for v in [3 /* version */, HTB_R2Q, u32::from(default), 0 /* debug */, 0 /* direct_pkts */] {
        glob.extend_from_slice(&v.to_ne_bytes());
    }
    let mut out = Vec::new();
    nla(&mut out, 2, &glob); // TCA_HTB_INIT
    out
}

/// tc's `tc_calc_xmittime`: the scheduler ticks (64 ns) `bytes` take at `rate` bytes/s,
/// computed as tc computes it, so that a class the run makes shows the burst the
/// plan's `tc class add ... burst N` gives.
fn xmit_ticks(bytes: u32, rate: u64) -> u32 {
    (1e6 * (f64::from(bytes) / rate as f64) * 15.625) as u32
}

/// TCA_OPTIONS of an HTB class: TCA_HTB_PARMS (`struct tc_htb_opt`), and the 64-bit
/// rates when they do not fit in 32 bits.
fn htb_class_options(c: &HtbClass) -> Vec<u8> {
    let (rate, ceil) = ((c.rate_bits / 8).max(1), (c.ceil_bits / 8).max(1));
    let mut parms = Vec::with_capacity(44);
    parms.extend_from_slice(&ratespec(rate));
    parms.extend_from_slice(&ratespec(ceil));
    for v in [xmit_ticks(c.burst, rate), xmit_ticks(c.cburst, ceil), c.quantum, 0 /* level */, c.prio] {
        parms.extend_from_slice(&v.to_ne_bytes());
    }
    let mut out = Vec::new();
    nla(&mut out, 1, &parms); // TCA_HTB_PARMS
    if rate >= u64::from(u32::MAX) {
        nla(&mut out, 7, &rate.to_ne_bytes()); // TCA_HTB_RATE64
    }
    if ceil >= u64::from(u32::MAX) {
        nla(&mut out, 8, &ceil.to_ne_bytes()); // TCA_HTB_CEIL64
    }
    out
}

/// The u32 selector of a match, keys as tc makes them for `match ip ...`: at their
/// offsets in the IPv4 header, ports (which share a word) in one key.
fn u32_selector(m: &HtbMatch) -> TcU32Selector {
    let mut keys: Vec<TcU32Key> = Vec::new();
    let mut key = |off: i32, val: u32, mask: u32| match keys.iter_mut().find(|k| k.off == off) {
        Some(k) => {
            k.val |= val;
            k.mask |= mask;
        }
        None => {
            let mut k = TcU32Key::default();
            (k.mask, k.val, k.off) = (mask, val, off);
            keys.push(k)
        }
    };
    let net = |n: ipnetwork::Ipv4Network| (u32::from(n.network()), u32::from(n.mask()));
    if let Some((val, mask)) = m.src.map(net) {
        key(12, val, mask);
    }
    if let Some((val, mask)) = m.dst.map(net) {
        key(16, val, mask);
    }
    if let Some(p) = m.proto {
        key(8, u32::from(p) << 16, 0x00ff_0000);
    }
    if let Some(p) = m.sport {
        key(20, u32::from(p) << 16, 0xffff_0000);
    }
    if let Some(p) = m.dport {
        key(20, u32::from(p), 0x0000_ffff);
    }
    let mut sel = TcU32Selector::default();
    sel.flags = TcU32SelectorFlags::Terminal;
    sel.nkeys = keys.len() as u8;
    sel.keys = keys;
    sel
}

/// `PSCHED_NS2TICKS`: the kernel's scheduler ticks are 64 ns.
fn ticks(ns: u64) -> u32 {
    (ns >> 6).min(u64::from(u32::MAX)) as u32
}

/// One netlink attribute: length, type, payload padded to 4 bytes.
fn nla(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// `struct tc_ratespec` for an Ethernet link layer (so the kernel needs no rate table).
fn ratespec(bytes_per_sec: u64) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[0] = 0; // cell_log
    r[1] = 1; // linklayer: TC_LINKLAYER_ETHERNET
    r[2..4].copy_from_slice(&0u16.to_ne_bytes()); // overhead
    r[4..6].copy_from_slice(&(-1i16).to_ne_bytes()); // cell_align, as tc sets it
    r[6..8].copy_from_slice(&0u16.to_ne_bytes()); // mpu
    r[8..12].copy_from_slice(&(bytes_per_sec.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
    r
}

/// TCA_OPTIONS of a tbf qdisc: TCA_TBF_PARMS, TCA_TBF_RATE64 when needed, TCA_TBF_BURST.
fn tbf_options(t: &Tbf) -> Vec<u8> {
    let rate = (t.rate_bits / 8).max(1);
    let burst = t.burst;
    let latency = u64::from(t.latency_us);
    // The queue holds what the rate drains in `latency`, plus one burst (as tc computes it).
    let limit = (rate.saturating_mul(latency) / 1_000_000).saturating_add(u64::from(burst)).min(u64::from(u32::MAX)) as u32;
    let buffer_ns = u64::from(burst).saturating_mul(1_000_000_000) / rate;
    let mut parms = Vec::with_capacity(36);
    parms.extend_from_slice(&ratespec(rate));
    parms.extend_from_slice(&[0u8; 12]); // no peak rate
    parms.extend_from_slice(&limit.to_ne_bytes());
    parms.extend_from_slice(&ticks(buffer_ns).to_ne_bytes());
    parms.extend_from_slice(&0u32.to_ne_bytes()); // mtu (peak rate only)
    let mut out = Vec::new();
    nla(&mut out, 1, &parms); // TCA_TBF_PARMS
    if rate >= u64::from(u32::MAX) {
        nla(&mut out, 4, &rate.to_ne_bytes()); // TCA_TBF_RATE64
    }
    nla(&mut out, 6, &burst.to_ne_bytes()); // TCA_TBF_BURST
    out
}

/// TCA_OPTIONS of a netem qdisc: `struct tc_netem_qopt`, then TCA_NETEM_RATE(64).
fn netem_options(n: &Netem) -> Vec<u8> {
    let (delay_us, loss_pct, rate_bits) = (n.delay_us, n.loss_pct, n.rate_bits);
    let latency = ticks(u64::from(delay_us.unwrap_or(0)) * 1000);
    let loss = loss_pct.map(|p| ((p / 100.0).clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32).unwrap_or(0);
    let mut out = Vec::new();
    for v in [latency, 1000 /* limit, packets */, loss, 0 /* gap */, 0 /* duplicate */, 0 /* jitter */] {
        out.extend_from_slice(&v.to_ne_bytes());
    }
    if let Some(bits) = rate_bits {
        let rate = bits / 8;
        let mut r = Vec::with_capacity(16);
        r.extend_from_slice(&(rate.min(u64::from(u32::MAX)) as u32).to_ne_bytes());
        r.extend_from_slice(&[0u8; 12]); // packet_overhead, cell_size, cell_overhead
        nla(&mut out, 6, &r); // TCA_NETEM_RATE
        if rate >= u64::from(u32::MAX) {
            nla(&mut out, 8, &rate.to_ne_bytes()); // TCA_NETEM_RATE64
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tbf_layout() {
        let o = tbf_options(&Tbf { rate_bits: 10_000_000, burst: 10_000, latency_us: 50_000 });
        // PARMS (4 + 36) then BURST (4 + 4).
        assert_eq!(o.len(), 40 + 8);
        assert_eq!(u16::from_ne_bytes([o[0], o[1]]), 40);
        assert_eq!(u16::from_ne_bytes([o[2], o[3]]), 1);
        let rate = u32::from_ne_bytes(o[12..16].try_into().unwrap());
        assert_eq!(rate, 1_250_000);
        let limit = u32::from_ne_bytes(o[28..32].try_into().unwrap());
        assert_eq!(limit, 62_500 + 10_000);
        assert_eq!(u16::from_ne_bytes([o[42], o[43]]), 6);
        assert_eq!(u32::from_ne_bytes(o[44..48].try_into().unwrap()), 10_000);
    }

    #[test]
    fn big_rates_use_rate64() {
        let o = tbf_options(&Tbf { rate_bits: 100_000_000_000, burst: 4096, latency_us: 50_000 });
        assert_eq!(u16::from_ne_bytes([o[42], o[43]]), 4);
    }

    #[test]
    fn netem_struct_first() {
        let o = netem_options(&Netem { delay_us: Some(100_000), loss_pct: Some(50.0), rate_bits: None });
        assert_eq!(o.len(), 24);
        assert_eq!(u32::from_ne_bytes(o[0..4].try_into().unwrap()), (100_000_000u64 >> 6) as u32);
        assert_eq!(u32::from_ne_bytes(o[8..12].try_into().unwrap()), u32::MAX / 2);
    }
}
