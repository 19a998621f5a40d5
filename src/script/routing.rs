//! Policy routing: `ns.rule(...)` (`ip rule add`), `rules(ns)`, and `route_get(ns, dst)`
//! (`ip route get`, asked over netlink). Routes with tables are `ns.route(..., #{ table })`.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::types::Netns;
use super::{apply, RhaiResult, Shared};
use crate::ops::query::Query;
use crate::ops::route::RouteQuery;
use crate::ops::{Op, Outcome};
use rhai::{Dynamic, Map};

fn opt<T: ToString>(v: Option<T>) -> Dynamic {
    v.map(|v| Dynamic::from(v.to_string())).unwrap_or(Dynamic::UNIT)
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
pub const DOCS: &[FnDoc] = &[FnDoc::new(
    "route_get",
    "route_get(ns, dst) / route_get(ns, dst, #{ from?, iif?, fwmark? }) -> #{ dev, via, src, table }",
    "the route ns would use for dst, rules and tables included (`ip route get`, asked over netlink); no way there is an error that says why",
)
.details(
    "Asks the kernel which route a packet to dst takes: from (its source address), iif (as if it arrived on that link: a forwarded packet; needs from), fwmark. Returns the device and gateway it leaves by, the source address it gets and the table the route is in. No route, an unreachable, prohibit or blackhole route is an error (nsscript::no_route) that says which.",
    "let r = route_get(rt, \"203.0.113.1\", #{ from: \"10.0.0.12\", iif: \"eth0\" });\nassert(r.dev == \"eth2\" && r.table == 2, `${r}`);",
)
.also_method()];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("route_get", move |ns: Netns, dst: &str| route_get(&b, &ns, dst, &Map::new()));
    let b = backend.clone();
    r.func("route_get", move |ns: Netns, dst: &str, opts: Map| route_get(&b, &ns, dst, &opts));
}
