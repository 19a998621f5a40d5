//! Bridge options: the options map of `bridge(name, opts)` (registered with the links),
//! `port.bridge_port(...)`, `bridge_ports(br)` and `br.wait_stp()`.

use super::args::Opts;
use super::registrar::{FnDoc, Registrar};
use super::types::Link;
use super::{apply, apply_from, RhaiResult, Shared};
use crate::ops::bridge::{BridgeOpts, SetBridgePort, WaitStp, DEFAULT_STP_WAIT_MS};
use crate::ops::query::Query;
use crate::ops::{Op, Outcome};
use rhai::{Array, Dynamic, Map, NativeCallContext};

/// The options of `bridge(name, opts)`; times in ms.
pub fn bridge_opts(opts: &Map) -> RhaiResult<BridgeOpts> {
    let o = Opts::new("bridge", opts, &["stp", "priority", "forward_delay", "hello_time", "max_age", "ageing", "mcast_snooping"])?;
    let ms = |key: &str| -> RhaiResult<Option<u64>> { Ok(o.int_in(key, 0, i64::from(u32::MAX))?.map(u64::from)) };
    Ok(BridgeOpts {
        stp: o.flag("stp")?,
        priority: o.int_in("priority", 0, 65535)?.map(|p| p as u16),
        forward_delay_ms: ms("forward_delay")?,
        hello_time_ms: ms("hello_time")?,
        max_age_ms: ms("max_age")?,
        ageing_ms: ms("ageing")?,
        mcast_snooping: o.flag("mcast_snooping")?,
    })
}

fn bridge_port(ctx: &NativeCallContext, b: &Shared, l: &Link, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("bridge_port", opts, &["cost", "priority", "learning", "flood", "hairpin"])?;
    let op = SetBridgePort {
        ns: l.ns.clone(),
        port: l.name.clone(),
        cost: o.int_in("cost", 1, 65535)?,
        priority: o.int_in("priority", 0, 63)?.map(|p| p as u16),
        learning: o.flag("learning")?,
        flood: o.flag("flood")?,
        hairpin: o.flag("hairpin")?,
    };
    apply_from(ctx, b, Op::BridgePort(op))?;
    Ok(l.clone())
}

fn bridge_ports(b: &Shared, br: &Link) -> RhaiResult<Array> {
    let q = Query::BridgePorts { ns: br.ns.clone(), bridge: br.name.clone() };
    let Outcome::BridgePorts(ports) = apply(b, Op::Query(q))? else { return Ok(Array::new()) };
    Ok(ports
        .into_iter()
        .map(|p| {
            let mut m = Map::new();
            m.insert("name".into(), p.name.into());
            m.insert("state".into(), p.state.into());
            m.insert("cost".into(), i64::from(p.cost).into());
            m.insert("priority".into(), i64::from(p.priority).into());
            Dynamic::from(m)
        })
        .collect())
}

fn wait_stp(ctx: &NativeCallContext, b: &Shared, br: &Link, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("wait_stp", opts, &["timeout"])?;
    let timeout_ms = o.int_in("timeout", 0, i64::from(u32::MAX))?.map(u64::from).unwrap_or(DEFAULT_STP_WAIT_MS);
    apply_from(ctx, b, Op::WaitStp(WaitStp { ns: br.ns.clone(), bridge: br.name.clone(), timeout_ms }))?;
    Ok(br.clone())
}

/// The bridge functions, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "bridge_port",
        "port.bridge_port(#{ cost?, priority?, learning?, flood?, hairpin? }) -> Link",
        "a bridge port's options (`bridge link set`): STP cost 1..65535 and priority 0..63, MAC learning, unknown-unicast flooding, hairpin",
    )
    .details(
        "Sets the options of a link enslaved to a bridge: its STP path cost and port priority (the lower wins a tie), whether the bridge learns MACs on it, floods unknown unicast to it, and sends frames back out of the port they came in by (hairpin).",
        "link(s2, \"to-s3\").bridge_port(#{ cost: 100 });",
    ),
    FnDoc::new("bridge_ports", "bridge_ports(br) -> [#{ name, state, cost, priority }]", "the ports of a bridge with their STP state as `bridge link` prints it: disabled, listening, learning, forwarding, blocking")
        .details(
            "The ports of br read now: state is disabled (its link is down), listening, learning, forwarding or blocking (STP keeps a loop shut there).",
            "let blocked = bridge_ports(br).filter(|p| p.state == \"blocking\");",
        )
        .also_method(),
    FnDoc::new("wait_stp", "br.wait_stp() / br.wait_stp(#{ timeout? }) -> Link", "wait (60000 ms unless timeout says) until every port of an STP bridge forwards or blocks; past it, an error listing each port's state")
        .details(
            "STP takes a port through listening and learning (forward_delay each) before it forwards or blocks. wait_stp polls the bridge's ports until each forwards or blocks; past the timeout it fails (nsscript::stp_timeout) naming each port's state.",
            "let br = bridge(s1, \"br0\", #{ stp: true, forward_delay: 2000 });\n// ... ports ...\nbr.wait_stp();",
        ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("bridge_port", move |ctx: NativeCallContext, l: &mut Link, opts: Map| bridge_port(&ctx, &b, l, &opts));
    let b = backend.clone();
    r.func("bridge_ports", move |br: Link| bridge_ports(&b, &br));
    let b = backend.clone();
    r.func("wait_stp", move |ctx: NativeCallContext, br: &mut Link| wait_stp(&ctx, &b, br, &Map::new()));
    let b = backend.clone();
    r.func("wait_stp", move |ctx: NativeCallContext, br: &mut Link, opts: Map| wait_stp(&ctx, &b, br, &opts));
}
