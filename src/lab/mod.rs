//! Lab state on disk: the ledger of everything a lab created, written *before* each
//! object is created, so that `down` can remove exactly that, also after SIGKILL.
//!
//! Layout: `/run/nsscript/labs/LAB/ledger.jsonl` (dir 0700, file 0600), one JSON
//! entry per line, appended with a single write each.

pub mod lock;
pub mod teardown;

use crate::error::{Code, Error, Result};
use crate::op::NsRef;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

pub const STATE_DIR: &str = "/run/nsscript/labs";

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

/// One line of the ledger.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum Entry {
    Begin {
        pid: u32,
        script: String,
    },
    Netns {
        id: u64,
        phase: Phase,
        name: String,
        inode: Option<u64>,
    },
    /// A link this lab created. `pair` links the two ends of a veth.
    Link {
        id: u64,
        phase: Phase,
        ns: NsRef,
        name: String,
        kind: String,
        index: Option<u32>,
        pair: Option<u64>,
    },
    /// A link of ours now lives under another name or namespace.
    LinkMoved {
        id: u64,
        ns: NsRef,
        name: String,
        index: u32,
    },
    /// A link of ours was deleted by the script.
    LinkGone {
        id: u64,
    },
    /// An address put on a link that outlives the lab (not ours, in a namespace not ours).
    Addr {
        id: u64,
        phase: Phase,
        ns: NsRef,
        link: String,
        addr: String,
    },
    /// A route in a namespace that outlives the lab. `via` is an IP or `dev NAME`.
    Route {
        id: u64,
        phase: Phase,
        ns: NsRef,
        dest: Option<String>,
        via: String,
    },
    /// A sysctl changed in a namespace that outlives the lab, with the value to restore.
    Sysctl {
        id: u64,
        phase: Phase,
        ns: NsRef,
        key: String,
        old: String,
    },
    // Issue 3: firewall rules and processes.
    /// An iptables change in a namespace that outlives the lab, and how to undo it.
    Fw {
        id: u64,
        phase: Phase,
        ns: NsRef,
        table: String,
        chain: String,
        undo: FwUndo,
    },
    /// A background process of the lab (spawn, dhcp_server). `pid` and `start` (field 22
    /// of /proc/PID/stat) identify it; `files` are its log and lease files.
    Proc {
        id: u64,
        phase: Phase,
        ns: NsRef,
        what: String,
        pid: Option<u32>,
        start: Option<u64>,
        files: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct NetnsRec {
    pub id: u64,
    pub name: String,
    pub inode: Option<u64>,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LinkRec {
    pub id: u64,
    pub ns: NsRef,
    pub name: String,
    pub kind: String,
    pub index: Option<u32>,
    pub pair: Option<u64>,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AddrRec {
    pub id: u64,
    pub ns: NsRef,
    pub link: String,
    pub addr: String,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RouteRec {
    pub id: u64,
    pub ns: NsRef,
    pub dest: Option<String>,
    pub via: String,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SysctlRec {
    pub id: u64,
    pub ns: NsRef,
    pub key: String,
    pub old: String,
    pub phase: Phase,
}

/// How to undo an iptables change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FwUndo {
    /// Delete this rule from the chain (`-D CHAIN RULE`).
    Rule(String),
    /// Put this policy back.
    Policy(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FwRec {
    pub id: u64,
    pub ns: NsRef,
    pub table: String,
    pub chain: String,
    pub undo: FwUndo,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ProcRec {
    pub id: u64,
    pub ns: NsRef,
    pub what: String,
    pub pid: Option<u32>,
    pub start: Option<u64>,
    pub files: Vec<String>,
    pub phase: Phase,
}

/// What a lab holds, replayed from its ledger. Failed entries are dropped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabState {
    pub netns: Vec<NetnsRec>,
    pub links: Vec<LinkRec>,
    pub addrs: Vec<AddrRec>,
    pub routes: Vec<RouteRec>,
    pub sysctls: Vec<SysctlRec>,
    pub fw: Vec<FwRec>,
    pub procs: Vec<ProcRec>,
    next_id: u64,
    /// The highest id applied so far: a higher one is new and needs no search.
    max_applied: u64,
}

impl LabState {
    pub fn apply(&mut self, e: &Entry) {
        let id = match e {
            Entry::Netns { id, .. }
            | Entry::Link { id, .. }
            | Entry::Addr { id, .. }
            | Entry::Route { id, .. }
            | Entry::Sysctl { id, .. }
            | Entry::Fw { id, .. }
            | Entry::Proc { id, .. } => *id,
            _ => 0,
        };
        // Ids only grow: an id above all applied ones needs no search, and an entry
        // almost always follows its own intent (searched from the end), so a lab's
        // ledger loads and grows in linear time. The record goes (back) to the end.
        let seen = id <= self.max_applied;
        fn upsert<T>(v: &mut Vec<T>, seen: bool, id: u64, get_id: impl Fn(&T) -> u64, rec: T, failed: bool) {
            if seen {
                if let Some(at) = v.iter().rposition(|r| get_id(r) == id) {
                    v.remove(at);
                }
            }
            if !failed {
                v.push(rec);
            }
        }
        match e.clone() {
            Entry::Begin { .. } => {}
            Entry::Netns { id, phase, name, inode } => {
                upsert(&mut self.netns, seen, id, |r| r.id, NetnsRec { id, name, inode, phase }, phase == Phase::Failed)
            }
            Entry::Link { id, phase, ns, name, kind, index, pair } => {
                upsert(&mut self.links, seen, id, |r| r.id, LinkRec { id, ns, name, kind, index, pair, phase }, phase == Phase::Failed)
            }
            Entry::LinkMoved { id, ns, name, index } => {
                if let Some(l) = self.links.iter_mut().find(|l| l.id == id) {
                    l.ns = ns;
                    l.name = name;
                    l.index = Some(index);
                }
            }
            Entry::LinkGone { id } => self.links.retain(|l| l.id != id),
            Entry::Addr { id, phase, ns, link, addr } => {
                upsert(&mut self.addrs, seen, id, |r| r.id, AddrRec { id, ns, link, addr, phase }, phase == Phase::Failed)
            }
            Entry::Route { id, phase, ns, dest, via } => {
                upsert(&mut self.routes, seen, id, |r| r.id, RouteRec { id, ns, dest, via, phase }, phase == Phase::Failed)
            }
            Entry::Sysctl { id, phase, ns, key, old } => {
                // Only the first change of a key remembers the value to restore.
                if self.sysctls.iter().any(|s| s.ns == ns && s.key == key && s.id != id) {
                    return;
                }
                upsert(&mut self.sysctls, seen, id, |r| r.id, SysctlRec { id, ns, key, old, phase }, phase == Phase::Failed)
            }
            Entry::Fw { id, phase, ns, table, chain, undo } => {
                upsert(&mut self.fw, seen, id, |r| r.id, FwRec { id, ns, table, chain, undo, phase }, phase == Phase::Failed)
            }
            Entry::Proc { id, phase, ns, what, pid, start, files } => {
                upsert(&mut self.procs, seen, id, |r| r.id, ProcRec { id, ns, what, pid, start, files, phase }, phase == Phase::Failed)
            }
        }
        self.next_id = self.next_id.max(id + 1);
        self.max_applied = self.max_applied.max(id);
    }

    pub fn new_id(&mut self) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    // Searched from the end, here and in `link`: a script mostly works on what it made last.
    pub fn owns_netns(&self, name: &str) -> bool {
        self.netns.iter().rev().any(|n| n.name == name)
    }

    /// True when the lab deletes `ns` at `down` (so whatever is inside goes with it).
    pub fn owns_ns(&self, ns: &NsRef) -> bool {
        match ns {
            NsRef::Host => false,
            NsRef::Named(n) => self.owns_netns(n),
        }
    }

    pub fn link(&self, ns: &NsRef, name: &str) -> Option<&LinkRec> {
        self.links.iter().rev().find(|l| &l.ns == ns && l.name == name)
    }

    /// A link the lab may change or delete: created by it, or inside one of its namespaces.
    pub fn owns_link(&self, ns: &NsRef, name: &str) -> bool {
        self.owns_ns(ns) || self.link(ns, name).is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.netns.is_empty()
            && self.links.is_empty()
            && self.addrs.is_empty()
            && self.routes.is_empty()
            && self.sysctls.is_empty()
            && self.fw.is_empty()
            && self.procs.is_empty()
    }

    /// One line for `nsscript ls`.
    pub fn summary(&self) -> String {
        // Long labs (star(1000)) print a count and the first few names.
        let names = |v: Vec<String>| match v.len() {
            0 => "-".to_string(),
            1..=6 => v.join(","),
            n => format!("{} ({n})", v[..3].join(",") + ",..." + v[n - 1].as_str()),
        };
        format!(
            "netns: {}  links: {}  host changes: {}",
            names(self.netns.iter().map(|n| n.name.clone()).collect()),
            names(self.links.iter().filter(|l| !self.owns_ns(&l.ns)).map(|l| l.name.clone()).collect()),
            self.addrs.len() + self.routes.len() + self.sysctls.len() + self.fw.len()
        ) + if self.procs.is_empty() { String::new() } else { format!("  processes: {}", self.procs.len()) }.as_str()
    }
}

/// Lab names become directory names: same rules as namespace names.
pub fn validate_lab_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::new(Code::InvalidName, format!("invalid lab name {name:?}"))
            .help("lab names use letters, digits, '-', '_' and '.', at most 64 bytes, and do not start with '.'"))
    }
}

pub fn lab_dir(lab: &str) -> PathBuf {
    PathBuf::from(STATE_DIR).join(lab)
}

fn ledger_path(lab: &str) -> PathBuf {
    lab_dir(lab).join("ledger.jsonl")
}

/// An open ledger, appended to as the lab is built.
pub struct Ledger {
    file: File,
    pub lab: String,
}

impl Ledger {
    /// Start the ledger of a new build of `lab`. Refuses when the lab is up.
    pub fn create(lab: &str, script: &str) -> Result<Ledger> {
        validate_lab_name(lab)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(lab_dir(lab))
            .map_err(|e| Error::io(Code::IoFailed, format!("cannot create the state directory of lab {lab:?}"), &e))?;
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
        ledger.append(&Entry::Begin { pid: std::process::id(), script: script.to_string() })?;
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
    validate_lab_name(lab)?;
    let path = ledger_path(lab);
    check_private(lab)?;
    let text = fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::new(Code::LabNotUp, format!("no lab named {lab:?} is up")).help("`nsscript ls` lists the labs that are up")
        } else {
            Error::io(Code::IoFailed, format!("cannot read {}", path.display()), &e)
        }
    })?;
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

pub fn remove(lab: &str) -> Result<()> {
    let dir = lab_dir(lab);
    fs::remove_file(ledger_path(lab)).map_err(|e| Error::io(Code::IoFailed, format!("cannot remove the ledger of lab {lab:?}"), &e))?;
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// The labs that are up, by name.
pub fn list() -> Vec<String> {
    let mut labs: Vec<String> = fs::read_dir(STATE_DIR)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| exists(n)).collect())
        .unwrap_or_default();
    labs.sort();
    labs
}

/// Refuse a ledger another user could have written: the lab directory and the ledger
/// must belong to us and be closed to everyone else (0700 / 0600).
fn check_private(lab: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
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
/// have created, or the ledger was tampered with and nothing is removed.
fn verify(lab: &str, state: &LabState) -> Result<()> {
    use crate::backend::live::netlink::validate_ifname;
    use crate::nsexec::validate_netns_name;
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
    for n in &state.netns {
        validate_netns_name(&n.name).or_else(|e| refuse(format!("namespace {:?}", n.name), e))?;
    }
    for l in &state.links {
        ns_ok(&l.ns)?;
        validate_ifname(&l.name).or_else(|e| refuse(format!("link {:?}", l.name), e))?;
        if l.kind.is_empty() || l.kind.len() > 16 || !l.kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return refuse(format!("link kind {:?}", l.kind), Error::new(Code::LedgerTampered, "not a kind of link"));
        }
    }
    for a in &state.addrs {
        ns_ok(&a.ns)?;
        validate_ifname(&a.link).or_else(|e| refuse(format!("link {:?}", a.link), e))?;
        a.addr.parse::<ipnetwork::IpNetwork>().map_err(|e| {
            Error::new(Code::LedgerTampered, format!("the ledger of lab {lab:?} names an invalid address {:?}", a.addr)).why(e.to_string())
        })?;
    }
    for r in &state.routes {
        ns_ok(&r.ns)?;
        if let Some(d) = &r.dest {
            d.parse::<ipnetwork::IpNetwork>().map_err(|e| {
                Error::new(Code::LedgerTampered, format!("the ledger of lab {lab:?} names an invalid route {d:?}")).why(e.to_string())
            })?;
        }
        match r.via.strip_prefix("dev ") {
            Some(dev) => validate_ifname(dev).or_else(|e| refuse(format!("route device {dev:?}"), e))?,
            None => {
                r.via.parse::<std::net::IpAddr>().map_err(|e| {
                    Error::new(Code::LedgerTampered, format!("the ledger of lab {lab:?} names an invalid gateway {:?}", r.via))
                        .why(e.to_string())
                })?;
            }
        }
    }
    for s in &state.sysctls {
        ns_ok(&s.ns)?;
        if let Err(e) = crate::backend::live::sysctl::key_path(&s.key) {
            return refuse(format!("sysctl key {:?}", s.key), e);
        }
    }
    for f in &state.fw {
        ns_ok(&f.ns)?;
    }
    for p in &state.procs {
        ns_ok(&p.ns)?;
    }
    Ok(())
}
