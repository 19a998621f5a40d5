//! The checks a run makes and how each ended: what `nsscript check` lists and
//! `nsscript test` reports as test cases.
//!
//! A check is a `check("NAME", || { ... })` block, or, outside blocks, one assertion
//! (`assert`, `assert_*`, `pingall`), named by its message or its call. A block that
//! fails is reported where it failed and the script goes on with the next statement;
//! the run fails at the end ([`verdict`]). An assertion outside blocks that fails stops
//! the script, as any error does: it becomes its case when the run ends ([`finish`]).
//!
//! The script runs on one thread, so the record is that thread's.

use super::{message, RhaiResult};
use crate::error::{Code, Error};
use rhai::{Dynamic, EvalAltResult};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::time::Instant;

/// One check, as a test case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    pub name: String,
    pub ok: bool,
    pub ms: f64,
    /// Why it failed: the report, as rendered.
    pub message: Option<String>,
}

/// Shows a failed check (its name and the error) where the front end wants it.
type Reporter = Box<dyn Fn(&str, &EvalAltResult) -> String>;

#[derive(Default)]
struct Suite {
    cases: Vec<Case>,
    /// The names of the blocks that run, outermost first.
    blocks: Vec<String>,
    /// Only blocks whose name contains this run (`nsscript test --filter`).
    filter: Option<String>,
    /// Print a line per check as it ends (`nsscript check`).
    listing: bool,
    reporter: Option<Reporter>,
    /// The last assertion outside blocks that failed: its name and its error's text.
    failed: Option<(String, String, f64)>,
    /// How many check blocks ran.
    blocks_run: usize,
}

thread_local! {
    static SUITE: RefCell<Suite> = RefCell::new(Suite::default());
}

fn with<T>(f: impl FnOnce(&mut Suite) -> T) -> T {
    SUITE.with(|s| f(&mut s.borrow_mut()))
}

/// Only checks whose name contains `text` run (and are reported).
pub fn set_filter(text: Option<String>) {
    with(|s| s.filter = text);
}

/// Print one line per check as it ends: `ok` or `FAIL`, its time, its name.
pub fn set_listing(on: bool) {
    with(|s| s.listing = on);
}

/// How a failed check is shown: the front end renders the error (it knows the sources).
pub fn set_reporter(f: impl Fn(&str, &EvalAltResult) -> String + 'static) {
    with(|s| s.reporter = Some(Box::new(f)));
}

/// Whether a check block is running (an assertion inside one is part of it).
pub fn in_block() -> bool {
    with(|s| !s.blocks.is_empty())
}

fn line(case: &Case) -> String {
    let verdict = if case.ok { "ok  " } else { "FAIL" };
    format!("{verdict} {:>7.0} ms  {}", case.ms, case.name)
}

fn record(case: Case) {
    let listing = with(|s| s.listing);
    if listing {
        println!("{}", line(&case));
    }
    with(|s| s.cases.push(case));
}

fn render(name: &str, err: &EvalAltResult) -> String {
    // The reporter is taken out while it runs: rendering must not find the record borrowed.
    let reporter = with(|s| s.reporter.take());
    let text = match &reporter {
        Some(r) => r(name, err),
        None => message(err),
    };
    with(|s| s.reporter = reporter);
    text
}

/// A signal that stopped the script is no check failure: it passes through blocks.
fn is_interrupt(err: &EvalAltResult) -> bool {
    let mut e = err;
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) = e {
        e = inner;
    }
    match e {
        EvalAltResult::ErrorTerminated(..) => true,
        EvalAltResult::ErrorRuntime(v, _) => v.clone().try_cast::<Error>().is_some_and(|e| e.code == Code::Interrupted),
        _ => false,
    }
}

/// Run `body` as the check block `name`: whether it passed. A failure is reported and
/// recorded, and the script goes on; a block the filter leaves out does not run.
pub fn block(name: &str, body: impl FnOnce() -> RhaiResult<Dynamic>) -> RhaiResult<bool> {
    let full = with(|s| s.blocks.iter().map(String::as_str).chain([name]).collect::<Vec<_>>().join(" / "));
    let nested = in_block();
    if !nested && with(|s| s.filter.as_ref().is_some_and(|f| !full.contains(f.as_str()))) {
        return Ok(true);
    }
    with(|s| {
        s.blocks.push(name.to_string());
        s.blocks_run += 1;
    });
    let start = Instant::now();
    let out = body();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    with(|s| s.blocks.pop());
    match out {
        Ok(_) => {
            record(Case { name: full, ok: true, ms, message: None });
            Ok(true)
        }
        Err(e) if is_interrupt(&e) => Err(e),
        Err(e) => {
            let shown = render(&full, &e);
            let case = Case { name: full, ok: false, ms, message: Some(shown.clone()) };
            // A listing shows the check's line first, then why it failed.
            if with(|s| s.listing) {
                record(case);
                eprint!("{shown}");
            } else {
                eprint!("{shown}");
                record(case);
            }
            Ok(false)
        }
    }
}

/// An assertion named `name`: inside a block it is part of the block; outside, a pass is
/// a case at once and a failure (which stops the script) becomes one at [`finish`].
pub fn assertion<T>(name: impl FnOnce() -> String, run: impl FnOnce() -> RhaiResult<T>) -> RhaiResult<T> {
    if in_block() {
        return run();
    }
    let start = Instant::now();
    let out = run();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let name = name();
    let shown = with(|s| s.filter.as_ref().is_none_or(|f| name.contains(f.as_str())));
    match &out {
        Ok(_) if shown => record(Case { name, ok: true, ms, message: None }),
        Ok(_) => {}
        Err(e) if !is_interrupt(e) => with(|s| s.failed = Some((name, message(e), ms))),
        Err(_) => {}
    }
    out
}

/// How many check blocks ran (a run that had some says how they went).
pub fn blocks_run() -> usize {
    with(|s| s.blocks_run)
}

/// The checks recorded so far.
pub fn cases() -> Vec<Case> {
    with(|s| s.cases.clone())
}

/// The run's verdict once the script has ended well: an error when a block failed.
pub fn verdict() -> Option<Error> {
    let failed: Vec<String> = with(|s| s.cases.iter().filter(|c| !c.ok).map(|c| c.name.clone()).collect());
    if failed.is_empty() {
        return None;
    }
    let all = with(|s| s.cases.len());
    Some(
        Error::new(Code::ChecksFailed, format!("{} of {all} checks failed", failed.len()))
            .why(failed.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")),
    )
}

/// Every check of the run, the one that stopped the script included: `error` is how
/// the script ended (its innermost error and its report, rendered), if it failed.
pub fn finish(error: Option<(&EvalAltResult, String)>) -> Vec<Case> {
    let mut cases = cases();
    if let Some((err, shown)) = error {
        let text = message(err);
        let case = match with(|s| s.failed.take()) {
            // The script stopped at this assertion.
            Some((name, failed, ms)) if failed == text => Case { name, ok: false, ms, message: Some(shown) },
            _ => Case { name: "build".into(), ok: false, ms: 0.0, message: Some(shown) },
        };
        cases.push(case);
    }
    cases
}

/// `N passed, N failed`.
pub fn summary(cases: &[Case]) -> String {
    let failed = cases.iter().filter(|c| !c.ok).count();
    format!("{} passed, {failed} failed", cases.len() - failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::fail;

    fn failing() -> RhaiResult<Dynamic> {
        Err(fail(Error::new(Code::TcpFailed, "10.0.0.1:80 does not accept a TCP connection")))
    }

    #[test]
    fn blocks_and_assertions_become_cases() {
        set_reporter(|name, err| format!("[{name}] {}\n", message(err)));
        assert!(block("web", || Ok(Dynamic::UNIT)).unwrap());
        // Inside a block an assertion is the block's; the failure is recorded, not raised.
        assert!(!block("db", || assertion(|| "assert_tcp(a, \"10.0.0.1:80\")".into(), failing)).unwrap());
        assertion(|| "a reaches b".into(), || Ok(())).unwrap();
        let stop = assertion(|| "assert_tcp(b, \"10.0.0.2:80\")".into(), failing).unwrap_err();
        let cases = finish(Some((&stop, "the report".into())));
        let seen: Vec<(&str, bool)> = cases.iter().map(|c| (c.name.as_str(), c.ok)).collect();
        assert_eq!(seen, [("web", true), ("db", false), ("a reaches b", true), ("assert_tcp(b, \"10.0.0.2:80\")", false)]);
        assert_eq!(cases[1].message.as_deref(), Some("[db] 10.0.0.1:80 does not accept a TCP connection\n"));
        assert_eq!(cases[3].message.as_deref(), Some("the report"));
        assert_eq!(summary(&cases), "2 passed, 2 failed");
        assert_eq!(verdict().map(|e| e.code), Some(Code::ChecksFailed));
        // A filter leaves other blocks out (they do not run).
        set_filter(Some("web".into()));
        let mut ran = false;
        assert!(block("db", || {
            ran = true;
            Ok(Dynamic::UNIT)
        })
        .unwrap());
        assert!(!ran);
        set_filter(None);
    }
}
