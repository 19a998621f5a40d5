//! Keeping the drawing true to the kernel. Every namespace of the lab (and nsscript's
//! own, for the lab's bridges and veth ends there) gets a socket joined to the
//! kernel's link, address and route notifications; a notification marks its namespace
//! changed, the namespace is read again at once, and what changed in the drawing goes
//! to every page as a patch. Once a second the links' counters are read everywhere
//! (the packet and byte rates shown on the edges), the ledger is looked at for
//! namespaces the lab gained or lost, and a namespace deleted under us is let go (our
//! sockets would keep it alive, and with it the veth ends `down` waits for).
//!
//! Reading a namespace again in full, rather than applying each notification, keeps
//! the drawing exactly what a dump says however notifications interleave or get lost
//! (ENOBUFS); a namespace's dump costs well under a millisecond.

use super::observe::{self, Reader, Snapshot};
use super::view::{self, View};
use crate::backend::live::linux::events;
use crate::backend::live::netlink::observe::Counters;
use crate::ops::NsRef;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, mpsc};

/// Milliseconds since the epoch: the page compares the server's times with its own.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// One message for the pages: an event name and its JSON.
#[derive(Clone, Debug)]
pub struct Push {
    pub event: &'static str,
    pub data: Arc<String>,
}

/// The drawing as it stands, and where changes are announced.
pub struct Hub {
    pub lab: String,
    pub current: Mutex<Current>,
    pub pushes: broadcast::Sender<Push>,
    /// The kernel reader, shared by the watcher and the requests that read a namespace.
    pub reader: Arc<Mutex<Reader>>,
    /// The captures the pages started.
    pub captures: super::captures::Captures,
}

#[derive(Default)]
pub struct Current {
    pub version: u64,
    pub view: View,
    /// The last rates message, for a page that connects between two.
    pub rates: Option<Arc<String>>,
}

#[derive(Serialize)]
struct SnapshotMessage<'a> {
    version: u64,
    view: &'a View,
}

impl Hub {
    pub fn new(lab: &str) -> Arc<Hub> {
        let (pushes, _) = broadcast::channel(256);
        Arc::new(Hub {
            lab: lab.to_string(),
            current: Mutex::new(Current { view: View { lab: lab.to_string(), live: true, ..View::default() }, ..Current::default() }),
            pushes,
            reader: Arc::new(Mutex::new(Reader::default())),
            captures: Default::default(),
        })
    }

    /// The whole drawing, for a page that starts (or fell behind).
    pub fn snapshot(&self) -> String {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_string(&SnapshotMessage { version: c.version, view: &c.view }).expect("plain data")
    }

    pub fn rates(&self) -> Option<Arc<String>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).rates.clone()
    }

    /// Replace the drawing; pages get what changed. `at`: when the kernel's
    /// notification that caused it was read (None for a periodic read).
    fn publish(&self, new: View, at: Option<u64>) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let patch = view::diff(&c.view, &new);
        if patch.is_empty() && c.view.up == new.up {
            return;
        }
        c.version += 1;
        c.view = new;
        let data = serde_json::json!({ "version": c.version, "patch": patch, "at": at, "sent": unix_ms() });
        let _ = self.pushes.send(Push { event: "patch", data: Arc::new(data.to_string()) });
    }

    fn publish_rates(&self, rates: String) {
        let data = Arc::new(rates);
        self.current.lock().unwrap_or_else(|p| p.into_inner()).rates = Some(data.clone());
        let _ = self.pushes.send(Push { event: "rates", data });
    }
}

/// A namespace being watched: the task reading its notifications (ending it closes
/// the socket), and the identity of what was opened.
struct Watched {
    task: tokio::task::JoinHandle<()>,
    cookie: Option<u64>,
}

/// What the watcher knows between two reads (moved to a blocking thread for each).
struct State {
    lab: String,
    reader: Arc<Mutex<Reader>>,
    snaps: BTreeMap<NsRef, Snapshot>,
    /// The ledger's size and time when it was last read, and what it said.
    ledger_seen: Option<(u64, SystemTime)>,
    lab_up: bool,
    lab_netns: BTreeSet<String>,
    host_links: BTreeSet<String>,
    counters: HashMap<(NsRef, String), Counters>,
    counted_at: Option<Instant>,
}

impl State {
    fn reader(&self) -> std::sync::MutexGuard<'_, Reader> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Read the ledger again if it changed: which namespaces are the lab's, which host
    /// links it made.
    fn read_ledger(&mut self) {
        let path = crate::lab::lab_dir(&self.lab).join("ledger.jsonl");
        let stamp = std::fs::metadata(&path).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        if stamp.is_some() && stamp == self.ledger_seen {
            return;
        }
        self.ledger_seen = stamp;
        match crate::lab::load(&self.lab) {
            Ok(state) => {
                self.lab_up = true;
                self.lab_netns = state.netns_names().into_iter().collect();
                self.host_links = state.links().filter(|(_, l)| l.ns == NsRef::Host).map(|(_, l)| l.name.clone()).collect();
            }
            Err(_) => {
                self.lab_up = false;
                self.lab_netns.clear();
                self.host_links.clear();
            }
        }
    }

    fn view(&mut self) -> View {
        let mut v = {
            let reader = self.reader.clone();
            let mut r = reader.lock().unwrap_or_else(|p| p.into_inner());
            observe::view(&self.lab, &mut r, &self.snaps, &self.host_links)
        };
        v.up = self.lab_up;
        v
    }

    /// Every link's counters, read now, as rates since the last read.
    fn rates(&mut self) -> String {
        let now = Instant::now();
        let dt = self.counted_at.map(|t| now.duration_since(t).as_secs_f64()).filter(|&d| d > 0.0);
        self.counted_at = Some(now);
        let mut rates = serde_json::Map::new();
        let mut fresh = HashMap::new();
        let namespaces: Vec<NsRef> = self.snaps.keys().cloned().collect();
        for ns in namespaces {
            let links = match self.reader().links(&ns) {
                Ok(l) => l,
                Err(_) => continue,
            };
            for l in &links {
                let Some(c) = l.counters else { continue };
                let key = (ns.clone(), l.info.name.clone());
                if let (Some(dt), Some(old)) = (dt, self.counters.get(&key)) {
                    let d = |new: u64, old: u64| new.saturating_sub(old) as f64 / dt;
                    let r = [
                        d(c.rx_packets, old.rx_packets),
                        d(c.tx_packets, old.tx_packets),
                        d(c.rx_bytes, old.rx_bytes),
                        d(c.tx_bytes, old.tx_bytes),
                    ];
                    if r.iter().any(|&x| x > 0.0) {
                        let round = |x: f64| (x * 10.0).round() / 10.0;
                        rates.insert(format!("{}/{}", view::ns_name(&ns), l.info.name), serde_json::json!(r.map(round)));
                    }
                }
                fresh.insert(key, c);
            }
            // The links' states come with the counters: a change a notification told
            // of is in the drawing already, and anything else is caught here.
            if let Some(s) = self.snaps.get_mut(&ns) {
                s.links = links;
            }
        }
        self.counters = fresh;
        serde_json::json!({ "t": unix_ms(), "ifaces": rates }).to_string()
    }
}

/// Run until the runtime ends: watch the lab, publish to `hub`.
pub async fn run(hub: Arc<Hub>) {
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel::<(NsRef, u64)>();
    let mut watched: HashMap<NsRef, Watched> = HashMap::new();
    let mut state = Some(State {
        lab: hub.lab.clone(),
        reader: hub.reader.clone(),
        snaps: BTreeMap::new(),
        ledger_seen: None,
        lab_up: false,
        lab_netns: BTreeSet::new(),
        host_links: BTreeSet::new(),
        counters: HashMap::new(),
        counted_at: None,
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut s = state.take().expect("the state is back");
                let cookies: HashMap<NsRef, Option<u64>> = watched.iter().map(|(n, w)| (n.clone(), w.cookie)).collect();
                let (s, gone, added) = blocking(move || {
                    s.read_ledger();
                    // What should be watched: the host, and every namespace of the lab
                    // that is mounted now, as the namespace that is mounted now.
                    let mut want: BTreeMap<NsRef, Option<u64>> = BTreeMap::new();
                    want.insert(NsRef::Host, None);
                    for name in &s.lab_netns {
                        if let crate::nsexec::NetnsAt::Namespace(cookie) = crate::nsexec::netns_at(name) {
                            want.insert(NsRef::named(name), Some(cookie));
                        }
                    }
                    let gone: Vec<NsRef> = cookies.iter().filter(|(n, i)| want.get(*n) != Some(*i)).map(|(n, _)| n.clone()).collect();
                    for ns in &gone {
                        s.reader().forget(ns);
                        s.snaps.remove(ns);
                    }
                    let mut added = Vec::new();
                    for (ns, cookie) in want {
                        if cookies.get(&ns) == Some(&cookie) {
                            continue;
                        }
                        if let Some(sock) = subscribe(&ns) {
                            let snap = s.reader().snapshot(&ns);
                            match snap {
                                Ok(snap) => {
                                    s.snaps.insert(ns.clone(), snap);
                                    added.push((ns, cookie, sock));
                                }
                                Err(_) => s.reader().forget(&ns),
                            }
                        }
                    }
                    (s, gone, added)
                }).await;
                for ns in &gone {
                    if let Some(w) = watched.remove(ns) {
                        w.task.abort();
                    }
                }
                for (ns, cookie, sock) in added {
                    let task = tokio::spawn(notifications(ns.clone(), sock, changed_tx.clone()));
                    watched.insert(ns, Watched { task, cookie });
                }
                let (s, view, rates) = blocking(move || {
                    let mut s = s;
                    let rates = s.rates();
                    let view = s.view();
                    (s, view, rates)
                }).await;
                hub.publish(view, None);
                hub.publish_rates(rates);
                state = Some(s);
            }
            Some((ns, at)) = changed_rx.recv() => {
                // Notifications come in bursts (a link down is one per family and one
                // from its peer): read each namespace once for the burst.
                let mut changed = BTreeSet::from([ns]);
                tokio::time::sleep(Duration::from_millis(10)).await;
                while let Ok((ns, _)) = changed_rx.try_recv() {
                    changed.insert(ns);
                }
                let s = state.take().expect("the state is back");
                let (s, view) = blocking(move || {
                    let mut s = s;
                    for ns in changed {
                        if !s.snaps.contains_key(&ns) {
                            continue;
                        }
                        let snap = s.reader().snapshot(&ns);
                        if let Ok(snap) = snap {
                            s.snaps.insert(ns, snap);
                        }
                    }
                    let view = s.view();
                    (s, view)
                }).await;
                hub.publish(view, Some(at));
                state = Some(s);
            }
        }
    }
}

/// Run `f` on tokio's blocking threads (netlink dumps and namespace handles are
/// synchronous, and no worker thread ever enters a namespace).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A notification socket in `ns` (None: the namespace went away meanwhile).
fn subscribe(ns: &NsRef) -> Option<rtnetlink::sys::Socket> {
    match ns {
        NsRef::Host => events::subscribe(crate::nsexec::host_ns()).ok(),
        NsRef::Named(name) => {
            let f = crate::nsexec::open_netns(name).ok()?;
            use std::os::fd::AsFd;
            events::subscribe(f.as_fd()).ok()
        }
    }
}

/// Wait for `ns`'s notifications and say when one came.
async fn notifications(ns: NsRef, sock: rtnetlink::sys::Socket, changed: mpsc::UnboundedSender<(NsRef, u64)>) {
    // SAFETY: the AsyncFd owns the socket, which owns its descriptor: the descriptor
    // stays open for as long as it is registered.
    let Ok(fd) = (unsafe { tokio::io::unix::AsyncFd::register(sock) }) else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut ready) = fd.readable().await else { return };
        match events::drain(ready.get_inner(), &mut buf) {
            Ok(c) if c.any() => {
                if changed.send((ns.clone(), unix_ms())).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => return,
        }
        ready.clear_ready();
    }
}
