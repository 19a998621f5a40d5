//! Queries: `links(ns)`, `addrs(ns)`, `routes(ns)` as arrays of maps, so scripts can
//! reason about state.

use super::registrar::{FnDoc, Registrar};
use super::types::Netns;
use super::{apply, RhaiResult, Shared};
use crate::ops::query::Query;
use crate::ops::{Op, Outcome};
use rhai::{Array, Dynamic, Map};

fn opt(v: Option<String>) -> Dynamic {
    v.map(Dynamic::from).unwrap_or(Dynamic::UNIT)
}

fn to_array(out: Outcome) -> Array {
    let mut rows = Array::new();
    let mut push = |pairs: Vec<(&str, Dynamic)>| {
        let m: Map = pairs.into_iter().map(|(k, v)| (k.into(), v)).collect();
        rows.push(m.into());
    };
    match out {
        Outcome::Links(links) => {
            for l in links {
                push(vec![
                    ("name", l.name.into()),
                    ("index", i64::from(l.index).into()),
                    ("kind", l.kind.into()),
                    ("up", l.up.into()),
                    ("state", l.state.into()),
                    ("mtu", i64::from(l.mtu).into()),
                    ("mac", l.mac.into()),
                    ("master", opt(l.master)),
                ]);
            }
        }
        Outcome::Addrs(addrs) => {
            for a in addrs {
                push(vec![
                    ("link", a.link.into()),
                    ("addr", a.addr.into()),
                    ("family", i64::from(a.family).into()),
                    ("tentative", a.tentative.into()),
                    ("scope", a.scope.into()),
                    ("dynamic", a.dynamic.into()),
                ]);
            }
        }
        Outcome::Routes(routes) => {
            for r in routes {
                push(vec![("dest", r.dest.into()), ("via", opt(r.via)), ("dev", opt(r.dev)), ("family", i64::from(r.family).into())]);
            }
        }
        _ => {}
    }
    rows
}

/// The queries, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new("links", "links(ns) -> [#{ name, index, kind, up, state, mtu, mac, master }]", "the links of ns")
        .details(
            "The links of ns as maps; in `nsscript plan` the answer comes from the plan's model.",
            "for l in links(vm1) { print(`${l.name} ${l.state}`); }",
        )
        .also_method(),
    FnDoc::new("addrs", "addrs(ns) -> [#{ link, addr, family, tentative, scope, dynamic }]", "the addresses of ns")
        .details(
            "The addresses of ns as maps: scope is \"global\", \"link\" or \"host\"; tentative: IPv6 duplicate address detection is not done yet (the address cannot be used); dynamic: it has a lifetime (SLAAC), as `ip addr` marks it.",
            "addrs(vm1).filter(|a| a.family == 6 && a.scope == \"global\" && !a.tentative)",
        )
        .also_method(),
    FnDoc::new("routes", "routes(ns) -> [#{ dest, via, dev, family }]", "the main-table routes of ns")
        .details("The main-table routes of ns as maps.", "routes(vm1).map(|r| r.dest)")
        .also_method(),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("links", move |ns: Netns| -> RhaiResult<Array> { apply(&b, Op::Query(Query::Links(ns.0))).map(to_array) });
    let b = backend.clone();
    r.func("addrs", move |ns: Netns| -> RhaiResult<Array> { apply(&b, Op::Query(Query::Addrs(ns.0))).map(to_array) });
    let b = backend.clone();
    r.func("routes", move |ns: Netns| -> RhaiResult<Array> { apply(&b, Op::Query(Query::Routes(ns.0))).map(to_array) });
}
