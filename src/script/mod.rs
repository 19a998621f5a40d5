//! The Rhai side: engine setup, handle types and one file per API family. Thin by
//! design: check arguments, build an [`Op`], hand it to the backend, turn the result
//! into Rhai values. Nothing here knows netlink.

mod args;
mod check;
mod cidr;
mod control;
mod file;
mod firewall;
mod link;
mod ns;
mod overlay;
mod packets;
mod query;
mod registrar;
pub mod registry;
mod router;
mod services;
pub mod types;

pub use file::ScriptFile;

use crate::backend::Backend;
use crate::error::{Error, Origin};
use crate::ops::{Op, Outcome};
use registrar::{FnDoc, Registrar};
use rhai::module_resolvers::{FileModuleResolver, ModuleResolversCollection};
use rhai::{Dynamic, EvalAltResult, NativeCallContext, Position, Scope, AST};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The backend the script's functions drive, shared by every registered function.
pub type Shared = Rc<RefCell<dyn Backend>>;

/// Carry our error through Rhai; Rhai fills in the position of the failing call.
pub fn fail(e: Error) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(e), Position::NONE))
}

/// The text of an error a script function raised (the innermost, when it passed
/// through calls): ours in words, else Rhai's.
pub(crate) fn message(mut err: &EvalAltResult) -> String {
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) = err {
        err = inner;
    }
    match err {
        EvalAltResult::ErrorRuntime(value, _) => match value.clone().try_cast::<Error>() {
            Some(e) => e.to_string(),
            None => value.to_string(),
        },
        other => other.to_string(),
    }
}

pub(crate) fn apply(b: &Shared, op: Op) -> RhaiResult<Outcome> {
    traced(op, |op| b.borrow_mut().apply(op)).map_err(fail)
}

/// Apply `op`, logged at debug level (`-v`) with how long the backend took (a request
/// it queues goes to the kernel at the next flush) and, at trace level, its answer.
fn traced(op: Op, apply: impl FnOnce(Op) -> crate::error::Result<Outcome>) -> crate::error::Result<Outcome> {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return apply(op);
    }
    let shown = format!("{op:?}");
    let start = std::time::Instant::now();
    let out = apply(op);
    let us = start.elapsed().as_micros() as u64;
    match &out {
        Ok(outcome) => {
            tracing::debug!(op = %shown, us, "op");
            tracing::trace!(?outcome, "answer");
        }
        Err(e) => tracing::debug!(op = %shown, us, error = %e, "op refused"),
    }
    out
}

/// Serve one script call with the backend told where the call is: a request it
/// queues, and the kernel refuses at a later flush, still points at this line.
pub(crate) fn from_call<T>(
    ctx: &NativeCallContext,
    b: &Shared,
    f: impl FnOnce(&mut dyn Backend) -> crate::error::Result<T>,
) -> RhaiResult<T> {
    let pos = ctx.call_position();
    let origin = pos.line().map(|line| Origin {
        source: ctx.call_source().unwrap_or_default().to_string(),
        line,
        column: pos.position().unwrap_or(1),
    });
    let mut backend = b.borrow_mut();
    backend.set_origin(origin);
    let out = f(&mut *backend);
    backend.set_origin(None);
    out.map_err(fail)
}

/// [`apply`] for ops whose requests may be queued (see [`from_call`]).
pub(crate) fn apply_from(ctx: &NativeCallContext, b: &Shared, op: Op) -> RhaiResult<Outcome> {
    from_call(ctx, b, |backend| traced(op, |op| backend.apply(op)))
}

/// `--var KEY=VALUE`: integers and booleans arrive typed, everything else as a string.
pub fn var_value(text: &str) -> Dynamic {
    if let Ok(i) = text.parse::<i64>() {
        return i.into();
    }
    match text {
        "true" => true.into(),
        "false" => false.into(),
        _ => text.into(),
    }
}

/// A family of script functions: the documentation of its functions, and how it
/// registers them (see [`registrar`]).
struct Family {
    name: &'static str,
    docs: &'static [FnDoc],
    register: fn(&mut Registrar, &Shared),
}

/// Every family, in the order of the function reference.
const FAMILIES: &[Family] = &[
    Family { name: "namespaces", docs: ns::DOCS, register: ns::register },
    Family { name: "links", docs: link::DOCS, register: link::register },
    Family { name: "queries", docs: query::DOCS, register: query::register },
    Family { name: "control", docs: control::DOCS, register: control::register },
    Family { name: "overlays", docs: overlay::DOCS, register: overlay::register },
    Family { name: "router labs", docs: router::DOCS, register: router::register },
    Family { name: "firewall", docs: firewall::DOCS, register: firewall::register },
    Family { name: "services", docs: services::DOCS, register: services::register },
    Family { name: "checks", docs: check::DOCS, register: check::register },
    Family { name: "packets", docs: packets::DOCS, register: packets::register },
    Family { name: "address arithmetic", docs: cidr::DOCS, register: cidr::register },
];

/// Every script function's documentation, in the order of the reference.
pub fn functions() -> impl Iterator<Item = &'static FnDoc> {
    FAMILIES.iter().flat_map(|f| f.docs)
}

/// Register every family into `engine`; the names registered, by family.
fn register_all(engine: &mut rhai::Engine, backend: &Shared) -> Vec<(&'static str, Vec<&'static str>)> {
    FAMILIES
        .iter()
        .map(|family| {
            let mut r = Registrar::new(engine, family.name, family.docs);
            (family.register)(&mut r, backend);
            (family.name, r.finish())
        })
        .collect()
}

/// An engine bound to a backend, with a persistent scope (variables and functions
/// survive across REPL entries).
pub struct ScriptEngine {
    pub engine: rhai::Engine,
    pub scope: Scope<'static>,
    functions: AST,
    backend: Shared,
}

/// The largest string a script may build (bytes), and the most items in an array or map.
pub const MAX_STRING: usize = 16 << 20;
pub const MAX_ITEMS: usize = 1 << 20;

impl ScriptEngine {
    pub fn new(backend: Shared, base_dir: Option<&Path>) -> Self {
        let mut engine = rhai::Engine::new();
        let mut resolvers = ModuleResolversCollection::new();
        resolvers.push(crate::stdlib::Resolver);
        resolvers.push(match base_dir {
            Some(dir) => FileModuleResolver::new_with_path(dir),
            None => FileModuleResolver::new(),
        });
        engine.set_module_resolver(resolvers);
        // Deep lab scripts are fine; runaway recursion is not.
        engine.set_max_call_levels(256);
        // Debug builds of Rhai default to half these (32/16): too shallow for stdlib functions.
        engine.set_max_expr_depths(64, 32);
        // A runaway script (a string doubled in a loop) must end as an error the run can
        // roll back from, not abort the process: far above what a lab needs.
        engine.set_max_string_size(MAX_STRING);
        engine.set_max_array_size(MAX_ITEMS);
        engine.set_max_map_size(MAX_ITEMS);
        // SIGINT/SIGTERM stop a running script (a loop between two ops too).
        engine.on_progress(|_| crate::signals::stop_requested().map(|sig| Dynamic::from(sig.as_str())));
        engine.register_type_with_name::<Error>("Error");
        // A caught error (`try { .. } catch (err) { print(`${err}`) }`) reads as its message.
        engine.register_fn("to_string", |e: &mut Error| e.to_string());
        register_all(&mut engine, &backend);
        ScriptEngine { engine, scope: Scope::new(), functions: AST::empty(), backend }
    }

    pub fn set_var(&mut self, key: &str, value: Dynamic) {
        self.scope.push_constant(key.to_string(), value);
    }

    pub fn compile(&self, name: &str, source: &str) -> RhaiResult<AST> {
        let mut ast = self.engine.compile_with_scope(&self.scope, source).map_err(Box::<EvalAltResult>::from)?;
        ast.set_source(name);
        Ok(ast)
    }

    /// Run one piece of script (a file, or a REPL entry) in the persistent scope.
    pub fn run(&mut self, ast: AST) -> RhaiResult<Dynamic> {
        self.functions += ast.clone_functions_only();
        let combined = self.functions.merge(&ast);
        let value = self.engine.eval_ast_with_scope::<Dynamic>(&mut self.scope, &combined);
        // Whatever the backend still has queued is done when a script (or a REPL entry)
        // is, also one that failed halfway: what came before the error happened.
        let start = std::time::Instant::now();
        let finished = self.backend.borrow_mut().finish().map_err(fail);
        tracing::debug!(
            source = ast.source().unwrap_or(""),
            us = start.elapsed().as_micros() as u64,
            "the queue is flushed: the entry is done"
        );
        let value = value?;
        finished?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every documented function is registered, and every registered one documented
    /// (the registrars also panic at either; this holds even if they stopped).
    #[test]
    fn the_reference_and_the_engine_hold_the_same_functions() {
        let backend: Shared = Rc::new(RefCell::new(crate::backend::plan::PlanBackend::new("test", "test.rhai").expect("a valid lab name")));
        let mut engine = rhai::Engine::new();
        let registered = register_all(&mut engine, &backend);
        for (family, names) in &registered {
            let documented: Vec<&str> = FAMILIES.iter().find(|f| f.name == *family).unwrap().docs.iter().map(|d| d.name).collect();
            let (names, documented): (BTreeSet<_>, BTreeSet<_>) = (names.iter().copied().collect(), documented.into_iter().collect());
            assert_eq!(names, documented, "the {family} family registers other functions than it documents");
        }
        let all: Vec<&str> = functions().map(|f| f.name).collect();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len(), "a function is documented twice (in two families?): {all:?}");
        assert_eq!(registered.iter().map(|(_, n)| n.len()).sum::<usize>(), all.len());
        // And the engine answers to them.
        assert_eq!(engine.eval::<i64>(r#"cidr_prefix("10.1.0.0/24")"#).unwrap(), 24);
    }
}
