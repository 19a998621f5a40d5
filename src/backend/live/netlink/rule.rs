//! Rule messages: `ip rule add`, its undo, and listing (RTM_NEWRULE/DELRULE/GETRULE with
//! FRA_* attributes).

use super::Netlink;
use crate::backend::live::kernel::Kernel;
use crate::error::{Code, Error, Result};
use crate::ops::rule::{selector, AddRule, RuleInfo};
use crate::ops::NsRef;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

/// The message of a rule, for adding it and for deleting it again.
fn rule_message(op: &AddRule) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = if op.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    msg.header.action = RuleAction::ToTable;
    // The table as FRA_TABLE (any u32); the header's byte is for tables below 256.
    msg.header.table = u8::try_from(op.table).unwrap_or(0);
    msg.attributes.push(RuleAttribute::Table(op.table));
    if let Some(from) = op.from {
        msg.header.src_len = from.prefix();
        msg.attributes.push(RuleAttribute::Source(from.ip()));
    }
    if let Some(to) = op.to {
        msg.header.dst_len = to.prefix();
        msg.attributes.push(RuleAttribute::Destination(to.ip()));
    }
    if let Some(iif) = &op.iif {
        msg.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    if let Some(oif) = &op.oif {
        msg.attributes.push(RuleAttribute::Oifname(oif.clone()));
    }
    if let Some(mark) = op.fwmark {
        msg.attributes.push(RuleAttribute::FwMark(mark));
    }
    if let Some(pref) = op.pref {
        msg.attributes.push(RuleAttribute::Priority(pref));
    }
    msg
}

impl<K: Kernel> Netlink<K> {
    pub fn add_rule(&mut self, op: &AddRule) -> Result<()> {
        self.queue_add_rule(op);
        self.flush()
    }

    /// `ip rule add`, queued.
    pub fn queue_add_rule(&mut self, op: &AddRule) {
        let op = op.clone();
        let msg = RouteNetlinkMessage::NewRule(rule_message(&op));
        self.queue(&op.ns.clone(), msg, NLM_F_CREATE | NLM_F_EXCL, Box::new(move |errno| op.refused(errno)));
    }

    /// `ip rule del`; a rule already gone counts as done.
    pub fn del_rule(&mut self, op: &AddRule) -> Result<()> {
        let what = || format!("cannot remove rule {} in {}", op.describe(), op.ns);
        let msg = RouteNetlinkMessage::DelRule(rule_message(op));
        match self.request_now(&op.ns, msg, 0, |errno| Error::new(Code::KernelRefused, what()).errno(errno)) {
            Err(e) if e.is_errno(libc::ENOENT) || e.is_errno(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The rules of both families, in the order the kernel applies them (`ip rule`, `ip -6 rule`).
    pub fn rules(&mut self, ns: &NsRef) -> Result<Vec<RuleInfo>> {
        let msgs = self.dump(ns, RouteNetlinkMessage::GetRule(RuleMessage::default()), || format!("cannot list the rules of {ns}"))?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewRule(m) = m else { continue };
            // The multicast routing families (ipmr, ip6mr) keep rules of their own.
            if !matches!(m.header.family, AddressFamily::Inet | AddressFamily::Inet6) {
                continue;
            }
            let v6 = m.header.family == AddressFamily::Inet6;
            let mut r = RuleInfo {
                family: if v6 { 6 } else { 4 },
                pref: 0,
                from: "all".into(),
                to: "all".into(),
                iif: None,
                oif: None,
                fwmark: None,
                table: u32::from(m.header.table),
            };
            let net = |ip, len| IpNetwork::new(ip, len).ok();
            for a in &m.attributes {
                match a {
                    RuleAttribute::Priority(p) => r.pref = *p,
                    RuleAttribute::Source(ip) => r.from = selector(net(*ip, m.header.src_len)),
                    RuleAttribute::Destination(ip) => r.to = selector(net(*ip, m.header.dst_len)),
                    RuleAttribute::Iifname(i) => r.iif = Some(i.clone()),
                    RuleAttribute::Oifname(o) => r.oif = Some(o.clone()),
                    RuleAttribute::FwMark(f) => r.fwmark = Some(*f),
                    RuleAttribute::Table(t) => r.table = *t,
                    _ => {}
                }
            }
            if m.header.action != RuleAction::ToTable {
                r.table = 0;
            }
            out.push(r);
        }
        out.sort_by_key(|r| (r.family, r.pref));
        Ok(out)
    }
}
