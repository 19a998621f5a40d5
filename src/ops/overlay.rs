//! Overlays and more link kinds: vxlan (with its forwarding table), vlan, macvlan,
//! tap, and bridge VLAN filtering.

use super::link::{create_refused, format_mac};
use super::names::validate_ifname;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use std::net::IpAddr;

/// A link of a kind beyond veth and bridge, created in `ns`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateLink {
    pub ns: NsRef,
    pub name: String,
    pub kind: LinkKind,
    pub mtu: Option<u32>,
    pub up: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LinkKind {
    Vxlan(VxlanSpec),
    /// An 802.1Q sub-interface of `parent` (in the same namespace).
    Vlan {
        parent: String,
        id: u16,
    },
    /// A macvlan child of `parent` (in the same namespace).
    Macvlan {
        parent: String,
        mode: MacvlanMode,
    },
    /// A persistent tap device (TUNSETPERSIST) for a VM or a userspace peer.
    Tap {
        owner: Option<u32>,
        group: Option<u32>,
    },
    /// A link that drops what it is sent (addresses to own, routes to nowhere).
    Dummy,
    /// A GRE tunnel to `remote` (IPv4); `tap`: a gretap, carrying Ethernet frames.
    Gre(Tunnel),
    /// An IP-in-IP tunnel to `remote` (IPv4).
    Ipip(Tunnel),
    /// A bond of ports (enslaved with `.master(bond)`, as bridge ports are).
    Bond {
        mode: BondMode,
        miimon: Option<u32>,
    },
    /// A VRF: the links enslaved to it route by `table`.
    Vrf {
        table: u32,
    },
}

/// The ends of an IPv4 tunnel (gre, gretap, ipip).
#[derive(Clone, Debug, PartialEq)]
pub struct Tunnel {
    pub local: std::net::Ipv4Addr,
    pub remote: std::net::Ipv4Addr,
    pub ttl: Option<u8>,
    /// GRE only: the key both ways (ikey and okey).
    pub key: Option<u32>,
    /// GRE only: gretap.
    pub tap: bool,
}

/// The bonding modes, by the names iproute2 gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BondMode {
    BalanceRr,
    ActiveBackup,
    BalanceXor,
    Broadcast,
    Lacp,
    BalanceTlb,
    BalanceAlb,
}

impl BondMode {
    pub const ALL: [BondMode; 7] = [
        BondMode::BalanceRr,
        BondMode::ActiveBackup,
        BondMode::BalanceXor,
        BondMode::Broadcast,
        BondMode::Lacp,
        BondMode::BalanceTlb,
        BondMode::BalanceAlb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BondMode::BalanceRr => "balance-rr",
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceXor => "balance-xor",
            BondMode::Broadcast => "broadcast",
            BondMode::Lacp => "802.3ad",
            BondMode::BalanceTlb => "balance-tlb",
            BondMode::BalanceAlb => "balance-alb",
        }
    }

    /// A mode by name or by the kernel's number (0..6).
    pub fn by_name(name: &str) -> Option<BondMode> {
        BondMode::ALL.into_iter().enumerate().find(|(i, m)| m.name() == name || i.to_string() == name).map(|(_, m)| m)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VxlanSpec {
    pub id: u32,
    pub remote: Option<IpAddr>,
    pub group: Option<IpAddr>,
    pub local: Option<IpAddr>,
    /// The underlay device, in the same namespace.
    pub dev: Option<String>,
    pub dstport: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacvlanMode {
    Private,
    Vepa,
    Bridge,
    Passthru,
}

impl MacvlanMode {
    pub fn name(self) -> &'static str {
        match self {
            MacvlanMode::Private => "private",
            MacvlanMode::Vepa => "vepa",
            MacvlanMode::Bridge => "bridge",
            MacvlanMode::Passthru => "passthru",
        }
    }
}

impl LinkKind {
    /// The kernel's name of the kind (`ip -d link` "kind"), as the ledger records it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            LinkKind::Vxlan(_) => "vxlan",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Tap { .. } => "tap",
            LinkKind::Dummy => "dummy",
            LinkKind::Gre(t) if t.tap => "gretap",
            LinkKind::Gre(_) => "gre",
            LinkKind::Ipip(_) => "ipip",
            LinkKind::Bond { .. } => "bond",
            LinkKind::Vrf { .. } => "vrf",
        }
    }

    /// The MTU the kernel gives a link of a kind that sits on no lower link.
    pub fn own_mtu(&self) -> u32 {
        match self {
            LinkKind::Gre(t) if t.tap => 1462,
            LinkKind::Gre(_) => 1476,
            LinkKind::Ipip(_) => 1480,
            LinkKind::Vrf { .. } => 65575,
            _ => 1500,
        }
    }

    /// The far end of a tunnel (for the graph's edges).
    pub fn remote(&self) -> Option<IpAddr> {
        match self {
            LinkKind::Vxlan(v) => v.remote.or(v.group),
            LinkKind::Gre(t) | LinkKind::Ipip(t) => Some(IpAddr::V4(t.remote)),
            _ => None,
        }
    }

    /// The link it sits on, in the same namespace (a vxlan's underlay, a vlan's parent).
    pub fn lower(&self) -> Option<&str> {
        match self {
            LinkKind::Vxlan(v) => v.dev.as_deref(),
            LinkKind::Vlan { parent, .. } | LinkKind::Macvlan { parent, .. } => Some(parent),
            _ => None,
        }
    }

    /// The MTU the kernel gives the link without an explicit one, from its lower link's:
    /// a vlan or macvlan takes its parent's, a vxlan its underlay's less the encapsulation.
    pub fn derived_mtu(&self, lower_mtu: u32) -> u32 {
        match self {
            LinkKind::Vxlan(v) => {
                let v6 = [v.remote, v.group, v.local].iter().flatten().any(|a| a.is_ipv6());
                lower_mtu.saturating_sub(if v6 { 70 } else { 50 }).max(68)
            }
            _ => lower_mtu,
        }
    }
}

impl CreateLink {
    fn what(&self) -> String {
        format!("cannot create {} link {:?} in {}", self.kind.kind_name(), self.name, self.ns)
    }

    pub fn validate(&self) -> Result<()> {
        validate_ifname(&self.name)?;
        if let Some(lower) = self.kind.lower() {
            validate_ifname(lower)?;
        }
        if let LinkKind::Vrf { table: 0 } = self.kind {
            return Err(Error::new(Code::BadValue, self.what()).why("table 0 is no table").help(super::route::TABLE_HELP));
        }
        if let LinkKind::Gre(t) | LinkKind::Ipip(t) = &self.kind {
            if t.local == t.remote {
                return Err(Error::new(Code::BadWiring, self.what())
                    .why(format!("local and remote are both {}", t.local))
                    .help("a tunnel's remote is the other end's address"));
            }
        }
        Ok(())
    }

    /// The name is taken by a link that is not the lab's.
    pub fn name_taken(&self) -> Error {
        Error::new(Code::NameTaken, self.what())
            .errno(libc::EEXIST)
            .help(format!("a link named {:?} already exists there and does not belong to this lab: choose another name", self.name))
    }

    /// The kernel refused the creation with `errno`.
    pub fn refused(&self, errno: i32) -> Error {
        let err = lacks_kind(create_refused(self.what(), &self.name, errno), self.kind.kind_name());
        match (&self.kind, errno) {
            (LinkKind::Vxlan(v), libc::EEXIST) => err.help(format!(
                "a link named {:?}, or another VXLAN with VNI {} on UDP port {}, already exists in {}",
                self.name, v.id, v.dstport, self.ns
            )),
            (LinkKind::Vxlan(_), libc::EINVAL) => {
                err.help("check that local and remote/group are of the same address family and that dev is the underlay link")
            }
            (LinkKind::Macvlan { .. }, libc::EINVAL) => {
                err.help("the parent must be an Ethernet link (veth, bridge, NIC), not a macvlan in passthru mode or a loopback")
            }
            _ => err,
        }
    }

    /// A lookup of the lower link failed: say which creation needed it.
    pub fn needing(&self, err: Error) -> Error {
        Error { what: self.what(), ..err }
    }

    pub fn shell(&self) -> Step {
        let ip = || Sh::ip(&self.ns).raw("link");
        let mut cmds = Vec::new();
        match &self.kind {
            LinkKind::Vxlan(v) => {
                let c = ip().raw("add").w(&self.name).opt("mtu", self.mtu).raw("type vxlan id").w(v.id.to_string());
                let c = c.opt("remote", v.remote).opt("group", v.group).opt("local", v.local).opt("dev", v.dev.as_ref());
                cmds.push(c.raw("dstport").w(v.dstport.to_string()).done());
            }
            LinkKind::Vlan { parent, id } => cmds.push(
                ip().raw("add link").w(parent).raw("name").w(&self.name).opt("mtu", self.mtu).raw("type vlan id").w(id.to_string()).done(),
            ),
            LinkKind::Macvlan { parent, mode } => cmds.push(
                ip().raw("add link")
                    .w(parent)
                    .raw("name")
                    .w(&self.name)
                    .opt("mtu", self.mtu)
                    .raw("type macvlan mode")
                    .raw(mode.name())
                    .done(),
            ),
            LinkKind::Tap { owner, group } => {
                cmds.push(
                    Sh::ip(&self.ns).raw("tuntap add dev").w(&self.name).raw("mode tap").opt("user", *owner).opt("group", *group).done(),
                );
                if let Some(m) = self.mtu {
                    cmds.push(ip().raw("set").w(&self.name).raw("mtu").w(m.to_string()).done());
                }
            }
            LinkKind::Dummy => cmds.push(ip().raw("add").w(&self.name).opt("mtu", self.mtu).raw("type dummy").done()),
            LinkKind::Gre(t) | LinkKind::Ipip(t) => {
                let kind = match self.kind.kind_name() {
                    "gretap" => "type gretap",
                    "gre" => "type gre",
                    _ => "type ipip",
                };
                let c = ip().raw("add").w(&self.name).opt("mtu", self.mtu).raw(kind).raw("local").w(t.local.to_string());
                cmds.push(c.raw("remote").w(t.remote.to_string()).opt("ttl", t.ttl).opt("key", t.key).done());
            }
            LinkKind::Bond { mode, miimon } => cmds.push(
                ip().raw("add").w(&self.name).opt("mtu", self.mtu).raw("type bond mode").raw(mode.name()).opt("miimon", *miimon).done(),
            ),
            LinkKind::Vrf { table } => {
                cmds.push(ip().raw("add").w(&self.name).opt("mtu", self.mtu).raw("type vrf table").w(table.to_string()).done())
            }
        }
        if self.up {
            cmds.push(ip().raw("set").w(&self.name).raw("up").done());
        }
        Step::new(format!("{} link {} in {}", self.kind.kind_name(), self.name, self.ns), cmds)
    }
}

/// The kernel refused a link kind it was not built with ("Unknown device type").
pub fn lacks_kind(err: Error, kind: &str) -> Error {
    if !err.is_errno(libc::EOPNOTSUPP) {
        return err;
    }
    let (what, module, option) = match kind {
        "vlan" => ("802.1Q VLAN", "8021q", "CONFIG_VLAN_8021Q"),
        "vxlan" => ("VXLAN", "vxlan", "CONFIG_VXLAN"),
        "macvlan" => ("macvlan", "macvlan", "CONFIG_MACVLAN"),
        "dummy" => ("dummy link", "dummy", "CONFIG_DUMMY"),
        "gre" | "gretap" => ("GRE tunnel", "ip_gre", "CONFIG_NET_IPGRE"),
        "ipip" => ("IP-in-IP tunnel", "ipip", "CONFIG_NET_IPIP"),
        "bond" => ("bonding", "bonding", "CONFIG_BONDING"),
        "vrf" => ("VRF", "vrf", "CONFIG_NET_VRF"),
        _ => return err,
    };
    Error {
        code: Code::KernelLacksFeature,
        why: Some(format!("this kernel lacks {what} support (Unknown device type, EOPNOTSUPP)")),
        ..err
    }
    .help(format!("load the module with `modprobe {module}`, or use a kernel built with {option}"))
}

/// `bridge fdb append MAC dev LINK dst IP` (a VXLAN's static flood/unicast list).
#[derive(Clone, Debug, PartialEq)]
pub struct FdbAppend {
    pub ns: NsRef,
    pub link: String,
    pub mac: [u8; 6],
    pub dst: IpAddr,
}

impl FdbAppend {
    pub fn refused(&self, errno: i32) -> Error {
        let err = Error::new(
            Code::KernelRefused,
            format!("cannot append {} dst {} to the forwarding table of {:?} in {}", format_mac(&self.mac), self.dst, self.link, self.ns),
        )
        .errno(errno);
        match errno {
            libc::EINVAL | libc::EOPNOTSUPP => {
                err.help("a destination IP belongs on a VXLAN link's table: call fdb_append on the vxlan link")
            }
            libc::EEXIST => err.help("this MAC/destination pair is already in the table"),
            _ => err,
        }
    }

    pub fn shell(&self) -> Step {
        Step::new(
            format!("forwarding entry on {} in {}", self.link, self.ns),
            vec![Sh::inside(&self.ns, "bridge")
                .raw("fdb append")
                .w(format_mac(&self.mac))
                .raw("dev")
                .w(&self.link)
                .raw("dst")
                .w(self.dst.to_string())
                .done()],
        )
    }
}

/// `ip link set BRIDGE type bridge vlan_filtering 0|1`
#[derive(Clone, Debug, PartialEq)]
pub struct VlanFiltering {
    pub ns: NsRef,
    pub bridge: String,
    pub on: bool,
}

/// Bridge VLAN filtering is missing from this kernel.
fn lacks_vlan_filtering(err: Error, help: &str) -> Error {
    if !err.is_errno(libc::EOPNOTSUPP) {
        return err;
    }
    Error {
        code: Code::KernelLacksFeature,
        why: Some("this kernel lacks bridge VLAN filtering (Operation not supported, EOPNOTSUPP)".into()),
        ..err
    }
    .help(help.to_string())
}

impl VlanFiltering {
    pub fn refused(&self, errno: i32) -> Error {
        let what = format!("cannot turn VLAN filtering {} on bridge {:?} in {}", if self.on { "on" } else { "off" }, self.bridge, self.ns);
        lacks_vlan_filtering(
            Error::new(Code::KernelRefused, what).errno(errno),
            "use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING (and CONFIG_VLAN_8021Q for tagged sub-interfaces)",
        )
    }

    pub fn shell(&self) -> Step {
        Step::new(
            format!("VLAN filtering on {}", self.bridge),
            vec![Sh::ip(&self.ns)
                .raw("link set")
                .w(&self.bridge)
                .raw("type bridge vlan_filtering")
                .raw(if self.on { "1" } else { "0" })
                .done()],
        )
    }
}

/// `bridge vlan add vid VID dev PORT [pvid] [untagged]`
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeVlan {
    pub ns: NsRef,
    pub port: String,
    pub vid: u16,
    pub pvid: bool,
    pub untagged: bool,
}

impl BridgeVlan {
    pub fn refused(&self, errno: i32) -> Error {
        lacks_vlan_filtering(
            Error::new(Code::KernelRefused, format!("cannot add VLAN {} to bridge port {:?} in {}", self.vid, self.port, self.ns))
                .errno(errno),
            "use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING; the port must be enslaved to a bridge",
        )
    }

    pub fn shell(&self) -> Step {
        let mut c = Sh::inside(&self.ns, "bridge").raw("vlan add vid").w(self.vid.to_string()).raw("dev").w(&self.port);
        if self.pvid {
            c = c.raw("pvid");
        }
        if self.untagged {
            c = c.raw("untagged");
        }
        Step::more(vec![c.done()])
    }
}
