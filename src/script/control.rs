//! The script's own course: `sleep` (a pause for the lab to settle) and `assert`.

use super::args;
use super::registrar::{FnDoc, Registrar};
use super::{fail, RhaiResult, Shared};
use crate::error::{Code, Error};

/// Pauses and assertions, in the order of the reference.
pub const DOCS: &[FnDoc] = &[
    FnDoc::new("sleep", "sleep(ms)", "wait"),
    FnDoc::new("assert", "assert(condition, message)", "fail the script with message unless condition holds").details(
        "Fails the script (and rolls back what it built) unless condition is true.",
        r#"assert(r.code == 0, "vm1 reaches the router");"#,
    ),
];

pub fn register(r: &mut Registrar, backend: &Shared) {
    let b = backend.clone();
    r.func("sleep", move |ms: i64| -> RhaiResult<()> {
        let ms = args::u32_in("sleep of", ms, 0, 3_600_000)?;
        // A pause is for the lab to settle: the backend sends what is queued first (a
        // plan writes the pause into the walkthrough instead of waiting itself).
        tracing::debug!(ms, "sleep");
        b.borrow_mut().pause(ms).map_err(fail)
    });
    let b = backend.clone();
    r.func("assert", move |ok: bool, message: &str| -> RhaiResult<()> {
        // A plan runs nothing, so what the script asserts about results is not known
        // there: report it and go on, like the planned reachability checks.
        let advisory = !ok && b.borrow().checks_are_advisory();
        if advisory {
            crate::warnings::warning!("plan: not checked (needs the real lab): {message}");
        }
        if ok || advisory {
            Ok(())
        } else {
            Err(fail(Error::new(Code::AssertFailed, format!("assertion failed: {message}"))))
        }
    });
}
