//! Traffic control beyond tbf: `link.htb(#{ default, classes })` (classes with rates and
//! ceilings, and filters that pick them) and `qdiscs(ns)`. `link.unshape()` (overlays)
//! removes an HTB as it removes any root qdisc.

use super::args::{self, Opts};
use super::overlay::{parse_rate, parse_size};
use super::registrar::{FnDoc, Registrar};
use super::types::{Link, Netns};
use super::{apply, apply_from, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::qdisc::{htb_minor, HtbClassSpec, HtbMatch, SetHtb};
use crate::ops::query::Query;
use crate::ops::{Op, Outcome};
use ipnetwork::{IpNetwork, Ipv4Network};
use rhai::{Array, Dynamic, Map, NativeCallContext};

fn bad(what: String, help: &str) -> Box<rhai::EvalAltResult> {
    fail(Error::new(Code::BadValue, what).help(help.to_string()))
}

fn class_id(v: &Dynamic, what: &str) -> RhaiResult<u16> {
    let n = v
        .as_int()
        .map_err(|ty| bad(format!("{what} must be an integer, not {ty}"), "class ids are written as tc shows them: id 10 is class 1:10"))?;
    htb_minor(n).ok_or_else(|| {
        bad(format!("{what} {n} is not a class id"), "class ids are 2 to 9999 (decimal digits, as tc shows them after \"1:\")")
    })
}

fn rate_of(v: &Dynamic, what: &str) -> RhaiResult<u64> {
    let text = v.clone().into_string().map_err(|_| bad(format!("{what} needs a unit"), "write it as tc does: \"10mbit\""))?;
    parse_rate(&text).map_err(|e| fail(e.help("write it as tc does: \"10mbit\" (bit, kbit, mbit, gbit; kbps, mbps are bytes per second)")))
}

fn matches(m: &Map, id: u16) -> RhaiResult<HtbMatch> {
    let o = Opts::new("htb", m, &["src", "dst", "proto", "sport", "dport"])?;
    let v4 = |key: &str| -> RhaiResult<Option<Ipv4Network>> {
        match o.string(key)?.map(|s| args::cidr(&s)).transpose()? {
            None => Ok(None),
            Some(IpNetwork::V4(n)) => Ok(Some(n)),
            Some(IpNetwork::V6(n)) => {
                Err(bad(format!("class {id:x} matches {key} {n}"), "htb's filters match IPv4 headers (tc u32 match ip)"))
            }
        }
    };
    let proto = match o.value("proto") {
        None => None,
        Some(v) => Some(match (v.as_int(), v.clone().into_string().as_deref()) {
            (Ok(n), _) => args::u32_in("proto", n, 0, 255)? as u8,
            (_, Ok("tcp")) => 6,
            (_, Ok("udp")) => 17,
            (_, Ok("icmp")) => 1,
            _ => return Err(bad(format!("class {id:x}: unknown proto {v}"), "proto is \"tcp\", \"udp\", \"icmp\" or a protocol number")),
        }),
    };
    let port = |key: &str| -> RhaiResult<Option<u16>> { Ok(o.int_in(key, 1, 65535)?.map(|p| p as u16)) };
    Ok(HtbMatch { src: v4("src")?, dst: v4("dst")?, proto, sport: port("sport")?, dport: port("dport")? })
}

fn htb(ctx: &NativeCallContext, b: &Shared, l: &Link, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("htb", opts, &["default", "classes"])?;
    let default = o.value("default").map(|v| class_id(v, "default")).transpose()?;
    let Some(list) = o.value("classes") else {
        return Err(fail(
            Error::new(Code::MissingOption, "htb() needs classes")
                .help("e.g. link.htb(#{ classes: [#{ id: 10, rate: \"10mbit\", \"match\": #{ dst: \"10.0.0.2\" } }] })"),
        ));
    };
    let list = list
        .clone()
        .into_typed_array::<Map>()
        .map_err(|_| bad("classes must be an array of maps".into(), "classes: [#{ id: 10, rate: \"10mbit\" }, ...]"))?;
    let mut classes = Vec::new();
    for c in &list {
        let co = Opts::new("htb", c, &["id", "rate", "ceil", "prio", "burst", "match"])?;
        let id = class_id(
            co.value("id").ok_or_else(|| {
                fail(Error::new(Code::MissingOption, "an htb class needs an id").help("e.g. #{ id: 10, rate: \"10mbit\" }"))
            })?,
            "id",
        )?;
        let rate = rate_of(
            co.value("rate").ok_or_else(|| {
                fail(Error::new(Code::MissingOption, format!("htb class {id:x} needs a rate")).help("e.g. rate: \"10mbit\""))
            })?,
            "rate",
        )?;
        let m = match co.value("match") {
            None => None,
            Some(v) => Some(matches(
                &v.clone()
                    .try_cast::<Map>()
                    .ok_or_else(|| bad(format!("class {id:x}: match must be a map"), "\"match\": #{ dst: \"10.0.0.2\" }"))?,
                id,
            )?),
        };
        classes.push(HtbClassSpec {
            id,
            rate,
            ceil: co.value("ceil").map(|v| rate_of(v, "ceil")).transpose()?,
            prio: co.int_in("prio", 0, 7)?,
            burst: co.value("burst").map(|v| parse_size(v, "burst")).transpose().map_err(|e| fail(e.help("e.g. burst: \"32kb\"")))?,
            matches: m,
        });
    }
    apply_from(ctx, b, Op::Htb(SetHtb { ns: l.ns.clone(), link: l.name.clone(), default, classes }))?;
    Ok(l.clone())
}

fn qdiscs(b: &Shared, ns: &Netns) -> RhaiResult<Array> {
    let Outcome::Qdiscs(list) = apply(b, Op::Query(Query::Qdiscs(ns.0.clone())))? else { return Ok(Array::new()) };
    let opt = |v: Option<u64>| v.map(|r| Dynamic::from(r as i64)).unwrap_or(Dynamic::UNIT);
    Ok(list
        .into_iter()
        .map(|q| {
            let mut m = Map::new();
            m.insert("link".into(), q.link.into());
            m.insert("kind".into(), q.kind.into());
            m.insert("handle".into(), q.handle.into());
            m.insert("parent".into(), q.parent.into());
            m.insert("class".into(), q.class.into());
            m.insert("rate".into(), opt(q.rate));
            m.insert("ceil".into(), opt(q.ceil));
            Dynamic::from(m)
        })
        .collect())
}

/// The traffic-control functions, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "htb",
        "link.htb(#{ \"default\"?, classes: [#{ id, rate, ceil?, prio?, burst?, \"match\"?: #{ src?, dst?, proto?, sport?, dport? } }] }) -> Link",
        "an HTB root qdisc with one class per entry (under a class 1:1 they share) and u32 filters sending matching traffic to it; rates as in shape()",
    )
    .details(
        "Replaces the link's root qdisc with HTB (tc qdisc add ... root handle 1: htb): a class 1:1 carrying the sum of the rates, and under it one class per entry, id 10 being class 1:10 (as tc writes it). A class gets its rate, and up to its ceil (default: the rate) when the others leave room. \"match\" picks its traffic by IPv4 src/dst (CIDR or address), proto (tcp, udp, icmp or a number) and sport/dport (with tcp or udp); \"default\" names the class of what no filter picks (without it, that traffic passes unshaped). burst defaults to 10 ms at the rate, the quantum to rate/10. link.unshape() removes it all. (\"default\" and \"match\" are quoted: both are words of Rhai's own.)",
        "link(office, \"uplink\").htb(#{ \"default\": 30, classes: [\n    #{ id: 10, rate: \"10mbit\", \"match\": #{ dst: \"10.1.0.2\" } },\n    #{ id: 20, rate: \"30mbit\", \"match\": #{ dst: \"10.1.0.3\" } },\n    #{ id: 30, rate: \"1mbit\", ceil: \"40mbit\" } ] });",
    ),
    FnDoc::new(
        "qdiscs",
        "qdiscs(ns) -> [#{ link, kind, handle, parent, class, rate?, ceil? }]",
        "the qdiscs of ns and the classes of its HTB qdiscs (`tc qdisc show`, `tc class show`), rates in bit/s",
    )
    .details(
        "Every link's root qdisc (kind, handle as tc prints it: \"1:\", parent \"root\") and every HTB class (class: true, handle \"1:10\", parent \"1:1\", rate and ceil in bit/s).",
        "for q in qdiscs(a).filter(|q| q.class) { print(`${q.handle}: ${q.rate} bit/s`); }",
    )
    .also_method(),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("htb", move |ctx: NativeCallContext, l: &mut Link, opts: Map| htb(&ctx, &b, l, &opts));
    let b = backend.clone();
    r.func("qdiscs", move |ns: Netns| qdiscs(&b, &ns));
}
