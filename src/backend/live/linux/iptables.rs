//! iptables (IPv4) through the `iptables` crate, run inside the right namespace: the
//! crate starts `iptables` processes, and a child inherits the namespace of the thread
//! that forks it, so every call runs on a thread that entered the namespace
//! (`nsexec::in_netns`).

use crate::error::{Code, Error, Result};
use crate::nsexec;
use crate::ops::firewall::{iptables_refused, split_table, Rule};
use iptables::IPTables;
use std::os::fd::BorrowedFd;

type IptResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The crate's handle for iptables, or ip6tables for `v6`.
fn ipt(v6: bool) -> &'static IPTables {
    // iptables::new() runs `iptables --version` to learn whether -C and -w exist: both
    // do since 1.4.20 (Debian 12 has 1.8.9), and the probe cost a process per run. A
    // missing iptables shows at the first command instead (see `refused`).
    static IPT: IPTables = IPTables { cmd: "iptables", has_check: true, has_wait: true, is_numeric: false };
    static IPT6: IPTables = IPTables { cmd: "ip6tables", has_check: true, has_wait: true, is_numeric: false };
    if v6 {
        &IPT6
    } else {
        &IPT
    }
}

/// iptables' own message, verbatim, under our explanation.
fn refused(what: String, e: Box<dyn std::error::Error>) -> Error {
    match e.downcast_ref::<iptables::error::IptablesError>() {
        Some(ie) => iptables_refused(what, &ie.msg, ie.code),
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

/// Run `f` with the crate's handle (ip6tables' for `v6`) on a thread inside `ns`.
fn within<T: Send>(
    ns: BorrowedFd<'_>,
    v6: bool,
    what: impl Fn() -> String + Send + Sync,
    f: impl FnOnce(&IPTables) -> IptResult<T> + Send,
) -> Result<T> {
    let ipt = ipt(v6);
    nsexec::in_netns(ns, || f(ipt).map_err(|e| refused(what(), e)))
}

pub fn exists(ns: BorrowedFd<'_>, r: &Rule) -> Result<bool> {
    let text = r.text();
    within(ns, r.ipv6, || format!("cannot check the rule -t {} -C {} {text}", r.table, r.chain), |i| i.exists(&r.table, &r.chain, &text))
}

pub fn add(ns: BorrowedFd<'_>, r: &Rule, pos: Option<u32>, place: &str) -> Result<()> {
    let text = r.text();
    within(
        ns,
        r.ipv6,
        || {
            format!(
                "{} refused the rule `-t {} {} {} {text}` {place}",
                r.program(),
                r.table,
                if pos.is_some() { "-I" } else { "-A" },
                r.chain
            )
        },
        |i| match pos {
            Some(p) => i.insert(&r.table, &r.chain, &text, p as i32),
            None => i.append(&r.table, &r.chain, &text),
        },
    )
}

pub fn delete(ns: BorrowedFd<'_>, r: &Rule) -> Result<()> {
    let text = r.text();
    within(ns, r.ipv6, || format!("cannot delete the rule -t {} -A {} {text}", r.table, r.chain), |i| i.delete(&r.table, &r.chain, &text))
}

/// `-S CHAIN` succeeds only for a chain that exists (and, unlike `-L`, looks up no names).
pub fn chain_exists(ns: BorrowedFd<'_>, table: &str, chain: &str) -> Result<bool> {
    let list = format!("-S {chain}");
    within(ns, false, || format!("cannot look for the chain {chain} (table {table})"), |i| Ok(i.execute(table, &list)?.status.success()))
}

pub fn chain_add(ns: BorrowedFd<'_>, table: &str, chain: &str, place: &str) -> Result<()> {
    within(ns, false, || format!("iptables refused the chain {chain} (table {table}) {place}"), |i| i.new_chain(table, chain))
}

/// Empty the chain, then delete it.
pub fn chain_delete(ns: BorrowedFd<'_>, table: &str, chain: &str, place: &str) -> Result<()> {
    within(
        ns,
        false,
        || format!("cannot delete the chain {chain} (table {table}) {place}"),
        |i| i.flush_chain(table, chain).and_then(|_| i.delete_chain(table, chain)),
    )
}

/// The policy of a built-in chain, from `iptables -S CHAIN` (no name lookups).
pub fn policy(ns: BorrowedFd<'_>, table: &str, chain: &str) -> Result<String> {
    let lines = within(ns, false, || format!("cannot read the policy of {chain} (table {table})"), |i| i.list(table, chain))?;
    let prefix = format!("-P {chain} ");
    Ok(lines.iter().find_map(|l| l.strip_prefix(&prefix).map(|p| p.trim().to_string())).unwrap_or_else(|| "ACCEPT".into()))
}

pub fn set_policy(ns: BorrowedFd<'_>, table: &str, chain: &str, policy: &str, place: &str) -> Result<()> {
    within(
        ns,
        false,
        || format!("iptables refused the policy {policy} for {chain} (table {table}) {place}"),
        |i| i.set_policy(table, chain, policy),
    )
}

/// `iptables ARGS` as given; its output.
pub fn raw(ns: BorrowedFd<'_>, args: &[String], what: String) -> Result<String> {
    let (table, rest) = split_table(args);
    let command = Rule::new(&table, "", rest).text();
    let out = within(
        ns,
        false,
        || what.clone(),
        |i| {
            let out = i.execute(&table, &command)?;
            if !out.status.success() {
                return Err(Box::new(iptables::error::IptablesError::from(out)) as Box<dyn std::error::Error>);
            }
            Ok(out)
        },
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the FORWARD chain of the namespace drops by default. Asked of nftables
/// directly, where iptables-nft (Debian's default) keeps it: starting iptables costs
/// ~4 ms. Only where the legacy filter table is in use is iptables itself asked.
pub fn forward_drops(fd: BorrowedFd<'_>) -> bool {
    let legacy = nsexec::run_in(fd, || Ok(std::fs::read_to_string("/proc/net/ip_tables_names").unwrap_or_default()))
        .is_ok_and(|names| names.lines().any(|t| t == "filter"));
    if legacy {
        policy(fd, "filter", "FORWARD").is_ok_and(|p| p == "DROP")
    } else {
        super::nft::policy_is_drop(fd, "filter", "FORWARD").unwrap_or(false)
    }
}
