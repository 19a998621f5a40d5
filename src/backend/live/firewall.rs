//! Firewall changes in the live backend: a rule is added only when missing
//! (`iptables -C`), a chain only when it is not there, and a change to a namespace that
//! outlives the lab is written to the ledger first, with how to undo it. The rules
//! themselves come from `ops::firewall`.

use super::kernel::Kernel;
use super::LiveBackend;
use crate::error::Result;
use crate::lab::Object;
use crate::ops::firewall::{Firewall, FwOp, FwRecord, FwUndo, PortForward, Rule};
use crate::ops::{NsRef, Outcome};

impl<K: Kernel> LiveBackend<K> {
    pub(super) fn firewall(&mut self, op: Firewall) -> Result<Outcome> {
        op.validate()?;
        let ns = &op.ns;
        match &op.op {
            FwOp::Policy { table, chain, policy } => self.set_policy(ns, table, chain, policy)?,
            FwOp::NewChain { table, chain } => self.new_chain(ns, table, chain)?,
            FwOp::Raw { args } => return self.nl.kernel().iptables(ns, args).map(Outcome::Text),
            FwOp::Insert { rule, pos } => self.add_rule(ns, rule, Some(*pos))?,
            FwOp::PortForward(_) => {
                for rule in op.rules().unwrap_or_default() {
                    self.add_rule(ns, &rule, None)?;
                }
                if self.nl.kernel().chain_policy(ns, "filter", "FORWARD")? == "DROP" {
                    self.add_rule(ns, &PortForward::forward_filter().rule(), None)?;
                }
            }
            _ => {
                for rule in op.rules().unwrap_or_default() {
                    self.add_rule(ns, &rule, None)?;
                }
            }
        }
        Ok(Outcome::Done)
    }

    fn add_rule(&mut self, ns: &NsRef, rule: &Rule, pos: Option<u32>) -> Result<()> {
        if self.nl.kernel().rule_exists(ns, rule)? {
            return Ok(());
        }
        let record = FwRecord {
            ns: ns.clone(),
            table: rule.table.clone(),
            chain: rule.chain.clone(),
            undo: FwUndo::Rule(rule.text()),
            ipv6: rule.ipv6,
        };
        self.recorded_fw(record, |b| b.nl.kernel().rule_add(ns, rule, pos))
    }

    /// `-N CHAIN`, once: a chain that is there already (made by an earlier call, or by
    /// someone else) is left as it is, and only one the lab made is removed at `down`.
    fn new_chain(&mut self, ns: &NsRef, table: &str, chain: &str) -> Result<()> {
        if self.nl.kernel().chain_exists(ns, table, chain)? {
            return Ok(());
        }
        let record = FwRecord { ns: ns.clone(), table: table.to_string(), chain: chain.to_string(), undo: FwUndo::Chain, ipv6: false };
        self.recorded_fw(record, |b| b.nl.kernel().chain_add(ns, table, chain))
    }

    /// Apply a firewall change: recorded in the ledger (with how to undo it) when it
    /// lives in a namespace that outlives the lab; otherwise it goes with the namespace.
    fn recorded_fw(&mut self, record: FwRecord, apply: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        if self.state.owns_ns(&record.ns) {
            return apply(self);
        }
        self.created(Object::Fw(record), apply, |_, o| o)
    }

    fn set_policy(&mut self, ns: &NsRef, table: &str, chain: &str, new: &str) -> Result<()> {
        let old = self.nl.kernel().chain_policy(ns, table, chain)?;
        if old == new {
            return Ok(());
        }
        let record =
            FwRecord { ns: ns.clone(), table: table.to_string(), chain: chain.to_string(), undo: FwUndo::Policy(old), ipv6: false };
        self.recorded_fw(record, |b| b.nl.kernel().set_chain_policy(ns, table, chain, new))?;
        if table == "filter" && chain == "FORWARD" && new == "DROP" {
            let bridges: Vec<String> =
                self.state.links().filter(|(_, l)| &l.ns == ns && l.kind == "bridge").map(|(_, l)| l.name.clone()).collect();
            for br in bridges {
                self.warn_bridge_filtering(ns, &br);
            }
        }
        Ok(())
    }

    /// The pitfall of KERNEL.md: with bridge-nf-call-iptables=1 (br_netfilter), frames
    /// between the ports of a bridge traverse the FORWARD chain of the bridge's
    /// namespace; with policy DROP the namespaces on the bridge cannot talk. We do not
    /// open the firewall behind the user's back: we say what is wrong and what to add.
    pub(super) fn warn_bridge_filtering(&mut self, ns: &NsRef, bridge: &str) {
        let k = self.nl.kernel();
        let on = k.sysctl_read(ns, "net.bridge.bridge-nf-call-iptables").map(|v| v == "1").unwrap_or(false);
        if !on || !k.forward_drops(ns) {
            return;
        }
        let target = ns.in_script();
        crate::warnings::warning!(
            "warning: bridge {bridge} in {ns}: the FORWARD policy there is DROP and net.bridge.bridge-nf-call-iptables is 1, \
             so traffic between the bridge's ports is dropped.\n  fix: forward_accept({target}, #{{ iif: \"{bridge}\", oif: \"{bridge}\" }}) \
             (removed at down), or {target}.sysctl(\"net.bridge.bridge-nf-call-iptables\", 0) in a namespace of the lab"
        );
    }
}
