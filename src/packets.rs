//! `nsscript capture LAB ...` and `nsscript trace LAB NS DST`, and the REPL's
//! `:capture` / `:trace`: thin users of the capture and trace engines
//! (`backend::live::capture`, `backend::live::trace`) on a running lab. This is where
//! packets are printed; the engines hand them over as data.

use crate::backend::live::capture::{Capture, Frame, Options, Tap};
use crate::backend::live::kernel::Kernel;
use crate::backend::live::linux::Linux;
use crate::backend::live::netlink::Netlink;
use crate::backend::live::trace::{self, LabLink};
use crate::error::{Code, Error, Result};
use crate::ops::capture::Target;
use crate::ops::trace::{Probe, Trace, DEFAULT_TIMEOUT_MS};
use crate::ops::NsRef;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The links `args` name among the lab's: `NS` (all its links), `NS:LINK`, or a
/// bridge's name (the bridge and its ports); no args: all of them.
pub fn resolve(links: &[LabLink], args: &[String]) -> Result<Vec<Tap>> {
    let tap = |l: &LabLink| Tap { target: l.target.clone(), index: l.info.index };
    if args.is_empty() {
        return Ok(links.iter().map(tap).collect());
    }
    let mut out: Vec<Tap> = Vec::new();
    for arg in args {
        let (ns, link) = match arg.split_once(':') {
            Some((ns, link)) => (Some(ns), Some(link)),
            None => (None, None),
        };
        let found: Vec<Tap> = match (ns, link) {
            (Some(ns), Some(link)) => {
                let ns = if ns == "host" { NsRef::Host } else { NsRef::named(ns) };
                links.iter().filter(|l| l.target.ns == ns && l.target.link == link).map(tap).collect()
            }
            _ => {
                let in_ns: Vec<Tap> = links.iter().filter(|l| l.target.ns.name() == Some(arg.as_str())).map(tap).collect();
                if !in_ns.is_empty() {
                    in_ns
                } else {
                    // A bridge: it and the links enslaved to it, in its namespace.
                    let bridges: Vec<&LabLink> = links.iter().filter(|l| l.info.kind == "bridge" && l.target.link == *arg).collect();
                    links
                        .iter()
                        .filter(|l| {
                            bridges.iter().any(|b| {
                                b.target.ns == l.target.ns
                                    && (b.target.link == l.target.link || l.info.master.as_deref() == Some(arg.as_str()))
                            })
                        })
                        .map(tap)
                        .collect()
                }
            }
        };
        if found.is_empty() {
            let names: Vec<String> = links.iter().map(|l| format!("{}:{}", l.target.ns.name().unwrap_or("host"), l.target.link)).collect();
            return Err(Error::new(Code::UnknownLink, format!("the lab has no namespace, link or bridge {arg:?}"))
                .help(format!("name a namespace, NS:LINK or a bridge; its links: {}", names.join(", "))));
        }
        for t in found {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// Capture on `taps` until `stop()` says so (or `count` packets), printing a line per
/// packet (to stdout) unless the packets go to `file`. The counts at the end.
pub fn run_capture<K: Kernel>(k: &mut K, taps: &[Tap], mut opts: Options, print: bool, stop: impl Fn() -> bool) -> Result<(u64, u64)> {
    let (tx, rx) = std::sync::mpsc::channel::<Frame>();
    if print {
        opts.live = Some(tx);
    }
    let mut cap = Capture::start(k, taps, opts)?;
    eprintln!("nsscript: capturing on {} link(s); Ctrl-C stops.", taps.len());
    let targets: Vec<Target> = cap.targets().to_vec();
    let show = |f: Frame| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", f.packet(&targets[f.tap]).line());
        let _ = out.flush();
    };
    while !stop() && !cap.finished() {
        if let Ok(f) = rx.recv_timeout(Duration::from_millis(50)) {
            show(f);
        }
    }
    let counts = cap.stop()?;
    rx.try_iter().for_each(show);
    Ok(counts)
}

/// The running lab's state and a kernel to ask about it.
fn open_lab(lab: &str) -> Result<(crate::lab::LabState, Netlink<Linux>)> {
    crate::privilege::require_root("seeing a lab's packets")?;
    crate::nsexec::init_host_ns()?;
    crate::signals::install()?;
    Ok((crate::lab::load(lab)?, Netlink::new(Linux::default())))
}

/// `nsscript capture LAB [TARGET...] [-w FILE] [-f FILTER] [-c COUNT] [--for SECONDS]`
pub fn capture(
    lab: &str,
    args: &[String],
    write: Option<&Path>,
    filter: Option<String>,
    count: Option<u64>,
    seconds: Option<f64>,
) -> Result<ExitCode> {
    let (state, mut nl) = open_lab(lab)?;
    let links = trace::lab_links(&mut nl, &state)?;
    let taps = resolve(&links, args)?;
    let file: Option<Box<dyn Write + Send>> = match write {
        Some(p) if p == Path::new("-") => Some(Box::new(std::io::stdout())),
        Some(p) => {
            Some(Box::new(std::fs::File::create(p).map_err(|e| Error::io(Code::IoFailed, format!("cannot create {}", p.display()), &e))?))
        }
        None => None,
    };
    let print = file.is_none();
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let opts = Options { filter, count, file, ..Default::default() };
    let (packets, dropped) = run_capture(nl.kernel(), &taps, opts, print, || {
        crate::signals::interrupted().is_some() || deadline.is_some_and(|d| Instant::now() >= d)
    })?;
    eprintln!(
        "{packets} packet(s) captured, {dropped} dropped by the kernel{}",
        write.map(|w| format!(", written to {}", w.display())).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

/// The probe `proto` and `port` ask for, as the script's trace() reads them.
pub fn probe(proto: Option<&str>, port: Option<u16>) -> Result<Probe> {
    Probe::parse(proto, port.map(i64::from))
}

/// `nsscript trace LAB NS DST [--proto icmp|tcp|udp] [--port N]`: exit 0 when the probe
/// came back, 1 when it stopped (and why is printed).
pub fn trace(lab: &str, ns: &str, dst: &str, proto: Option<&str>, port: Option<u16>) -> Result<ExitCode> {
    let (state, mut nl) = open_lab(lab)?;
    if !state.owns_netns(ns) {
        return Err(Error::new(Code::UnknownNamespace, format!("lab {lab:?} has no namespace {ns:?}"))
            .help(format!("its namespaces: {}", state.netns_names().join(", "))));
    }
    let dst = dst.parse().map_err(|e: std::net::AddrParseError| {
        Error::new(Code::MalformedAddress, format!("malformed IP address {dst:?}")).why(e.to_string())
    })?;
    let spec = Trace { ns: NsRef::named(ns), dst, probe: probe(proto, port)?, timeout_ms: DEFAULT_TIMEOUT_MS };
    let r = trace::trace(&mut nl, &state, &spec)?;
    println!("{}", r.text());
    Ok(if r.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
