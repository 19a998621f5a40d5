//! One channel for warnings: anything that is worth telling the user but is not an
//! error (a bridge whose FORWARD policy drops its traffic, a VXLAN port too small for
//! its bridge, a check a plan cannot make) goes through [`warn`], from any layer; the
//! backends know nothing of Rhai, the REPL or the command line, and need not.
//!
//! The front end decides where warnings go: to stderr by default (the progress line
//! is taken away while one prints), nowhere with `--quiet` ([`set_quiet`]), or to
//! what the REPL routes them to ([`route`]) so they do not clobber its prompt.
//!
//! ```ignore
//! crate::warnings::warning!("warning: bridge {bridge} in {ns}: ...");   // format!-style
//! crate::warnings::warn(text);                                          // a ready String
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static QUIET: AtomicBool = AtomicBool::new(false);

type Route = Box<dyn FnMut(&str) + Send>;

static ROUTE: Mutex<Option<Route>> = Mutex::new(None);

/// Tell the user `message` (its whole text: "warning: ...", "plan: not checked ...").
pub fn warn(message: impl Into<String>) {
    if QUIET.load(Ordering::Relaxed) {
        return;
    }
    let message = message.into();
    let mut route = ROUTE.lock().unwrap_or_else(|e| e.into_inner());
    match route.as_mut() {
        Some(to) => to(&message),
        None => print(&message),
    }
}

/// [`warn`] with `format!` arguments: `crate::warnings::warning!("bridge {name}: ...")`.
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::warnings::warn(format!($($arg)*))
    };
}
pub(crate) use warning;

/// `--quiet`: warnings are dropped (errors are still reported).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Send warnings to `to` from now on instead of stderr (the REPL does, while it runs).
pub fn route(to: impl FnMut(&str) + Send + 'static) {
    *ROUTE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(to));
}

/// Warnings go to stderr again.
pub fn unroute() {
    *ROUTE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The default: one line (or a few) on stderr, with the progress line out of the way.
pub fn print(message: &str) {
    crate::progress::suspend(|| eprintln!("{message}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn warnings_go_where_they_are_routed_and_nowhere_when_quiet() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let into = seen.clone();
        route(move |m| into.lock().unwrap().push(m.to_string()));
        warn("one");
        warning!("two: {}", 2);
        set_quiet(true);
        warn("dropped");
        set_quiet(false);
        unroute();
        assert_eq!(*seen.lock().unwrap(), ["one", "two: 2"]);
    }
}
