//! Traffic control payloads: the `TCA_OPTIONS` of a tbf (rate limit) or netem (delay,
//! loss) root qdisc, encoded the way `tc` does. netlink-packet-route has no types for
//! these two qdiscs, so the kernel structs are written here byte for byte; netlink.rs
//! sends them.

use crate::error::{Code, Error, Result};
use crate::op::Shape;

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

/// The burst a rate needs when none is given: 10 ms worth of bytes, at least 4 KiB
/// (more than one full frame, else tbf never lets a packet through).
pub fn default_burst(rate_bits: u64) -> u32 {
    (rate_bits / 8 / 100).clamp(4096, 16 << 20) as u32
}

pub const DEFAULT_LATENCY_US: u32 = 50_000;

/// TCA_OPTIONS of a tbf qdisc: TCA_TBF_PARMS, TCA_TBF_RATE64 when needed, TCA_TBF_BURST.
pub fn tbf_options(rate_bits: u64, burst: Option<u32>, latency_us: Option<u32>) -> Result<Vec<u8>> {
    let rate = rate_bits / 8;
    if rate == 0 {
        return Err(Error::new(Code::BadValue, "cannot shape to a rate below 8 bit/s").help("use a rate such as \"10mbit\""));
    }
    let burst = burst.unwrap_or_else(|| default_burst(rate_bits));
    let latency = u64::from(latency_us.unwrap_or(DEFAULT_LATENCY_US));
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
    Ok(out)
}

/// TCA_OPTIONS of a netem qdisc: `struct tc_netem_qopt`, then TCA_NETEM_RATE(64).
pub fn netem_options(delay_us: Option<u32>, loss_pct: Option<f64>, rate_bits: Option<u64>) -> Vec<u8> {
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

/// The qdisc kind and its options for a shape.
pub fn qdisc_for(shape: &Shape) -> Result<(&'static str, Vec<u8>)> {
    if shape.delay_us.is_some() || shape.loss_pct.is_some() {
        return Ok(("netem", netem_options(shape.delay_us, shape.loss_pct, shape.rate)));
    }
    match shape.rate {
        Some(rate) => Ok(("tbf", tbf_options(rate, shape.burst, shape.latency_us)?)),
        None => Err(Error::new(Code::MissingOption, "nothing to shape").help("give a rate, e.g. shape(link, #{ rate: \"10mbit\" })")),
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
    fn tbf_layout() {
        let o = tbf_options(10_000_000, Some(10_000), Some(50_000)).unwrap();
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
        let o = tbf_options(100_000_000_000, None, None).unwrap();
        assert_eq!(u16::from_ne_bytes([o[42], o[43]]), 4);
    }

    #[test]
    fn netem_struct_first() {
        let o = netem_options(Some(100_000), Some(50.0), None);
        assert_eq!(o.len(), 24);
        assert_eq!(u32::from_ne_bytes(o[0..4].try_into().unwrap()), (100_000_000u64 >> 6) as u32);
        assert_eq!(u32::from_ne_bytes(o[8..12].try_into().unwrap()), u32::MAX / 2);
    }
}
