//! Traffic control messages: a root qdisc replaced or deleted. netlink-packet-route
//! has no types for tbf's and netem's `TCA_OPTIONS`, so the kernel structs are written
//! here byte for byte, the way `tc` does; the parameters come resolved from
//! `ops::qdisc`, where the plan reads them too.

use super::Netlink;
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::qdisc::{Netem, Qdisc, SetShape, Tbf};
use rtnetlink::packet_core::{DefaultNla, NLM_F_CREATE, NLM_F_REPLACE};
use rtnetlink::packet_route::tc::{TcAttribute, TcHandle, TcMessage};
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
        self.request_now(&op.ns, RouteNetlinkMessage::NewQueueDiscipline(msg), NLM_F_CREATE | NLM_F_REPLACE, |errno| {
            op.refused(qdisc.kind(), errno)
        })
    }
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
