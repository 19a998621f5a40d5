//! Lab state on disk: the ledger of everything a lab created, written *before* each
//! object is created, so that `down` can remove exactly that, also after SIGKILL.
//!
//! Layout: `/run/nsscript/labs/LAB/ledger.jsonl` (dir 0700, file 0600), one JSON
//! entry per line, appended with a single write each. Every line is one [`Entry`]: an
//! id, a phase, and the object (an op family's record, see `crate::ops`). This module
//! knows the records, not the kernel: taking a lab down lives in the live backend.

pub mod lock;
pub mod report;

use crate::error::{Code, Error, Result};
use crate::ops::address::AddAddr;
use crate::ops::firewall::FwRecord;
use crate::ops::link::LinkRecord;
use crate::ops::names::{validate_ifname, validate_lab_name, validate_netns_name};
use crate::ops::netns::NetnsRecord;
use crate::ops::process::ProcRecord;
use crate::ops::qdisc::{QdiscRecord, LAB_QDISC_KINDS};
use crate::ops::route::AddRoute;
use crate::ops::rule::AddRule;
use crate::ops::sysctl::SysctlRecord;
use crate::ops::NsRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Where nsscript keeps its state: `/run/nsscript` (a tmpfs: it goes with a reboot, as
/// the namespaces do). Tests of the ledger use a directory of their own.
static STATE_ROOT: OnceLock<PathBuf> = OnceLock::new();

pub fn state_root() -> &'static PathBuf {
    STATE_ROOT.get_or_init(|| PathBuf::from("/run/nsscript"))
}

/// Keep state under `root` instead (before anything read or wrote state; unit tests).
#[cfg(test)]
pub fn set_state_root(root: PathBuf) -> bool {
    STATE_ROOT.set(root).is_ok()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// About to be created: if the run dies now, the object may or may not exist.
    Intent,
    /// Created; the identity fields are filled in.
    Done,
    /// The kernel refused: nothing was created.
    Failed,
}

impl Phase {
    fn done() -> Phase {
        Phase::Done
    }
}

/// One line of the ledger. (The first line, [`Object::Begin`], needs no id or phase.)
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Entry {
    #[serde(default)]
    pub id: u64,
    #[serde(default = "Phase::done")]
    pub phase: Phase,
    #[serde(flatten)]
    pub object: Object,
}

impl Entry {
    pub fn intent(id: u64, object: Object) -> Entry {
        Entry { id, phase: Phase::Intent, object }
    }

    /// The same entry in another phase.
    pub fn at(&self, phase: Phase) -> Entry {
        Entry { phase, ..self.clone() }
    }
}

/// What an entry records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Object {
    /// The first line: which run wrote the ledger.
    Begin {
        pid: u32,
        script: String,
        /// Where `nsscript check` finds the script again: its absolute path, and the
        /// `--var`s it ran with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        vars: Vec<(String, String)>,
    },
    Netns(NetnsRecord),
    /// A link this lab created.
    Link(LinkRecord),
    /// A link of ours (the entry's id) now lives under another name or namespace.
    LinkMoved {
        ns: NsRef,
        name: String,
        index: u32,
    },
    /// A link of ours (the entry's id) was deleted by the script.
    LinkGone,
    /// An address put on a link that outlives the lab (not ours, in a namespace not ours).
    Addr(AddAddr),
    /// A route in a namespace that outlives the lab.
    Route(AddRoute),
    /// A policy rule in a namespace that outlives the lab.
    Rule(AddRule),
    /// A sysctl changed in a namespace that outlives the lab, with the value to restore.
    Sysctl(SysctlRecord),
    /// An iptables change in a namespace that outlives the lab, and how to undo it.
    Fw(FwRecord),
    /// A root qdisc set on a link that outlives the lab (identity first: its ifindex).
    Qdisc(QdiscRecord),
    /// A qdisc of ours (the entry's id) was removed by the script (`unshape()`).
    QdiscGone,
    /// A background process of the lab (spawn, dhcp_server).
    Proc(ProcRecord),
    /// A namespace that outlives the lab (the host's, or one named with `ns()`) and that
    /// the lab changes, with its identity: written before the first change there, so
    /// `down` touches nothing in it unless it is still that namespace.
    Outside {
        ns: NsRef,
        cookie: u64,
    },
}

/// What a lab holds, replayed from its ledger: each object's latest entry, by id
/// (ids grow with creation, so this is creation order). Failed entries are dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabState {
    entries: BTreeMap<u64, Entry>,
    /// Lookups a build makes at every step: namespace by name, link by place and name.
    netns_by_name: HashMap<String, u64>,
    link_by_place: HashMap<(NsRef, String), u64>,
    /// The cookie of each namespace outside the lab that it changes.
    outside: HashMap<NsRef, u64>,
    next_id: u64,
}

macro_rules! records {
    ($(#[$doc:meta])* $fn:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $fn(&self) -> impl DoubleEndedIterator<Item = (&Entry, &$ty)> + '_ {
            self.entries.values().filter_map(|e| match &e.object {
                Object::$variant(r) => Some((e, r)),
                _ => None,
            })
        }
    };
}

impl LabState {
    pub fn apply(&mut self, e: &Entry) {
        self.next_id = self.next_id.max(e.id + 1);
        match &e.object {
            Object::Begin { .. } => {}
            Object::LinkMoved { ns, name, index } => {
                if let Some(Object::Link(l)) = self.entries.get_mut(&e.id).map(|x| &mut x.object) {
                    self.link_by_place.remove(&(l.ns.clone(), l.name.clone()));
                    l.ns = ns.clone();
                    l.name = name.clone();
                    l.index = Some(*index);
                    self.link_by_place.insert((ns.clone(), name.clone()), e.id);
                }
            }
            Object::LinkGone | Object::QdiscGone => self.forget(e.id),
            Object::Outside { ns, cookie } => {
                self.outside.entry(ns.clone()).or_insert(*cookie);
            }
            Object::Sysctl(s)
                // Only the first change of a key remembers the value to restore.
                if self.sysctls().any(|(x, r)| r.ns == s.ns && r.key == s.key && x.id != e.id) => {}
            _ if e.phase == Phase::Failed => self.forget(e.id),
            object => {
                // A name the lab already holds keeps pointing at the object that holds it
                // (a second create of the name can only fail).
                match object {
                    Object::Netns(n) => {
                        self.netns_by_name.entry(n.name.clone()).or_insert(e.id);
                    }
                    Object::Link(l) => {
                        self.link_by_place.entry((l.ns.clone(), l.name.clone())).or_insert(e.id);
                    }
                    _ => {}
                }
                self.entries.insert(e.id, e.clone());
            }
        }
    }

    /// Drop an object (gone, or never made). Its name stays indexed when it now names
    /// another object of the lab (a failed create of a name the lab already holds).
    fn forget(&mut self, id: u64) {
        match self.entries.remove(&id).map(|e| e.object) {
            Some(Object::Netns(n)) if self.netns_by_name.get(&n.name) == Some(&id) => {
                self.netns_by_name.remove(&n.name);
            }
            Some(Object::Link(l)) if self.link_by_place.get(&(l.ns.clone(), l.name.clone())) == Some(&id) => {
                self.link_by_place.remove(&(l.ns, l.name));
            }
            _ => {}
        }
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> + '_ {
        self.entries.values()
    }

    records!(netns, Netns, NetnsRecord);
    records!(links, Link, LinkRecord);
    records!(addrs, Addr, AddAddr);
    records!(routes, Route, AddRoute);
    records!(rules, Rule, AddRule);
    records!(sysctls, Sysctl, SysctlRecord);
    records!(fw, Fw, FwRecord);
    records!(qdiscs, Qdisc, QdiscRecord);
    records!(procs, Proc, ProcRecord);

    /// The identity recorded for a namespace outside the lab that it changes.
    pub fn outside_cookie(&self, ns: &NsRef) -> Option<u64> {
        self.outside.get(ns).copied()
    }

    pub fn owns_netns(&self, name: &str) -> bool {
        self.netns_by_name.contains_key(name)
    }

    /// True when the lab deletes `ns` at `down` (so whatever is inside goes with it).
    pub fn owns_ns(&self, ns: &NsRef) -> bool {
        match ns {
            NsRef::Host => false,
            NsRef::Named(n) => self.owns_netns(n),
        }
    }

    /// The link the lab created at this place, with its entry.
    pub fn link(&self, ns: &NsRef, name: &str) -> Option<(&Entry, &LinkRecord)> {
        let id = self.link_by_place.get(&(ns.clone(), name.to_string()))?;
        match self.entries.get(id) {
            Some(e @ Entry { object: Object::Link(l), .. }) => Some((e, l)),
            _ => None,
        }
    }

    /// The link record with this id.
    pub fn link_by_id(&self, id: u64) -> Option<&LinkRecord> {
        match self.entries.get(&id).map(|e| &e.object) {
            Some(Object::Link(l)) => Some(l),
            _ => None,
        }
    }

    /// A link the lab may change or delete: created by it, or inside one of its namespaces.
    pub fn owns_link(&self, ns: &NsRef, name: &str) -> bool {
        self.owns_ns(ns) || self.link(ns, name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn netns_names(&self) -> Vec<String> {
        self.netns().map(|(_, n)| n.name.clone()).collect()
    }

    /// One line for `nsscript ls`.
    pub fn summary(&self) -> String {
        // Long labs (star(1000)) print a count and the first few names.
        let names = |v: Vec<String>| match v.len() {
            0 => "-".to_string(),
            1..=6 => v.join(","),
            n => format!("{} ({n})", v[..3].join(",") + ",..." + v[n - 1].as_str()),
        };
        let host_changes = self.addrs().count()
            + self.routes().count()
            + self.rules().count()
            + self.sysctls().count()
            + self.fw().count()
            + self.qdiscs().count();
        let procs = self.procs().count();
        format!(
            "netns: {}  links: {}  host changes: {host_changes}",
            names(self.netns_names()),
            names(self.links().filter(|(_, l)| !self.owns_ns(&l.ns)).map(|(_, l)| l.name.clone()).collect()),
        ) + if procs == 0 { String::new() } else { format!("  processes: {procs}") }.as_str()
    }
}

fn labs_dir() -> PathBuf {
    state_root().join("labs")
}

/// Make (0700) and check every directory from the state root down to `dir`: each must be
/// a real directory (no symbolic link is followed: lab state written through a link
/// could land anywhere, and a ledger read through one could be anyone's), ours, and
/// closed to other users' writes.
pub fn state_dir(dir: &std::path::Path) -> Result<()> {
    let root = state_root();
    let Ok(below) = dir.strip_prefix(root) else {
        return Err(Error::new(Code::Internal, format!("{} is not under {}", dir.display(), root.display())));
    };
    let mut path = root.clone();
    let mut levels = vec![path.clone()];
    for part in below.components() {
        path.push(part);
        levels.push(path.clone());
    }
    for level in levels {
        match fs::DirBuilder::new().mode(0o700).create(&level) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(Code::IoFailed, format!("cannot create {}", dir.display()), &e)),
        }
        if fs::symlink_metadata(&level).is_ok_and(|m| !m.is_dir() && !m.file_type().is_symlink()) {
            let e = std::io::Error::from_raw_os_error(libc::ENOTDIR);
            return Err(Error::io(Code::IoFailed, format!("cannot create {}", dir.display()), &e));
        }
        check_dir(&level)?;
    }
    Ok(())
}

/// A state directory that exists must be a real directory of ours that others cannot write.
fn check_dir(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::symlink_metadata(path) else { return Ok(()) };
    let me = nix::unistd::geteuid().as_raw();
    let why = if meta.file_type().is_symlink() {
        let to = fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default();
        format!("{} is a symbolic link (to {to})", path.display())
    } else if !meta.is_dir() {
        format!("{} is not a directory", path.display())
    } else if meta.uid() != me {
        format!("{} belongs to uid {}, not to this user (uid {me})", path.display(), meta.uid())
    } else if meta.mode() & 0o022 != 0 {
        format!("{} is writable by other users (mode {:o})", path.display(), meta.mode() & 0o7777)
    } else {
        return Ok(());
    };
    Err(Error::new(Code::LedgerTampered, format!("refusing to use the lab state under {}", state_root().display())).why(why).help(format!(
        "nothing was read or written there: lab state must live in real directories private to their owner; \
             inspect {} and remove what is wrong by hand",
        path.display()
    )))
}

pub fn lab_dir(lab: &str) -> PathBuf {
    labs_dir().join(lab)
}

fn ledger_path(lab: &str) -> PathBuf {
    lab_dir(lab).join("ledger.jsonl")
}

/// The script a lab is built from, as its ledger's first line records it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Source {
    /// As the user named it (reports show this).
    pub shown: String,
    /// Its absolute path, when it is a file.
    pub path: Option<String>,
    pub vars: Vec<(String, String)>,
}

/// The text of lab `lab`'s ledger, once its name and the privacy of its directory are
/// checked; a lab without one is not up.
fn read_ledger(lab: &str) -> Result<String> {
    validate_lab_name(lab)?;
    check_private(lab)?;
    let path = ledger_path(lab);
    fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(Code::LabNotUp, format!("no lab named {lab:?} is up")).help("`nsscript ls` lists the labs that are up")
        } else {
            Error::io(Code::IoFailed, format!("cannot read {}", path.display()), &e)
        }
    })
}

/// The script lab `lab` was built from (its ledger's first line).
pub fn source(lab: &str) -> Result<Source> {
    let text = read_ledger(lab)?;
    let path = ledger_path(lab);
    match text.lines().next().and_then(|l| serde_json::from_str::<Entry>(l).ok()).map(|e| e.object) {
        Some(Object::Begin { script, path, vars, .. }) => Ok(Source { shown: script, path, vars }),
        _ => Err(Error::new(Code::LedgerTampered, format!("the ledger of lab {lab:?} does not start with the run that wrote it"))
            .help(format!("inspect {}", path.display()))),
    }
}

/// An open ledger, appended to as the lab is built.
pub struct Ledger {
    file: File,
    pub lab: String,
}

impl Ledger {
    /// Start the ledger of a new build of `lab`. Refuses when the lab is up.
    pub fn create(lab: &str, source: &Source) -> Result<Ledger> {
        validate_lab_name(lab)?;
        state_dir(&lab_dir(lab))?;
        let file = OpenOptions::new().append(true).create_new(true).mode(0o600).open(ledger_path(lab)).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(Code::LabUp, format!("lab {lab:?} is already up")).help(format!(
                    "take it down first with `nsscript down {lab}`, rebuild it with `--replace`, or give this run another name with --name"
                ))
            } else {
                Error::io(Code::IoFailed, format!("cannot create the ledger of lab {lab:?}"), &e)
            }
        })?;
        let mut ledger = Ledger { file, lab: lab.to_string() };
        ledger.append(&Entry {
            id: 0,
            phase: Phase::Done,
            object: Object::Begin {
                pid: std::process::id(),
                script: source.shown.clone(),
                path: source.path.clone(),
                vars: source.vars.clone(),
            },
        })?;
        Ok(ledger)
    }

    pub fn append(&mut self, e: &Entry) -> Result<()> {
        self.append_all(std::slice::from_ref(e))
    }

    /// Several entries in one write: a killed run leaves whole lines (O_APPEND).
    pub fn append_all(&mut self, entries: &[Entry]) -> Result<()> {
        let mut text = String::new();
        for e in entries {
            text.push_str(&serde_json::to_string(e).expect("ledger entries serialize"));
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .map_err(|err| Error::io(Code::IoFailed, format!("cannot write the ledger of lab {:?}", self.lab), &err))
    }
}

pub fn exists(lab: &str) -> bool {
    ledger_path(lab).exists()
}

/// Read a lab's ledger. A line that does not parse makes the whole ledger untrusted.
pub fn load(lab: &str) -> Result<LabState> {
    let text = read_ledger(lab)?;
    let path = ledger_path(lab);
    let mut state = LabState::default();
    let lines = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => state.apply(&e),
            // A line cut short by a kill mid-write can only be the last one.
            Err(_) if i + 1 == lines && !text.ends_with('\n') => {}
            Err(err) => {
                return Err(Error::new(Code::LedgerTampered, format!("the ledger of lab {lab:?} is damaged at line {}", i + 1))
                    .why(err.to_string())
                    .help(format!("nothing was removed; inspect {} and remove what is left by hand", path.display())))
            }
        }
    }
    verify(lab, &state)?;
    Ok(state)
}

/// Remove a lab's state: what a killed run may have left in its directory (a hook
/// script, a log), then the ledger, then the directory. Everything in it is the lab's
/// own: the directory is private to its owner (see [`check_private`]).
pub fn remove(lab: &str) -> Result<()> {
    let dir = lab_dir(lab);
    let ledger = ledger_path(lab);
    if let Ok(rd) = fs::read_dir(&dir) {
        for f in rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| *p != ledger) {
            let _ = fs::remove_file(f);
        }
    }
    fs::remove_file(&ledger).map_err(|e| Error::io(Code::IoFailed, format!("cannot remove the ledger of lab {lab:?}"), &e))?;
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// The labs that are up, by name (none when the state directories are not to be trusted).
pub fn list() -> Vec<String> {
    if [state_root().clone(), labs_dir()].iter().any(|d| check_dir(d).is_err()) {
        return Vec::new();
    }
    let names: Vec<String> = fs::read_dir(labs_dir())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let (mut labs, without_ledger): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| exists(n));
    for name in without_ledger {
        finish_interrupted_remove(&name);
    }
    labs.sort();
    labs
}

/// A lab directory without a ledger is what a `down` killed between removing the ledger
/// and the directory leaves (see [`remove`]): it goes, if it is empty and no run holds
/// the lab's lock (a build that has just made the directory and not yet its ledger
/// holds it).
fn finish_interrupted_remove(name: &str) {
    if crate::ops::names::validate_lab_name(name).is_err() {
        return;
    }
    if let Ok(_lock) = lock::lab(name, "finishing an interrupted down") {
        if !exists(name) {
            let _ = fs::remove_dir(lab_dir(name));
        }
    }
}

/// Refuse a ledger another user could have written: the lab directory and the ledger
/// must belong to us and be closed to everyone else (0700 / 0600).
fn check_private(lab: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    check_dir(state_root())?;
    check_dir(&labs_dir())?;
    let me = nix::unistd::geteuid().as_raw();
    for path in [lab_dir(lab), ledger_path(lab)] {
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        let open = meta.mode() & 0o077 != 0;
        if meta.uid() != me || open || meta.file_type().is_symlink() {
            return Err(Error::new(Code::LedgerTampered, format!("refusing to trust the ledger of lab {lab:?}"))
                .why(format!(
                    "{} is {} (owner uid {}, mode {:o}); lab state must be private to its owner (0700 / 0600)",
                    path.display(),
                    if meta.file_type().is_symlink() {
                        "a symbolic link"
                    } else if open {
                        "open to other users"
                    } else {
                        "owned by another user"
                    },
                    meta.uid(),
                    meta.mode() & 0o7777
                ))
                .help(format!(
                    "nothing was removed: someone else may have written it; inspect {} and remove what is left by hand",
                    path.display()
                )));
        }
    }
    Ok(())
}

/// A ledger names what `down` will delete: every name in it must be one nsscript could
/// have created, or the ledger was tampered with and nothing is removed. (Addresses,
/// routes and the like were checked as they were read.)
fn verify(lab: &str, state: &LabState) -> Result<()> {
    let refuse = |what: String, e: Error| {
        Err(Error::new(Code::LedgerTampered, format!("the ledger of lab {lab:?} names an invalid {what}")).why(e.to_string()).help(
            format!(
                "nothing was removed: the ledger was damaged or tampered with; inspect {} and remove what is left by hand",
                ledger_path(lab).display()
            ),
        ))
    };
    let ns_ok = |ns: &NsRef| match ns {
        NsRef::Host => Ok(()),
        NsRef::Named(n) => validate_netns_name(n).or_else(|e| refuse(format!("namespace {n:?}"), e)),
    };
    let link_ok = |name: &str| validate_ifname(name).or_else(|e| refuse(format!("link {name:?}"), e));
    for e in state.entries() {
        match &e.object {
            Object::Begin { .. } | Object::LinkGone | Object::QdiscGone => {}
            Object::Netns(n) => validate_netns_name(&n.name).or_else(|e| refuse(format!("namespace {:?}", n.name), e))?,
            Object::Link(l) => {
                ns_ok(&l.ns)?;
                link_ok(&l.name)?;
                if l.kind.is_empty() || l.kind.len() > 16 || !l.kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return refuse(format!("link kind {:?}", l.kind), Error::new(Code::LedgerTampered, "not a kind of link"));
                }
            }
            Object::LinkMoved { ns, name, .. } => {
                ns_ok(ns)?;
                link_ok(name)?;
            }
            Object::Addr(a) => {
                ns_ok(&a.ns)?;
                link_ok(&a.link)?;
            }
            Object::Route(r) => {
                ns_ok(&r.ns)?;
                for dev in [r.device()].into_iter().flatten() {
                    validate_ifname(dev).or_else(|e| refuse(format!("route device {dev:?}"), e))?;
                }
            }
            Object::Rule(r) => {
                ns_ok(&r.ns)?;
                for dev in [&r.iif, &r.oif].into_iter().flatten() {
                    validate_ifname(dev).or_else(|e| refuse(format!("rule device {dev:?}"), e))?;
                }
            }
            Object::Sysctl(s) => {
                ns_ok(&s.ns)?;
                if let Err(e) = crate::ops::sysctl::key_path(&s.key) {
                    return refuse(format!("sysctl key {:?}", s.key), e);
                }
            }
            Object::Fw(f) => {
                ns_ok(&f.ns)?;
                if let Err(e) = crate::ops::firewall::validate_table_chain(&f.table, &f.chain) {
                    return refuse(format!("iptables chain {:?} (table {:?})", f.chain, f.table), e);
                }
            }
            Object::Qdisc(q) => {
                ns_ok(&q.ns)?;
                link_ok(&q.link)?;
                if !LAB_QDISC_KINDS.contains(&q.kind.as_str()) {
                    return refuse(format!("qdisc kind {:?}", q.kind), Error::new(Code::LedgerTampered, "not a qdisc nsscript sets"));
                }
            }
            Object::Outside { ns, .. } => ns_ok(ns)?,
            Object::Proc(p) => {
                ns_ok(&p.ns)?;
                // killpg(1) would be kill(-1): every process on the machine.
                if p.pid.is_some_and(|pid| pid <= 1) {
                    return refuse(
                        format!("process id {}", p.pid.unwrap_or(0)),
                        Error::new(Code::LedgerTampered, "no lab process is pid 0 or 1"),
                    );
                }
                // `down` removes these files: only ever the lab's own.
                let own = lab_dir(lab);
                for f in &p.files {
                    let path = std::path::Path::new(f);
                    let inside = path.parent() == Some(own.as_path())
                        && path.file_name().is_some_and(|n| n != "ledger.jsonl" && !n.to_string_lossy().starts_with('.'));
                    if !inside {
                        return refuse(
                            format!("process file {f:?}"),
                            Error::new(Code::LedgerTampered, format!("a lab's process files live in {}", own.display())),
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::route::RouteVia;

    fn link(ns: &str, name: &str) -> Object {
        Object::Link(LinkRecord { ns: NsRef::named(ns), name: name.into(), kind: "veth".into(), index: None, pair: None })
    }

    #[test]
    fn entries_replay_to_what_the_lab_holds() {
        let mut s = LabState::default();
        let ns = Entry::intent(1, Object::Netns(NetnsRecord { name: "a".into(), cookie: Some(7) }));
        s.apply(&ns);
        assert!(s.owns_netns("a"));
        s.apply(&ns.at(Phase::Done));
        assert_eq!(s.netns().map(|(e, n)| (e.phase, n.cookie)).collect::<Vec<_>>(), [(Phase::Done, Some(7))]);
        s.apply(&Entry::intent(2, link("a", "eth0")));
        s.apply(&Entry { id: 2, phase: Phase::Done, object: Object::LinkMoved { ns: NsRef::named("a"), name: "lan".into(), index: 5 } });
        assert!(s.link(&NsRef::named("a"), "eth0").is_none());
        assert_eq!(s.link(&NsRef::named("a"), "lan").map(|(_, l)| l.index), Some(Some(5)));
        s.apply(&Entry::intent(3, link("a", "eth1")));
        s.apply(&Entry::intent(3, link("a", "eth1")).at(Phase::Failed));
        assert!(s.link(&NsRef::named("a"), "eth1").is_none());
        s.apply(&Entry { id: 2, phase: Phase::Done, object: Object::LinkGone });
        assert_eq!(s.links().count(), 0);
        assert_eq!(s.new_id(), 4);
        // Only the first change of a sysctl remembers the value to restore.
        let sysctl = |id, old: &str| {
            Entry::intent(id, Object::Sysctl(SysctlRecord { ns: NsRef::Host, key: "net.ipv4.ip_forward".into(), old: old.into() }))
        };
        s.apply(&sysctl(4, "0"));
        s.apply(&sysctl(5, "1"));
        assert_eq!(s.sysctls().map(|(_, r)| r.old.as_str()).collect::<Vec<_>>(), ["0"]);
    }

    #[test]
    fn a_failed_create_of_a_name_the_lab_holds_keeps_the_first() {
        let mut s = LabState::default();
        s.apply(&Entry { id: 1, phase: Phase::Done, object: link("a", "v1") });
        s.apply(&Entry::intent(2, link("a", "v1")));
        s.apply(&Entry::intent(2, link("a", "v1")).at(Phase::Failed));
        assert_eq!(s.link(&NsRef::named("a"), "v1").map(|(e, _)| e.id), Some(1));
    }

    #[test]
    fn ledger_lines_are_flat_json() {
        let e = Entry::intent(3, link("vm1", "eth0"));
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"id":3,"phase":"intent","entry":"link","ns":{"Named":"vm1"},"name":"eth0","kind":"veth","index":null,"pair":null}"#
        );
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), e);
        let route = Entry::intent(
            4,
            Object::Route(AddRoute::new(NsRef::Host, Some("10.1.0.0/24".parse().unwrap()), RouteVia::Gateway("10.0.0.1".parse().unwrap()))),
        );
        assert_eq!(serde_json::from_str::<Entry>(&serde_json::to_string(&route).unwrap()).unwrap(), route);
        // A damaged address makes the line (and so the ledger) unreadable.
        assert!(serde_json::from_str::<Entry>(
            r#"{"id":4,"phase":"done","entry":"addr","ns":"Host","link":"eth0","addr":"10.0.0.300/24"}"#
        )
        .is_err());
    }
}
