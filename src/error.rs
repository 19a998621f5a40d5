//! The one error type of nsscript below the script layer.
//!
//! Every failure carries its code from the catalogue (codes.rs), what went wrong in
//! words, what the kernel (or a program) said, and a help line; `diag` turns it into a
//! miette report pointing into the script.

mod codes;

pub use codes::Code;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    /// Which situation of the catalogue this is (there is no error without one).
    pub code: Code,
    /// What failed, in the user's terms: "cannot create veth pair a/b".
    pub what: String,
    /// Why, as the kernel or a program said it, in words.
    pub why: Option<String>,
    /// What the user can do about it.
    pub help: Option<String>,
    /// The raw errno, when the kernel refused (lets callers react to EEXIST, ENODEV...).
    pub errno: Option<i32>,
    /// The script call that asked for the failed request, when the refusal arrives
    /// later than that call returned (queued requests are sent in batches).
    /// (Boxed: errors travel in every Result, and most have no origin.)
    pub origin: Option<Box<Origin>>,
}

/// A place in a script: the source name Rhai knows it by, and a 1-based line and column.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    pub source: String,
    pub line: usize,
    pub column: usize,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, what: impl Into<String>) -> Self {
        Error { code, what: what.into(), why: None, help: None, errno: None, origin: None }
    }

    /// The same error as another situation of the catalogue: a generic refusal that
    /// turns out to be a name taken (EEXIST), a missing feature (EOPNOTSUPP)...
    pub fn with_code(mut self, code: Code) -> Self {
        self.code = code;
        self
    }

    pub fn why(mut self, why: impl Into<String>) -> Self {
        self.why = Some(why.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The kernel refused with `errno`: say it in words.
    pub fn errno(mut self, errno: i32) -> Self {
        let errno = errno.abs();
        self.errno = Some(errno);
        self.why = Some(errno_words(errno));
        if errno == libc::EMFILE && self.help.is_none() {
            // Reached in labs of many namespaces: each keeps two descriptors open.
            self.help = Some(
                "a lab keeps two file descriptors open per namespace: raise the limit of open files (`ulimit -n`, up to `ulimit -Hn`)"
                    .into(),
            );
        }
        self
    }

    /// Where the request that failed was made (kept if already set).
    pub fn made_at(mut self, origin: Option<Origin>) -> Self {
        if self.origin.is_none() {
            self.origin = origin.map(Box::new);
        }
        self
    }

    pub fn io(code: Code, what: impl Into<String>, err: &std::io::Error) -> Self {
        match err.raw_os_error() {
            Some(errno) => Error::new(code, what).errno(errno),
            None => Error::new(code, what).why(err.to_string()),
        }
    }

    pub fn is_errno(&self, errno: i32) -> bool {
        self.errno == Some(errno)
    }
}

/// `EEXIST` -> "File exists (EEXIST)".
pub fn errno_words(errno: i32) -> String {
    let e = nix::errno::Errno::from_raw(errno);
    format!("{} ({:?})", e.desc(), e)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.what)?;
        if let Some(why) = &self.why {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
