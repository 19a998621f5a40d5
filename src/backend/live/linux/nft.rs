//! One question to nftables over netlink: the policy of a base chain, as
//! `iptables-nft -S CHAIN` prints it in its `-P` line, without starting iptables
//! (a run costs ~4 ms, more than building ten namespaces).
//!
//! iptables-nft keeps its chains in nftables tables of the same names (family ip):
//! asking for chain FORWARD of table filter answers for `iptables -P FORWARD`.

use super::wire;
use crate::error::{Code, Error, Result};
use crate::nsexec;
use rtnetlink::packet_core::{NLMSG_ERROR, NLM_F_ACK, NLM_F_REQUEST};
use std::os::fd::BorrowedFd;

pub(super) const NETLINK_NETFILTER: isize = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFPROTO_IPV4: u8 = 2;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_POLICY: u16 = 5;
const NF_DROP: u32 = 0;

/// Whether the IPv4 chain `chain` of table `table` in the namespace `ns` has policy
/// DROP. No such table or chain: no (nothing is dropped by it).
pub fn policy_is_drop(ns: BorrowedFd<'_>, table: &str, chain: &str) -> Result<bool> {
    let what = format!("cannot read the policy of {chain} (table {table}) from nftables");
    let mut drop = false;
    let found = ask(ns, get_chain(table, chain), what, move |kind, attrs| {
        if kind == NFT_MSG_NEWCHAIN {
            drop |= attributes(attrs).any(|(kind, value)| {
                kind == NFTA_CHAIN_POLICY && value.len() == 4 && u32::from_be_bytes(value.try_into().expect("4")) == NF_DROP
            });
        }
        drop
    })?;
    Ok(found.unwrap_or(false))
}

/// Whether the namespace has the nftables table `table` of family ip (where
/// iptables-nft keeps iptables' table of that name).
pub fn table_exists(ns: BorrowedFd<'_>, table: &str) -> Result<bool> {
    let found = ask(ns, get_table(table), format!("cannot ask nftables for table {table}"), |kind, _| kind == NFT_MSG_NEWTABLE)?;
    Ok(found.unwrap_or(false))
}

/// Send one nftables request inside `ns` and fold its answer's messages (their
/// NFT_MSG_* type and attributes) with `seen` until the ack; None when the kernel
/// answers ENOENT (no such table or chain).
fn ask(
    ns: BorrowedFd<'_>,
    request: Vec<u8>,
    what: String,
    mut seen: impl FnMut(u16, &[u8]) -> bool + Send + 'static,
) -> Result<Option<bool>> {
    nsexec::run_in(ns, move || {
        let socket = nsexec::netlink_socket(NETLINK_NETFILTER)?;
        socket.send(&request, 0).map_err(|e| Error::io(Code::IptablesRefused, what.clone(), &e))?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut answer = false;
        loop {
            let n = wire::recv(&socket, &mut buf)?;
            for msg in wire::messages_in(&buf[..n]) {
                if msg.kind == NLMSG_ERROR {
                    return match msg.errno() {
                        None => Ok(Some(answer)),
                        Some(libc::ENOENT) => Ok(None),
                        Some(errno) => Err(Error::new(Code::IptablesRefused, what).errno(errno)),
                    };
                }
                if msg.kind >> 8 == NFNL_SUBSYS_NFTABLES {
                    // nlmsghdr (16) + nfgenmsg (4), then the attributes.
                    answer = seen(msg.kind & 0xff, msg.bytes.get(20..).unwrap_or_default());
                }
            }
        }
    })
}

/// NFT_MSG_GETTABLE for one table, with an ack.
fn get_table(table: &str) -> Vec<u8> {
    request(NFT_MSG_GETTABLE, &[(NFTA_TABLE_NAME, table)])
}

/// NFT_MSG_GETCHAIN for one chain, with an ack.
fn get_chain(table: &str, chain: &str) -> Vec<u8> {
    request(NFT_MSG_GETCHAIN, &[(NFTA_CHAIN_TABLE, table), (NFTA_CHAIN_NAME, chain)])
}

/// An nftables request of family ip with string attributes, with an ack.
fn request(kind: u16, attrs: &[(u16, &str)]) -> Vec<u8> {
    let mut msg = vec![0u8; 16];
    msg.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    for (kind, text) in attrs {
        let value_len = text.len() + 1;
        msg.extend_from_slice(&((4 + value_len) as u16).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(text.as_bytes());
        msg.push(0);
        msg.resize(msg.len().next_multiple_of(4), 0);
    }
    let len = msg.len() as u32;
    msg[0..4].copy_from_slice(&len.to_ne_bytes());
    msg[4..6].copy_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | kind).to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg
}

/// The (type, value) pairs of a run of netlink attributes.
pub(super) fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[len.next_multiple_of(4).min(data.len())..];
        Some((kind, value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_table_and_chain_as_nftables_expects() {
        let msg = get_chain("filter", "FORWARD");
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize, msg.len());
        assert_eq!(u16::from_ne_bytes(msg[4..6].try_into().unwrap()), 0x0a04);
        let attrs: Vec<_> = attributes(&msg[20..]).collect();
        assert_eq!(attrs, vec![(NFTA_CHAIN_TABLE, &b"filter\0"[..]), (NFTA_CHAIN_NAME, &b"FORWARD\0"[..])]);
    }
}
