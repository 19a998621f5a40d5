//! Capture filters: tcpdump's filter language, compiled by libpcap's own compiler
//! (`pcap_compile` on a "dead" Ethernet handle) into classic BPF, which the kernel runs
//! on each packet socket (SO_ATTACH_FILTER) before a packet is copied to us.
//!
//! libpcap is opened with dlopen, only when a filter is given. Linked into the binary,
//! it and what it pulls in (dbus, systemd, gcrypt, lz4, zstd...) cost every nsscript
//! start ~4 ms (measured: /bin/true 1.4 ms, with libpcap preloaded 5.4 ms), more than
//! building a star(10) lab; a process (`tcpdump -dd FILTER`) would cost as much per
//! capture and give the same program. So: libpcap's compiler, loaded on demand.
//!
//! Without a filter the program is one instruction, `ret #snaplen`: that is how the
//! snapshot length is applied in the kernel (libpcap's programs end the same way).

use crate::error::{Code, Error, Result};
use crate::ops::capture::bad_filter;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::OnceLock;

/// DLT_EN10MB: the programs read Ethernet frames, as a packet socket sees them.
const DLT_EN10MB: c_int = 1;
/// BPF_RET | BPF_K: accept `k` bytes of the packet.
const BPF_RET_K: u16 = 0x06;

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut libc::sock_filter,
}

/// The few libpcap functions the compiler needs.
struct Pcap {
    open_dead: unsafe extern "C" fn(c_int, c_int) -> *mut c_void,
    compile: unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int,
    geterr: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    freecode: unsafe extern "C" fn(*mut BpfProgram),
    close: unsafe extern "C" fn(*mut c_void),
}

/// libpcap, opened once (and never closed: it is small and may be needed again).
fn pcap() -> Result<&'static Pcap> {
    static PCAP: OnceLock<std::result::Result<Pcap, String>> = OnceLock::new();
    PCAP.get_or_init(|| {
        // SAFETY: dlopen/dlsym with NUL-terminated names; each symbol is cast to the
        // signature libpcap's header gives it (pcap/pcap.h, stable since libpcap 0.8).
        unsafe {
            let handle = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"]
                .iter()
                .map(|name| CString::new(*name).expect("no NUL"))
                .map(|name| libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL))
                .find(|h| !h.is_null())
                .ok_or_else(|| "libpcap (libpcap.so.0.8) is not installed".to_string())?;
            let sym = |name: &str| -> std::result::Result<*mut c_void, String> {
                let c = CString::new(name).expect("no NUL");
                let p = libc::dlsym(handle, c.as_ptr());
                if p.is_null() {
                    Err(format!("libpcap has no {name}"))
                } else {
                    Ok(p)
                }
            };
            Ok(Pcap {
                open_dead: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int, c_int) -> *mut c_void>(sym("pcap_open_dead")?),
                compile: std::mem::transmute::<
                    *mut c_void,
                    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int,
                >(sym("pcap_compile")?),
                geterr: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> *const c_char>(sym("pcap_geterr")?),
                freecode: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut BpfProgram)>(sym("pcap_freecode")?),
                close: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(sym("pcap_close")?),
            })
        }
    })
    .as_ref()
    .map_err(|why| {
        Error::new(Code::ProgramMissing, "cannot compile a capture filter")
            .why(why.clone())
            .help("capture filters are compiled by libpcap: install it (apt-get install libpcap0.8, which tcpdump needs too), or capture without a filter")
    })
}

/// The BPF program for `filter` (None: every packet), accepting `snaplen` bytes.
pub fn program(filter: Option<&str>, snaplen: u32) -> Result<Vec<libc::sock_filter>> {
    let Some(text) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(vec![libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: snaplen }]);
    };
    let c_text = CString::new(text).map_err(|_| bad_filter(text, "it contains a NUL byte"))?;
    let pcap = pcap()?;
    // SAFETY: a dead handle compiles without any device; the program is copied out
    // before pcap_freecode, and the handle closed on every path.
    unsafe {
        let handle = (pcap.open_dead)(DLT_EN10MB, snaplen as c_int);
        if handle.is_null() {
            return Err(Error::new(Code::Internal, "libpcap could not make a handle to compile the filter"));
        }
        let mut prog = BpfProgram { len: 0, insns: std::ptr::null_mut() };
        // Optimized, with an unknown netmask (only `ip broadcast` would need it).
        let rc = (pcap.compile)(handle, &mut prog, c_text.as_ptr(), 1, 0xffff_ffff);
        let out = if rc != 0 {
            let why = CStr::from_ptr((pcap.geterr)(handle)).to_string_lossy().into_owned();
            Err(bad_filter(text, &why))
        } else {
            let insns = std::slice::from_raw_parts(prog.insns, prog.len as usize).to_vec();
            (pcap.freecode)(&mut prog);
            Ok(insns)
        };
        (pcap.close)(handle);
        out
    }
}

/// Run `program` on every packet the socket would receive (SO_ATTACH_FILTER).
pub fn attach(fd: BorrowedFd<'_>, program: &[libc::sock_filter]) -> Result<()> {
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr() as *mut libc::sock_filter };
    // SAFETY: the kernel copies the program during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog as *const _ as *const c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(Error::io(Code::KernelRefused, "the kernel refused the capture filter", &std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Run a BPF program on one frame as the kernel would (the instructions libpcap
/// emits for Ethernet: loads, jumps, ALU, ret): how many bytes it keeps. For tests.
#[cfg(test)]
pub fn run(program: &[libc::sock_filter], pkt: &[u8]) -> u32 {
    let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
    let mut pc = 0usize;
    let load = |off: usize, size: usize| -> Option<u32> {
        let b = pkt.get(off..off + size)?;
        Some(b.iter().fold(0u32, |acc, v| (acc << 8) | u32::from(*v)))
    };
    while let Some(i) = program.get(pc) {
        pc += 1;
        let class = i.code & 0x07;
        let k = i.k;
        match class {
            0x00 | 0x01 => {
                // ld / ldx
                let size = match i.code & 0x18 {
                    0x00 => 4,
                    0x08 => 2,
                    _ => 1,
                };
                let v = match i.code & 0xe0 {
                    0x00 => Some(k),                                     // imm
                    0x20 => load(k as usize, size),                      // abs
                    0x40 => load((x + k) as usize, size),                // ind
                    0x60 => Some(mem[(k & 15) as usize]),                // mem
                    0x80 => Some(pkt.len() as u32),                      // len
                    0xa0 => load(k as usize, 1).map(|b| (b & 0x0f) * 4), // msh
                    _ => None,
                };
                let Some(v) = v else { return 0 };
                if class == 0 {
                    a = v
                } else {
                    x = v
                }
            }
            0x02 => mem[(k & 15) as usize] = a,
            0x03 => mem[(k & 15) as usize] = x,
            0x04 => {
                let src = if i.code & 0x08 != 0 { x } else { k };
                a = match i.code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x30 if src != 0 => a / src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a << (src & 31),
                    0x70 => a >> (src & 31),
                    0x80 => a.wrapping_neg(),
                    _ => return 0,
                };
            }
            0x05 => {
                let src = if i.code & 0x08 != 0 { x } else { k };
                let taken = match i.code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            0x06 => return if i.code & 0x18 == 0x10 { a } else { k },
            0x07 => {
                if i.code & 0xf8 == 0 {
                    x = a
                } else {
                    a = x
                }
            }
            _ => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: u16, proto: u8) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend([2, 0, 0, 0, 0, 1]);
        f.extend(ethertype.to_be_bytes());
        // An IPv4 header (20 bytes) with `proto`, then 8 bytes of payload.
        f.extend([0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend([8, 0, 0, 0, 0, 1, 0, 1]);
        f
    }

    #[test]
    fn without_a_filter_every_packet_is_kept_up_to_snaplen() {
        let p = program(None, 96).unwrap();
        assert_eq!(run(&p, &frame(0x0800, 1)), 96);
    }

    /// Needs libpcap (installed with tcpdump): the filter is compiled by it and run
    /// here as the kernel runs it.
    #[test]
    fn libpcap_compiles_tcpdump_syntax() {
        let p = program(Some("icmp"), 262_144).unwrap();
        assert_eq!(run(&p, &frame(0x0800, 1)), 262_144, "an ICMP packet passes");
        assert_eq!(run(&p, &frame(0x0800, 17)), 0, "a UDP packet does not");
        assert_eq!(run(&p, &frame(0x0806, 1)), 0, "an ARP frame does not");
        let err = program(Some("icmp and and"), 262_144).unwrap_err();
        assert_eq!(err.code, Code::BadFilter);
        assert!(err.why.unwrap().contains("syntax error"));
    }
}
