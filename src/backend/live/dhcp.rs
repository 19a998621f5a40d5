//! DHCP: dnsmasq as a tracked background process (`dhcp_server`), and a lease obtained
//! by busybox `udhcpc` with our own hook script (`dhcp_client`). The hook only prints
//! the lease: it never touches /etc/resolv.conf or the interface; the address and the
//! default route are applied afterwards as ordinary ops (netlink).

use super::procs::{require_program, Ready};
use super::{process, LiveBackend};
use crate::error::{Code, Error, Result};
use crate::lab;
use crate::op::{Command, DhcpServerSpec, Lease, NsRef, Outcome};
use ipnetwork::{IpNetwork, Ipv4Network};
use std::io::Write;
use std::os::fd::AsRawFd;
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
    ;;
esac
exit 0
"#;

fn ns_label(ns: &NsRef) -> String {
    ns.name().unwrap_or("host").to_string()
}

impl LiveBackend {
    pub(super) fn dhcp_server(&mut self, ns: NsRef, spec: DhcpServerSpec) -> Result<Outcome> {
        let dnsmasq = require_program("dnsmasq", "dnsmasq-base", "dhcp_server()")?;
        let iface = &spec.iface;
        self.nl.require_link(&ns, iface)?;
        let nets: Vec<Ipv4Network> = self
            .nl
            .addrs(&ns)?
            .into_iter()
            .filter(|a| &a.link == iface)
            .filter_map(|a| match a.addr.parse::<IpNetwork>() {
                Ok(IpNetwork::V4(n)) => Some(n),
                _ => None,
            })
            .collect();
        let what = format!("cannot serve DHCP on {iface} in {ns}");
        if nets.is_empty() {
            return Err(Error::new(Code::NoAddress, what)
                .why(format!("{iface} has no IPv4 address, so dnsmasq cannot tell which subnet to serve"))
                .help(format!("give it one first, e.g. link(ns, \"{iface}\").addr(\"10.0.0.254/24\")")));
        }
        if u32::from(spec.first) > u32::from(spec.last) {
            return Err(Error::new(Code::BadValue, what)
                .why(format!("the range starts at {} after its end {}", spec.first, spec.last))
                .help("write the range as [first, last] with first <= last"));
        }
        let Some(net) = nets.iter().find(|n| n.contains(spec.first) && n.contains(spec.last)) else {
            let have = nets.iter().map(|n| format!("{n} (subnet {}/{})", n.network(), n.prefix())).collect::<Vec<_>>().join(", ");
            let example = nets[0];
            let (lo, hi) = (u32::from(example.network()) + 100, u32::from(example.broadcast()) - 1);
            let hint = if example.prefix() <= 24 {
                format!(", e.g. [\"{}\", \"{}\"]", std::net::Ipv4Addr::from(lo), std::net::Ipv4Addr::from(lo + 9))
            } else {
                format!(" (up to {})", std::net::Ipv4Addr::from(hi))
            };
            return Err(Error::new(
                Code::OutsideSubnet,
                format!("the DHCP range {} - {} is outside the subnet of {iface}", spec.first, spec.last),
            )
            .why(format!("{iface} in {ns} has {have}"))
            .help(format!("choose first and last inside {}/{}{hint}", example.network(), example.prefix())));
        };
        for ip in [spec.first, spec.last] {
            if net.prefix() < 31 && (ip == net.network() || ip == net.broadcast()) {
                return Err(Error::new(Code::OutsideSubnet, what)
                    .why(format!(
                        "{ip} is the {} address of {}/{}",
                        if ip == net.network() { "network" } else { "broadcast" },
                        net.network(),
                        net.prefix()
                    ))
                    .help("leave the first and the last address of the subnet out of the range"));
            }
        }
        let leases = lab::lab_dir(&self.lab).join(format!("dnsmasq-{}-{iface}.leases", ns_label(&ns)));
        let mut argv: Vec<String> = vec![
            dnsmasq.display().to_string(),
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--port=0".into(),
            "--bind-interfaces".into(),
            format!("--interface={iface}"),
            format!("--dhcp-range={},{}", spec.first, spec.last),
            // dnsmasq pings an address before offering it (~3 s): not on a lab segment.
            "--no-ping".into(),
            "--dhcp-authoritative".into(),
            format!("--dhcp-leasefile={}", leases.display()),
            "--pid-file=".into(),
            "--log-facility=-".into(),
        ];
        if let Some(r) = spec.router {
            argv.push(format!("--dhcp-option=option:router,{r}"));
        }
        if !spec.dns.is_empty() {
            argv.push(format!("--dhcp-option=option:dns-server,{}", spec.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",")));
        }
        let what = format!("dnsmasq (DHCP on {iface}, {} - {})", spec.first, spec.last);
        let pid = self.start_process(&ns, &Command::Argv(argv), &what, vec![leases], Ready::Udp(67), Duration::from_secs(5))?;
        Ok(Outcome::Spawned { pid })
    }

    pub(super) fn dhcp_lease(&mut self, ns: NsRef, iface: String, timeout_ms: u32) -> Result<Outcome> {
        let busybox = require_program("busybox", "busybox", "dhcp_client()")?;
        self.nl.require_link(&ns, &iface)?;
        let hook = write_hook()?;
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
        let fd = match &ns {
            NsRef::Host => None,
            named => Some(self.nl.ns_fd(named)?.as_raw_fd()),
        };
        let started = Instant::now();
        let out = process::run_timeout(fd, &Command::Argv(argv), &ns.to_string(), Duration::from_millis(u64::from(tries) * 1000 + 2000));
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
            return Err(Error::new(Code::NoLease, format!("no DHCP lease for {iface} in {ns}")).why(why).help(
                "start a server on the same segment first (dhcp_server(router, #{ iface, range: [first, last] })), \
                 check that both ends are up and on the same bridge, or give it longer: dhcp_client(ns, iface, #{ timeout: ms })",
            ));
        };
        let ip4 = |k: &str| vals.get(k).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok());
        let prefix = vals.get("mask").and_then(|m| m.parse::<u8>().ok()).filter(|p| *p <= 32).unwrap_or(24);
        Ok(Outcome::Lease(Lease {
            addr,
            prefix,
            router: ip4("router"),
            server: ip4("serverid"),
            dns: vals.get("dns").map(|d| d.split_whitespace().map(String::from).collect()).unwrap_or_default(),
            lease_secs: vals.get("lease").and_then(|l| l.parse().ok()),
            ms,
        }))
    }
}

/// Our hook, in a fresh private file (removed after use).
fn write_hook() -> Result<std::path::PathBuf> {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("nsscript-udhcpc-{}-{n}.sh", std::process::id()));
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
