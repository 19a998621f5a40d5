//! Addresses: `link.addr(cidr)` (`ip addr add`).

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// `ip addr add ADDR dev LINK` (IPv6 without duplicate address detection: labs want
/// it usable at once). The ledger keeps it as it is when the link outlives the lab.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AddAddr {
    pub ns: NsRef,
    pub link: String,
    pub addr: IpNetwork,
}

impl AddAddr {
    pub fn refused(&self, errno: i32) -> Error {
        let err =
            Error::new(Code::AddressRefused, format!("cannot add address {} to {:?} in {}", self.addr, self.link, self.ns)).errno(errno);
        if errno == libc::EEXIST {
            err.help(format!("{} already has {}", self.link, self.addr))
        } else {
            err
        }
    }

    pub fn shell(&self) -> Step {
        let mut c = Sh::ip(&self.ns).raw("addr add").w(self.addr.to_string()).raw("dev").w(&self.link);
        if self.addr.is_ipv6() {
            c = c.raw("nodad");
        }
        Step::more(vec![c.done()])
    }

    pub fn describe(&self) -> String {
        format!("address {} on {} in {}", self.addr, self.link, self.ns)
    }
}
