//! Namespaces: `host()`, `netns()`, `lab()`, and what runs inside a namespace:
//! `forward`, `exec`, `route`, `sysctl`.

use super::args;
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
use rhai::{Array, Engine, Map, NativeCallContext};

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

fn route(ctx: &NativeCallContext, b: &Shared, ns: &Netns, dest: &str, via: &str) -> RhaiResult<Netns> {
    let dest = args::route_dest(dest)?;
    let via = match via.parse() {
        Ok(ip) => RouteVia::Gateway(ip),
        // Looks like an address but is not one: say so rather than look for a device.
        Err(_) if via.chars().all(|c| c.is_ascii_hexdigit() || c == '.' || c == ':') => return Err(args::ip(via).unwrap_err()),
        Err(_) => RouteVia::Device(via.to_string()),
    };
    apply_from(ctx, b, Op::AddRoute(AddRoute { ns: ns.0.clone(), dest, via }))?;
    Ok(ns.clone())
}

fn sysctl(b: &Shared, ns: &Netns, key: &str, value: String) -> RhaiResult<Netns> {
    apply(b, Op::Sysctl(Sysctl { ns: ns.0.clone(), key: key.to_string(), value }))?;
    Ok(ns.clone())
}

pub fn register(engine: &mut Engine, backend: &Shared) {
    engine.register_type_with_name::<Netns>("Netns");
    engine.register_fn("to_string", |n: &mut Netns| n.to_string());
    engine.register_fn("to_debug", |n: &mut Netns| n.to_string());
    engine.register_get("name", |n: &mut Netns| n.0.name().unwrap_or("").to_string());
    engine.register_fn("==", |a: Netns, b: Netns| a == b);

    engine.register_fn("host", || Netns(NsRef::Host));

    let b = backend.clone();
    engine.register_fn("netns", move |ctx: NativeCallContext, name: &str| -> RhaiResult<Netns> {
        apply_from(&ctx, &b, Op::CreateNetns(CreateNetns { name: name.to_string() }))?;
        Ok(Netns(NsRef::named(name)))
    });

    let b = backend.clone();
    engine.register_fn("ns", move |name: &str| -> RhaiResult<Netns> {
        // A handle on a namespace that exists already (the lab does not own it).
        let ns = NsRef::named(name);
        apply(&b, Op::Query(Query::Links(ns.clone())))?;
        Ok(Netns(ns))
    });

    let b = backend.clone();
    engine.register_fn("lab", move |name: &str| -> RhaiResult<()> { b.borrow_mut().set_lab_name(name).map_err(fail) });
    let b = backend.clone();
    engine.register_fn("lab", move || -> String { b.borrow().lab_name() });

    let b = backend.clone();
    engine.register_fn("forward", move |ns: &mut Netns, on: bool| -> RhaiResult<Netns> {
        recipes::forward(&mut *b.borrow_mut(), &ns.0, on).map_err(fail)?;
        Ok(ns.clone())
    });

    let b = backend.clone();
    engine.register_fn("ipv6", move |ns: &mut Netns, on: bool| -> RhaiResult<Netns> {
        recipes::ipv6(&mut *b.borrow_mut(), &ns.0, on).map_err(fail)?;
        Ok(ns.clone())
    });

    let b = backend.clone();
    engine.register_fn("exec", move |ns: &mut Netns, cmd: &str| exec(&b, ns, Command::Shell(cmd.to_string())));
    let b = backend.clone();
    engine.register_fn("exec", move |ns: &mut Netns, argv: Array| -> RhaiResult<Map> {
        let argv =
            argv.into_iter().map(|a| a.into_immutable_string().map(|s| s.to_string())).collect::<Result<Vec<_>, _>>().map_err(|ty| {
                fail(
                    Error::new(Code::BadValue, format!("exec() arguments must be strings, found {ty}"))
                        .help("write numbers as strings: [\"ping\", \"-c\", \"1\", \"10.0.0.1\"]"),
                )
            })?;
        exec(&b, ns, Command::Argv(argv))
    });

    let b = backend.clone();
    engine.register_fn("route", move |ctx: NativeCallContext, ns: &mut Netns, dest: &str, via: &str| route(&ctx, &b, ns, dest, via));

    let b = backend.clone();
    engine.register_fn("sysctl", move |ns: &mut Netns, key: &str, value: &str| sysctl(&b, ns, key, value.to_string()));
    let b = backend.clone();
    engine.register_fn("sysctl", move |ns: &mut Netns, key: &str, value: i64| sysctl(&b, ns, key, value.to_string()));
    let b = backend.clone();
    engine.register_fn("sysctl", move |ns: &mut Netns, key: &str, value: bool| {
        sysctl(&b, ns, key, if value { "1" } else { "0" }.to_string())
    });

    let b = backend.clone();
    engine.register_fn("sleep", move |ms: i64| -> RhaiResult<()> {
        let ms = args::u32_in("sleep of", ms, 0, 3_600_000)?;
        // A pause is for the lab to settle: it must be all there first.
        b.borrow_mut().flush().map_err(fail)?;
        std::thread::sleep(std::time::Duration::from_millis(ms.into()));
        Ok(())
    });
    let b = backend.clone();
    engine.register_fn("assert", move |ok: bool, message: &str| -> RhaiResult<()> {
        // A plan runs nothing, so what the script asserts about results is not known
        // there: report it and go on, like the planned reachability checks.
        let advisory = !ok && b.borrow().checks_are_advisory();
        if advisory {
            eprintln!("plan: not checked (needs the real lab): {message}");
        }
        if ok || advisory {
            Ok(())
        } else {
            Err(fail(Error::new(Code::AssertFailed, format!("assertion failed: {message}"))))
        }
    });
}
