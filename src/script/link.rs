//! Links: `bridge`, `veth`, `link`, `connect`, and the link methods.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::types::{Link, Netns};
use super::{apply, apply_from, fail, from_call, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::address::AddAddr;
use crate::ops::link::{CreateBridge, CreateVeth, DeleteLink, LinkChange, SetLink};
use crate::ops::query::{LinkInfo, Query};
use crate::ops::{NsRef, Op, Outcome};
use crate::recipes::{self, ConnectOpts, Target};
use rhai::{Dynamic, Map, NativeCallContext};

fn set(ctx: &NativeCallContext, b: &Shared, l: &Link, change: LinkChange) -> RhaiResult<Link> {
    match apply_from(ctx, b, Op::SetLink(SetLink { ns: l.ns.clone(), name: l.name.clone(), change }))? {
        Outcome::Link { ns, name } => Ok(Link { ns, name }),
        _ => Ok(l.clone()),
    }
}

fn bridge(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let opts = super::bridge::bridge_opts(opts)?;
    apply(b, Op::CreateBridge(CreateBridge { opts, ..CreateBridge::new(ns.clone(), name) }))?;
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

/// The link functions and methods, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new("bridge", "bridge(name) / bridge(ns, name) / bridge(name, opts) / bridge(ns, name, opts) -> Link", "create a bridge (up) in the host namespace or in ns; opts #{ stp?, priority?, forward_delay?, hello_time?, max_age?, ageing?, mcast_snooping? } (times in ms)")
        .details(
            "A Linux bridge, created up. Give it an address to make it the gateway of the namespaces plugged into it. Options: stp (the kernel's spanning tree), priority (0..65535, the lowest is the root), forward_delay (2000..30000 ms with STP), hello_time (1000..10000 ms), max_age (6000..40000 ms), ageing (ms a learned MAC is kept), mcast_snooping; times are multiples of 10 ms. On a bridge the lab has already, the options are changed.",
            "let br = bridge(\"br0\").addr(\"10.0.0.1/24\");\nlet s1 = bridge(netns(\"s1\"), \"br0\", #{ stp: true, priority: 4096, forward_delay: 2000 });",
        ),
    FnDoc::new("veth", "veth(a, b) -> Link", "a veth pair a/b in the host namespace, down, like `ip link add a type veth peer name b`; returns a")
        .details(
            "Both ends in the host namespace and down, exactly like `ip link add a type veth peer name b`; move the ends with .move_to(ns). connect() does the same in one call, faster.",
            "veth(\"veth0\", \"veth1\");\nlink(\"veth1\").move_to(netns(\"ns1\"));",
        ),
    FnDoc::new("link", "link(name) / link(ns, name) -> Link", "a handle on an existing link")
        .details(
            "A handle on a link that exists now; an unknown name is an error that lists the links there.",
            r#"link(ns1, "veth1").addr("192.168.1.2/24").up();"#,
        ),
    FnDoc::new("up", "link.up() -> Link", "bring the link up")
        .details(
            "Sets the link up (`ip link set NAME up`).",
            r#"link("veth0").up();"#,
        ),
    FnDoc::new("down", "link.down() -> Link", "bring the link down"),
    FnDoc::new("addr", "link.addr(cidr) -> Link", "add an IPv4 or IPv6 address (IPv6 without DAD delay)")
        .details(
            "Adds an address with its prefix length; IPv6 addresses skip duplicate address detection so they work at once.",
            r#"link(ns0, "veth0").addr("192.168.1.1/24").up();"#,
        ),
    FnDoc::new("master", "link.master(bridge) -> Link / link.master -> String", "enslave the link to a bridge in the same namespace / (read) its master's name, or ()")
        .details(
            "Enslaves the link to a bridge in the same namespace (`ip link set NAME master BR`).",
            r#"link("veth0").master(br).up();"#,
        ),
    FnDoc::new("nomaster", "link.nomaster() -> Link", "release the link from its bridge"),
    FnDoc::new("move_to", "link.move_to(ns) -> Link", "move the link into another namespace; returns the moved link")
        .details(
            "Moves the link into ns; the kernel takes it down and drops its addresses. Returns the handle in its new namespace.",
            r#"let inner = link("veth1").move_to(ns1);"#,
        ),
    FnDoc::new("rename", "link.rename(name) -> Link", "rename the link; returns the renamed link")
        .details(
            "Renames the link (it must be down on older kernels).",
            r#"link(rt, "link-in-rt").rename("eth0");"#,
        ),
    FnDoc::new("mtu", "link.mtu(n) -> Link / link.mtu -> i64", "set the MTU / (read) the MTU, from the kernel now"),
    FnDoc::new("mac", r#"link.mac("02:00:00:00:00:01") -> Link / link.mac -> String"#, "set the MAC address / (read) the MAC address"),
    FnDoc::new("peer", "link.peer() -> Link", "the other end of a veth"),
    FnDoc::new("info", "link.info() -> #{ name, index, kind, up, state, mtu, mac, master }", "what the kernel says of the link now (the plan: its model)")
        .details(
            "The link as links(ns) shows it, read from the kernel at the call (after whatever the script asked before). The same facts are read-only properties: link.mtu, link.mac, link.state, link.kind, link.index, link.master (link.mtu(n) and link.mac(m) still set them).",
            "let e = link(vm1, \"eth0\");\nprint(`${e.name}: mtu ${e.mtu}, ${e.state}, mac ${e.mac}`);\nif e.mtu > 1450 { e.mtu(1450); }",
        ),
    FnDoc::new("index", "link.index -> i64", "(read) the link's ifindex"),
    FnDoc::new("state", "link.state -> String", "(read) the link's operational state: UP, DOWN, UNKNOWN, LOWERLAYERDOWN..."),
    FnDoc::new("kind", "link.kind -> String", "(read) the link's kind: veth, bridge, vxlan... (\"\" for lo and plain devices)"),
    FnDoc::new("delete", "link.delete()", "delete the link (a veth takes its peer with it)"),
    FnDoc::new("connect", "connect(ns, bridge|netns, #{ ifname, peer, addr, gw, mtu, peer_addr }) -> Link", "a veth from ns to a bridge or another namespace, created in place, both ends up; returns the inner end")
        .details(
            "A veth whose inner end (ifname, default the first free ethN) is created inside ns and whose outer end goes to the bridge (enslaved) or the other namespace; both ends up; then addr and a default route via gw.",
            r#"connect(netns("vm1"), br, #{ ifname: "eth0", addr: "10.0.0.2/24", gw: "10.0.0.1" });"#,
        ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    r.handle::<Link>("Link");
    r.property("name", |l: &mut Link| l.name.clone());
    r.property("ns", |l: &mut Link| Netns(l.ns.clone()));

    let b = backend.clone();
    r.func("info", move |l: &mut Link| -> RhaiResult<Map> { info(&b, l).map(super::query::link_map) });
    let b = backend.clone();
    r.getter("mtu", move |l: &mut Link| info(&b, l).map(|i| i64::from(i.mtu)));
    let b = backend.clone();
    r.getter("mac", move |l: &mut Link| info(&b, l).map(|i| i.mac));
    let b = backend.clone();
    r.getter("state", move |l: &mut Link| info(&b, l).map(|i| i.state));
    let b = backend.clone();
    r.getter("kind", move |l: &mut Link| info(&b, l).map(|i| i.kind));
    let b = backend.clone();
    r.getter("index", move |l: &mut Link| info(&b, l).map(|i| i64::from(i.index)));
    let b = backend.clone();
    r.getter("master", move |l: &mut Link| info(&b, l).map(|i| i.master.map(Dynamic::from).unwrap_or(Dynamic::UNIT)));

    let b = backend.clone();
    r.func("bridge", move |name: &str| bridge(&b, NsRef::Host, name, &Map::new()));
    let b = backend.clone();
    r.func("bridge", move |ns: Netns, name: &str| bridge(&b, ns.0, name, &Map::new()));
    let b = backend.clone();
    r.func("bridge", move |name: &str, opts: Map| bridge(&b, NsRef::Host, name, &opts));
    let b = backend.clone();
    r.func("bridge", move |ns: Netns, name: &str, opts: Map| bridge(&b, ns.0, name, &opts));

    let b = backend.clone();
    r.func("veth", move |a: &str, p: &str| -> RhaiResult<Link> {
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
    r.func("link", move |name: &str| -> RhaiResult<Link> { existing(&b, NsRef::Host, name) });
    let b = backend.clone();
    r.func("link", move |ns: Netns, name: &str| -> RhaiResult<Link> { existing(&b, ns.0, name) });

    let b = backend.clone();
    r.func("up", move |ctx: NativeCallContext, l: &mut Link| set(&ctx, &b, l, LinkChange::Up));
    let b = backend.clone();
    r.func("down", move |ctx: NativeCallContext, l: &mut Link| set(&ctx, &b, l, LinkChange::Down));
    let b = backend.clone();
    r.func("addr", move |ctx: NativeCallContext, l: &mut Link, cidr: &str| -> RhaiResult<Link> {
        apply_from(&ctx, &b, Op::AddAddr(AddAddr { ns: l.ns.clone(), link: l.name.clone(), addr: args::cidr(cidr)? }))?;
        Ok(l.clone())
    });
    let b = backend.clone();
    r.func("master", move |ctx: NativeCallContext, l: &mut Link, br: Link| master(&ctx, &b, l, &br));
    let b = backend.clone();
    r.func("master", move |ctx: NativeCallContext, l: &mut Link, br: &str| {
        master(&ctx, &b, l, &Link { ns: l.ns.clone(), name: br.to_string() })
    });
    let b = backend.clone();
    r.func("nomaster", move |ctx: NativeCallContext, l: &mut Link| set(&ctx, &b, l, LinkChange::NoMaster));
    let b = backend.clone();
    r.func("move_to", move |ctx: NativeCallContext, l: &mut Link, ns: Netns| set(&ctx, &b, l, LinkChange::MoveTo(ns.0)));
    let b = backend.clone();
    r.func("rename", move |ctx: NativeCallContext, l: &mut Link, name: &str| set(&ctx, &b, l, LinkChange::Rename(name.to_string())));
    let b = backend.clone();
    r.func("mtu", move |ctx: NativeCallContext, l: &mut Link, mtu: i64| -> RhaiResult<Link> {
        let mtu = args::u32_in("mtu", mtu, 68, 65535)?;
        set(&ctx, &b, l, LinkChange::Mtu(mtu))
    });
    let b = backend.clone();
    r.func("mac", move |ctx: NativeCallContext, l: &mut Link, mac: &str| -> RhaiResult<Link> {
        let mac = args::mac(mac)?;
        set(&ctx, &b, l, LinkChange::Mac(mac))
    });
    let b = backend.clone();
    r.func("peer", move |l: &mut Link| -> RhaiResult<Link> {
        match apply(&b, Op::Query(Query::VethPeer { ns: l.ns.clone(), name: l.name.clone() }))? {
            Outcome::Link { ns, name } => Ok(Link { ns, name }),
            _ => Err(fail(Error::new(Code::NoPeer, format!("cannot find the peer of {}", l.name)))),
        }
    });
    let b = backend.clone();
    r.func("delete", move |l: &mut Link| -> RhaiResult<()> {
        apply(&b, Op::DeleteLink(DeleteLink { ns: l.ns.clone(), name: l.name.clone() }))?;
        Ok(())
    });

    let b = backend.clone();
    r.func("connect", move |ctx: NativeCallContext, ns: Netns, br: Link, opts: Map| {
        connect(&ctx, &b, &ns, Target::Bridge { ns: br.ns, name: br.name }, &opts)
    });
    let b = backend.clone();
    r.func("connect", move |ctx: NativeCallContext, ns: Netns, br: Link| {
        connect(&ctx, &b, &ns, Target::Bridge { ns: br.ns, name: br.name }, &Map::new())
    });
    let b = backend.clone();
    r.func("connect", move |ctx: NativeCallContext, ns: Netns, other: Netns, opts: Map| {
        connect(&ctx, &b, &ns, Target::Netns(other.0), &opts)
    });
    let b = backend.clone();
    r.func("connect", move |ctx: NativeCallContext, ns: Netns, other: Netns| connect(&ctx, &b, &ns, Target::Netns(other.0), &Map::new()));
}

/// The link as the kernel (or the plan's model) has it now.
fn info(b: &Shared, l: &Link) -> RhaiResult<LinkInfo> {
    match apply(b, Op::Query(Query::Link { ns: l.ns.clone(), name: l.name.clone() }))? {
        Outcome::Links(mut found) if !found.is_empty() => Ok(found.remove(0)),
        _ => Err(fail(crate::ops::link::unknown(&l.ns, &l.name))),
    }
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
