//! Link kinds of other kernels: `dummy`, `gre` (and gretap), `ipip`, `bond`, `vrf`.
//! Where the kernel lacks one, creating it is `nsscript::kernel_lacks_feature` naming
//! the module and the kernel option, exactly like `vlan`.

use super::args::{self, Opts};
use super::overlay::{common, create};
use super::registrar::{FnDoc, Registrar};
use super::types::{Link, Netns};
use super::{apply, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::link::{LinkChange, SetLink};
use crate::ops::overlay::{BondMode, CreateLink, LinkKind, Tunnel};
use crate::ops::{NsRef, Op};
use rhai::{Array, Map};
use std::net::{IpAddr, Ipv4Addr};

fn missing(what: String, help: &str) -> Box<rhai::EvalAltResult> {
    fail(Error::new(Code::MissingOption, what).help(help.to_string()))
}

fn dummy(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("dummy", opts, &["mtu", "up"])?;
    let (mtu, up) = common(&o, opts)?;
    create(b, CreateLink { ns, name: name.to_string(), kind: LinkKind::Dummy, mtu, up })
}

/// The two ends of an IPv4 tunnel, both required.
fn tunnel(func: &str, o: &Opts, example: &str) -> RhaiResult<(Ipv4Addr, Ipv4Addr, Option<u8>)> {
    let end = |key: &str| -> RhaiResult<Ipv4Addr> {
        let text = o.string(key)?.ok_or_else(|| missing(format!("{func}() needs {key}"), example))?;
        match args::ip(&text)? {
            IpAddr::V4(a) => Ok(a),
            IpAddr::V6(a) => Err(fail(
                Error::new(Code::BadValue, format!("{func}() {key} {a} is an IPv6 address"))
                    .help(format!("{func} tunnels run over IPv4 (ip6gre and ip6tnl are other kinds)")),
            )),
        }
    };
    Ok((end("local")?, end("remote")?, o.int_in("ttl", 0, 255)?.map(|t| t as u8)))
}

fn gre(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("gre", opts, &["local", "remote", "ttl", "key", "tap"])?;
    let (local, remote, ttl) = tunnel("gre", &o, "e.g. gre(ns, \"gre1\", #{ local: \"192.0.2.1\", remote: \"192.0.2.2\" })")?;
    let t = Tunnel { local, remote, ttl, key: o.int_in("key", 0, i64::from(u32::MAX))?, tap: o.flag("tap")?.unwrap_or(false) };
    create(b, CreateLink { ns, name: name.to_string(), kind: LinkKind::Gre(t), mtu: None, up: false })
}

fn ipip(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("ipip", opts, &["local", "remote", "ttl"])?;
    let (local, remote, ttl) = tunnel("ipip", &o, "e.g. ipip(ns, \"ipip1\", #{ local: \"192.0.2.1\", remote: \"192.0.2.2\" })")?;
    let t = Tunnel { local, remote, ttl, key: None, tap: false };
    create(b, CreateLink { ns, name: name.to_string(), kind: LinkKind::Ipip(t), mtu: None, up: false })
}

fn bond(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("bond", opts, &["mode", "ports", "miimon"])?;
    let names: Vec<&str> = BondMode::ALL.iter().map(|m| m.name()).collect();
    let mode = match o.value("mode") {
        None => return Err(missing("bond() needs a mode".into(), &format!("the modes are {}", names.join(", ")))),
        Some(v) => {
            let text = v.to_string();
            BondMode::by_name(&text).ok_or_else(|| {
                fail(
                    Error::new(Code::BadValue, format!("unknown bond mode {text:?}"))
                        .help(format!("the modes are {} (or 0 to 6)", names.join(", "))),
                )
            })?
        }
    };
    let ports: Vec<String> = match o.value("ports") {
        None => Vec::new(),
        Some(v) => v
            .clone()
            .into_typed_array::<Link>()
            .map(|l| l.into_iter().map(|l| l.name).collect())
            .or_else(|_| v.clone().into_array().map(|a: Array| a.into_iter().map(|x| x.to_string()).collect()))
            .map_err(|ty| fail(Error::new(Code::BadValue, format!("bond() ports must be an array of links or names, not {ty}"))))?,
    };
    let miimon = o.int_in("miimon", 0, i64::from(u32::MAX))?;
    let bond =
        create(b, CreateLink { ns: ns.clone(), name: name.to_string(), kind: LinkKind::Bond { mode, miimon }, mtu: None, up: false })?;
    // A bond takes its ports down (as `ip link set PORT down; ip link set PORT master BOND`).
    for port in ports {
        for change in [LinkChange::Down, LinkChange::Master(bond.name.clone())] {
            apply(b, Op::SetLink(SetLink { ns: ns.clone(), name: port.clone(), change }))?;
        }
    }
    Ok(bond)
}

fn vrf(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("vrf", opts, &["table"])?;
    let table =
        o.table("table")?.ok_or_else(|| missing("vrf() needs its routing table".into(), "e.g. vrf(ns, \"blue\", #{ table: 10 })"))?;
    create(b, CreateLink { ns, name: name.to_string(), kind: LinkKind::Vrf { table }, mtu: None, up: false })
}

/// The link kinds of other kernels, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new("dummy", "dummy(name) / dummy(ns, name) / dummy(ns, name, #{ mtu?, up? }) -> Link", "a dummy link (needs the kernel's dummy, CONFIG_DUMMY): an address to own, a route to nowhere")
        .details(
            "A link that carries nothing: its addresses are the namespace's own (a router ID, a service address), and what is routed to it is dropped. Down unless up: true.",
            "dummy(rt, \"lo1\", #{ up: true }).addr(\"192.0.2.1/32\");",
        ),
    FnDoc::new("gre", "gre(ns, name, #{ local, remote, ttl?, key?, tap? }) -> Link", "a GRE tunnel over IPv4 to remote (tap: true makes a gretap, carrying Ethernet frames); needs ip_gre (CONFIG_NET_IPGRE)")
        .details(
            "A point-to-point GRE tunnel from local (an address of ns) to remote, created down; key sets the GRE key both ways. Give it addresses and bring it up; a gretap can join a bridge.",
            "gre(a, \"gre1\", #{ local: \"192.0.2.1\", remote: \"192.0.2.2\" }).addr(\"10.99.0.1/30\").up();",
        ),
    FnDoc::new("ipip", "ipip(ns, name, #{ local, remote, ttl? }) -> Link", "an IP-in-IP tunnel over IPv4 to remote; needs ipip (CONFIG_NET_IPIP)")
        .details(
            "A point-to-point IPv4-in-IPv4 tunnel from local to remote, created down.",
            "ipip(a, \"ipip1\", #{ local: \"192.0.2.1\", remote: \"192.0.2.2\" }).addr(\"10.98.0.1/30\").up();",
        ),
    FnDoc::new("bond", "bond(ns, name, #{ mode, ports?, miimon? }) -> Link", "a bond of ports (links or names in ns, taken down and enslaved); mode balance-rr, active-backup, 802.3ad...; needs bonding (CONFIG_BONDING)")
        .details(
            "A bonding link in mode (balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb, or 0 to 6) with miimon (link checks every N ms); each port is taken down and enslaved, as `ip link set PORT master BOND` needs. Created down.",
            "let b = bond(a, \"bond0\", #{ mode: \"active-backup\", ports: [\"eth0\", \"eth1\"], miimon: 100 });\nb.addr(\"10.0.0.1/24\").up();",
        ),
    FnDoc::new("vrf", "vrf(ns, name, #{ table }) -> Link", "a VRF whose enslaved links route by table (a number or a name); needs vrf (CONFIG_NET_VRF)")
        .details(
            "A VRF device: links enslaved to it with .master(vrf) route by its table. Created down.",
            "let blue = vrf(rt, \"blue\", #{ table: 10 }).up();\nlink(rt, \"eth1\").master(blue);",
        ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("dummy", move |name: &str| dummy(&b, NsRef::Host, name, &Map::new()));
    let b = backend.clone();
    r.func("dummy", move |ns: Netns, name: &str| dummy(&b, ns.0, name, &Map::new()));
    let b = backend.clone();
    r.func("dummy", move |ns: Netns, name: &str, opts: Map| dummy(&b, ns.0, name, &opts));
    let b = backend.clone();
    r.func("gre", move |ns: Netns, name: &str, opts: Map| gre(&b, ns.0, name, &opts));
    let b = backend.clone();
    r.func("ipip", move |ns: Netns, name: &str, opts: Map| ipip(&b, ns.0, name, &opts));
    let b = backend.clone();
    r.func("bond", move |ns: Netns, name: &str, opts: Map| bond(&b, ns.0, name, &opts));
    let b = backend.clone();
    r.func("vrf", move |ns: Netns, name: &str, opts: Map| vrf(&b, ns.0, name, &opts));
}
