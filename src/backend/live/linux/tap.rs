//! Persistent tap devices, made the way `ip tuntap add mode tap` makes them: the
//! TUNSETIFF ioctl on /dev/net/tun, then TUNSETOWNER/TUNSETGROUP and (once the ledger
//! holds its ifindex: a run killed before leaves no tap behind) TUNSETPERSIST, then the
//! file is closed and the device stays for a VM (qemu `-netdev
//! tap,ifname=NAME,script=no`) or any userspace peer to open. The caller runs this
//! inside the target namespace (`nsexec::in_netns`): a tap is born where the thread is.

use crate::error::{Code, Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn ioctl(fd: i32, req: libc::c_ulong, arg: libc::c_ulong, what: &str) -> Result<()> {
    // SAFETY: the tun ioctls below take an integer argument (or a pointer to an IfReq
    // that outlives the call).
    let rc = unsafe { libc::ioctl(fd, req as _, arg) };
    if rc < 0 {
        return Err(Error::io(Code::LinkCreateRefused, what.to_string(), &std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Create the tap `name` in the calling thread's namespace, not yet persistent: it
/// goes when the returned handle is closed (also by a kill), until [`persist`].
pub fn create(name: &str, owner: Option<u32>, group: Option<u32>) -> Result<File> {
    let what = format!("cannot create tap {name:?}");
    let file = OpenOptions::new().read(true).write(true).open("/dev/net/tun").map_err(|e| {
        Error::io(Code::KernelLacksFeature, what.clone(), &e)
            .help("taps need the tun driver and /dev/net/tun: `modprobe tun`, or a kernel built with CONFIG_TUN")
    })?;
    let fd = file.as_raw_fd();
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags: IFF_TAP | IFF_NO_PI, _pad: [0; 22] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    ioctl(fd, TUNSETIFF, &mut req as *mut IfReq as libc::c_ulong, &what).map_err(|e| match e.errno {
        Some(libc::EBUSY) | Some(libc::EINVAL) => {
            e.with_code(Code::NameTaken).help(format!("a link named {name:?} already exists and is not a free tap"))
        }
        Some(libc::EPERM) => e.help("creating a tap needs CAP_NET_ADMIN"),
        _ => e,
    })?;
    if let Some(uid) = owner {
        ioctl(fd, TUNSETOWNER, libc::c_ulong::from(uid), &format!("cannot give tap {name:?} to uid {uid}"))?;
    }
    if let Some(gid) = group {
        ioctl(fd, TUNSETGROUP, libc::c_ulong::from(gid), &format!("cannot give tap {name:?} to gid {gid}"))?;
    }
    Ok(file)
}

/// Make the tap of `handle` stay after the handle is closed.
pub fn persist(handle: &File, name: &str) -> Result<()> {
    ioctl(handle.as_raw_fd(), TUNSETPERSIST, 1, &format!("cannot make tap {name:?} persistent"))
}
