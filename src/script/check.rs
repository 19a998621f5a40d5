//! Checks over many nodes (`pingall()`), and `check("NAME", || ...)`, which groups
//! checks under a name: a failing block is reported and the script goes on.

use super::args::Opts;
use super::registrar::{FnDoc, Registrar};
use super::types::Netns;
use super::{apply, fail, suite, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::check::{PingAll, PingNode};
use crate::ops::query::Query;
use crate::ops::{NsRef, Op, Outcome};
use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};
use std::net::IpAddr;

/// The first global IPv4 address of a namespace: what other nodes ping.
pub(super) fn first_ipv4(b: &Shared, ns: &NsRef) -> RhaiResult<IpAddr> {
    let Outcome::Addrs(addrs) = apply(b, Op::Query(Query::Addrs(ns.clone())))? else { unreachable!("Addrs answers Addrs") };
    addrs.iter().filter(|a| a.family == 4 && a.link != "lo").find_map(|a| a.addr.split('/').next()?.parse().ok()).ok_or_else(|| {
        fail(
            Error::new(Code::NoAddress, format!("{ns} has no IPv4 address to be pinged on"))
                .help("give it an address, or pass the node as #{ ns: n, addr: \"10.0.0.2\" }"),
        )
    })
}

fn node(b: &Shared, item: Dynamic) -> RhaiResult<PingNode> {
    if let Some(ns) = item.clone().try_cast::<Netns>() {
        let addr = first_ipv4(b, &ns.0)?;
        return Ok(PingNode { ns: ns.0, addr });
    }
    if let Some(map) = item.clone().try_cast::<Map>() {
        let ns = map.get("ns").and_then(|v| v.clone().try_cast::<Netns>());
        if let Some(ns) = ns {
            let addr = match map.get("addr").and_then(|v| v.clone().into_immutable_string().ok()) {
                Some(a) => super::args::ip(a.split('/').next().unwrap_or(&a))?,
                None => first_ipv4(b, &ns.0)?,
            };
            return Ok(PingNode { ns: ns.0, addr });
        }
    }
    Err(fail(Error::new(Code::BadValue, format!("pingall() nodes are namespaces or #{{ ns, addr }} maps, not {}", item.type_name()))))
}

fn pingall(b: &Shared, nodes: Array, opts: &Map) -> RhaiResult<Map> {
    let o = Opts::new("pingall", opts, &["timeout", "static_arp", "check"])?;
    let timeout_ms = super::args::u32_in("timeout", o.int("timeout")?.unwrap_or(1000), 1, 600_000)?;
    let flag = |key: &str, default: bool| -> RhaiResult<bool> {
        match opts.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .map_err(|ty| fail(Error::new(Code::BadValue, format!("option {key:?} of pingall() must be true or false, not {ty}")))),
        }
    };
    let static_arp = flag("static_arp", false)?;
    let check = flag("check", true)?;
    let advisory = b.borrow().checks_are_advisory();
    let mut resolved = Vec::new();
    for item in nodes {
        match node(b, item) {
            Ok(n) => resolved.push(n),
            // A plan does not run the commands that may have given a node its address.
            Err(e) if advisory => {
                crate::warnings::warning!("plan: not checked (needs the real lab): a pingall node: {}", super::message(&e))
            }
            Err(e) => return Err(e),
        }
    }
    let nodes = resolved;
    if advisory && nodes.len() < 2 {
        return Ok(Map::new());
    }
    if nodes.len() < 2 {
        return Err(fail(
            Error::new(Code::BadValue, "pingall() needs at least two nodes")
                .help("pass an array of namespaces, or call pingall() for every namespace of the lab"),
        ));
    }
    let labels: Vec<String> = nodes.iter().map(|n| n.ns.name().unwrap_or("host").to_string()).collect();
    if check {
        let name = if labels.len() <= 4 { format!("pingall({})", labels.join(", ")) } else { format!("pingall of {} nodes", labels.len()) };
        return suite::assertion(|| name, || run_pingall(b, &nodes, &labels, timeout_ms, static_arp, check, advisory));
    }
    run_pingall(b, &nodes, &labels, timeout_ms, static_arp, check, advisory)
}

fn run_pingall(
    b: &Shared,
    nodes: &[PingNode],
    labels: &[String],
    timeout_ms: u32,
    static_arp: bool,
    check: bool,
    advisory: bool,
) -> RhaiResult<Map> {
    let Outcome::PingAll(result) = apply(b, Op::PingAll(PingAll { nodes: nodes.to_vec(), timeout_ms, static_arp }))? else {
        unreachable!("PingAll answers PingAll")
    };
    let mut failed = Array::new();
    let mut matrix = Map::new();
    let mut rtts = Vec::new();
    for (i, row) in result.rtt_ms.iter().enumerate() {
        let mut line = Map::new();
        for (j, rtt) in row.iter().enumerate().filter(|(j, _)| *j != i) {
            line.insert(labels[j].as_str().into(), (*rtt).map(Dynamic::from).unwrap_or(Dynamic::FALSE));
            match rtt {
                Some(r) => rtts.push(*r),
                None => failed.push(format!("{} -> {} ({})", labels[i], labels[j], nodes[j].addr).into()),
            }
        }
        matrix.insert(labels[i].as_str().into(), line.into());
    }
    let pairs = nodes.len() * (nodes.len() - 1);
    if check && !failed.is_empty() && advisory {
        crate::warnings::warning!("plan: not checked (needs the real lab): pingall of {} nodes", nodes.len());
    } else if check && !failed.is_empty() {
        let shown: Vec<String> = failed.iter().take(20).map(|f| f.to_string()).collect();
        let more = if failed.len() > 20 { format!(" and {} more", failed.len() - 20) } else { String::new() };
        return Err(fail(Error::new(Code::PingFailed, format!("pingall: {} of {pairs} ordered pairs got no reply within {timeout_ms} ms", failed.len()))
            .why(format!("{}{more}", shown.join(", ")))
            .help(format!("check the routes and addresses of the nodes named (routes(ns), addrs(ns)); pass #{{ check: false }} to get the matrix without failing{}", first_failure_trace(b, nodes, &result.rtt_ms)))));
    }
    let mut out = Map::new();
    out.insert("ok".into(), failed.is_empty().into());
    out.insert("pairs".into(), (pairs as i64).into());
    out.insert("reached".into(), ((pairs - failed.len()) as i64).into());
    out.insert("failed".into(), failed.into());
    out.insert("matrix".into(), matrix.into());
    out.insert("elapsed_ms".into(), result.elapsed_ms.into());
    out.insert("max_rtt_ms".into(), rtts.iter().cloned().fold(0.0, f64::max).into());
    Ok(out)
}

/// The trace of the first pair that got no reply, as a line to add to the report.
fn first_failure_trace(b: &Shared, nodes: &[PingNode], rtt: &[Vec<Option<f64>>]) -> String {
    let pair =
        rtt.iter().enumerate().find_map(|(i, row)| row.iter().enumerate().find(|(j, r)| *j != i && r.is_none()).map(|(j, _)| (i, j)));
    pair.and_then(|(i, j)| super::packets::failure_trace(b, &nodes[i].ns, nodes[j].addr)).map(|t| format!("\n{t}")).unwrap_or_default()
}

/// Checks over many nodes, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "pingall",
        "pingall() / pingall(nodes, #{ timeout, static_arp, check }) -> #{ ok, pairs, reached, failed, matrix, elapsed_ms }",
        "native ICMP between every ordered pair of nodes (namespaces or #{ ns, addr }) at once; fails naming each unreachable pair",
    ),
    FnDoc::new(
        "check",
        r#"check("NAME", || { ... }) -> bool"#,
        "run the block as the check NAME: a failure in it is reported and the script goes on (the run fails at the end); nsscript check and nsscript test report each block",
    )
    .details(
        "Groups checks under a name. The first failing assertion ends the block, which is reported where it failed; the script goes on with the next statement, and at its end the run fails (rolled back unless --keep) if any check failed. Returns whether the block passed. `nsscript check LAB` runs the checks again against the running lab; `nsscript test` reports each block as a test case.",
        r#"check("web answers", || { assert_http(client, "http://10.0.0.1/", #{ contains: "hello" }); });"#,
    ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("check", move |ctx: NativeCallContext, name: &str, body: FnPtr| -> RhaiResult<bool> {
        // What the lab queued is in the kernel before its checks look.
        b.borrow_mut().flush().map_err(fail)?;
        suite::block(name, || body.call_within_context::<Dynamic>(&ctx, ()))
    });
    let b = backend.clone();
    r.func("pingall", move |nodes: Array, opts: Map| pingall(&b, nodes, &opts));
    let b = backend.clone();
    r.func("pingall", move |nodes: Array| pingall(&b, nodes, &Map::new()));
    let b = backend.clone();
    r.func("pingall", move || {
        let all: Array = b.borrow().lab_netns().into_iter().map(|n| Dynamic::from(Netns(NsRef::Named(n)))).collect();
        pingall(&b, all, &Map::new())
    });
    let b = backend.clone();
    r.func("pingall", move |opts: Map| {
        let all: Array = b.borrow().lab_netns().into_iter().map(|n| Dynamic::from(Netns(NsRef::Named(n)))).collect();
        pingall(&b, all, &opts)
    });
}
