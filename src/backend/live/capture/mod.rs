//! The capture engine: a packet socket per link, each opened inside the link's
//! namespace (through the Kernel, which switches namespaces only via nsexec), with the
//! filter libpcap compiled and a TPACKET_V3 ring; one thread polls them all, puts the
//! packets of each wake-up in time order, writes them to a pcapng file, keeps them for
//! `packets()` and hands them to a live consumer (the CLI, the REPL, a trace).
//!
//! A library API: packets come back as data ([`Frame`], decoded by [`decode`]), never
//! printed here, and nothing here knows Rhai.

pub mod bpf;
pub mod decode;
pub mod pcapng;
mod ring;

use super::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::capture::{Dir, Packet, Target};
use ring::Ring;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

/// A link to capture on: where it is and its ifindex there.
#[derive(Clone, Debug, PartialEq)]
pub struct Tap {
    pub target: Target,
    pub index: u32,
}

/// One packet seen on one of the capture's links.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// Nanoseconds since the epoch, as the kernel stamped it.
    pub time_ns: u64,
    /// Which link: an index into the capture's targets.
    pub tap: usize,
    pub dir: Dir,
    /// Its length on the wire.
    pub len: u32,
    /// Its first bytes (as many as the capture keeps).
    pub data: Vec<u8>,
}

impl Frame {
    /// The packet as scripts see it.
    pub fn packet(&self, target: &Target) -> Packet {
        let d = decode::decode(&self.data);
        Packet {
            time: self.time_ns as f64 / 1e9,
            target: target.clone(),
            dir: self.dir,
            len: self.len,
            proto: d.proto.to_string(),
            src: d.src.map(|a| a.to_string()),
            dst: d.dst.map(|a| a.to_string()),
            sport: d.sport,
            dport: d.dport,
            summary: d.summary,
        }
    }
}

/// How to capture.
pub struct Options {
    /// tcpdump's filter syntax.
    pub filter: Option<String>,
    pub snaplen: u32,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Write pcapng here.
    pub file: Option<Box<dyn Write + Send>>,
    /// Bytes of each packet kept in memory for [`Capture::frames`] (0: none are kept).
    pub keep: usize,
    /// Every packet, as it comes, to this channel too.
    pub live: Option<mpsc::Sender<Frame>>,
    /// At most this many packets a second to `live` (the file and the counts still have
    /// every one): a page that lists packets cannot take a gigabit stream's, and the
    /// channel must not pile up whole frames it would drop anyway.
    pub live_per_second: Option<u32>,
    /// How long the kernel holds a partly filled ring block before handing it over:
    /// the latency of a quiet link.
    pub latency_ms: u32,
    /// Ring memory per link (None: shared out of 64 MiB, see `ring_bytes`).
    pub ring_bytes: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            filter: None,
            snaplen: crate::ops::capture::DEFAULT_SNAPLEN,
            count: None,
            file: None,
            keep: 0,
            live: None,
            live_per_second: None,
            latency_ms: 10,
            ring_bytes: None,
        }
    }
}

/// What the capture thread and its owner share.
struct Shared {
    stop: AtomicBool,
    /// Written to wake the thread from poll (an eventfd).
    wake: OwnedFd,
    frames: Mutex<Vec<Frame>>,
    packets: AtomicU64,
    dropped: AtomicU64,
    /// `count` packets were seen: the thread has ended.
    done: AtomicBool,
}

/// A capture running in the background.
pub struct Capture {
    targets: Vec<Target>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<()>>>,
}

/// Ring memory per link: 64 MiB for the whole capture, 1 to 16 MiB a link (tcpdump's
/// default buffer is 2 MiB). The kernel allocates it when the ring is set up.
fn ring_bytes(links: usize) -> usize {
    ((64usize << 20) / links.max(1)).clamp(1 << 20, 16 << 20)
}

impl Capture {
    /// Open a socket on every tap (inside its namespace), arm them with the filter, and
    /// start the thread. Nothing is captured before every link is ready.
    pub fn start<K: Kernel>(k: &mut K, taps: &[Tap], opts: Options) -> Result<Capture> {
        let program = bpf::program(opts.filter.as_deref(), opts.snaplen)?;
        let bytes = opts.ring_bytes.unwrap_or_else(|| ring_bytes(taps.len()));
        // The sockets are opened here, one namespace after another (the Kernel switches
        // them); their rings are set up side by side (see `side_by_side`).
        let mut sockets = Vec::with_capacity(taps.len());
        for t in taps {
            sockets.push((t, k.packet_socket(&t.target.ns, t.index)?));
        }
        let armed = ring::side_by_side(sockets, |(t, fd)| {
            Ring::arm(fd, t.index, &program, bytes, opts.latency_ms)
                .map_err(|e| Error { what: format!("cannot capture on {}: {}", t.target.place(), e.what), ..e })
        });
        let mut rings = Vec::with_capacity(taps.len());
        let mut refused = None;
        for r in armed {
            match r {
                Ok(ring) => rings.push(ring),
                Err(e) => refused = refused.or(Some(e)),
            }
        }
        if let Some(e) = refused {
            ring::side_by_side(rings, drop);
            return Err(e);
        }
        let targets: Vec<Target> = taps.iter().map(|t| t.target.clone()).collect();
        let names: Vec<String> = targets.iter().map(Target::file_name).collect();
        let writer = match opts.file {
            Some(out) => Some(
                pcapng::Writer::new(out, &names, opts.snaplen)
                    .map_err(|e| Error::io(Code::IoFailed, "cannot write the capture file", &e))?,
            ),
            None => None,
        };
        // SAFETY: eventfd(2); the descriptor is owned at once.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(Error::io(Code::Internal, "cannot make an eventfd", &std::io::Error::last_os_error()));
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            // SAFETY: just created.
            wake: unsafe { OwnedFd::from_raw_fd(wake) },
            frames: Mutex::new(Vec::new()),
            packets: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            done: AtomicBool::new(false),
        });
        let worker = Worker {
            rings,
            shared: shared.clone(),
            writer,
            keep: opts.keep,
            live: opts.live,
            live_budget: opts.live_per_second.map(|n| (n, std::time::Instant::now(), 0)),
            count: opts.count,
            latency_ms: opts.latency_ms,
        };
        let thread = std::thread::Builder::new()
            .name("nsscript-capture".into())
            .spawn(move || worker.run())
            .map_err(|e| Error::io(Code::Internal, "cannot start the capture thread", &e))?;
        Ok(Capture { targets, shared, thread: Some(thread) })
    }

    /// The links, in the order frames name them (`Frame::tap`).
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The packets kept so far, in time order.
    pub fn frames(&self) -> Vec<Frame> {
        self.shared.frames.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the capture ended by itself: it has seen its `count` packets, or its
    /// file could not be written any more (a reader at the other end of a pipe left).
    pub fn finished(&self) -> bool {
        self.shared.done.load(Ordering::SeqCst) || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// How many packets it kept, and how many the kernel dropped, so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.shared.packets.load(Ordering::SeqCst), self.shared.dropped.load(Ordering::SeqCst))
    }

    /// Stop (what the kernel still holds is read first) and close every socket: the
    /// counts at the end. The packets kept stay readable; stopping again does nothing.
    pub fn stop(&mut self) -> Result<(u64, u64)> {
        self.end()?;
        Ok(self.counts())
    }

    fn end(&mut self) -> Result<()> {
        let Some(thread) = self.thread.take() else { return Ok(()) };
        self.shared.stop.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(self.shared.wake.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
        thread.join().unwrap_or_else(|_| Err(Error::new(Code::Internal, "the capture thread panicked")))
    }
}

impl Drop for Capture {
    /// A capture dropped unstopped (a script that ended, an error) ends with it.
    fn drop(&mut self) {
        let _ = self.end();
    }
}

struct Worker {
    rings: Vec<Ring>,
    shared: Arc<Shared>,
    writer: Option<pcapng::Writer<Box<dyn Write + Send>>>,
    keep: usize,
    live: Option<mpsc::Sender<Frame>>,
    /// (per second, this second's start, sent in it) when `live` is limited.
    live_budget: Option<(u32, std::time::Instant, u32)>,
    count: Option<u64>,
    latency_ms: u32,
}

impl Worker {
    /// Capture until stopped (or `count` is reached), then close every socket.
    fn run(mut self) -> Result<()> {
        let result = self.capture();
        ring::side_by_side(std::mem::take(&mut self.rings), drop);
        result
    }

    fn capture(&mut self) -> Result<()> {
        let mut pfds: Vec<libc::pollfd> =
            self.rings.iter().map(|r| libc::pollfd { fd: r.raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        pfds.push(libc::pollfd { fd: self.shared.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        // Each ring hands its packets over when a block fills or times out, so packets of
        // two links can arrive in the wrong order: they wait here until nothing older
        // can come (a block's timeout and a margin), then go out in the kernel's order.
        let hold_ns = (u64::from(self.latency_ms) + 5) * 1_000_000;
        let mut pending: Vec<Frame> = Vec::new();
        loop {
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            if stopping {
                // A block the kernel has not retired yet holds the last packets: it is
                // handed over after the block timeout. Wait until every ring has handed
                // over what its socket counted (PACKET_STATISTICS), a second at most.
                let give_up = std::time::Instant::now() + std::time::Duration::from_secs(1);
                loop {
                    self.drain_into(&mut pending);
                    if !self.rings.iter_mut().any(Ring::holds_more) || std::time::Instant::now() >= give_up {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            } else {
                let wait = if pending.is_empty() { 200 } else { (hold_ns / 1_000_000) as i32 };
                // SAFETY: a valid array of pollfd.
                unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, wait) };
                self.drain_into(&mut pending);
            }
            pending.sort_by_key(|f| f.time_ns);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
            let ready = if stopping { pending.len() } else { pending.partition_point(|f| f.time_ns + hold_ns <= now) };
            let mut batch: Vec<Frame> = pending.drain(..ready).collect();
            let full = self.take(&mut batch)?;
            let dropped: u64 = self.rings.iter_mut().map(|r| r.stats().1).sum();
            self.shared.dropped.store(dropped, Ordering::SeqCst);
            if full || stopping {
                if full {
                    self.shared.done.store(true, Ordering::SeqCst);
                }
                return Ok(());
            }
        }
    }

    /// What every ring has handed over, into `pending`.
    fn drain_into(&mut self, pending: &mut Vec<Frame>) {
        for (tap, ring) in self.rings.iter_mut().enumerate() {
            ring.drain(|raw| {
                pending.push(Frame {
                    time_ns: raw.time_ns,
                    tap,
                    dir: if raw.pkttype == libc::PACKET_OUTGOING { Dir::Out } else { Dir::In },
                    len: raw.len,
                    data: raw.data.to_vec(),
                })
            });
        }
    }

    /// Whether one more packet may go to `live` this second.
    fn live_allows(&mut self) -> bool {
        let Some((per_second, start, sent)) = &mut self.live_budget else { return true };
        if start.elapsed() >= std::time::Duration::from_secs(1) {
            (*start, *sent) = (std::time::Instant::now(), 0);
        }
        *sent += 1;
        *sent <= *per_second
    }

    /// Write, keep and pass on the batch; true when `count` is reached.
    fn take(&mut self, batch: &mut Vec<Frame>) -> Result<bool> {
        let mut n = self.shared.packets.load(Ordering::SeqCst);
        for mut frame in batch.drain(..) {
            if self.count.is_some_and(|c| n >= c) {
                break;
            }
            n += 1;
            self.shared.packets.store(n, Ordering::SeqCst);
            if let Some(w) = &mut self.writer {
                w.packet(frame.tap as u32, frame.time_ns, frame.dir == Dir::Out, &frame.data, frame.len)
                    .map_err(|e| Error::io(Code::IoFailed, "cannot write the capture file", &e))?;
            }
            // A consumer that went away only stops being fed.
            if self.live.is_some() && self.live_allows() && self.live.as_ref().is_some_and(|live| live.send(frame.clone()).is_err()) {
                self.live = None;
            }
            if self.keep > 0 {
                frame.data.truncate(self.keep);
                self.shared.frames.lock().unwrap_or_else(|p| p.into_inner()).push(frame);
            }
        }
        let full = self.count.is_some_and(|c| n >= c);
        if let Some(w) = &mut self.writer {
            w.flush().map_err(|e| Error::io(Code::IoFailed, "cannot write the capture file", &e))?;
        }
        Ok(full)
    }
}
