//! One link's packet socket with a TPACKET_V3 receive ring: the kernel writes packets
//! (with its timestamp, length and direction) into blocks of a buffer we share with it
//! by mmap, and hands a block over when it is full or its timeout passed. No copy and
//! no system call per packet, which is what keeps up with a gigabit stream on a
//! loaded machine; PACKET_STATISTICS says how many packets did not fit (drops).

use crate::error::{Code, Error, Result};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A packet as the ring hands it over.
pub struct Raw<'a> {
    /// Nanoseconds since the epoch (the kernel's software timestamp).
    pub time_ns: u64,
    /// sll_pkttype: PACKET_OUTGOING for what the link sent.
    pub pkttype: u8,
    /// Its length on the wire.
    pub len: u32,
    /// What was copied (at most the filter's snapshot length).
    pub data: &'a [u8],
}

pub struct Ring {
    fd: OwnedFd,
    map: *mut u8,
    block_size: usize,
    blocks: usize,
    next: usize,
    /// PACKET_STATISTICS resets on every read: the totals so far.
    seen: u64,
    dropped: u64,
    /// Packets handed over by drain() so far.
    handed: u64,
}

// SAFETY: the mapping belongs to this Ring alone; it is only touched through &mut self.
unsafe impl Send for Ring {}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T, what: &str) -> Result<()> {
    // SAFETY: `value` is a valid T for the duration of the call.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, value as *const T as *const libc::c_void, std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(Error::io(Code::KernelRefused, format!("cannot set up the capture socket: {what}"), &std::io::Error::last_os_error()));
    }
    Ok(())
}

impl Ring {
    /// Make `fd` (a packet socket bound to the link with protocol 0, receiving nothing
    /// yet) a ring of about `bytes` running `program`, then start it: bind it again
    /// with ETH_P_ALL. The filter and the ring are in place before the first packet.
    pub fn arm(fd: OwnedFd, ifindex: u32, program: &[libc::sock_filter], bytes: usize, retire_ms: u32) -> Result<Ring> {
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &(libc::tpacket_versions::TPACKET_V3 as libc::c_int), "TPACKET_V3")?;
        super::bpf::attach(fd.as_fd(), program)?;
        // Blocks of 1 MiB for large rings (a 64 KiB GSO packet fits in one); a small
        // ring is 32 blocks of 16 to 256 KiB (a longer packet is truncated, its length
        // kept). The kernel hands a block over at each timeout even with one packet in
        // it, and drops what comes while every block waits for us: two big blocks left
        // a loaded machine one timeout (a jiffy) to read them, 32 leave it 32.
        let block_size: usize = if bytes >= 8 << 20 { 1 << 20 } else { (bytes / 32).clamp(16 << 10, 256 << 10).next_power_of_two() };
        let blocks = (bytes / block_size).max(2);
        let req = libc::tpacket_req3 {
            tp_block_size: block_size as u32,
            tp_block_nr: blocks as u32,
            // Frames are variable in V3; frame_size/nr only have to be consistent.
            tp_frame_size: 2048,
            tp_frame_nr: (block_size * blocks / 2048) as u32,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &req, "PACKET_RX_RING")?;
        // SAFETY: mapping the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(std::ptr::null_mut(), block_size * blocks, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        if map == libc::MAP_FAILED {
            return Err(Error::io(Code::KernelRefused, "cannot map the capture ring", &std::io::Error::last_os_error()));
        }
        let ring = Ring { fd, map: map as *mut u8, block_size, blocks, next: 0, seen: 0, dropped: 0, handed: 0 };
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: binding our socket to a valid sockaddr_ll.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(Error::io(Code::KernelRefused, "cannot start capturing on the link", &std::io::Error::last_os_error()));
        }
        Ok(ring)
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Hand every packet of the blocks the kernel has filled to `f`, in order, and give
    /// the blocks back. Returns how many packets there were.
    pub fn drain(&mut self, mut f: impl FnMut(Raw<'_>)) -> usize {
        let mut count = 0;
        loop {
            // SAFETY: the block lies inside our mapping; its status word is shared with
            // the kernel, so it is read and written with acquire/release ordering.
            unsafe {
                let block = self.map.add(self.next * self.block_size);
                let desc = &*(block as *const libc::tpacket_block_desc);
                let status = std::ptr::addr_of!(desc.hdr.bh1.block_status) as *const std::sync::atomic::AtomicU32;
                if (*status).load(std::sync::atomic::Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                    self.handed += count as u64;
                    return count;
                }
                let num = desc.hdr.bh1.num_pkts as usize;
                let mut at = desc.hdr.bh1.offset_to_first_pkt as usize;
                for _ in 0..num {
                    let hdr = &*(block.add(at) as *const libc::tpacket3_hdr);
                    let sll =
                        &*(block.add(at + libc::TPACKET_ALIGN(std::mem::size_of::<libc::tpacket3_hdr>())) as *const libc::sockaddr_ll);
                    let data = std::slice::from_raw_parts(block.add(at + usize::from(hdr.tp_mac)), hdr.tp_snaplen as usize);
                    f(Raw {
                        time_ns: u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec),
                        pkttype: sll.sll_pkttype,
                        len: hdr.tp_len,
                        data,
                    });
                    count += 1;
                    at += hdr.tp_next_offset as usize;
                }
                (*status).store(libc::TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
            }
            self.next = (self.next + 1) % self.blocks;
        }
    }

    /// Whether the kernel put packets in the ring that drain() has not handed over yet:
    /// they are in a block it has not retired (it does within the block timeout, in
    /// whole jiffies, later on a loaded machine).
    pub fn holds_more(&mut self) -> bool {
        let (seen, dropped) = self.stats();
        seen.saturating_sub(dropped) > self.handed
    }

    /// Packets the link's socket received and dropped (the ring was full), so far.
    pub fn stats(&mut self) -> (u64, u64) {
        let mut st = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: reading the socket's statistics into a struct of the size given.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc == 0 {
            self.seen += u64::from(st.tp_packets);
            self.dropped += u64::from(st.tp_drops);
        }
        (self.seen, self.dropped)
    }
}

/// `f` on every item, the items shared out among up to 32 threads; the results in
/// the items' order. Setting up a ring and closing a packet socket each wait for an
/// RCU grace period in the kernel (packet_set_ring and packet_release call
/// synchronize_net): 10 to 30 ms each, which one after another made a trace of a
/// 14-link lab wait half a second. Side by side, the waits overlap.
pub fn side_by_side<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(32);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut rest = items.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(per_thread).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let threads: Vec<_> = chunks.into_iter().map(|chunk| s.spawn(move || chunk.into_iter().map(f).collect::<Vec<R>>())).collect();
        threads.into_iter().flat_map(|t| t.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what arm() mapped; nothing refers to it any more.
        unsafe {
            libc::munmap(self.map as *mut libc::c_void, self.block_size * self.blocks);
        }
    }
}
