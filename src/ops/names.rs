//! The names a lab gives: interfaces, namespaces and the lab itself. Names are
//! untrusted input that ends up in kernel requests, paths and shell text, so every
//! backend checks them here, by the kernel's and iproute2's rules.

use crate::error::{Code, Error, Result};

/// The kernel's IFNAMSIZ: a link name is at most 15 bytes and a NUL.
pub const IFNAMSIZ: usize = 16;

/// Link names follow the kernel's rules (IFNAMSIZ, no '/', ':' or white space).
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |why: String| {
        Err(Error::new(Code::InvalidName, format!("invalid interface name {name:?}"))
            .why(why)
            .help("interface names are 1 to 15 bytes without '/', ':' or white space, e.g. \"veth0\""))
    };
    if name.is_empty() {
        return bad("the name is empty".into());
    }
    if name.len() >= IFNAMSIZ {
        return bad(format!("it is {} bytes long; the kernel allows at most 15 (IFNAMSIZ)", name.len()));
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not names".into());
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        return bad("it contains '/', ':' or white space".into());
    }
    Ok(())
}

/// Namespace names are validated like iproute2 does, so no name can reach outside
/// `/run/netns`.
pub fn validate_netns_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(Code::InvalidName, format!("invalid namespace name {name:?}"))
            .why(why.to_string())
            .help("use letters, digits, '-', '_' and '.', at most 64 bytes, e.g. \"vm1\""))
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not names");
    }
    if name.contains('/') {
        return bad("it contains '/'");
    }
    if name.len() > 64 {
        return bad("it is longer than 64 bytes");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("it contains white space or a control character");
    }
    Ok(())
}

/// Lab names become directory names: letters, digits, '-', '_' and '.'.
pub fn validate_lab_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::new(Code::InvalidName, format!("invalid lab name {name:?}"))
            .help("lab names use letters, digits, '-', '_' and '.', at most 64 bytes, and do not start with '.'"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(validate_ifname("veth0").is_ok());
        assert!(validate_ifname("a-very-long-nam").is_ok());
        assert!(validate_ifname("a-very-long-name").is_err());
        assert!(validate_ifname("a b").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("").is_err());
    }

    #[test]
    fn namespace_and_lab_names() {
        assert!(validate_netns_name("vm1").is_ok());
        assert!(validate_netns_name("../etc").is_err());
        assert!(validate_netns_name(&"x".repeat(65)).is_err());
        assert!(validate_lab_name("seed000_router").is_ok());
        assert!(validate_lab_name(".hidden").is_err());
        assert!(validate_lab_name("a;b").is_err());
    }
}
