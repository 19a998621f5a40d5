//! Filtering: `firewall` (one filter rule), `policy` (a chain's policy) and `clamp_mss`.
//! What the rules mean is in `ops::firewall`; this file turns a call's options into
//! the typed op. (NAT and the raw escape are in router.rs.)

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::router::{fw, port, required};
use super::types::Netns;
use super::{fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::firewall::{Action, Chain, ClampMss, CtState, FilterRule, FwOp, IcmpType, Proto};
use rhai::{Array, Dynamic, Map};

/// An option given as a string or an array of strings.
fn strings(func: &str, key: &str, v: &Dynamic) -> RhaiResult<Vec<String>> {
    let items: Array = if v.is_array() { v.clone().cast::<Array>() } else { vec![v.clone()] };
    items
        .into_iter()
        .map(|x| {
            x.into_immutable_string().map(|s| s.to_string()).map_err(|ty| {
                fail(
                    Error::new(Code::BadValue, format!("{func}(): {key} takes strings, not {ty}"))
                        .help(format!("e.g. {key}: [\"established\", \"related\"]")),
                )
            })
        })
        .collect()
}

fn firewall(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<Netns> {
    const F: &str = "firewall";
    let o =
        Opts::new(F, opts, &["chain", "action", "src", "dst", "iif", "oif", "proto", "sport", "dport", "state", "icmp_type", "comment"])?;
    let example = "chain: \"input\", action: \"accept\", state: [\"established\", \"related\"]";
    let chain = Chain::parse(F, &required(&o, F, "chain", example)?).map_err(fail)?;
    let action = Action::parse(F, &required(&o, F, "action", example)?).map_err(fail)?;
    let proto = o.string("proto")?.map(|p| Proto::parse(F, &p)).transpose().map_err(fail)?;
    let number = |key: &str| opts.get(key).filter(|v| !v.is_unit()).map(|v| port(F, key, v)).transpose();
    let state = match opts.get("state").filter(|v| !v.is_unit()) {
        None => Vec::new(),
        Some(v) => {
            let mut states = Vec::new();
            for s in strings(F, "state", v)? {
                let st = CtState::parse(F, &s).map_err(fail)?;
                if !states.contains(&st) {
                    states.push(st);
                }
            }
            if states.is_empty() {
                return Err(fail(Error::new(Code::BadValue, "firewall(): state is empty").help(format!("e.g. #{{ {example} }}"))));
            }
            states
        }
    };
    let icmp_type = match opts.get("icmp_type").filter(|v| !v.is_unit()) {
        None => None,
        Some(v) => {
            let text = match v.as_int() {
                Ok(n) => n.to_string(),
                Err(_) => o.string("icmp_type")?.unwrap_or_default(),
            };
            Some(IcmpType::parse(F, &text, proto == Some(Proto::Icmpv6)).map_err(fail)?)
        }
    };
    let net = |key: &str| o.string(key)?.map(|t| args::net_or_host(&t)).transpose();
    let rule = FilterRule {
        chain,
        action,
        src: net("src")?,
        dst: net("dst")?,
        iif: o.string("iif")?,
        oif: o.string("oif")?,
        proto,
        sport: number("sport")?,
        dport: number("dport")?,
        state,
        icmp_type,
        comment: o.string("comment")?,
    };
    fw(b, &ns.0, FwOp::Filter(rule))?;
    Ok(ns)
}

fn policy(b: &Shared, ns: Netns, chain: &str, action: &str) -> RhaiResult<Netns> {
    let chain = Chain::parse("policy", chain).map_err(fail)?;
    let policy = match Action::parse("policy", action).map_err(fail)? {
        Action::Reject => {
            return Err(fail(
                Error::new(Code::BadValue, "policy(): a chain's policy is \"accept\" or \"drop\"")
                    .why("iptables has no REJECT policy")
                    .help("drop by policy and reject with a rule: firewall(ns, #{ chain, action: \"reject\" })"),
            ))
        }
        a => a.target().to_string(),
    };
    fw(b, &ns.0, FwOp::Policy { table: "filter".into(), chain: chain.name().into(), policy })?;
    Ok(ns)
}

fn clamp_mss(b: &Shared, ns: Netns, opts: &Map) -> RhaiResult<Netns> {
    let o = Opts::new("clamp_mss", opts, &["oif", "mss"])?;
    let mss = o.int("mss")?.map(|m| args::u32_in("clamp_mss(): mss", m, 1, 65535).map(|m| m as u16)).transpose()?;
    fw(b, &ns.0, FwOp::ClampMss(ClampMss { oif: o.string("oif")?, mss }))?;
    Ok(ns)
}

/// The filtering functions, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "firewall",
        "firewall(ns, #{ chain, action, src?, dst?, iif?, oif?, proto?, sport?, dport?, state?, icmp_type?, comment? }) -> Netns",
        "one filter rule (iptables -A CHAIN ...; ip6tables for IPv6 addresses or icmpv6), added once: chain input|forward|output, action accept|drop|reject, state an array of new|established|related|invalid",
    )
    .details(
        "Appends one rule to the filter table of ns, unless it is there already; in a namespace that outlives the lab it is removed at down. proto is tcp, udp, icmp or icmpv6 (sport and dport need tcp or udp; icmp_type, a name such as \"echo-request\" or a number, needs icmp or icmpv6). src and dst are CIDRs or addresses; iif and oif link names (\"veth+\" matches every name that starts with veth). `nsscript plan` judges pings through these rules.",
        "firewall(web, #{ chain: \"input\", action: \"accept\", proto: \"tcp\", dport: 80 });",
    )
    .also_method(),
    FnDoc::new(
        "policy",
        "policy(ns, chain, action) -> Netns",
        "the policy of a filter chain (input, forward, output): \"accept\" or \"drop\"; where ns outlives the lab, the old one comes back at down",
    )
    .details(
        "Sets the policy of a built-in chain of ns's filter table (IPv4). With the input policy drop, let the namespace's own connections back in: firewall(ns, #{ chain: \"input\", action: \"accept\", state: [\"established\", \"related\"] }).",
        "policy(host1, \"input\", \"drop\");",
    )
    .also_method(),
    FnDoc::new(
        "clamp_mss",
        "clamp_mss(ns, #{ oif?, mss? }) -> Netns",
        "forwarded TCP SYNs (leaving by oif) get their MSS cut to the path MTU, or to mss (iptables -t mangle -A FORWARD ... -j TCPMSS)",
    )
    .details(
        "For a router in front of a link with a smaller MTU whose \"fragmentation needed\" ICMP does not come back (a PMTU black hole): TCP connections across it agree on segments that fit.",
        "clamp_mss(rt, #{ oif: \"wan0\" });",
    )
    .also_method(),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("firewall", move |ns: Netns, opts: Map| firewall(&b, ns, &opts));
    let b = backend.clone();
    r.func("policy", move |ns: Netns, chain: &str, action: &str| policy(&b, ns, chain, action));
    let b = backend.clone();
    r.func("clamp_mss", move |ns: Netns, opts: Map| clamp_mss(&b, ns, &opts));
    let b = backend.clone();
    r.func("clamp_mss", move |ns: Netns| clamp_mss(&b, ns, &Map::new()));
}
