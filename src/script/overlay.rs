//! Overlays and more link kinds: `vxlan`, `fdb_append`, `fdb`, `vlan`, bridge VLAN
//! filtering, `macvlan`, `tap`, `shape`/`unshape`.

use super::args::{self, Opts};
use super::registrar::{FnDoc, Registrar};
use super::types::{Link, Netns};
use super::{apply, fail, RhaiResult, Shared};
use crate::error::{Code, Error};
use crate::ops::overlay::{BridgeVlan, CreateLink, FdbAppend, LinkKind, MacvlanMode, VlanFiltering, VxlanSpec};
use crate::ops::qdisc::{SetShape, Shape};
use crate::ops::query::Query;
use crate::ops::{NsRef, Op, Outcome};
use rhai::{Array, Dynamic, Map};
use std::net::IpAddr;

fn bad(what: String, help: &str) -> Box<rhai::EvalAltResult> {
    fail(Error::new(Code::BadValue, what).help(help.to_string()))
}

fn missing(what: String, help: &str) -> Box<rhai::EvalAltResult> {
    fail(Error::new(Code::MissingOption, what).help(help.to_string()))
}

pub(super) fn create(b: &Shared, spec: CreateLink) -> RhaiResult<Link> {
    match apply(b, Op::CreateLink(spec.clone()))? {
        Outcome::Link { ns, name } => Ok(Link { ns, name }),
        _ => Ok(Link { ns: spec.ns, name: spec.name }),
    }
}

/// An option's value; a unit value counts as absent.
fn get<'a>(m: &'a Map, key: &str) -> Option<&'a Dynamic> {
    m.get(key).filter(|v| !v.is_unit())
}

pub(super) fn common(o: &Opts, m: &Map) -> RhaiResult<(Option<u32>, bool)> {
    let mtu = o.int("mtu")?.map(|n| args::u32_in("mtu", n, 68, 65535)).transpose()?;
    let up = match get(m, "up") {
        None => false,
        Some(v) => v.as_bool().map_err(|ty| bad(format!("option \"up\" must be true or false, not {ty}"), "write up: true"))?,
    };
    Ok((mtu, up))
}

fn vxlan(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("vxlan", opts, &["id", "remote", "group", "local", "dev", "dstport", "mtu", "up"])?;
    let id = match o.int("id")? {
        Some(n) => args::u32_in("VXLAN id (VNI)", n, 0, (1 << 24) - 1)?,
        None => {
            return Err(missing(
                "vxlan() needs an id (the VNI)".into(),
                "e.g. vxlan(ns, \"vxlan0\", #{ id: 11, remote: \"10.230.4.205\", dev: \"eth0\" })",
            ))
        }
    };
    let addr = |key: &str| -> RhaiResult<Option<IpAddr>> { o.string(key)?.map(|s| args::ip(&s)).transpose() };
    let (remote, group, local) = (addr("remote")?, addr("group")?, addr("local")?);
    let dev = o.string("dev")?;
    if remote.is_some() && group.is_some() {
        return Err(bad(
            "vxlan() takes remote or group, not both".into(),
            "remote is one unicast peer; group is a multicast group all peers join",
        ));
    }
    if let Some(r) = remote {
        if r.is_multicast() {
            return Err(bad(
                format!("remote {r} is a multicast address"),
                "a multicast VXLAN uses group: #{ group: \"224.1.1.1\", dev: \"eth0\" }",
            ));
        }
    }
    if let Some(g) = group {
        if !g.is_multicast() {
            return Err(bad(
                format!("group {g} is not a multicast address"),
                "groups are 224.0.0.0 to 239.255.255.255 (or ff00::/8); a single peer is remote: ...",
            ));
        }
        if dev.is_none() {
            return Err(missing(
                format!("vxlan() with group {g} needs dev"),
                "the kernel joins the multicast group on one underlay device: add dev, e.g. #{ group: \"224.1.1.1\", dev: \"eth0\" }",
            ));
        }
    }
    if let (Some(l), Some(p)) = (local, remote.or(group)) {
        if l.is_ipv4() != p.is_ipv4() {
            return Err(bad(format!("local {l} and {p} are of different address families"), "use IPv4 for both or IPv6 for both"));
        }
    }
    let dstport = match o.int("dstport")? {
        Some(p) => args::u32_in("dstport", p, 1, 65535)? as u16,
        None => 4789, // IANA's port, as the seed uses; the kernel's default is 8472
    };
    let (mtu, up) = common(&o, opts)?;
    let spec = VxlanSpec { id, remote, group, local, dev, dstport };
    create(b, CreateLink { ns, name: name.to_string(), kind: LinkKind::Vxlan(spec), mtu, up })
}

fn vlan(b: &Shared, parent: &Link, id: i64, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("vlan", opts, &["name", "mtu", "up"])?;
    let id = args::u32_in("VLAN id", id, 1, 4094)? as u16;
    let name = o.string("name")?.unwrap_or_else(|| format!("{}.{id}", parent.name));
    let (mtu, up) = common(&o, opts)?;
    create(b, CreateLink { ns: parent.ns.clone(), name, kind: LinkKind::Vlan { parent: parent.name.clone(), id }, mtu, up })
}

fn macvlan(b: &Shared, parent: &Link, name: &str, mode: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("macvlan", opts, &["mtu", "up"])?;
    let mode = match mode {
        "bridge" => MacvlanMode::Bridge,
        "private" => MacvlanMode::Private,
        "vepa" => MacvlanMode::Vepa,
        "passthru" => MacvlanMode::Passthru,
        other => {
            return Err(bad(format!("unknown macvlan mode {other:?}"), "the modes are \"bridge\", \"private\", \"vepa\" and \"passthru\""))
        }
    };
    let (mtu, up) = common(&o, opts)?;
    create(
        b,
        CreateLink {
            ns: parent.ns.clone(),
            name: name.to_string(),
            kind: LinkKind::Macvlan { parent: parent.name.clone(), mode },
            mtu,
            up,
        },
    )
}

/// A uid or gid given as a number or a name.
fn id_of(o: &Opts, m: &Map, key: &str) -> RhaiResult<Option<u32>> {
    if let Some(n) = get(m, key).and_then(|v| v.as_int().ok()) {
        return args::u32_in(key, n, 0, i64::from(u32::MAX) - 1).map(Some);
    }
    let Some(name) = o.string(key)? else { return Ok(None) };
    let found = if key == "owner" {
        nix::unistd::User::from_name(&name).ok().flatten().map(|u| u.uid.as_raw())
    } else {
        nix::unistd::Group::from_name(&name).ok().flatten().map(|g| g.gid.as_raw())
    };
    found.map(Some).ok_or_else(|| {
        bad(
            format!("unknown {} {name:?}", if key == "owner" { "user" } else { "group" }),
            "give a name from /etc/passwd (/etc/group) or a number",
        )
    })
}

fn tap(b: &Shared, ns: NsRef, name: &str, opts: &Map) -> RhaiResult<Link> {
    let o = Opts::new("tap", opts, &["owner", "group", "mtu", "up"])?;
    let (owner, group) = (id_of(&o, opts, "owner")?, id_of(&o, opts, "group")?);
    let (mtu, up) = common(&o, opts)?;
    create(b, CreateLink { ns, name: name.to_string(), kind: LinkKind::Tap { owner, group }, mtu, up })
}

/// "10mbit", "1gbit", "500kbit", "100bit", "2mbps" (bytes per second, as tc reads it).
pub fn parse_rate(text: &str) -> Result<u64, Error> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| Error::new(Code::BadValue, format!("malformed rate {text:?}")))?;
    let mult = match unit.trim() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "tbit" => 1e12,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        "" => return Err(Error::new(Code::BadValue, format!("rate {text:?} has no unit"))),
        u => return Err(Error::new(Code::BadValue, format!("unknown rate unit {u:?} in {text:?}"))),
    };
    let bits = n * mult;
    if !(8.0..=1e15).contains(&bits) {
        return Err(Error::new(Code::BadValue, format!("rate {text:?} is out of range")));
    }
    Ok(bits as u64)
}

/// "32kb", "1500b", "1mb", or a number of bytes.
pub(super) fn parse_size(v: &Dynamic, key: &str) -> Result<u32, Error> {
    if let Ok(n) = v.as_int() {
        return u32::try_from(n).map_err(|_| Error::new(Code::BadValue, format!("{key} {n} is out of range")));
    }
    let text = v
        .clone()
        .into_string()
        .map_err(|ty| Error::new(Code::BadValue, format!("{key} must be a size like \"32kb\" or a number of bytes, not {ty}")))?;
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| Error::new(Code::BadValue, format!("malformed {key} {text:?}")))?;
    let mult = match unit.trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1048576.0,
        "g" | "gb" | "gib" => 1073741824.0,
        u => return Err(Error::new(Code::BadValue, format!("unknown size unit {u:?} in {text:?}"))),
    };
    let bytes = n * mult;
    if !(1.0..=f64::from(u32::MAX)).contains(&bytes) {
        return Err(Error::new(Code::BadValue, format!("{key} {text:?} is out of range")));
    }
    Ok(bytes as u32)
}

/// "50ms", "1s", "200us", or a number of milliseconds. Microseconds out.
fn parse_time(v: &Dynamic, key: &str) -> Result<u32, Error> {
    if let Ok(n) = v.as_int() {
        return u32::try_from(n.saturating_mul(1000)).map_err(|_| Error::new(Code::BadValue, format!("{key} {n} ms is out of range")));
    }
    let text = v.clone().into_string().map_err(|ty| Error::new(Code::BadValue, format!("{key} must be a time like \"50ms\", not {ty}")))?;
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| Error::new(Code::BadValue, format!("malformed {key} {text:?}")))?;
    let mult = match unit.trim() {
        "s" | "sec" => 1e6,
        "" | "ms" | "msec" => 1e3,
        "us" | "usec" => 1.0,
        u => return Err(Error::new(Code::BadValue, format!("unknown time unit {u:?} in {text:?}"))),
    };
    let us = n * mult;
    if !(0.0..=f64::from(u32::MAX)).contains(&us) {
        return Err(Error::new(Code::BadValue, format!("{key} {text:?} is out of range")));
    }
    Ok(us as u32)
}

fn parse_loss(v: &Dynamic) -> Result<f64, Error> {
    let pct = if let Ok(n) = v.as_int() {
        n as f64
    } else if let Ok(f) = v.as_float() {
        f
    } else {
        let text =
            v.clone().into_string().map_err(|ty| Error::new(Code::BadValue, format!("loss must be a percentage like \"5%\", not {ty}")))?;
        text.trim()
            .trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map_err(|_| Error::new(Code::BadValue, format!("malformed loss {text:?}")))?
    };
    if !(0.0..=100.0).contains(&pct) {
        return Err(Error::new(Code::BadValue, format!("loss {pct}% is out of range")));
    }
    Ok(pct)
}

fn shape(b: &Shared, l: &Link, opts: &Map) -> RhaiResult<Link> {
    Opts::new("shape", opts, &["rate", "burst", "latency", "delay", "loss"])?;
    let help = |e: Error, h: &str| fail(e.help(h.to_string()));
    let rate = match get(opts, "rate") {
        None => None,
        Some(v) => {
            let text = v.clone().into_string().map_err(|_| {
                bad(
                    "the rate needs a unit".into(),
                    "write it as tc does: rate: \"10mbit\" (bit, kbit, mbit, gbit; kbps, mbps are bytes per second)",
                )
            })?;
            Some(
                parse_rate(&text)
                    .map_err(|e| help(e, "write it as tc does: \"10mbit\" (bit, kbit, mbit, gbit; kbps, mbps are bytes per second)"))?,
            )
        }
    };
    let burst = get(opts, "burst").map(|v| parse_size(v, "burst")).transpose().map_err(|e| help(e, "e.g. burst: \"32kb\""))?;
    let latency_us = get(opts, "latency").map(|v| parse_time(v, "latency")).transpose().map_err(|e| help(e, "e.g. latency: \"50ms\""))?;
    let delay_us = get(opts, "delay").map(|v| parse_time(v, "delay")).transpose().map_err(|e| help(e, "e.g. delay: \"100ms\""))?;
    let loss_pct = get(opts, "loss").map(parse_loss).transpose().map_err(|e| help(e, "e.g. loss: \"5%\""))?;
    if rate.is_none() && delay_us.is_none() && loss_pct.is_none() {
        return Err(missing("shape() needs a rate, a delay or a loss".into(), "e.g. shape(link, #{ rate: \"10mbit\" })"));
    }
    let spec = Shape { rate, burst, latency_us, delay_us, loss_pct };
    apply(b, Op::Shape(SetShape { ns: l.ns.clone(), link: l.name.clone(), shape: Some(spec) }))?;
    Ok(l.clone())
}

fn fdb(b: &Shared, ns: NsRef) -> RhaiResult<Array> {
    let opt_s = |v: Option<String>| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let opt_i = |v: Option<i64>| v.map(Dynamic::from).unwrap_or(Dynamic::UNIT);
    let Outcome::Fdb(entries) = apply(b, Op::Query(Query::Fdb(ns)))? else { return Ok(Array::new()) };
    Ok(entries
        .into_iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("mac".into(), e.mac.into());
            m.insert("dev".into(), e.dev.into());
            m.insert("master".into(), opt_s(e.master));
            m.insert("dst".into(), opt_s(e.dst));
            m.insert("vlan".into(), opt_i(e.vlan.map(i64::from)));
            m.insert("vni".into(), opt_i(e.vni.map(i64::from)));
            m.insert("state".into(), e.state.into());
            m.insert("self".into(), e.is_self.into());
            Dynamic::from(m)
        })
        .collect())
}

/// Overlays and more link kinds, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new(
        "vxlan",
        "vxlan(ns, name, #{ id, remote, group, local, dev, dstport, mtu, up }) -> Link",
        "a VXLAN link (VNI id, UDP dstport 4789 unless given); group needs dev; down unless up: true",
    ),
    FnDoc::new(
        "fdb_append",
        "fdb_append(link, mac, dst) -> Link",
        "append MAC -> remote VTEP dst to a VXLAN's forwarding table (00:00:00:00:00:00 = flood list)",
    ),
    FnDoc::new(
        "fdb",
        "fdb(ns) -> [#{ mac, dev, master, dst, vlan, vni, state, self }]",
        "the bridge and VXLAN forwarding tables of ns (`bridge fdb show`)",
    ),
    FnDoc::new(
        "vlan",
        "vlan(link, id) / vlan(link, id, #{ name, mtu, up }) -> Link",
        "an 802.1Q sub-interface named PARENT.ID (needs the kernel's 8021q)",
    ),
    FnDoc::new("vlan_filtering", "bridge.vlan_filtering(on) -> Link", "turn VLAN filtering on a bridge on or off"),
    FnDoc::new(
        "bridge_vlan",
        "port.bridge_vlan(vid) / port.bridge_vlan(vid, #{ pvid, untagged }) -> Link",
        "allow VLAN vid on a bridge port (pvid + untagged: an access port)",
    ),
    FnDoc::new(
        "macvlan",
        "macvlan(parent, name, mode) / macvlan(parent, name, mode, #{ mtu, up }) -> Link",
        "a macvlan child of parent; mode is bridge, private, vepa or passthru",
    ),
    FnDoc::new(
        "tap",
        "tap(name) / tap(ns, name, #{ owner, group, mtu, up }) -> Link",
        "a persistent tap device for a VM or a userspace peer (qemu -netdev tap,ifname=NAME,script=no)",
    ),
    FnDoc::new(
        "shape",
        "link.shape(#{ rate, burst, latency, delay, loss }) -> Link",
        r#"limit the link's egress rate with tbf (rate "10mbit"); delay and loss need netem"#,
    ),
    FnDoc::new("unshape", "link.unshape() -> Link", "remove the link's shaping"),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("vxlan", move |ns: Netns, name: &str, opts: Map| vxlan(&b, ns.0, name, &opts));
    let b = backend.clone();
    r.func("vxlan", move |name: &str, opts: Map| vxlan(&b, NsRef::Host, name, &opts));

    let b = backend.clone();
    r.func("fdb_append", move |l: Link, mac: &str, dst: &str| -> RhaiResult<Link> {
        let mac = args::mac(mac)?;
        let dst = args::ip(dst)?;
        apply(&b, Op::FdbAppend(FdbAppend { ns: l.ns.clone(), link: l.name.clone(), mac, dst }))?;
        Ok(l)
    });
    let b = backend.clone();
    r.func("fdb", move |ns: Netns| fdb(&b, ns.0));

    let b = backend.clone();
    r.func("vlan", move |l: Link, id: i64| vlan(&b, &l, id, &Map::new()));
    let b = backend.clone();
    r.func("vlan", move |l: Link, id: i64, opts: Map| vlan(&b, &l, id, &opts));
    let b = backend.clone();
    r.func("vlan_filtering", move |l: &mut Link, on: bool| -> RhaiResult<Link> {
        apply(&b, Op::BridgeVlanFiltering(VlanFiltering { ns: l.ns.clone(), bridge: l.name.clone(), on }))?;
        Ok(l.clone())
    });
    let bridge_vlan = |b: &Shared, l: &Link, vid: i64, opts: &Map| -> RhaiResult<Link> {
        Opts::new("bridge_vlan", opts, &["pvid", "untagged"])?;
        let flag = |k: &str| -> RhaiResult<bool> {
            get(opts, k)
                .map(|v| {
                    v.as_bool()
                        .map_err(|ty| bad(format!("option {k:?} must be true or false, not {ty}"), "e.g. #{ pvid: true, untagged: true }"))
                })
                .unwrap_or(Ok(false))
        };
        let vid = args::u32_in("VLAN id", vid, 1, 4094)? as u16;
        apply(
            b,
            Op::BridgeVlan(BridgeVlan { ns: l.ns.clone(), port: l.name.clone(), vid, pvid: flag("pvid")?, untagged: flag("untagged")? }),
        )?;
        Ok(l.clone())
    };
    let b = backend.clone();
    r.func("bridge_vlan", move |l: &mut Link, vid: i64| bridge_vlan(&b, l, vid, &Map::new()));
    let b = backend.clone();
    r.func("bridge_vlan", move |l: &mut Link, vid: i64, opts: Map| bridge_vlan(&b, l, vid, &opts));

    let b = backend.clone();
    r.func("macvlan", move |l: Link, name: &str, mode: &str| macvlan(&b, &l, name, mode, &Map::new()));
    let b = backend.clone();
    r.func("macvlan", move |l: Link, name: &str, mode: &str, opts: Map| macvlan(&b, &l, name, mode, &opts));

    let b = backend.clone();
    r.func("tap", move |name: &str| tap(&b, NsRef::Host, name, &Map::new()));
    let b = backend.clone();
    r.func("tap", move |name: &str, opts: Map| tap(&b, NsRef::Host, name, &opts));
    let b = backend.clone();
    r.func("tap", move |ns: Netns, name: &str| tap(&b, ns.0, name, &Map::new()));
    let b = backend.clone();
    r.func("tap", move |ns: Netns, name: &str, opts: Map| tap(&b, ns.0, name, &opts));

    let b = backend.clone();
    r.func("shape", move |l: &mut Link, opts: Map| shape(&b, l, &opts));
    let b = backend.clone();
    r.func("unshape", move |l: &mut Link| -> RhaiResult<Link> {
        apply(&b, Op::Shape(SetShape { ns: l.ns.clone(), link: l.name.clone(), shape: None }))?;
        Ok(l.clone())
    });
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10mbit").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1.5Gbit").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("100kbps").unwrap(), 800_000);
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("10 mbits").is_err());
    }
}
