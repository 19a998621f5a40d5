//! The handle types scripts hold: small values (a name and a namespace), cheap to
//! clone, with chaining methods that return the handle.

use crate::ops::NsRef;
use std::fmt;

/// A network namespace: `host()` or `netns("name")`.
#[derive(Clone, Debug, PartialEq)]
pub struct Netns(pub NsRef);

/// A link in a namespace: `link(ns, "eth0")`, `bridge("br0")`, `veth("a", "b")`.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub ns: NsRef,
    pub name: String,
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            NsRef::Host => write!(f, "host()"),
            NsRef::Named(n) => write!(f, "netns({n:?})"),
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ns {
            NsRef::Host => write!(f, "link({:?})", self.name),
            NsRef::Named(n) => write!(f, "link(netns({n:?}), {:?})", self.name),
        }
    }
}
