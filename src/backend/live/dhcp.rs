//! dnsmasq as a tracked background process (`dhcp_server`, `dhcp_relay`, and the start
//! of `dns_server` and `router_adv`), and a DHCP lease obtained
//! by busybox `udhcpc` with our own hook script (`dhcp_client`). The hook only prints
//! the lease: it never touches /etc/resolv.conf or the interface; the address and the
//! default route are applied afterwards as ordinary ops (netlink).

use super::kernel::{Kernel, Ready};
use super::procs::require_program;
use super::LiveBackend;
use crate::error::{Code, Error, Result};
use crate::lab;
use crate::ops::dhcp::{DhcpLease, DhcpRelay, DhcpServer, Lease};
use crate::ops::dnsmasq::{Dnsmasq, Service};
use crate::ops::process::Command;
use crate::ops::{NsRef, Outcome};
use ipnetwork::{IpNetwork, Ipv4Network};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

const HOOK: &str = r#"#!/bin/sh
# nsscript's udhcpc hook: report the lease on stdout, change nothing.
# (Debian's default hook would rewrite /etc/resolv.conf: the host's file.)
case "$1" in
bound|renew)
    echo "NSSCRIPT_LEASE ip=$ip"
    echo "NSSCRIPT_LEASE mask=$mask"
    echo "NSSCRIPT_LEASE router=$router"
    echo "NSSCRIPT_LEASE serverid=$serverid"
    echo "NSSCRIPT_LEASE lease=$lease"
    echo "NSSCRIPT_LEASE dns=$dns"
    echo "NSSCRIPT_LEASE domain=$domain"
    ;;
esac
exit 0
"#;

impl<K: Kernel> LiveBackend<K> {
    /// Start one of the lab's dnsmasqs (see `ops::dnsmasq`): recorded before it starts,
    /// counted as started once it listens (DHCP and relay: UDP 67; DNS: UDP 53; RA: its
    /// ICMPv6 socket), stopped at `down` with its lease file.
    pub(super) fn start_dnsmasq(&mut self, d: &Dnsmasq, purpose: &str) -> Result<u32> {
        let program = require_program("dnsmasq", "dnsmasq-base", purpose)?;
        let leases = d.lease_file(&lab::lab_dir(&self.lab));
        // Only this user's uid and gid exist in the user namespace of a sandbox without
        // sudo: dnsmasq cannot switch to nobody and group dip there ("failed to change
        // group-id to dip"). It stays root of that namespace, which is this user outside it.
        let argv = d.argv(&program.display().to_string(), leases.as_deref(), crate::nsexec::in_user_sandbox());
        let ready = match d.service {
            Service::Dhcp | Service::Relay => Ready::Udp(67),
            Service::Dns => Ready::Udp(53),
            Service::Ra => Ready::Icmpv6,
        };
        self.start_process(&d.ns, &Command::Argv(argv), &d.describe, leases.into_iter().collect(), ready, Duration::from_secs(5))
    }

    /// The IPv4 networks of `iface` in ns.
    fn ipv4_nets(&mut self, ns: &NsRef, iface: &str) -> Result<Vec<Ipv4Network>> {
        self.nl.require_link(ns, iface)?;
        Ok(self
            .nl
            .addrs(ns)?
            .into_iter()
            .filter(|a| a.link == iface)
            .filter_map(|a| match a.addr.parse::<IpNetwork>() {
                Ok(IpNetwork::V4(n)) => Some(n),
                _ => None,
            })
            .collect())
    }

    pub(super) fn dhcp_server(&mut self, op: DhcpServer) -> Result<Outcome> {
        op.validate()?;
        let nets = self.ipv4_nets(&op.ns, &op.iface)?;
        let routes = self.nl.routes(&op.ns)?;
        let placed = op.place(&nets, &routes)?;
        let pid = self.start_dnsmasq(&op.dnsmasq(&placed), "dhcp_server()")?;
        Ok(Outcome::Spawned { pid })
    }

    pub(super) fn dhcp_relay(&mut self, op: DhcpRelay) -> Result<Outcome> {
        op.validate()?;
        let nets = self.ipv4_nets(&op.ns, &op.iface)?;
        let local = op.local(&nets)?;
        let pid = self.start_dnsmasq(&op.dnsmasq(local), "dhcp_relay()")?;
        Ok(Outcome::Spawned { pid })
    }

    pub(super) fn dhcp_lease(&mut self, op: DhcpLease) -> Result<Outcome> {
        let busybox = require_program("busybox", "busybox", "dhcp_client()")?;
        let (ns, iface, timeout_ms) = (&op.ns, &op.iface, op.timeout_ms);
        self.nl.require_link(ns, iface)?;
        // In the lab's own directory when it has one: a run killed meanwhile leaves it
        // where `down` removes it.
        let dir = if self.has_lab() { lab::lab_dir(&self.lab) } else { std::env::temp_dir() };
        let hook = write_hook(&dir)?;
        let tries = timeout_ms.div_ceil(1000).max(1);
        let argv: Vec<String> = vec![
            busybox.display().to_string(),
            "udhcpc".into(),
            "-i".into(),
            iface.clone(),
            "-f".into(),
            "-q".into(),
            "-n".into(),
            "-t".into(),
            tries.to_string(),
            "-T".into(),
            "1".into(),
            "-s".into(),
            hook.display().to_string(),
        ];
        let started = Instant::now();
        let out = self.nl.kernel().run(ns, &Command::Argv(argv), Some(Duration::from_millis(u64::from(tries) * 1000 + 2000)));
        let ms = started.elapsed().as_millis() as u64;
        let _ = std::fs::remove_file(&hook);
        let out = out?;
        let mut vals = std::collections::HashMap::new();
        for line in out.stdout.lines() {
            if let Some((k, v)) = line.strip_prefix("NSSCRIPT_LEASE ").and_then(|r| r.split_once('=')) {
                vals.insert(k.to_string(), v.trim().to_string());
            }
        }
        let Some(addr) = vals.get("ip").and_then(|v| v.parse().ok()) else {
            let said: Vec<&str> = out.stderr.lines().filter(|l| !l.contains("broadcasting discover") && !l.contains("started,")).collect();
            let why = if said.iter().all(|l| l.contains("no lease")) {
                format!("no DHCP server answered within {timeout_ms} ms ({tries} discover(s) sent)")
            } else {
                format!("no DHCP server answered; udhcpc said: {}", said.join("\n"))
            };
            return Err(op.no_lease(why).help(
                "start a server on the same segment first (dhcp_server(router, #{ iface, range: [first, last] })), \
                 check that both ends are up and on the same bridge, or give it longer: dhcp_client(ns, iface, #{ timeout: ms })",
            ));
        };
        let ip4 = |k: &str| vals.get(k).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
        let prefix = vals.get("mask").and_then(|m| m.parse::<u8>().ok()).filter(|p| *p <= 32).unwrap_or(24);
        let lease = Lease {
            addr,
            prefix,
            router: ip4("router"),
            server: ip4("serverid"),
            dns: vals.get("dns").map(|d| d.split_whitespace().map(String::from).collect()).unwrap_or_default(),
            domain: vals.get("domain").filter(|d| !d.is_empty()).cloned(),
            lease_secs: vals.get("lease").and_then(|l| l.parse().ok()),
            ms,
        };
        // What resolve() asks when the script names no server.
        self.dns.leased(ns, lease.dns_servers());
        Ok(Outcome::Lease(lease))
    }
}

/// Our hook, in a fresh private file (removed after use).
fn write_hook(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // /tmp is shared with runs in other PID namespaces (a sandbox is pid 1 in its own):
    // the pid alone does not make the name ours.
    let path = dir.join(format!("nsscript-udhcpc-{}-{n}-{:016x}.sh", std::process::id(), super::random_u64()));
    let _ = std::fs::remove_file(&path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o700)
        .open(&path)
        .map_err(|e| Error::io(Code::IoFailed, format!("cannot write the udhcpc hook {}", path.display()), &e))?;
    f.write_all(HOOK.as_bytes()).map_err(|e| Error::io(Code::IoFailed, format!("cannot write the udhcpc hook {}", path.display()), &e))?;
    Ok(path)
}
