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
/// namespace (the namespace and its netlink socket), so this covers ~2,000 namespaces.
const FD_TABLE: u64 = 4096;

/// Make room for a lab's descriptors while this is still the only thread. The kernel
/// grows a process's descriptor table by doubling it, and once another thread shares
/// the table each growth waits for an RCU grace period (expand_fdtable): ~10 ms of a
/// star(200) build went there, one wait per doubling. One growth now costs nothing.
/// The soft RLIMIT_NOFILE is raised to match where the hard limit allows (Debian's
/// default soft limit, 1,024, would stop a lab at ~500 namespaces).
pub fn prepare_fd_table() {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    let want = FD_TABLE.min(hard);
    if soft < want && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_err() {
        return;
    }
    // The lowest free descriptor at or above the table's last slot: the table grows
    // to hold it, and stays that size once it is closed.
    if let Ok(fd) = fcntl(std::io::stderr(), FcntlArg::F_DUPFD_CLOEXEC(want.saturating_sub(1) as RawFd)) {
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

/// The namespace's identity: the inode of its nsfs file, the same number `ip netns
/// identify` and `/proc/PID/ns/net` show. None when `/run/netns/NAME` is not a
/// mounted namespace.
pub fn netns_inode(name: &str) -> Option<u64> {
    let path = netns_path(name);
    if !is_netns_mount(&path) {
        return None;
    }
    fs::metadata(&path).ok().map(|m| m.ino())
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
    pub inode: u64,
    pub route_socket: rtnetlink::sys::Socket,
    /// The namespace's handle (what `/run/netns/NAME` opens to), kept for
    /// IFLA_NET_NS_FD and setns without opening the file again.
    pub handle: File,
}

/// `ip netns add NAME`, plus a netlink socket bound to the new namespace (opened
/// by the thread that created it, which saves a switch later).
pub fn create_netns(name: &str) -> Result<NewNetns> {
    validate_netns_name(name)?;
    ensure_run_dir()?;
    let path = netns_path(name);
    // The spare first, so that claiming the name (O_EXCL: of two runs that want it, one
    // gets it) and mounting onto it follow each other at once: a run killed between
    // the two leaves a plain file that `down` must recognise.
    let spare = take_spare()?;
    OpenOptions::new().write(true).create_new(true).mode(0o444).open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            netns::name_taken(name, &e)
        } else {
            Error::io(Code::NamespaceFailed, format!("cannot create namespace {name:?}"), &e)
        }
    })?;
    // Bind-mount the spare namespace under its name, as `ip netns attach` does.
    let fd_path = format!("/proc/self/fd/{}", spare.ns.as_raw_fd());
    let made = mount(Some(fd_path.as_str()), &path, Some("none"), MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| Error::new(Code::NamespaceFailed, format!("cannot create namespace {name:?}")).errno(e as i32))
        .map(|()| spare);
    match made {
        Ok(spare) => {
            let handle = File::from(spare.ns);
            // The nsfs inode: the same number the bind mount shows.
            let inode = handle.metadata().map(|m| m.ino()).unwrap_or(0);
            Ok(NewNetns { inode, route_socket: spare.socket, handle })
        }
        Err(e) => {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// A namespace made ahead of time, with a netlink socket opened inside it.
struct Spare {
    ns: std::os::fd::OwnedFd,
    socket: rtnetlink::sys::Socket,
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
            .and_then(|f| Ok(Spare { ns: f.into(), socket: route_socket()? }));
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

fn take_spare() -> Result<Spare> {
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

/// The sandbox: a private network and mount namespace for this process and all it
/// starts, with its own tmpfs on `/run` (so its `/run/netns` and `/run/nsscript` are
/// private too). The host is never touched; everything vanishes when the process
/// exits. Must run first in `main`, while the process has one thread.
pub fn enter_sandbox() -> Result<()> {
    let fail = |what: &str, e: nix::errno::Errno| {
        Error::new(Code::SandboxFailed, format!("cannot set up the sandbox: {what}"))
            .errno(e as i32)
            .help("the sandbox needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): run it with sudo")
    };
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(|e| fail("unshare", e))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(|e| fail("making / private", e))?;
    mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755"))
        .map_err(|e| fail("mounting a private /run", e))?;
    Ok(())
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
/// machine. Then the same private `/run` as [`enter_sandbox`]. Must run first in
/// `main`, while the process has one thread (unshare(CLONE_NEWUSER) requires it).
pub fn enter_user_sandbox() -> Result<()> {
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS).map_err(|e| {
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
    Ok(())
}

/// A kill between `create_netns`'s placeholder file and its bind mount leaves an empty
/// file `/run/netns/NAME` that is no namespace. Remove it (only that: an empty regular
/// file on /run/netns's own filesystem, never a mount). True when one was removed.
pub fn remove_netns_placeholder(name: &str) -> Result<bool> {
    validate_netns_name(name)?;
    let path = netns_path(name);
    let (Ok(f), Ok(d)) = (fs::symlink_metadata(&path), fs::metadata(NETNS_RUN_DIR)) else { return Ok(false) };
    if !f.file_type().is_file() || f.len() != 0 || f.dev() != d.dev() {
        return Ok(false);
    }
    fs::remove_file(&path).map_err(|e| Error::io(Code::NamespaceFailed, format!("cannot remove {}", path.display()), &e))?;
    Ok(true)
}
