//! Links: `bridge`, `veth`, `link`, `connect`, and the link methods.

use super::args::{self, Opts};
use super::types::{Link, Netns};
use super::{apply, apply_from, fail, from_call, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::address::AddAddr;
use crate::ops::link::{CreateBridge, CreateVeth, DeleteLink, LinkChange, SetLink};
use crate::ops::query::Query;
use crate::ops::{NsRef, Op, Outcome};
use crate::recipes::{self, ConnectOpts, Target};
use rhai::{Engine, Map, NativeCallContext};

fn set(ctx: &NativeCallContext, b: &Shared, l: &Link, change: LinkChange) -> RhaiResult<Link> {
    match apply_from(ctx, b, Op::SetLink(SetLink { ns: l.ns.clone(), name: l.name.clone(), change }))? {
        Outcome::Link { ns, name } => Ok(Link { ns, name }),
        _ => Ok(l.clone()),
    }
}

fn bridge(b: &Shared, ns: NsRef, name: &str) -> RhaiResult<Link> {
    apply(b, Op::CreateBridge(CreateBridge { ns: ns.clone(), name: name.to_string() }))?;
    Ok(Link { ns, name: name.to_string() })
}

fn master(ctx: &NativeCallContext, b: &Shared, l: &Link, br: &Link) -> RhaiResult<Link> {
    if br.ns != l.ns {
        return Err(fail(
            Error::new(Code::BadWiring, format!("cannot enslave {} to {}", l.name, br.name))
                .why(format!("the link is in {} but the bridge is in {}", l.ns, br.ns))
                .help("move the link into the bridge's namespace first (.move_to(ns)), or use connect(ns, bridge)"),
        ));
    }
    set(ctx, b, l, LinkChange::Master(br.name.clone()))
}

fn connect(ctx: &NativeCallContext, b: &Shared, ns: &Netns, target: Target, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("connect", opts, &["ifname", "peer", "addr", "gw", "mtu", "peer_addr"])?;
    let copts = ConnectOpts {
        ifname: o.string("ifname")?,
        peer: o.string("peer")?,
        addr: o.string("addr")?.map(|s| args::cidr(&s)).transpose()?,
        gw: o.string("gw")?.map(|s| args::ip(&s)).transpose()?,
        mtu: o.int("mtu")?.map(|n| args::u32_in("mtu", n, 68, 65535)).transpose()?,
        peer_addr: o.string("peer_addr")?.map(|s| args::cidr(&s)).transpose()?,
    };
    let (ns, name) = from_call(ctx, b, |backend| recipes::connect(backend, &ns.0, &target, &copts))?;
    Ok(Link { ns, name })
}

pub fn register(engine: &mut Engine, backend: &Shared) {
    engine.register_type_with_name::<Link>("Link");
    engine.register_fn("to_string", |l: &mut Link| l.to_string());
    engine.register_fn("to_debug", |l: &mut Link| l.to_string());
    engine.register_get("name", |l: &mut Link| l.name.clone());
    engine.register_get("ns", |l: &mut Link| Netns(l.ns.clone()));
    engine.register_fn("==", |a: Link, b: Link| a == b);

    let b = backend.clone();
    engine.register_fn("bridge", move |name: &str| bridge(&b, NsRef::Host, name));
    let b = backend.clone();
    engine.register_fn("bridge", move |ns: Netns, name: &str| bridge(&b, ns.0, name));

    let b = backend.clone();
    engine.register_fn("veth", move |a: &str, p: &str| -> RhaiResult<Link> {
        // Exactly like `ip link add A type veth peer name B`: both ends here, down.
        let spec = CreateVeth {
            ns: NsRef::Host,
            name: a.to_string(),
            peer_ns: NsRef::Host,
            peer: p.to_string(),
            mtu: None,
            up: false,
            master: None,
        };
        apply(&b, Op::CreateVeth(spec))?;
        Ok(Link { ns: NsRef::Host, name: a.to_string() })
    });

    let b = backend.clone();
    engine.register_fn("link", move |name: &str| -> RhaiResult<Link> { existing(&b, NsRef::Host, name) });
    let b = backend.clone();
    engine.register_fn("link", move |ns: Netns, name: &str| -> RhaiResult<Link> { existing(&b, ns.0, name) });

    let b = backend.clone();
    engine.register_fn("up", move |ctx: NativeCallContext, l: &mut Link| set(&ctx, &b, l, LinkChange::Up));
    let b = backend.clone();
    engine.register_fn("down", move |ctx: NativeCallContext, l: &mut Link| set(&ctx, &b, l, LinkChange::Down));
    let b = backend.clone();
    engine.register_fn("addr", move |ctx: NativeCallContext, l: &mut Link, cidr: &str| -> RhaiResult<Link> {
        apply_from(&ctx, &b, Op::AddAddr(AddAddr { ns: l.ns.clone(), link: l.name.clone(), addr: args::cidr(cidr)? }))?;
        Ok(l.clone())
    });
    let b = backend.clone();
    engine.register_fn("master", move |ctx: NativeCallContext, l: &mut Link, br: Link| master(&ctx, &b, l, &br));
    let b = backend.clone();
    engine.register_fn("master", move |ctx: NativeCallContext, l: &mut Link, br: &str| {
        master(&ctx, &b, l, &Link { ns: l.ns.clone(), name: br.to_string() })
    });
    let b = backend.clone();
    engine.register_fn("nomaster", move |ctx: NativeCallContext, l: &mut Link| set(&ctx, &b, l, LinkChange::NoMaster));
    let b = backend.clone();
    engine.register_fn("move_to", move |ctx: NativeCallContext, l: &mut Link, ns: Netns| set(&ctx, &b, l, LinkChange::MoveTo(ns.0)));
    let b = backend.clone();
    engine.register_fn("rename", move |ctx: NativeCallContext, l: &mut Link, name: &str| {
        set(&ctx, &b, l, LinkChange::Rename(name.to_string()))
    });
    let b = backend.clone();
    engine.register_fn("mtu", move |ctx: NativeCallContext, l: &mut Link, mtu: i64| -> RhaiResult<Link> {
        let mtu = args::u32_in("mtu", mtu, 68, 65535)?;
        set(&ctx, &b, l, LinkChange::Mtu(mtu))
    });
    let b = backend.clone();
    engine.register_fn("mac", move |ctx: NativeCallContext, l: &mut Link, mac: &str| -> RhaiResult<Link> {
        let mac = args::mac(mac)?;
        set(&ctx, &b, l, LinkChange::Mac(mac))
    });
    let b = backend.clone();
    engine.register_fn("peer", move |l: &mut Link| -> RhaiResult<Link> {
        match apply(&b, Op::Query(Query::VethPeer { ns: l.ns.clone(), name: l.name.clone() }))? {
            Outcome::Link { ns, name } => Ok(Link { ns, name }),
            _ => Err(fail(Error::new(Code::NoPeer, format!("cannot find the peer of {}", l.name)))),
        }
    });
    let b = backend.clone();
    engine.register_fn("delete", move |l: &mut Link| -> RhaiResult<()> {
        apply(&b, Op::DeleteLink(DeleteLink { ns: l.ns.clone(), name: l.name.clone() }))?;
        Ok(())
    });

    let b = backend.clone();
    engine.register_fn("connect", move |ctx: NativeCallContext, ns: Netns, br: Link, opts: Map| {
        connect(&ctx, &b, &ns, Target::Bridge { ns: br.ns, name: br.name }, &opts)
    });
    let b = backend.clone();
    engine.register_fn("connect", move |ctx: NativeCallContext, ns: Netns, br: Link| {
        connect(&ctx, &b, &ns, Target::Bridge { ns: br.ns, name: br.name }, &Map::new())
    });
    let b = backend.clone();
    engine.register_fn("connect", move |ctx: NativeCallContext, ns: Netns, other: Netns, opts: Map| {
        connect(&ctx, &b, &ns, Target::Netns(other.0), &opts)
    });
    let b = backend.clone();
    engine.register_fn("connect", move |ctx: NativeCallContext, ns: Netns, other: Netns| {
        connect(&ctx, &b, &ns, Target::Netns(other.0), &Map::new())
    });
}

/// `link(ns, name)`: a handle on a link that must exist now.
fn existing(b: &Shared, ns: NsRef, name: &str) -> RhaiResult<Link> {
    let links = match apply(b, Op::Query(Query::Links(ns.clone())))? {
        Outcome::Links(links) => links,
        _ => Vec::new(),
    };
    if links.iter().any(|l| l.name == name) {
        return Ok(Link { ns, name: name.to_string() });
    }
    let mut known: Vec<String> = links.into_iter().map(|l| l.name).collect();
    known.sort();
    Err(fail(
        Error::new(Code::UnknownLink, format!("unknown link {name:?} in {ns}"))
            .why("no such device (ENODEV)")
            .help(format!("links there: {}", known.join(", "))),
    ))
}
