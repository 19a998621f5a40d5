//! Namespaces: `host()`, `netns()`, `lab()`, and what runs inside a namespace:
//! `forward`, `exec`, `route`, `sysctl`.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::router;
use super::types::Netns;
use super::{apply, apply_from, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::netns::CreateNetns;
use crate::ops::process::{Command, Exec};
use crate::ops::query::Query;
use crate::ops::route::{AddRoute, RouteVia};
use crate::ops::sysctl::Sysctl;
use crate::ops::{NsRef, Op, Outcome};
use crate::recipes;
use rhai::{Array, Map, NativeCallContext};

fn exec(b: &Shared, ns: &Netns, cmd: Command) -> RhaiResult<Map> {
    match apply(b, Op::Exec(Exec { ns: ns.0.clone(), cmd, timeout_ms: None }))? {
        Outcome::Exec(out) => {
            let mut m = Map::new();
            m.insert("code".into(), out.code.into());
            m.insert("stdout".into(), out.stdout.into());
            m.insert("stderr".into(), out.stderr.into());
            Ok(m)
        }
        _ => Ok(Map::new()),
    }
}

fn route(ctx: &NativeCallContext, b: &Shared, ns: &Netns, dest: &str, via: &str, opts: &Map) -> RhaiResult<Netns> {
    let o = Opts::new("route", opts, &["table", "metric", "src", "mtu", "onlink", "dev"])?;
    let dest = args::route_dest(dest)?;
    let via = match via.parse() {
        Ok(ip) => RouteVia::Gateway(ip),
        // Looks like an address but is not one: say so rather than look for a device.
        Err(_) if via.chars().all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':') => return Err(args::ip(via).unwrap_err()),
        Err(_) => RouteVia::Device(via.to_string()),
    };
    let op = AddRoute {
        dev: o.string("dev")?,
        table: o.table("table")?,
        metric: o.int_in("metric", 0, i64::from(u32::MAX))?,
        src: o.string("src")?.map(|s| args::ip(&s)).transpose()?,
        mtu: o.int_in("mtu", 68, 65535)?,
        onlink: o.flag("onlink")?.unwrap_or(false),
        ..AddRoute::new(ns.0.clone(), dest, via)
    };
    apply_from(ctx, b, Op::AddRoute(op))?;
    Ok(ns.clone())
}

fn sysctl(b: &Shared, ns: &Netns, key: &str, value: String) -> RhaiResult<Netns> {
    apply(b, Op::Sysctl(Sysctl { ns: ns.0.clone(), key: key.to_string(), value }))?;
    Ok(ns.clone())
}

/// The namespace functions, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new("host", "host() -> Netns", "the namespace nsscript runs in (the machine's, or the sandbox's)")
        .details(
            "The namespace nsscript itself runs in: the machine's, or the sandbox's with --sandbox.",
            r#"bridge("br0");  // same as bridge(host(), "br0")"#,
        ),
    FnDoc::new("netns", "netns(name) -> Netns", "create a named namespace (/run/netns/NAME, visible to `ip netns`) with lo up")
        .details(
            "Creates /run/netns/NAME (so `ip netns` sees it) with lo up. Creating a namespace the lab already has is a no-op; a name taken by someone else is an error.",
            r#"let vm1 = netns("vm1");"#,
        ),
    FnDoc::new("ns", "ns(name) -> Netns", "a handle on a namespace that already exists (not created, not owned by the lab)")
        .details(
            "A handle on a namespace made by someone else; nsscript does not own it and never deletes it.",
            r#"let other = ns("existing");"#,
        ),
    FnDoc::new("lab", "lab(name) / lab() -> String", "name the lab (before anything is created) / the lab's name")
        .details(
            "Names the lab before it creates anything (the default is the script file's stem); lab() returns the name.",
            r#"lab("router");"#,
        ),
    FnDoc::new("forward", "ns.forward(on: bool) -> Netns", "IPv4 and IPv6 forwarding on or off in ns")
        .details(
            "Sets net.ipv4.ip_forward (and IPv6 forwarding when IPv6 is on) inside ns.",
            r#"netns("rt").forward(true);"#,
        ),
    FnDoc::new("ipv6", "ns.ipv6(on: bool) -> Netns", "IPv6 on or off in ns (off keeps big labs quiet: no DAD/MLD multicast from every interface)"),
    FnDoc::new("exec", "ns.exec(cmd: String | Array, #{ timeout? }) -> #{ code, stdout, stderr }", "run a command inside ns (a string runs by sh -c; an array runs without a shell); past timeout ms it is killed, code 124")
        .details(
            "Runs a command inside ns and waits; a string runs by sh -c, an array without a shell. Returns #{ code, stdout, stderr }.",
            "let r = vm1.exec(\"ping -c1 -W1 10.0.0.254\");\nassert(r.code == 0, r.stderr);",
        ),
    FnDoc::new("route", "ns.route(dest, via) / ns.route(dest, via, #{ table?, metric?, src?, mtu?, onlink?, dev? }) -> Netns", r#"add a route: dest is "default" or a CIDR, via a gateway IP or a device name; table a number or "main", "local", "default""#)
        .details(
            r#"dest is "default" or a network (host bits zero); via is a gateway address on a connected subnet, or a device name. Options: table (1..4294967295, or "main", "local", "default"; nsscript never writes /etc/iproute2/rt_tables), metric, src (the preferred source address), mtu, onlink (the gateway is on dev even without a subnet saying so), dev (the device of a gateway)."#,
            "vm1.route(\"default\", \"10.0.0.254\");\nrt.route(\"10.1.0.0/24\", \"eth1\");\nrt.route(\"default\", \"100.64.2.1\", #{ table: 2, metric: 10 });",
        ),
    FnDoc::new("sysctl", "ns.sysctl(key, value) -> Netns", r#"set a sysctl inside ns, e.g. "net.ipv4.ip_forward""#)
        .details(
            "Writes /proc/sys inside ns; integers and booleans are accepted as values.",
            r#"rt.sysctl("net.ipv4.ip_forward", 1);"#,
        ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    r.handle::<Netns>("Netns");
    r.property("name", |n: &mut Netns| n.0.name().unwrap_or("").to_string());

    r.func("host", || Netns(NsRef::Host));

    let b = backend.clone();
    r.func("netns", move |ctx: NativeCallContext, name: &str| -> RhaiResult<Netns> {
        apply_from(&ctx, &b, Op::CreateNetns(CreateNetns { name: name.to_string() }))?;
        Ok(Netns(NsRef::named(name)))
    });

    let b = backend.clone();
    r.func("ns", move |name: &str| -> RhaiResult<Netns> {
        // A handle on a namespace that exists already (the lab does not own it).
        let ns = NsRef::named(name);
        apply(&b, Op::Query(Query::Links(ns.clone())))?;
        Ok(Netns(ns))
    });

    let b = backend.clone();
    r.func("lab", move |name: &str| -> RhaiResult<()> { b.borrow_mut().set_lab_name(name).map_err(fail) });
    let b = backend.clone();
    r.func("lab", move || -> String { b.borrow().lab_name() });

    let b = backend.clone();
    r.func("forward", move |ns: &mut Netns, on: bool| -> RhaiResult<Netns> {
        recipes::forward(&mut *b.borrow_mut(), &ns.0, on).map_err(fail)?;
        Ok(ns.clone())
    });

    let b = backend.clone();
    r.func("ipv6", move |ns: &mut Netns, on: bool| -> RhaiResult<Netns> {
        recipes::ipv6(&mut *b.borrow_mut(), &ns.0, on).map_err(fail)?;
        Ok(ns.clone())
    });

    let b = backend.clone();
    r.func("exec", move |ns: &mut Netns, cmd: &str| exec(&b, ns, Command::Shell(cmd.to_string())));
    let b = backend.clone();
    r.func("exec", move |ns: &mut Netns, argv: Array| -> RhaiResult<Map> {
        let argv =
            argv.into_iter().map(|a| a.into_immutable_string().map(|s| s.to_string())).collect::<Result<Vec<_>, _>>().map_err(|ty| {
                fail(
                    Error::new(Code::BadValue, format!("exec() arguments must be strings, found {ty}"))
                        .help("write numbers as strings: [\"ping\", \"-c\", \"1\", \"10.0.0.1\"]"),
                )
            })?;
        exec(&b, ns, Command::Argv(argv))
    });
    // With options (a timeout): a process of the router family's kind.
    let b = backend.clone();
    r.func("exec", move |ns: &mut Netns, cmd: &str, opts: Map| router::exec_timeout(&b, ns, cmd.into(), &opts));
    let b = backend.clone();
    r.func("exec", move |ns: &mut Netns, cmd: Array, opts: Map| router::exec_timeout(&b, ns, cmd.into(), &opts));

    let b = backend.clone();
    r.func("route", move |ctx: NativeCallContext, ns: &mut Netns, dest: &str, via: &str| route(&ctx, &b, ns, dest, via, &Map::new()));
    let b = backend.clone();
    r.func("route", move |ctx: NativeCallContext, ns: &mut Netns, dest: &str, via: &str, opts: Map| route(&ctx, &b, ns, dest, via, &opts));

    let b = backend.clone();
    r.func("sysctl", move |ns: &mut Netns, key: &str, value: &str| sysctl(&b, ns, key, value.to_string()));
    let b = backend.clone();
    r.func("sysctl", move |ns: &mut Netns, key: &str, value: i64| sysctl(&b, ns, key, value.to_string()));
    let b = backend.clone();
    r.func("sysctl", move |ns: &mut Netns, key: &str, value: bool| sysctl(&b, ns, key, if value { "1" } else { "0" }.to_string()));
}
