//! iptables (IPv4) through the `iptables` crate, run inside the right namespace: the
//! crate starts `iptables` processes, and a child inherits the namespace of the thread
//! that forks it, so every call runs on a thread that entered the namespace
//! (`nsexec::in_netns`). Rules are appended only when missing (`iptables -C`), and a
//! change to a namespace that outlives the lab is written to the ledger first, with
//! how to undo it.

use super::LiveBackend;
use crate::error::{Code, Error, Result};
use crate::lab::teardown::Report;
use crate::lab::{Entry, FwUndo, LabState, Phase};
use crate::nsexec;
use crate::op::{FwOp, NsRef, Outcome};
use iptables::IPTables;
use std::os::fd::BorrowedFd;

type IptResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The crate's handle (it learns the iptables version once).
fn ipt() -> &'static IPTables {
    // iptables::new() runs `iptables --version` to learn whether -C and -w exist: both
    // do since 1.4.20 (Debian 12 has 1.8.9), and the probe cost a process per run. A
    // missing iptables shows at the first command instead (see `refused`).
    static IPT: IPTables = IPTables { cmd: "iptables", has_check: true, has_wait: true, is_numeric: false };
    &IPT
}

/// iptables' own message, verbatim, under our explanation.
fn refused(what: String, e: Box<dyn std::error::Error>) -> Error {
    match e.downcast_ref::<iptables::error::IptablesError>() {
        Some(ie) => {
            let msg = ie.msg.trim();
            Error::new(Code::IptablesRefused, what)
                .why(if msg.is_empty() { format!("iptables exited with code {}", ie.code) } else { msg.to_string() })
                .help(
                    "the message is iptables' own: check the rule's options (`man iptables`, `man iptables-extensions`), \
                 or try the same arguments with `ip netns exec NS iptables ...`",
                )
        }
        None => {
            let err = Error::new(Code::IptablesRefused, what).why(e.to_string());
            match e.downcast_ref::<std::io::Error>() {
                Some(io) if io.kind() == std::io::ErrorKind::NotFound => err
                    .with_code(Code::ProgramMissing)
                    .why("iptables is not installed")
                    .help("install the Debian package iptables: apt-get install iptables"),
                _ => err,
            }
        }
    }
}

/// Run `f` with the crate's handle on a thread inside `ns`.
fn within<T: Send>(
    ns: BorrowedFd<'_>,
    what: impl Fn() -> String + Send + Sync,
    f: impl FnOnce(&IPTables) -> IptResult<T> + Send,
) -> Result<T> {
    let ipt = ipt();
    nsexec::in_netns(ns, || f(ipt).map_err(|e| refused(what(), e)))
}

pub fn exists(ns: BorrowedFd<'_>, table: &str, chain: &str, rule: &str) -> Result<bool> {
    within(ns, || format!("cannot check the rule -t {table} -C {chain} {rule}"), |i| i.exists(table, chain, rule))
}

/// The policy of a built-in chain, from `iptables -S CHAIN` (no name lookups).
pub fn policy(ns: BorrowedFd<'_>, table: &str, chain: &str) -> Result<String> {
    let lines = within(ns, || format!("cannot read the policy of {chain} (table {table})"), |i| i.list(table, chain))?;
    let prefix = format!("-P {chain} ");
    Ok(lines.iter().find_map(|l| l.strip_prefix(&prefix).map(|p| p.trim().to_string())).unwrap_or_else(|| "ACCEPT".into()))
}

/// Quote the words of a rule the way the crate splits them back (`"a b"` stays one word).
pub fn join_rule(words: &[String]) -> String {
    words.iter().map(|w| if w.contains(' ') || w.is_empty() { format!("\"{w}\"") } else { w.clone() }).collect::<Vec<_>>().join(" ")
}

impl LiveBackend {
    pub(super) fn apply_fw(&mut self, ns: NsRef, op: FwOp) -> Result<Outcome> {
        match op {
            FwOp::Append { table, chain, rule } => self.add_rule(ns, table, chain, rule, None),
            FwOp::Insert { table, chain, rule, pos } => self.add_rule(ns, table, chain, rule, Some(pos)),
            FwOp::Policy { table, chain, policy } => self.set_policy(ns, table, chain, policy),
            FwOp::Raw { args } => {
                let (table, rest) = split_table(&args);
                let command = join_rule(&rest);
                let out = within(
                    self.nl.ns_fd(&ns)?,
                    || format!("iptables {} failed in {ns}", args.join(" ")),
                    |i| {
                        let out = i.execute(&table, &command)?;
                        if !out.status.success() {
                            return Err(Box::new(iptables::error::IptablesError::from(out)) as Box<dyn std::error::Error>);
                        }
                        Ok(out)
                    },
                )?;
                Ok(Outcome::Text(String::from_utf8_lossy(&out.stdout).into_owned()))
            }
        }
    }

    fn add_rule(&mut self, ns: NsRef, table: String, chain: String, rule: String, pos: Option<u32>) -> Result<Outcome> {
        if exists(self.nl.ns_fd(&ns)?, &table, &chain, &rule)? {
            return Ok(Outcome::Done);
        }
        let add = |b: &mut LiveBackend| {
            let (t, c, r) = (&table, &chain, &rule);
            within(
                b.nl.ns_fd(&ns)?,
                || format!("iptables refused the rule `-t {t} {} {c} {r}` in {ns}", if pos.is_some() { "-I" } else { "-A" }),
                |i| match pos {
                    Some(p) => i.insert(t, c, r, p as i32),
                    None => i.append(t, c, r),
                },
            )
        };
        self.recorded_fw(&ns, &table, &chain, FwUndo::Rule(rule.clone()), add)?;
        Ok(Outcome::Done)
    }

    /// Apply a firewall change: recorded in the ledger (with how to undo it) when it
    /// lives in a namespace that outlives the lab; otherwise it goes with the namespace.
    fn recorded_fw(
        &mut self,
        ns: &NsRef,
        table: &str,
        chain: &str,
        undo: FwUndo,
        apply: impl FnOnce(&mut LiveBackend) -> Result<()>,
    ) -> Result<()> {
        if self.state.owns_ns(ns) {
            return apply(self);
        }
        let id = self.state.new_id();
        let intent = Entry::Fw { id, phase: Phase::Intent, ns: ns.clone(), table: table.to_string(), chain: chain.to_string(), undo };
        self.created(intent, apply, |_, e| e)
    }

    fn set_policy(&mut self, ns: NsRef, table: String, chain: String, new: String) -> Result<Outcome> {
        let old = policy(self.nl.ns_fd(&ns)?, &table, &chain)?;
        if old == new {
            return Ok(Outcome::Done);
        }
        let set = |b: &mut LiveBackend| {
            within(
                b.nl.ns_fd(&ns)?,
                || format!("iptables refused the policy {new} for {chain} (table {table}) in {ns}"),
                |i| i.set_policy(&table, &chain, &new),
            )
        };
        self.recorded_fw(&ns, &table, &chain, FwUndo::Policy(old), set)?;
        if table == "filter" && chain == "FORWARD" && new == "DROP" {
            let bridges: Vec<String> =
                self.state.links.iter().filter(|l| l.ns == ns && l.kind == "bridge").map(|l| l.name.clone()).collect();
            for br in bridges {
                self.warn_bridge_filtering(&ns, &br);
            }
        }
        Ok(Outcome::Done)
    }

    /// The pitfall of KERNEL.md: with bridge-nf-call-iptables=1 (br_netfilter), frames
    /// between the ports of a bridge traverse the FORWARD chain of the bridge's
    /// namespace; with policy DROP the namespaces on the bridge cannot talk. We do not
    /// open the firewall behind the user's back: we say what is wrong and what to add.
    pub(super) fn warn_bridge_filtering(&mut self, ns: &NsRef, bridge: &str) {
        let Ok(fd) = self.nl.ns_fd(ns) else { return };
        let on = super::sysctl::read(fd, "net.bridge.bridge-nf-call-iptables").map(|v| v == "1").unwrap_or(false);
        if !on || !forward_drops(fd) {
            return;
        }
        let target = match ns {
            NsRef::Host => "host()".to_string(),
            NsRef::Named(n) => format!("netns(\"{n}\")"),
        };
        crate::warnings::warning!(
            "warning: bridge {bridge} in {ns}: the FORWARD policy there is DROP and net.bridge.bridge-nf-call-iptables is 1, \
             so traffic between the bridge's ports is dropped.\n  fix: forward_accept({target}, #{{ iif: \"{bridge}\", oif: \"{bridge}\" }}) \
             (removed at down), or {target}.sysctl(\"net.bridge.bridge-nf-call-iptables\", 0) in a namespace of the lab"
        );
    }
}

/// `-t nat -A X` -> ("nat", ["-A", "X"]); no -t: the filter table.
fn split_table(args: &[String]) -> (String, Vec<String>) {
    let mut table = "filter".to_string();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "-t" || a == "--table" {
            if let Some(t) = it.next() {
                table = t.clone();
            }
        } else if let Some(t) = a.strip_prefix("--table=") {
            table = t.to_string();
        } else if let Some(t) = a.strip_prefix("-t").filter(|t| !t.is_empty() && !a.starts_with("--")) {
            table = t.to_string();
        } else {
            rest.push(a.clone());
        }
    }
    (table, rest)
}

/// Undo the lab's iptables changes in namespaces that outlive it (newest first).
pub fn teardown(state: &LabState, nl: &mut super::netlink::Netlink, report: &mut Report) {
    for f in state.fw.iter().rev().filter(|f| !state.owns_ns(&f.ns)) {
        let fd = match nl.ns_fd(&f.ns) {
            Ok(fd) => fd,
            Err(e) => {
                report.skipped.push(format!("iptables change in {}: {e}", f.ns));
                continue;
            }
        };
        let (table, chain) = (f.table.as_str(), f.chain.as_str());
        match &f.undo {
            FwUndo::Rule(rule) => {
                let what = format!("iptables rule -t {table} -A {chain} {rule} in {}", f.ns);
                let res = within(
                    fd,
                    || format!("cannot delete {what}"),
                    |i| {
                        if i.exists(table, chain, rule)? {
                            i.delete(table, chain, rule).map(|_| true)
                        } else {
                            Ok(false)
                        }
                    },
                );
                match res {
                    Ok(true) => report.removed.push(what),
                    Ok(false) => {
                        if f.phase == Phase::Done {
                            report.skipped.push(format!("{what}: already gone"))
                        }
                    }
                    Err(e) => report.failed.push(e.to_string()),
                }
            }
            FwUndo::Policy(old) => {
                let what = format!("iptables policy of {chain} (table {table}) restored to {old} in {}", f.ns);
                match within(fd, || format!("cannot restore {what}"), |i| i.set_policy(table, chain, old)) {
                    Ok(()) => report.removed.push(what),
                    Err(e) => report.failed.push(e.to_string()),
                }
            }
        }
    }
}

/// Whether the FORWARD chain of the namespace drops by default. Asked of nftables
/// directly, where iptables-nft (Debian's default) keeps it: starting iptables costs
/// ~4 ms. Only where the legacy filter table is in use is iptables itself asked.
fn forward_drops(fd: BorrowedFd<'_>) -> bool {
    let legacy = nsexec::run_in(fd, || Ok(std::fs::read_to_string("/proc/net/ip_tables_names").unwrap_or_default()))
        .is_ok_and(|names| names.lines().any(|t| t == "filter"));
    if legacy {
        policy(fd, "filter", "FORWARD").is_ok_and(|p| p == "DROP")
    } else {
        super::nft::policy_is_drop(fd, "filter", "FORWARD").unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let w = |t: &str| t.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(split_table(&w("-t nat -A POSTROUTING -j MASQUERADE")).0, "nat");
        assert_eq!(split_table(&w("-tmangle -S")), ("mangle".to_string(), vec!["-S".to_string()]));
        assert_eq!(split_table(&w("-S FORWARD")).0, "filter");
        assert_eq!(join_rule(&["-m".into(), "comment".into(), "--comment".into(), "a b".into()]), "-m comment --comment \"a b\"");
    }
}
