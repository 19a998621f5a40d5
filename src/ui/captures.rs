//! Captures started from the page (click a link, a bridge or a namespace, then
//! "Capture"): each is the capture engine of "See the packets" (`backend::live::
//! capture`, one packet socket per link, as `nsscript capture` runs it), writing pcapng
//! to an anonymous memory file (memfd: nothing is left on disk, whatever way the
//! server ends) that the page downloads, and listing packets on the page as they come.
//!
//! A gigabit stream is tens of thousands of packets a second: the page is sent at most
//! `LISTED_PER_SECOND` of them a second (the counts say how many more there were); the
//! pcapng file has every one, up to `FILE_LIMIT`, where the capture stops by itself.

use crate::backend::live::capture::{Capture, Frame, Options};
use crate::backend::live::linux::Linux;
use crate::backend::live::netlink::Netlink;
use crate::backend::live::trace::lab_links;
use crate::error::{Code, Error, Result};
use crate::ops::capture::Target;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Packets listed on the page per second, at most; the file keeps all of them.
const LISTED_PER_SECOND: u32 = 100;
/// The packets a page that connects late (or again) is sent first.
const KEPT_FOR_LATECOMERS: usize = 500;
/// How large a capture's pcapng file may grow (it is memory) before the capture stops.
pub const FILE_LIMIT: u64 = 256 << 20;
/// Captures running at once, at most (each holds a ring of kernel memory per link).
const RUNNING_LIMIT: usize = 8;

/// The pcapng file of one capture: written by the capture thread, read by downloads.
/// `complete` is how much of it holds whole blocks (the writer flushes whole blocks),
/// so a download during the capture is a valid file of what was seen so far.
struct Spool {
    file: Arc<File>,
    written: u64,
    complete: Arc<AtomicU64>,
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written + buf.len() as u64 > FILE_LIMIT {
            return Err(std::io::Error::other(format!("the capture file reached {} MiB", FILE_LIMIT >> 20)));
        }
        let n = (&*self.file).write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.complete.store(self.written, Ordering::SeqCst);
        Ok(())
    }
}

/// An anonymous file in memory (memfd_create): gone when its last descriptor closes.
fn memory_file() -> Result<File> {
    // SAFETY: memfd_create with a NUL-terminated name; the descriptor is owned at once.
    let fd = unsafe { libc::memfd_create(c"nsscript-capture".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(Code::IoFailed, "cannot make the capture's file", &std::io::Error::last_os_error()));
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A message for the capture's page: `packet` (one packet), `counts` (every second and
/// at the end), `end` (the capture stopped, and why when it stopped by itself).
#[derive(Clone, Debug)]
pub struct Message {
    pub event: &'static str,
    pub data: Arc<String>,
}

/// A packet as the page lists it.
#[derive(Serialize)]
struct Listed<'a> {
    time: f64,
    place: String,
    dir: &'static str,
    len: u32,
    proto: &'a str,
    summary: &'a str,
    line: String,
}

#[derive(Serialize)]
struct Counts {
    packets: u64,
    dropped: u64,
    listed: u64,
    file_bytes: u64,
    running: bool,
}

/// One capture started from the page.
pub struct Session {
    pub id: u64,
    /// The links, as `NS:LINK` (what the page shows).
    pub places: Vec<String>,
    /// The download's file name.
    pub file_name: String,
    capture: Mutex<Capture>,
    file: Arc<File>,
    complete: Arc<AtomicU64>,
    listed: AtomicU64,
    /// The last packets and counts, for a page that connects late; `end` once ended.
    recent: Mutex<Recent>,
    pub messages: broadcast::Sender<Message>,
}

#[derive(Default)]
struct Recent {
    packets: std::collections::VecDeque<Message>,
    counts: Option<Message>,
    end: Option<Message>,
}

impl Session {
    /// Subscribe to the messages to come, and what a page that connects now is sent
    /// first: the last packets, the counts, the end if it has ended (then nothing more
    /// comes). Both under the lock `publish` sends under: each message once.
    pub fn subscribe(&self) -> (Vec<Message>, bool, broadcast::Receiver<Message>) {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let rx = self.messages.subscribe();
        let mut first: Vec<Message> = r.packets.iter().cloned().collect();
        first.extend(r.counts.clone());
        first.extend(r.end.clone());
        (first, r.end.is_some(), rx)
    }

    /// The pcapng file as far as it holds whole blocks.
    pub fn pcapng(&self) -> std::io::Result<Vec<u8>> {
        let len = self.complete.load(Ordering::SeqCst) as usize;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    pub fn running(&self) -> bool {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).end.is_none()
    }

    /// Stop capturing (what the kernel still holds is taken first): the counts.
    pub fn stop(&self) -> Result<(u64, u64)> {
        self.capture.lock().unwrap_or_else(|p| p.into_inner()).stop()
    }

    fn counts(&self, running: bool) -> Message {
        let (packets, dropped) = self.capture.lock().unwrap_or_else(|p| p.into_inner()).counts();
        let c = Counts {
            packets,
            dropped,
            listed: self.listed.load(Ordering::SeqCst),
            file_bytes: self.complete.load(Ordering::SeqCst),
            running,
        };
        Message { event: "counts", data: Arc::new(serde_json::to_string(&c).unwrap_or_default()) }
    }

    fn publish(&self, m: Message) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        match m.event {
            "packet" => {
                r.packets.push_back(m.clone());
                if r.packets.len() > KEPT_FOR_LATECOMERS {
                    r.packets.pop_front();
                }
            }
            "counts" => r.counts = Some(m.clone()),
            _ => r.end = Some(m.clone()),
        }
        // Sent while holding `recent`: a page subscribing under the same lock sees each
        // message once, either in its catch-up or on its channel.
        let _ = self.messages.send(m);
    }

    /// The capture's frames, as they come (the engine sends at most LISTED_PER_SECOND a
    /// second), to the page, the counts every second, and the end when the engine's thread has ended
    /// (stopped from the page, or by itself: its file is full).
    fn forward(self: Arc<Self>, frames: mpsc::Receiver<Frame>, targets: Vec<Target>) {
        let mut last_counts = Instant::now();
        loop {
            match frames.recv_timeout(Duration::from_millis(250)) {
                Ok(f) => {
                    self.listed.fetch_add(1, Ordering::SeqCst);
                    let p = f.packet(&targets[f.tap]);
                    let listed = Listed {
                        time: p.time,
                        place: format!("{}:{}", p.target.ns.name().unwrap_or("host"), p.target.link),
                        dir: p.dir.as_str(),
                        len: p.len,
                        proto: &p.proto,
                        summary: &p.summary,
                        line: p.line(),
                    };
                    self.publish(Message { event: "packet", data: Arc::new(serde_json::to_string(&listed).unwrap_or_default()) });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_counts.elapsed() >= Duration::from_secs(1) {
                last_counts = Instant::now();
                self.publish(self.counts(true));
            }
        }
        // The engine's thread has ended: stop() joins it and says why it ended, if it
        // ended by itself.
        let why = match self.stop() {
            Ok(_) => None,
            Err(e) => Some(e.why.clone().unwrap_or_else(|| e.what.clone())),
        };
        self.publish(self.counts(false));
        let end = serde_json::json!({ "why": why });
        self.publish(Message { event: "end", data: Arc::new(end.to_string()) });
    }
}

/// The captures the page started, by id. They end with the server (a capture dropped
/// stops and closes its sockets; its memory file goes with its last descriptor).
#[derive(Default)]
pub struct Captures {
    next: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Arc<Session>>>,
}

impl Captures {
    pub fn get(&self, id: u64) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Start capturing on what `targets` name (as `nsscript capture LAB TARGET...`
    /// takes them: NS, NS:LINK or a bridge) of the running lab `lab`. Blocks while the
    /// sockets are set up: call it off the async threads.
    pub fn start(&self, lab: &str, targets: &[String], filter: Option<String>) -> Result<Arc<Session>> {
        let running = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|s| s.running()).count();
        if running >= RUNNING_LIMIT {
            return Err(Error::new(Code::UiFailed, format!("{running} captures are running already"))
                .help("stop one of them first (each holds kernel memory for every link it captures on)"));
        }
        let state = crate::lab::load(lab)?;
        let mut nl = Netlink::new(Linux::default());
        let links = lab_links(&mut nl, &state)?;
        let taps = crate::packets::resolve(&links, targets)?;
        let file = Arc::new(memory_file()?);
        let complete = Arc::new(AtomicU64::new(0));
        let spool = Spool { file: file.clone(), written: 0, complete: complete.clone() };
        let (tx, rx) = mpsc::channel::<Frame>();
        let opts =
            Options { filter, file: Some(Box::new(spool)), live: Some(tx), live_per_second: Some(LISTED_PER_SECOND), ..Default::default() };
        let capture = Capture::start(nl.kernel(), &taps, opts)?;
        let targets: Vec<Target> = capture.targets().to_vec();
        let places: Vec<String> = targets.iter().map(|t| format!("{}:{}", t.ns.name().unwrap_or("host"), t.link)).collect();
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let what = if targets.len() == 1 { targets[0].file_name().replace('/', "-") } else { format!("{}-links", targets.len()) };
        let session = Arc::new(Session {
            id,
            places,
            file_name: format!("{lab}-{what}-{id}.pcapng"),
            capture: Mutex::new(capture),
            file,
            complete,
            listed: AtomicU64::new(0),
            recent: Mutex::new(Recent::default()),
            messages: broadcast::channel(1024).0,
        });
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).insert(id, session.clone());
        let forwarder = session.clone();
        std::thread::Builder::new()
            .name("nsscript-ui-capture".into())
            .spawn(move || forwarder.forward(rx, targets))
            .map_err(|e| Error::io(Code::Internal, "cannot start the capture's thread", &e))?;
        Ok(session)
    }

    /// Stop every capture still running (the server is ending).
    pub fn stop_all(&self) {
        let sessions: Vec<Arc<Session>> = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        for s in sessions {
            let _ = s.stop();
        }
    }
}
