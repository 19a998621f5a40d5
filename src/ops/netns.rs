//! Named namespaces: `netns(name)`, iproute2-compatible (`/run/netns/NAME`).

use super::names;
use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::{Deserialize, Serialize};

/// `ip netns add NAME` with lo up.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateNetns {
    pub name: String,
}

impl CreateNetns {
    pub fn validate(&self) -> Result<()> {
        names::validate_netns_name(&self.name)
    }

    pub fn shell(&self) -> Step {
        let ns = NsRef::named(&self.name);
        Step::new(
            format!("namespace {}", self.name),
            vec![Sh::ip(&NsRef::Host).raw("netns").raw("add").w(&self.name).done(), Sh::ip(&ns).raw("link set lo up").done()],
        )
    }
}

/// What the ledger keeps of a namespace the lab created: its name and its identity, the
/// namespace's cookie (SO_NETNS_COOKIE, never reused; the nsfs inode number is). The
/// cookie is known before the name is claimed (the namespace is made unnamed first), so
/// even the entry's intent identifies it. A ledger of an older nsscript (an `inode`
/// field) has no cookie: `down` then deletes nothing by that name alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NetnsRecord {
    pub name: String,
    pub cookie: Option<u64>,
}

/// The name is someone else's namespace.
pub fn name_taken(name: &str, e: &std::io::Error) -> Error {
    Error::io(Code::NameTaken, format!("cannot create namespace {name:?}"), e).help(format!(
        "a namespace {name:?} already exists and does not belong to this lab: choose another name, or remove it with `ip netns del {name}` if it is yours"
    ))
}

/// A namespace that must exist and does not.
pub fn unknown(name: &str) -> Error {
    Error::new(Code::UnknownNamespace, format!("unknown namespace {name:?}"))
        .why(format!("/run/netns/{name} does not exist"))
        .help("create it first with netns(\"NAME\"), or check `ip netns list`")
}
