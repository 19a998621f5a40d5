//! pcapng, written as packets come: a section header, one interface description per
//! captured link named `NS/LINK` (so Wireshark and tshark show which link saw each
//! packet), then one enhanced packet block per packet, with nanosecond timestamps
//! (if_tsresol 9) and its direction (epb_flags inbound/outbound).
//!
//! Written here rather than with a crate: these three blocks are all a capture
//! needs, and the writer streams (`-w -` into `wireshark -k -i -`) without building a
//! block value per packet at gigabit rates.

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

pub struct Writer<W: Write> {
    out: W,
    buf: Vec<u8>,
}

fn option(buf: &mut Vec<u8>, code: u16, value: &[u8]) {
    buf.extend(code.to_ne_bytes());
    buf.extend((value.len() as u16).to_ne_bytes());
    buf.extend(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A block: type, total length, `body`, total length again.
fn block(buf: &mut Vec<u8>, kind: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend(kind.to_ne_bytes());
    buf.extend(0u32.to_ne_bytes());
    body(buf);
    buf.resize(buf.len().next_multiple_of(4), 0);
    let total = (buf.len() - start + 4) as u32;
    buf[start + 4..start + 8].copy_from_slice(&total.to_ne_bytes());
    buf.extend(total.to_ne_bytes());
}

impl<W: Write> Writer<W> {
    /// The section header and one interface per name (in order: packets name their
    /// interface by its index here).
    pub fn new(mut out: W, interfaces: &[String], snaplen: u32) -> io::Result<Self> {
        let mut buf = Vec::new();
        block(&mut buf, SHB, |b| {
            b.extend(BYTE_ORDER_MAGIC.to_ne_bytes());
            b.extend(1u16.to_ne_bytes());
            b.extend(0u16.to_ne_bytes());
            b.extend((-1i64).to_ne_bytes()); // section length: not known
            option(b, SHB_USERAPPL, concat!("nsscript ", env!("CARGO_PKG_VERSION")).as_bytes());
            option(b, OPT_END, &[]);
        });
        for name in interfaces {
            block(&mut buf, IDB, |b| {
                b.extend(LINKTYPE_ETHERNET.to_ne_bytes());
                b.extend(0u16.to_ne_bytes());
                b.extend(snaplen.to_ne_bytes());
                option(b, IF_NAME, name.as_bytes());
                option(b, IF_TSRESOL, &[9]);
                option(b, OPT_END, &[]);
            });
        }
        out.write_all(&buf)?;
        buf.clear();
        Ok(Writer { out, buf })
    }

    /// One packet seen on interface `iface` at `time_ns` (since the epoch).
    pub fn packet(&mut self, iface: u32, time_ns: u64, outgoing: bool, data: &[u8], len: u32) -> io::Result<()> {
        block(&mut self.buf, EPB, |b| {
            b.extend(iface.to_ne_bytes());
            b.extend(((time_ns >> 32) as u32).to_ne_bytes());
            b.extend((time_ns as u32).to_ne_bytes());
            b.extend((data.len() as u32).to_ne_bytes());
            b.extend(len.to_ne_bytes());
            b.extend(data);
            b.resize(b.len().next_multiple_of(4), 0);
            option(b, EPB_FLAGS, &(if outgoing { OUTBOUND } else { INBOUND }).to_ne_bytes());
            option(b, OPT_END, &[]);
        });
        // Whole blocks only, in large writes.
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(())
    }

    /// Write what is buffered (a reader at the other end of a pipe sees it now).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_carry_their_length_twice() {
        let mut out = Vec::new();
        {
            let mut w = Writer::new(&mut out, &["vm1/eth0".to_string()], 262_144).unwrap();
            w.packet(0, 1_700_000_000_123_456_789, true, &[1, 2, 3, 4, 5], 60).unwrap();
            w.flush().unwrap();
        }
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < out.len() {
            let kind = u32::from_ne_bytes(out[at..at + 4].try_into().unwrap());
            let len = u32::from_ne_bytes(out[at + 4..at + 8].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            assert_eq!(u32::from_ne_bytes(out[at + len - 4..at + len].try_into().unwrap()) as usize, len);
            kinds.push(kind);
            at += len;
        }
        assert_eq!(kinds, vec![SHB, IDB, EPB]);
        assert!(out.windows(8).any(|w| w == b"vm1/eth0"));
    }
}
