//! Links: bridges, veth pairs, and changes to a link (`ip link set`, `ip link del`).

use super::names::validate_ifname;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::{Deserialize, Serialize};

/// `ip link add NAME type bridge` and up.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateBridge {
    pub ns: NsRef,
    pub name: String,
}

impl CreateBridge {
    pub fn validate(&self) -> Result<()> {
        validate_ifname(&self.name)
    }

    pub fn refused(&self, errno: i32) -> Error {
        create_refused(format!("cannot create bridge {:?} in {}", self.name, self.ns), &self.name, errno)
    }

    pub fn shell(&self) -> Step {
        let ip = || Sh::ip(&self.ns).raw("link");
        Step::new(
            format!("bridge {} in {}", self.name, self.ns),
            vec![ip().raw("add").w(&self.name).raw("type bridge").done(), ip().raw("set").w(&self.name).raw("up").done()],
        )
    }
}

/// A veth pair: `name` in `ns`, its peer `peer` created directly in `peer_ns`.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateVeth {
    pub ns: NsRef,
    pub name: String,
    pub peer_ns: NsRef,
    pub peer: String,
    pub mtu: Option<u32>,
    /// Bring both ends up in the creating request.
    pub up: bool,
    /// Enslave the near end (`name`) to this bridge, in `ns`.
    pub master: Option<String>,
}

impl CreateVeth {
    pub fn validate(&self) -> Result<()> {
        validate_ifname(&self.name)?;
        validate_ifname(&self.peer)?;
        if self.ns == self.peer_ns && self.name == self.peer {
            return Err(Error::new(Code::BadWiring, self.what()).help("the two ends need different names"));
        }
        Ok(())
    }

    fn what(&self) -> String {
        format!("cannot create veth pair {:?} / {:?}", self.name, self.peer)
    }

    pub fn refused(&self, errno: i32) -> Error {
        let taken = if self.peer_ns == self.ns {
            format!("{} or {}", self.name, self.peer)
        } else {
            format!("{} in {} or {} in {}", self.name, self.ns, self.peer, self.peer_ns)
        };
        create_refused(self.what(), &taken, errno)
    }

    pub fn shell(&self) -> Step {
        let mut add = Sh::ip(&self.ns).raw("link").raw("add").w(&self.name).opt("mtu", self.mtu).raw("type veth peer name").w(&self.peer);
        add = add.opt("mtu", self.mtu);
        if self.peer_ns != self.ns {
            add = add.netns(&self.peer_ns);
        }
        let mut cmds = vec![add.done()];
        if let Some(br) = &self.master {
            cmds.push(Sh::ip(&self.ns).raw("link set").w(&self.name).raw("master").w(br).done());
        }
        if self.up {
            cmds.push(Sh::ip(&self.ns).raw("link set").w(&self.name).raw("up").done());
            cmds.push(Sh::ip(&self.peer_ns).raw("link set").w(&self.peer).raw("up").done());
        }
        let place = |ns: &NsRef| ns.name().map(|n| format!(" ({n})")).unwrap_or_default();
        Step::new(format!("veth pair {}{} <-> {}{}", self.name, place(&self.ns), self.peer, place(&self.peer_ns)), cmds)
    }
}

/// A change to an existing link (`ip link set ...`).
#[derive(Clone, Debug, PartialEq)]
pub enum LinkChange {
    Up,
    Down,
    Mtu(u32),
    Mac([u8; 6]),
    /// Enslave to a bridge in the same namespace.
    Master(String),
    NoMaster,
    Rename(String),
    MoveTo(NsRef),
}

#[derive(Clone, Debug, PartialEq)]
pub struct SetLink {
    pub ns: NsRef,
    pub name: String,
    pub change: LinkChange,
}

impl SetLink {
    pub fn validate(&self) -> Result<()> {
        match &self.change {
            LinkChange::Rename(new) => validate_ifname(new),
            _ => Ok(()),
        }
    }

    /// Whether the link keeps its name and namespace (the ledger need not follow it).
    pub fn keeps_identity(&self) -> bool {
        !matches!(self.change, LinkChange::Rename(_) | LinkChange::MoveTo(_))
    }

    /// Where the link is after the change.
    pub fn result(&self) -> (NsRef, String) {
        match &self.change {
            LinkChange::Rename(n) => (self.ns.clone(), n.clone()),
            LinkChange::MoveTo(t) => (t.clone(), self.name.clone()),
            _ => (self.ns.clone(), self.name.clone()),
        }
    }

    /// The kernel refused the change with `errno`: say what to do.
    pub fn refused(&self, errno: i32) -> Error {
        let err = Error::new(
            Code::LinkChangeRefused,
            format!("cannot change link {:?} in {} ({})", self.name, self.ns, describe_change(&self.change)),
        )
        .errno(errno);
        match (&self.change, errno) {
            (LinkChange::Rename(new), libc::EEXIST) => err.help(format!("a link named {new:?} already exists there")),
            (LinkChange::Rename(_), libc::EBUSY) => err.help("a link must be down to be renamed: call .down() first"),
            (LinkChange::MoveTo(t), libc::EEXIST) => {
                err.help(format!("{t} already has a link named {:?}: rename one of them first", self.name))
            }
            (LinkChange::Mtu(_), libc::EINVAL) => err.help("the MTU is outside what this kind of link accepts (68..65535 for veth)"),
            (LinkChange::Master(_), _) => err.help("the master must be a bridge in the same namespace as the link"),
            _ => err,
        }
    }

    /// The command, and the words of a step of its own (None: it joins the step before).
    pub fn shell(&self) -> Step {
        let set = Sh::ip(&self.ns).raw("link set").w(&self.name);
        let cmd = match &self.change {
            LinkChange::Up => set.raw("up"),
            LinkChange::Down => set.raw("down"),
            LinkChange::Mtu(m) => set.raw("mtu").w(m.to_string()),
            LinkChange::Mac(m) => set.raw("address").w(format_mac(m)),
            LinkChange::Master(br) => set.raw("master").w(br),
            LinkChange::NoMaster => set.raw("nomaster"),
            LinkChange::Rename(new) => set.raw("name").w(new),
            LinkChange::MoveTo(target) => set.netns(target),
        }
        .done();
        match &self.change {
            LinkChange::MoveTo(t) => Step::new(format!("move {} into {t}", self.name), vec![cmd]),
            LinkChange::Rename(n) => Step::new(format!("rename {} to {n}", self.name), vec![cmd]),
            LinkChange::Master(b) => Step::new(format!("enslave {} to {b}", self.name), vec![cmd]),
            _ => Step::more(vec![cmd]),
        }
    }
}

/// `ip link del NAME` (a veth takes its peer with it).
#[derive(Clone, Debug, PartialEq)]
pub struct DeleteLink {
    pub ns: NsRef,
    pub name: String,
}

impl DeleteLink {
    pub fn shell(&self) -> Step {
        Step::new(format!("delete {}", self.name), vec![Sh::ip(&self.ns).raw("link del").w(&self.name).done()])
    }
}

/// What the ledger keeps of a link the lab created: where it is, its kind, and once it
/// exists its ifindex. `pair` is the ledger id of a veth's other end.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LinkRecord {
    pub ns: NsRef,
    pub name: String,
    pub kind: String,
    pub index: Option<u32>,
    pub pair: Option<u64>,
}

/// The kernel's name for a kind the ledger records (a tap is a "tun" device).
pub fn kernel_kind(kind: &str) -> &str {
    match kind {
        "tap" => "tun",
        k => k,
    }
}

/// A creation refused with `errno`; `names` says which names may be taken.
pub fn create_refused(what: String, names: &str, errno: i32) -> Error {
    let err = Error::new(Code::LinkCreateRefused, what).errno(errno);
    match errno {
        libc::EEXIST => err
            .with_code(Code::NameTaken)
            .help(format!("a link named {names} already exists and does not belong to this lab: choose another name")),
        libc::EOPNOTSUPP => err.with_code(Code::KernelLacksFeature).help("this kernel lacks support for this link kind"),
        _ => err,
    }
}

/// The name a creation wanted is one this lab gave to a link it made already.
pub fn taken_by_the_lab(err: Error, ns: &NsRef, name: &str) -> Error {
    err.with_code(Code::NameTaken).help(format!(
        "this lab already made a link named {name} in {ns}: a second link needs another name (link({}, \"{name}\") is the first)",
        ns.in_script()
    ))
}

/// A link that must exist and does not.
pub fn unknown(ns: &NsRef, name: &str) -> Error {
    Error::new(Code::UnknownLink, format!("unknown link {name:?} in {ns}"))
        .why("no such device (ENODEV)")
        .help(format!("check the name with links({}) or `ip link`", ns.name().unwrap_or("host()")))
}

/// A change to a link that is not the lab's.
pub fn not_owned(ns: &NsRef, name: &str, action: &str, lab: &str) -> Error {
    Error::new(Code::NotOwned, format!("refusing to {action} link {name:?} in {ns}"))
        .why(format!("the link does not belong to lab {lab:?}"))
        .help("nsscript only changes links its lab created or that live in its namespaces; the machine's own links are left alone")
}

pub fn describe_change(change: &LinkChange) -> String {
    match change {
        LinkChange::Up => "up".into(),
        LinkChange::Down => "down".into(),
        LinkChange::Mtu(m) => format!("mtu {m}"),
        LinkChange::Mac(m) => format!("address {}", format_mac(m)),
        LinkChange::Master(b) => format!("master {b}"),
        LinkChange::NoMaster => "nomaster".into(),
        LinkChange::Rename(n) => format!("name {n}"),
        LinkChange::MoveTo(ns) => format!("move to {ns}"),
    }
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}
