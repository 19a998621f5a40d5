//! The only code that switches namespaces or mounts anything: named netns
//! create/open/delete (iproute2-compatible, `/run/netns/NAME`), running a closure or
//! a child process inside a namespace, and the sandbox.
//!
//! Namespace switching is per thread. A closure that must run inside a namespace runs
//! on the namespace worker (which goes home after each job) or on a short-lived thread
//! of its own: the main thread never carries a switched namespace.

use crate::error::{Code, Error, Result};
use crate::ops::names::validate_netns_name;
use crate::ops::netns;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

pub const NETNS_RUN_DIR: &str = "/run/netns";

pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// The namespace nsscript started in, opened once on the main thread before any
/// other thread exists (`/proc/self/ns/net` is the main thread's).
static HOST_NS: OnceLock<File> = OnceLock::new();

/// The thread that opened HOST_NS. It never enters another namespace (only the worker
/// and threads made for one job do), so it can do host-namespace jobs itself.
static HOST_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();

pub fn init_host_ns() -> Result<()> {
    if HOST_NS.get().is_none() {
        let f = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io(Code::NamespaceFailed, "cannot open this process's network namespace", &e))?;
        let _ = HOST_NS.set(f);
        let _ = HOST_THREAD.set(std::thread::current().id());
    }
    Ok(())
}

pub fn host_ns() -> BorrowedFd<'static> {
    HOST_NS.get().expect("init_host_ns() runs first in main").as_fd()
}

/// Descriptors the table is grown to before the first thread: a lab keeps two open per
/// namespace (the namespace and its netlink socket), so this covers ~2,000 namespaces
/// without a regrowth (bigger labs grow the table further as they go).
const FD_TABLE: u64 = 4096;

/// The soft RLIMIT_NOFILE nsscript started with: the programs it runs get it back
/// (some close every descriptor up to the limit, which a limit of a million makes slow).
static ORIGINAL_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Make room for a lab's descriptors while this is still the only thread. The kernel
/// grows a process's descriptor table by doubling it, and once another thread shares
/// the table each growth waits for an RCU grace period (expand_fdtable): ~10 ms of a
/// star(200) build went there, one wait per doubling. One growth now costs nothing.
/// The soft RLIMIT_NOFILE is raised to the hard limit: Debian's default soft limit,
/// 1,024, would stop a lab at ~500 namespaces, and any fixed number at some size.
pub fn prepare_fd_table() {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    ORIGINAL_NOFILE.store(soft, std::sync::atomic::Ordering::Relaxed);
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    // The lowest free descriptor at or above the table's last slot: the table grows
    // to hold it, and stays that size once it is closed.
    let table = FD_TABLE.min(soft);
    if let Ok(fd) = fcntl(std::io::stderr(), FcntlArg::F_DUPFD_CLOEXEC(table.saturating_sub(1) as RawFd)) {
        let _ = nix::unistd::close(fd);
    }
}

/// Open a named namespace's handle.
pub fn open_netns(name: &str) -> Result<File> {
    validate_netns_name(name)?;
    let path = netns_path(name);
    if !is_netns_mount(&path) {
        return Err(netns::unknown(name));
    }
    File::open(&path).map_err(|e| Error::io(Code::NamespaceFailed, format!("cannot open namespace {name:?}"), &e))
}

/// SO_NETNS_COOKIE (Linux 5.14): the cookie of the namespace a socket was made in.
const SO_NETNS_COOKIE: libc::c_int = 71;
/// NS_GET_ID, `_IOR(NSIO, 13, __u64)` on an nsfs file: the namespace's id, which for a
/// network namespace is its cookie (checked equal on 6.18). Older kernels answer ENOTTY.
const NS_GET_ID: libc::c_ulong = (2 << 30) | (8 << 16) | (0xb7 << 8) | 13;

/// The cookie of the namespace `sock` was created in: a 64-bit number the kernel never
/// gives to another namespace (unlike the nsfs inode number, which it reuses).
pub fn socket_netns_cookie(sock: &impl AsRawFd) -> Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cookie`.
    let rc = unsafe { libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&mut cookie as *mut u64).cast(), &mut len) };
    if rc != 0 {
        return Err(Error::io(Code::NamespaceFailed, "cannot read a network namespace's cookie", &std::io::Error::last_os_error())
            .help("namespace cookies need Linux 5.14 or later"));
    }
    Ok(cookie)
}

/// The cookie of the namespace `ns` (an nsfs handle): asked of nsfs where the kernel
/// can answer (NS_GET_ID), else of a socket opened inside it.
pub fn netns_cookie(ns: BorrowedFd<'_>) -> Result<u64> {
    let mut id: u64 = 0;
    // SAFETY: NS_GET_ID writes one u64.
    if unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_ID as _, &mut id as *mut u64) } == 0 {
        return Ok(id);
    }
    run_in(ns, || {
        let sock = route_socket()?;
        socket_netns_cookie(&sock)
    })
}

/// The cookie of the namespace nsscript runs in.
pub fn host_cookie() -> Result<u64> {
    static COOKIE: OnceLock<u64> = OnceLock::new();
    if let Some(c) = COOKIE.get() {
        return Ok(*c);
    }
    let c = netns_cookie(host_ns())?;
    Ok(*COOKIE.get_or_init(|| c))
}

/// What `/run/netns/NAME` holds now.
#[derive(Clone, Debug, PartialEq)]
pub enum NetnsAt {
    Nothing,
    /// A mounted network namespace, with its cookie.
    Namespace(u64),
    /// A plain file on /run/netns itself, no namespace mounted on it: the placeholder a
    /// namespace is mounted onto, left by a run killed between claiming the name and
    /// mounting, or between unmounting and removing it. nsscript's placeholders name
    /// the namespace meant to be there ([`Marker`]); iproute2's are empty.
    Placeholder(Option<Marker>),
    /// Anything else (a directory, a link, a mount of something that is no namespace).
    Other(String),
}

/// What nsscript writes into a placeholder before the namespace is mounted on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    pub cookie: u64,
    pub lab: String,
}

impl Marker {
    fn text(&self) -> String {
        format!("nsscript placeholder of the network namespace with cookie={} of lab={}\n", self.cookie, self.lab)
    }

    fn parse(text: &str) -> Option<Marker> {
        let rest = text.strip_prefix("nsscript placeholder of the network namespace with cookie=")?;
        let (cookie, lab) = rest.trim_end().split_once(" of lab=")?;
        Some(Marker { cookie: cookie.parse().ok()?, lab: lab.to_string() })
    }
}

/// Look at `/run/netns/NAME` without following links or blocking on a FIFO someone put
/// there.
pub fn netns_at(name: &str) -> NetnsAt {
    use std::io::Read;
    if validate_netns_name(name).is_err() {
        return NetnsAt::Other("an invalid name".into());
    }
    let path = netns_path(name);
    let meta = match fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) => return NetnsAt::Nothing,
    };
    if !meta.file_type().is_file() {
        return NetnsAt::Other(if meta.is_dir() { "a directory".into() } else { "a special file".into() });
    }
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(&path) {
        Ok(f) => f,
        Err(e) => return NetnsAt::Other(format!("a file nsscript cannot open ({e})")),
    };
    match nix::sys::statfs::fstatfs(&file) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => {
            return match netns_cookie(file.as_fd()) {
                Ok(c) => NetnsAt::Namespace(c),
                Err(e) => NetnsAt::Other(format!("a namespace whose cookie cannot be read ({e})")),
            }
        }
        _ => {}
    }
    if !is_plain_file_of_run_dir(&meta) {
        return NetnsAt::Other("a mount of something that is no network namespace".into());
    }
    let mut text = String::new();
    let _ = file.take(512).read_to_string(&mut text);
    NetnsAt::Placeholder(Marker::parse(&text))
}

/// A regular file on /run/netns's own filesystem (so nothing is mounted on it).
fn is_plain_file_of_run_dir(meta: &fs::Metadata) -> bool {
    fs::metadata(NETNS_RUN_DIR).is_ok_and(|d| meta.file_type().is_file() && meta.dev() == d.dev())
}

/// A bind-mounted namespace lives on nsfs, another device than the directory holding it.
fn is_netns_mount(path: &Path) -> bool {
    match (fs::metadata(path), fs::metadata(NETNS_RUN_DIR)) {
        (Ok(f), Ok(d)) => f.dev() != d.dev(),
        _ => false,
    }
}

/// Make `/run/netns` exist and be a shared mount, exactly as iproute2 does, so that
/// namespaces created here are visible to `ip netns` in other mount namespaces.
fn ensure_run_dir() -> Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    fs::create_dir_all(NETNS_RUN_DIR).map_err(|e| Error::io(Code::NamespaceFailed, format!("cannot create {NETNS_RUN_DIR}"), &e))?;
    let shared = || mount(Some("none"), NETNS_RUN_DIR, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>);
    if let Err(e) = shared() {
        if e != nix::errno::Errno::EINVAL {
            return Err(Error::new(Code::NamespaceFailed, format!("cannot make {NETNS_RUN_DIR} a shared mount")).errno(e as i32));
        }
        // Not a mount point yet: bind it onto itself, then share it.
        mount(Some(NETNS_RUN_DIR), NETNS_RUN_DIR, Some("none"), MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|e| Error::new(Code::NamespaceFailed, format!("cannot bind-mount {NETNS_RUN_DIR}")).errno(e as i32))?;
        shared().map_err(|e| Error::new(Code::NamespaceFailed, format!("cannot make {NETNS_RUN_DIR} a shared mount")).errno(e as i32))?;
    }
    let _ = DONE.set(());
    Ok(())
}

/// A freshly created named namespace and a netlink socket opened inside it.
pub struct NewNetns {
    pub route_socket: rtnetlink::sys::Socket,
    /// The namespace's handle (what `/run/netns/NAME` opens to), kept for
    /// IFLA_NET_NS_FD and setns without opening the file again.
    pub handle: File,
}

/// `ip netns add NAME` for the namespace `spare` (made ahead, its cookie already known
/// and recorded by the caller), plus the netlink socket opened inside it.
///
/// The name is claimed with a placeholder file that already says which namespace is
/// meant to be there ([`Marker`]: made unnamed with O_TMPFILE, written, then linked
/// under the name, which fails if the name exists, as O_EXCL would): a run killed
/// before the mount, or one killed between `down`'s unmount and unlink, leaves a file
/// that names its namespace and lab, never an empty one that looks like someone
/// else's `ip netns add` under way.
pub fn create_netns(name: &str, spare: Spare, lab: &str) -> Result<NewNetns> {
    validate_netns_name(name)?;
    ensure_run_dir()?;
    let path = netns_path(name);
    claim_placeholder(name, &Marker { cookie: spare.cookie, lab: lab.to_string() })?;
    // Bind-mount the spare namespace under its name, as `ip netns attach` does.
    let fd_path = format!("/proc/self/fd/{}", spare.ns.as_raw_fd());
    match mount(Some(fd_path.as_str()), &path, Some("none"), MsFlags::MS_BIND, None::<&str>) {
        Ok(()) => Ok(NewNetns { route_socket: spare.socket, handle: File::from(spare.ns) }),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(Error::new(Code::NamespaceFailed, format!("cannot create namespace {name:?}")).errno(e as i32))
        }
    }
}

/// Put a placeholder holding `marker` at /run/netns/NAME, atomically: the name either
/// stays free or appears with its content.
fn claim_placeholder(name: &str, marker: &Marker) -> Result<()> {
    use std::io::Write;
    let path = netns_path(name);
    let taken = |e: &std::io::Error| -> Error {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Error::io(Code::NamespaceFailed, format!("cannot create namespace {name:?}"), e);
        }
        match netns_at(name) {
            // A run of a lab killed while it created or removed this namespace.
            NetnsAt::Placeholder(Some(m)) => Error::io(Code::NameTaken, format!("cannot create namespace {name:?}"), e).help(format!(
                "{} is what a run of lab {:?} left when it was killed while creating or removing its namespace {name:?}: \
                 `nsscript down {}` removes it",
                path.display(),
                m.lab,
                m.lab
            )),
            _ => netns::name_taken(name, e),
        }
    };
    let mut tmp = match OpenOptions::new().write(true).custom_flags(libc::O_TMPFILE).mode(0o444).open(NETNS_RUN_DIR) {
        Ok(f) => f,
        // A filesystem without O_TMPFILE: claim the name at once, write it after.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)) => {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o444).open(&path).map_err(|e| taken(&e))?;
            let _ = f.write_all(marker.text().as_bytes());
            return Ok(());
        }
        Err(e) => return Err(Error::io(Code::NamespaceFailed, format!("cannot create namespace {name:?}"), &e)),
    };
    tmp.write_all(marker.text().as_bytes())
        .map_err(|e| Error::io(Code::NamespaceFailed, format!("cannot create namespace {name:?}"), &e))?;
    // linkat of an O_TMPFILE through /proc/self/fd (no CAP_DAC_READ_SEARCH needed).
    let from = CString::new(format!("/proc/self/fd/{}", tmp.as_raw_fd())).expect("no NUL");
    let to = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Error::new(Code::InvalidName, "a NUL in a name"))?;
    // SAFETY: both paths are NUL-terminated C strings that outlive the call.
    if unsafe { libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) } != 0 {
        return Err(taken(&std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A namespace made ahead of time, with a netlink socket opened inside it and the
/// cookie that identifies it (known before it has a name).
pub struct Spare {
    ns: std::os::fd::OwnedFd,
    socket: rtnetlink::sys::Socket,
    pub cookie: u64,
}

/// Namespaces made ahead of need, so that the main thread almost never waits for one:
/// star(200) took 0.92x cstar's time with one ahead, 0.89x with two, 0.85x with four
/// (12 interleaved runs); eight did no better, and star(10) is the same with all three.
const SPARES_AHEAD: usize = 4;

type PendingSpare = std::sync::mpsc::Receiver<Result<Spare>>;

/// The spares on their way, oldest first.
static SPARES: std::sync::Mutex<std::collections::VecDeque<PendingSpare>> = std::sync::Mutex::new(std::collections::VecDeque::new());

/// Creating a network namespace is the costliest kernel step of a lab (~0.3 ms,
/// copy_net_ns). The worker makes the next ones while the main thread configures the
/// current one, so labs of many namespaces use both CPUs. A spare is anonymous until
/// it is named: if nsscript dies, it vanishes with the process.
fn make_spare() -> PendingSpare {
    on_worker_async(move || {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::new(Code::NamespaceFailed, "cannot create a network namespace").errno(e as i32))?;
        let made = File::open("/proc/thread-self/ns/net")
            .map_err(|e| Error::io(Code::NamespaceFailed, "cannot open the new namespace", &e))
            .and_then(|f| {
                let socket = route_socket()?;
                let cookie = socket_netns_cookie(&socket)?;
                Ok(Spare { ns: f.into(), socket, cookie })
            });
        setns(host_ns(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::new(Code::NamespaceFailed, "cannot return to the host namespace").errno(e as i32))?;
        made
    })
}

/// Start making namespaces now, while the script is read and compiled: a lab's first
/// `netns()` then finds one ready. (Unused ones vanish with the process.)
pub fn make_namespaces_ahead() {
    let mut spares = SPARES.lock().unwrap_or_else(|p| p.into_inner());
    while spares.len() < SPARES_AHEAD {
        spares.push_back(make_spare());
    }
}

/// The next namespace made ahead (see [`make_namespaces_ahead`]).
pub fn take_spare() -> Result<Spare> {
    make_namespaces_ahead();
    let pending = SPARES.lock().unwrap_or_else(|p| p.into_inner()).pop_front().expect("spares were queued");
    let spare = pending.recv().unwrap_or_else(|_| Err(Error::new(Code::Internal, "the namespace worker failed")));
    make_namespaces_ahead();
    spare
}

/// `ip netns del NAME`: the namespace itself goes when its last user goes.
pub fn delete_netns(name: &str) -> Result<()> {
    validate_netns_name(name)?;
    let path = netns_path(name);
    let _ = umount2(&path, MntFlags::MNT_DETACH);
    fs::remove_file(&path).map_err(|e| Error::io(Code::NamespaceFailed, format!("cannot remove {}", path.display()), &e))
}

/// Run `f` on a thread that has entered the namespace `ns`.
pub fn in_netns<T: Send>(ns: BorrowedFd<'_>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: the fd is borrowed for the whole scope.
            let ns = unsafe { BorrowedFd::borrow_raw(fd) };
            setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::new(Code::NamespaceFailed, "cannot enter the namespace").errno(e as i32))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::new(Code::Internal, "a namespace thread panicked")))
    })
}

/// A NETLINK_ROUTE socket created in the calling thread's namespace: the socket stays
/// bound to that namespace for its whole life, whoever drives it later.
pub fn route_socket() -> Result<rtnetlink::sys::Socket> {
    netlink_socket(rtnetlink::sys::protocols::NETLINK_ROUTE)
}

/// A netlink socket of `protocol` in the calling thread's namespace, made for requests
/// sent in bursts: pipelined requests leave many acks queued, so the receive buffer
/// gets room (the default ~208 KB holds ~250; FORCE needs CAP_NET_ADMIN, which we have,
/// and is skipped without it), and a kernel that has not answered in 30 s is not going
/// to (a blocking read gives up).
pub fn netlink_socket(protocol: isize) -> Result<rtnetlink::sys::Socket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let sock = rtnetlink::sys::Socket::new(protocol).map_err(|e| Error::io(Code::KernelRefused, "cannot open a netlink socket", &e))?;
    let _ = setsockopt(&sock, sockopt::RcvBufForce, &(4 << 20));
    let _ = setsockopt(&sock, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(30, 0));
    Ok(sock)
}

/// A NETLINK_ROUTE socket inside the namespace `ns`.
pub fn route_socket_in(ns: BorrowedFd<'_>) -> Result<rtnetlink::sys::Socket> {
    run_in(ns, route_socket)
}

/// Run `job` inside the namespace `ns` on the namespace worker (no thread per call);
/// a job for the host namespace asked by the thread living there runs at once (on the
/// worker it would wait behind the namespaces being made ahead).
pub fn run_in<T: Send + 'static>(ns: BorrowedFd<'_>, job: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let on_host_thread = HOST_THREAD.get() == Some(&std::thread::current().id());
    if on_host_thread && ns.as_raw_fd() == host_ns().as_raw_fd() {
        return job();
    }
    let ns = ns.try_clone_to_owned().map_err(|e| Error::io(Code::Internal, "cannot duplicate a namespace handle", &e))?;
    on_worker(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::new(Code::NamespaceFailed, "cannot enter the namespace").errno(e as i32))?;
        let out = job();
        setns(host_ns(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::new(Code::NamespaceFailed, "cannot return to the host namespace").errno(e as i32))?;
        out
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// Run `job` on the namespace worker: one long-lived thread that enters a namespace,
/// does the work and returns home. Spawning a thread per namespace cost ~0.3 ms, more
/// than creating the namespace itself.
fn on_worker<T: Send + 'static>(job: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    on_worker_async(job).recv().unwrap_or_else(|_| Err(Error::new(Code::Internal, "the namespace worker failed")))
}

/// Queue `job` on the namespace worker; its result arrives on the returned channel.
fn on_worker_async<T: Send + 'static>(job: impl FnOnce() -> Result<T> + Send + 'static) -> std::sync::mpsc::Receiver<Result<T>> {
    use std::sync::mpsc;
    use std::sync::Mutex;
    static WORKER: Mutex<Option<mpsc::Sender<Job>>> = Mutex::new(None);
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(job());
    });
    let mut worker = WORKER.lock().unwrap_or_else(|p| p.into_inner());
    let sender = worker.get_or_insert_with(|| {
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("nsscript-netns".into())
            .spawn(move || {
                for job in jobs_rx {
                    job();
                }
            })
            .expect("spawn the namespace worker");
        jobs_tx
    });
    if let Err(mpsc::SendError(job)) = sender.send(job) {
        // The worker died (a panic in a job): start another for the next call.
        *worker = None;
        drop(job);
    }
    rx
}

/// Turn `cmd` into a command that runs inside `ns` the way `ip netns exec` does: it
/// joins the namespace and gets a private mount namespace with a `/sys` that shows
/// the namespace's own interfaces. `ns` None runs it where nsscript runs.
pub fn command_in(ns: Option<RawFd>, cmd: &mut std::process::Command) {
    let root = CString::new("/").unwrap();
    let nofile = ORIGINAL_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
    let sys = CString::new("/sys").unwrap();
    let sysfs = CString::new("sysfs").unwrap();
    // SAFETY: the closure runs between fork and exec and only makes raw syscalls on
    // memory allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // nsscript blocks SIGINT/SIGTERM to handle them on one thread; a child must
            // not inherit that mask (dnsmasq would ignore SIGTERM).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // The open-file limit the user gave nsscript, not the one it raised for itself.
            let mut lim: libc::rlimit = std::mem::zeroed();
            if nofile > 0 && libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && nofile < lim.rlim_cur {
                lim.rlim_cur = nofile;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            let Some(fd) = ns else { return Ok(()) };
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) == 0 {
                libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), libc::MS_SLAVE | libc::MS_REC, std::ptr::null());
                if libc::umount2(sys.as_ptr(), libc::MNT_DETACH) == 0 {
                    libc::mount(sysfs.as_ptr(), sys.as_ptr(), sysfs.as_ptr(), 0, std::ptr::null());
                }
            }
            Ok(())
        });
    }
}

/// The sandbox: a private network, mount and PID namespace for this process and all it
/// starts, with its own tmpfs on `/run` (so its `/run/netns` and `/run/nsscript` are
/// private too) and its own `/proc`. The host is never touched; everything vanishes
/// when the process exits: the lab's processes too, since the run is PID 1 of its PID
/// namespace and the kernel kills every process in it when PID 1 ends. Must run first in
/// `main`, while the process has one thread.
pub fn enter_sandbox() -> Result<()> {
    let fail = |what: &str, e: nix::errno::Errno| {
        Error::new(Code::SandboxFailed, format!("cannot set up the sandbox: {what}"))
            .errno(e as i32)
            .help("the sandbox needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it with sudo")
    };
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID).map_err(|e| fail("unshare", e))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(|e| fail("making / private", e))?;
    mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755"))
        .map_err(|e| fail("mounting a private /run", e))?;
    become_pid_one()
}

/// The pid of the sandboxed run as the machine sees it (for `nsenter -t PID`); this
/// process's own pid outside a sandbox.
pub fn outer_pid() -> u32 {
    OUTER_PID.get().copied().unwrap_or_else(std::process::id)
}

static OUTER_PID: OnceLock<u32> = OnceLock::new();

/// After unshare(CLONE_NEWPID): fork, so that the child is PID 1 of the new PID
/// namespace and goes on with the run; this process stays outside only to wait for it
/// and exit with its status (it never returns). A SIGTERM sent to it (by kill(2), not by
/// the terminal, which signals the child itself) is passed on; if it is killed, the
/// child gets SIGKILL (PR_SET_PDEATHSIG) and the whole sandbox goes with it.
fn become_pid_one() -> Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    let fail =
        |what: &str, e: nix::errno::Errno| Error::new(Code::SandboxFailed, format!("cannot set up the sandbox: {what}")).errno(e as i32);
    let (alive_r, alive_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e))?;
    let mut forwarded = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGCHLD] {
        forwarded.add(sig);
    }
    // Blocked before the fork, so that no signal is lost in between; the child gets
    // its own mask set up by signals::install.
    forwarded.thread_block().map_err(|e| fail("blocking signals", e))?;
    // SAFETY: one thread (main, before any other is started): the child may do anything.
    match unsafe { fork() }.map_err(|e| fail("fork", e))? {
        ForkResult::Parent { child } => {
            drop(alive_r);
            loop {
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                // SIGCHLD wakes us when the child ends; the timeout is only a safety net.
                let timeout = libc::timespec { tv_sec: 1, tv_nsec: 0 };
                // SAFETY: sigtimedwait fills `info` for the set it is given.
                let sig = unsafe { libc::sigtimedwait(forwarded.as_ref(), &mut info, &timeout) };
                // A signal from the terminal reached the child as well (same process
                // group); one sent to us alone by kill(2) is passed on.
                if sig > 0 && sig != libc::SIGCHLD && (info.si_code == libc::SI_USER || info.si_code == libc::SI_QUEUE) {
                    // SAFETY: plain kill(2) of our child.
                    unsafe { libc::kill(child.as_raw(), sig) };
                }
                match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => std::process::exit(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => std::process::exit(128 + sig as i32),
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => std::process::exit(1),
                }
            }
        }
        ForkResult::Child => {
            drop(alive_w);
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            // The parent may have died before the prctl: then its end of the pipe is
            // closed, and a read answers at once.
            let mut byte = [0u8; 1];
            let mut fds = [libc::pollfd { fd: alive_r.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
            // SAFETY: poll on one descriptor we own.
            if unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) } > 0 && nix::unistd::read(&alive_r, &mut byte).unwrap_or(0) == 0 {
                std::process::exit(1);
            }
            drop(alive_r);
            // The machine's pid of this process, from the /proc still mounted (the
            // outer PID namespace's), before our own replaces it.
            if let Some(pid) = fs::read_link("/proc/self").ok().and_then(|p| p.to_str().and_then(|s| s.parse().ok())) {
                let _ = OUTER_PID.set(pid);
            }
            forwarded.thread_unblock().map_err(|e| fail("unblocking signals", e))?;
            mount(Some("proc"), "/proc", Some("proc"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC, None::<&str>)
                .map_err(|e| fail("mounting a private /proc", e))?;
            Ok(())
        }
    }
}

/// Why unprivileged user namespaces are off here, from the knobs that control them
/// (None when none of them says off).
fn userns_blocker() -> Option<String> {
    let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user.max_user_namespaces is 0: set it above 0 (e.g. `sysctl -w user.max_user_namespaces=10000`)".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Some("kernel.unprivileged_userns_clone is 0: enable it with `sysctl -w kernel.unprivileged_userns_clone=1`".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Some(
            "AppArmor restricts unprivileged user namespaces: `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or give nsscript an AppArmor profile that allows userns".into(),
        );
    }
    None
}

/// The sandbox for a user who is not root: a new user namespace (this user mapped to
/// root inside it) together with the network and mount namespaces, which that user
/// namespace then owns, so the lab has every capability over them and none over the
/// machine. Then the same private `/run` and PID namespace as [`enter_sandbox`]. Must run first in
/// `main`, while the process has one thread (unshare(CLONE_NEWUSER) requires it).
pub fn enter_user_sandbox() -> Result<()> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
    unshare(flags).map_err(|e| {
        let err = Error::new(Code::SandboxFailed, "cannot set up the sandbox: no user namespace for this user").errno(e as i32);
        match userns_blocker() {
            Some(why) => err.help(format!(
                "--sandbox without root needs unprivileged user namespaces, which this kernel does not allow: {why}; or run nsscript with sudo"
            )),
            None => err.help("--sandbox without root needs unprivileged user namespaces (user.max_user_namespaces > 0); or run nsscript with sudo"),
        }
    })?;
    let write = |file: &str, text: String| {
        fs::write(format!("/proc/self/{file}"), text.as_bytes())
            .map_err(|e| Error::io(Code::SandboxFailed, format!("cannot set up the sandbox: writing /proc/self/{file}"), &e))
    };
    // setgroups must be denied before an unprivileged process may write gid_map.
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1"))?;
    write("gid_map", format!("0 {gid} 1"))?;
    let fail =
        |what: &str, e: nix::errno::Errno| Error::new(Code::SandboxFailed, format!("cannot set up the sandbox: {what}")).errno(e as i32);
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(|e| fail("making / private", e))?;
    mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755"))
        .map_err(|e| fail("mounting a private /run", e))?;
    USER_SANDBOX.store(true, std::sync::atomic::Ordering::Relaxed);
    become_pid_one()
}

static USER_SANDBOX: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this run is the sandbox of a user who is not root: root inside a user
/// namespace, where only this user's uid and gid exist (a daemon that switches to
/// another user or group fails there).
pub fn in_user_sandbox() -> bool {
    USER_SANDBOX.load(std::sync::atomic::Ordering::Relaxed)
}

/// Remove the placeholder at /run/netns/NAME if it is the one nsscript made for the
/// namespace with `cookie` (see [`create_netns`]): never a mount, never anyone else's
/// file. True when one was removed.
pub fn remove_netns_placeholder(name: &str, cookie: u64) -> Result<bool> {
    validate_netns_name(name)?;
    match netns_at(name) {
        NetnsAt::Placeholder(Some(m)) if m.cookie == cookie => {}
        _ => return Ok(false),
    }
    let path = netns_path(name);
    fs::remove_file(&path).map_err(|e| Error::io(Code::NamespaceFailed, format!("cannot remove {}", path.display()), &e))?;
    Ok(true)
}
