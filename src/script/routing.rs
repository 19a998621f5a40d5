//! Policy routing: `ns.rule(...)` (`ip rule add`), `rules(ns)`, and `route_get(ns, dst)`
//! (`ip route get`, asked over netlink). Routes with tables are `ns.route(..., #{ table })`.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::types::Netns;
use super::{apply, apply_from, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::query::Query;
use crate::ops::route::RouteQuery;
use crate::ops::rule::AddRule;
use crate::ops::{Op, Outcome};
use ipnetwork::IpNetwork;
use rhai::{Array, Dynamic, Map, NativeCallContext};

fn opt<T: ToString>(v: Option<T>) -> Dynamic {
    v.map(|v| Dynamic::from(v.to_string())).unwrap_or(Dynamic::UNIT)
}

fn rule(ctx: &NativeCallContext, b: &Shared, ns: &Netns, opts: &Map) -> RhaiResult<Netns> {
    let o = Opts::new("rule", opts, &["from", "to", "iif", "oif", "fwmark", "table", "pref"])?;
    let net = |key: &str| -> RhaiResult<Option<IpNetwork>> { o.string(key)?.map(|s| args::cidr(&s)).transpose() };
    let Some(table) = o.table("table")? else {
        return Err(fail(
            Error::new(Code::MissingOption, "rule() needs the table its packets are looked up in")
                .help("e.g. ns.rule(#{ from: \"10.0.0.12\", table: 2 }); a table is a number or \"main\", \"local\", \"default\""),
        ));
    };
    let op = AddRule {
        ns: ns.0.clone(),
        from: net("from")?,
        to: net("to")?,
        iif: o.string("iif")?,
        oif: o.string("oif")?,
        fwmark: o.int_in("fwmark", 0, i64::from(u32::MAX))?,
        table,
        pref: o.int_in("pref", 0, i64::from(u32::MAX))?,
    };
    apply_from(ctx, b, Op::AddRule(op))?;
    Ok(ns.clone())
}

fn rules(b: &Shared, ns: &Netns) -> RhaiResult<Array> {
    let Outcome::Rules(rules) = apply(b, Op::Query(Query::Rules(ns.0.clone())))? else { return Ok(Array::new()) };
    Ok(rules
        .into_iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert("family".into(), i64::from(r.family).into());
            m.insert("pref".into(), i64::from(r.pref).into());
            m.insert("from".into(), r.from.into());
            m.insert("to".into(), r.to.into());
            m.insert("iif".into(), opt(r.iif));
            m.insert("oif".into(), opt(r.oif));
            m.insert("fwmark".into(), r.fwmark.map(|f| Dynamic::from(i64::from(f))).unwrap_or(Dynamic::UNIT));
            m.insert("table".into(), i64::from(r.table).into());
            Dynamic::from(m)
        })
        .collect())
}

fn route_get(b: &Shared, ns: &Netns, dst: &str, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("route_get", opts, &["from", "iif", "fwmark"])?;
    let q = RouteQuery {
        dst: args::ip(dst)?,
        from: o.string("from")?.map(|s| args::ip(&s)).transpose()?,
        iif: o.string("iif")?,
        fwmark: o.int_in("fwmark", 0, i64::from(u32::MAX))?,
    };
    let Outcome::Route(r) = apply(b, Op::Query(Query::RouteGet(ns.0.clone(), q)))? else { return Ok(Map::new()) };
    let mut m = Map::new();
    m.insert("dev".into(), opt(r.dev));
    m.insert("via".into(), opt(r.via));
    m.insert("src".into(), opt(r.src));
    m.insert("table".into(), i64::from(r.table).into());
    Ok(m)
}

/// The policy-routing functions, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "rule",
        "ns.rule(#{ from?, to?, iif?, oif?, fwmark?, table, pref? }) -> Netns",
        "a policy rule (`ip rule add`): packets it selects are looked up in table; from/to are CIDRs or addresses",
    )
    .details(
        "Adds a rule that sends the packets it selects to a routing table: from/to (a CIDR or an address), iif/oif (the link they arrive on / leave by), fwmark. Without pref the kernel numbers it just before the rules after its local rule (32765, 32764...). A rule in a namespace the lab does not own is removed at down.",
        "rt.route(\"default\", \"100.64.2.1\", #{ table: 2 });\nrt.rule(#{ from: \"10.0.0.12\", table: 2 });",
    ),
    FnDoc::new("rules", "rules(ns) -> [#{ pref, from, to, iif, oif, fwmark, table, family }]", "the policy rules of ns, both families, in the order they apply (`ip rule`)")
        .details(
            "The rules of ns as maps: from and to are \"all\", an address or a CIDR; table is a number (254 is main); family 4 or 6.",
            "for r in rules(rt) { print(`${r.pref}: from ${r.from} lookup ${r.table}`); }",
        )
        .also_method(),
    FnDoc::new(
    "route_get",
    "route_get(ns, dst) / route_get(ns, dst, #{ from?, iif?, fwmark? }) -> #{ dev, via, src, table }",
    "the route ns would use for dst, rules and tables included (`ip route get`, asked over netlink); no way there is an error that says why",
)
.details(
    "Asks the kernel which route a packet to dst takes: from (its source address), iif (as if it arrived on that link: a forwarded packet; needs from), fwmark. Returns the device and gateway it leaves by, the source address it gets and the table the route is in. No route, an unreachable, prohibit or blackhole route is an error (nsscript::no_route) that says which.",
    "let r = route_get(rt, \"203.0.113.1\", #{ from: \"10.0.0.12\", iif: \"eth0\" });\nassert(r.dev == \"eth2\" && r.table == 2, `${r}`);",
)
.also_method(),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("rule", move |ctx: NativeCallContext, ns: &mut Netns, opts: Map| rule(&ctx, &b, ns, &opts));
    let b = backend.clone();
    r.func("rules", move |ns: Netns| rules(&b, &ns));
    let b = backend.clone();
    r.func("route_get", move |ns: Netns, dst: &str| route_get(&b, &ns, dst, &Map::new()));
    let b = backend.clone();
    r.func("route_get", move |ns: Netns, dst: &str, opts: Map| route_get(&b, &ns, dst, &opts));
}
