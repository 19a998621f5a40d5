//! How ops read as shell, for `nsscript plan`. Every value a script passes goes
//! through [`quote`]: a command line is built word by word ([`Sh::w`]), so no name,
//! address or rule text can become shell syntax. Only fixed text of ours is written
//! as it is ([`Sh::raw`] takes `&'static str`).

use super::NsRef;

/// Quote a word for the shell only when it needs it.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A command line, word by word.
#[derive(Clone, Debug, Default)]
pub struct Sh(String);

impl Sh {
    /// A program and nothing yet.
    pub fn new(program: &'static str) -> Sh {
        Sh(program.to_string())
    }

    /// `ip` with `-n NS` for a named namespace.
    pub fn ip(ns: &NsRef) -> Sh {
        match ns {
            NsRef::Host => Sh::new("ip"),
            NsRef::Named(n) => Sh::new("ip").raw("-n").w(n),
        }
    }

    /// `ip [-n NS] [-6]`: `-6` for IPv6 objects (routes, rules).
    pub fn ip_family(ns: &NsRef, v6: bool) -> Sh {
        if v6 {
            Sh::ip(ns).raw("-6")
        } else {
            Sh::ip(ns)
        }
    }

    /// A program run inside ns (`ip netns exec NS PROGRAM`).
    pub fn inside(ns: &NsRef, program: &'static str) -> Sh {
        Sh::within(ns).raw(program)
    }

    /// What runs a program inside ns: `ip netns exec NS`, nothing for the host's; the
    /// program follows as words.
    pub fn within(ns: &NsRef) -> Sh {
        match ns {
            NsRef::Host => Sh(String::new()),
            NsRef::Named(n) => Sh::new("ip").raw("netns").raw("exec").w(n),
        }
    }

    fn space(&mut self) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
    }

    /// One word, quoted as it needs.
    pub fn w(mut self, word: impl AsRef<str>) -> Sh {
        self.space();
        self.0.push_str(&quote(word.as_ref()));
        self
    }

    /// Each of `words`, quoted.
    pub fn words<S: AsRef<str>>(self, words: impl IntoIterator<Item = S>) -> Sh {
        words.into_iter().fold(self, |sh, w| sh.w(w))
    }

    /// Words given as `KEY VALUE` when the value is there.
    pub fn opt(self, key: &'static str, value: Option<impl ToString>) -> Sh {
        match value {
            Some(v) => self.raw(key).w(v.to_string()),
            None => self,
        }
    }

    /// Fixed text of ours, as it is.
    pub fn raw(mut self, text: &'static str) -> Sh {
        self.space();
        self.0.push_str(text);
        self
    }

    /// `netns NS` for `ip link ... netns`: a named namespace, or the script's own
    /// (`$$`) for the host's.
    pub fn netns(self, ns: &NsRef) -> Sh {
        match ns {
            NsRef::Host => self.raw("netns").raw("\"$$\""),
            NsRef::Named(n) => self.raw("netns").w(n),
        }
    }

    /// What follows never stops the walkthrough (`|| true`).
    pub fn or_true(self) -> Sh {
        self.raw("|| true")
    }

    pub fn done(self) -> String {
        self.0
    }
}

/// One step of a walkthrough: what it does in words, and its commands. Steps with the
/// same comment in a row are printed under one.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub comment: Option<String>,
    pub commands: Vec<String>,
}

impl Step {
    pub fn new(comment: impl Into<String>, commands: Vec<String>) -> Step {
        Step { comment: Some(comment.into()), commands }
    }

    /// Commands that belong to the step before (an address after its link...).
    pub fn more(commands: Vec<String>) -> Step {
        Step { comment: None, commands }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_and_inert() {
        assert_eq!(quote("eth0"), "eth0");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$(touch F)"), "'$(touch F)'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
        let line = Sh::ip(&NsRef::named("x;y")).raw("link").raw("set").w("e;touch${IFS}M;").raw("up").done();
        assert_eq!(line, "ip -n 'x;y' link set 'e;touch${IFS}M;' up");
        assert_eq!(Sh::ip(&NsRef::Host).raw("link").raw("set").w("a").netns(&NsRef::Host).done(), "ip link set a netns \"$$\"");
        assert_eq!(
            Sh::inside(&NsRef::named("rt"), "sysctl").raw("-qw").w("net.ipv4.ip_forward=1").done(),
            "ip netns exec rt sysctl -qw net.ipv4.ip_forward=1"
        );
    }
}
