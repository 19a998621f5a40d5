//! dnsmasq, the program behind `dhcp_server`, `dhcp_relay`, `dns_server` and
//! `router_adv`: each service op says what it wants as a [`Dnsmasq`] (its own arguments,
//! written once in its family), and this is how every one of them runs, the same way
//! for the run and for the plan: its whole configuration on the command line
//! (`--conf-file=/dev/null`), no file of the machine read (`--no-hosts`, `--no-resolv`)
//! or written (leases in the lab's state directory, no pid file), `/etc/resolv.conf`
//! never touched, and stopped at `down`.

use super::shell::{quote, Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};

/// Which service a dnsmasq gives: what the live backend waits for before it counts as
/// started, and a word for file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// DHCP: a bound UDP socket on port 67.
    Dhcp,
    /// A DHCP relay: UDP 67 too.
    Relay,
    /// DNS: UDP 53.
    Dns,
    /// Router advertisements: a raw ICMPv6 socket.
    Ra,
}

impl Service {
    pub fn word(self) -> &'static str {
        match self {
            Service::Dhcp => "dhcp",
            Service::Relay => "relay",
            Service::Dns => "dns",
            Service::Ra => "ra",
        }
    }
}

/// One dnsmasq of the lab: where it runs, what it gives, its arguments (without the
/// ones of the run or the plan: foreground, pid and lease files), and how reports and
/// the graph name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Dnsmasq {
    pub ns: NsRef,
    pub service: Service,
    /// The interface it serves (None: a DNS server on every interface of ns).
    pub iface: Option<String>,
    pub args: Vec<String>,
    /// Whether it keeps leases (DHCP, relay, RA: dnsmasq opens its default lease file
    /// otherwise, a file of the machine's).
    pub leases: bool,
    /// A few words for reports: `dnsmasq (DHCP on eth0, 10.0.0.100 - 10.0.0.199)`.
    pub describe: String,
    /// Its line in the graph's box of ns: `dhcp eth0 10.0.0.100-10.0.0.199`.
    pub label: String,
}

/// What every dnsmasq of a lab is given first: no configuration file, no /etc/hosts,
/// no /etc/resolv.conf, sockets only on the interfaces it is told (`--bind-interfaces`).
pub fn base_args() -> Vec<String> {
    ["--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"].map(String::from).to_vec()
}

impl Dnsmasq {
    fn file_stem(&self) -> String {
        let mut stem = format!("dnsmasq-{}-{}", self.ns.name().unwrap_or("host"), self.service.word());
        if let Some(i) = &self.iface {
            stem.push('-');
            stem.push_str(i);
        }
        stem
    }

    /// Its lease file in the lab's state directory `dir`.
    pub fn lease_file(&self, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        self.leases.then(|| dir.join(format!("{}.leases", self.file_stem())))
    }

    /// The command the live backend starts (`program` is dnsmasq's path): in the
    /// foreground (so it is our child, stopped by its process group), logging to stderr;
    /// `stay_root`: without switching to another user (one a user namespace lacks).
    pub fn argv(&self, program: &str, lease_file: Option<&std::path::Path>, stay_root: bool) -> Vec<String> {
        let mut argv: Vec<String> =
            vec![program.to_string(), "--keep-in-foreground".into(), "--pid-file=".into(), "--log-facility=-".into()];
        if stay_root {
            argv.extend(["--user=root".to_string(), "--group=".to_string()]);
        }
        argv.extend(self.args.iter().cloned());
        if let Some(f) = lease_file {
            argv.push(format!("--dhcp-leasefile={}", f.display()));
        }
        argv
    }

    /// Where the walkthrough's dnsmasq keeps its pid and its leases (under /run, as the
    /// walkthroughs do).
    pub fn plan_pid_file(&self) -> String {
        format!("/run/{}.pid", self.file_stem())
    }

    pub fn plan_lease_file(&self, lab: &str) -> Option<String> {
        self.leases.then(|| format!("/run/nsscript-plan-{lab}-{}.leases", self.file_stem()))
    }

    /// The walkthrough's command: dnsmasq as a daemon with a pid file.
    pub fn shell(&self, lab: &str, before: Vec<String>) -> Step {
        let mut args = self.args.clone();
        if let Some(f) = self.plan_lease_file(lab) {
            args.push(format!("--dhcp-leasefile={f}"));
        }
        args.push(format!("--pid-file={}", self.plan_pid_file()));
        let mut cmds = before;
        cmds.push(Sh::inside(&self.ns, "dnsmasq").words(&args).done());
        let what = match &self.iface {
            Some(i) => format!("{} on {i} in {}", self.title(), self.ns),
            None => format!("{} in {}", self.title(), self.ns),
        };
        Step::new(what, cmds)
    }

    fn title(&self) -> &'static str {
        match self.service {
            Service::Dhcp => "DHCP server",
            Service::Relay => "DHCP relay",
            Service::Dns => "DNS server",
            Service::Ra => "router advertisements",
        }
    }

    /// How the walkthrough takes it down: in the host's namespace by its pid file (a
    /// named namespace's programs are stopped with the rest of it), and its leases.
    pub fn plan_undo(&self, lab: &str) -> Vec<String> {
        let mut out = Vec::new();
        let pid = quote(&self.plan_pid_file());
        if self.ns == NsRef::Host {
            out.push(format!("kill $(cat {pid})"));
        }
        let mut files = vec![pid];
        files.extend(self.plan_lease_file(lab).map(|f| quote(&f)));
        out.push(format!("rm -f {}", files.join(" ")));
        out
    }
}

/// A time as dnsmasq takes it (`45m`, `12h`, `2d`, `1w`, seconds, `infinite`): the
/// text, and its seconds (None: infinite). dnsmasq's shortest lease is two minutes.
pub fn duration(func: &str, key: &str, text: &str) -> Result<(String, Option<u32>)> {
    let t = text.trim().to_ascii_lowercase();
    if t == "infinite" {
        return Ok((t, None));
    }
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let scale = match unit {
        "" | "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        "w" => Some(604_800),
        _ => None,
    };
    let secs = scale.and_then(|s| digits.parse::<u32>().ok().and_then(|n| n.checked_mul(s)));
    match secs {
        Some(s) if s >= 120 => Ok((t, Some(s))),
        Some(s) => Err(Error::new(Code::BadValue, format!("{func}(): {key} {text:?} is too short"))
            .why(format!("{s} s; dnsmasq's shortest is two minutes"))
            .help(format!("give at least \"2m\", e.g. {key}: \"12h\""))),
        None => Err(Error::new(Code::BadValue, format!("{func}(): invalid {key} {text:?}"))
            .help(format!("a time is seconds or a number with m, h, d or w (\"45m\", \"12h\"), or \"infinite\": {key}: \"12h\""))),
    }
}

/// A DNS name of the lab (a record, a domain): labels of letters, digits, '-' and '_',
/// 1 to 63 bytes each, 253 in all.
pub fn validate_dns_name(func: &str, what: &str, name: &str) -> Result<()> {
    let n = name.strip_suffix('.').unwrap_or(name);
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if ok {
        return Ok(());
    }
    Err(Error::new(Code::BadValue, format!("{func}(): invalid {what} {name:?}")).help(
        "a DNS name is labels of letters, digits and '-' (not at either end), 1 to 63 bytes each, joined by dots: \"web\", \"db.lab\"",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_dnsmasq_reads_them() {
        assert_eq!(duration("f", "lease", "12h").unwrap(), ("12h".into(), Some(43_200)));
        assert_eq!(duration("f", "lease", "3600").unwrap().1, Some(3600));
        assert_eq!(duration("f", "lease", "infinite").unwrap().1, None);
        assert!(duration("f", "lease", "1m").unwrap_err().to_string().contains("too short"));
        assert!(duration("f", "lease", "12 hours").is_err());
        assert!(validate_dns_name("f", "name", "db.lab").is_ok());
        assert!(validate_dns_name("f", "name", "-db").is_err() && validate_dns_name("f", "name", "a b").is_err());
    }

    #[test]
    fn the_run_and_the_plan_start_the_same_dnsmasq() {
        let d = Dnsmasq {
            ns: NsRef::named("srv"),
            service: Service::Dhcp,
            iface: Some("eth0".into()),
            args: vec!["--port=0".into()],
            leases: true,
            describe: String::new(),
            label: String::new(),
        };
        let dir = std::path::Path::new("/run/nsscript/labs/l");
        let lease = d.lease_file(dir).unwrap();
        assert_eq!(lease.display().to_string(), "/run/nsscript/labs/l/dnsmasq-srv-dhcp-eth0.leases");
        assert_eq!(
            d.argv("/usr/sbin/dnsmasq", Some(&lease), false),
            [
                "/usr/sbin/dnsmasq",
                "--keep-in-foreground",
                "--pid-file=",
                "--log-facility=-",
                "--port=0",
                "--dhcp-leasefile=/run/nsscript/labs/l/dnsmasq-srv-dhcp-eth0.leases"
            ]
        );
        assert_eq!(
            d.shell("l", vec![]).commands,
            ["ip netns exec srv dnsmasq --port=0 --dhcp-leasefile=/run/nsscript-plan-l-dnsmasq-srv-dhcp-eth0.leases \
                 --pid-file=/run/dnsmasq-srv-dhcp-eth0.pid"]
        );
    }
}
