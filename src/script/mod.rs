//! The Rhai side: engine setup, handle types and one file per API family. Thin by
//! design: check arguments, build an [`Op`], hand it to the backend, turn the result
//! into Rhai values. Nothing here knows netlink.

mod args;
mod check;
mod cidr;
mod link;
mod ns;
mod overlay;
mod query;
pub mod registry;
mod router;
pub mod types;

use crate::backend::Backend;
use crate::error::{Error, Origin};
use crate::ops::{Op, Outcome};
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

pub(crate) fn apply(b: &Shared, op: Op) -> RhaiResult<Outcome> {
    b.borrow_mut().apply(op).map_err(fail)
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
    from_call(ctx, b, |backend| backend.apply(op))
}

/// A leading `#!` line is not Rhai: blank it, keeping line numbers, so lab files can
/// be executable.
pub fn strip_shebang(source: &str) -> String {
    if source.starts_with("#!") {
        match source.find('\n') {
            Some(i) => source[i..].to_string(),
            None => String::new(),
        }
    } else {
        source.to_string()
    }
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

/// An engine bound to a backend, with a persistent scope (variables and functions
/// survive across REPL entries).
pub struct ScriptEngine {
    pub engine: rhai::Engine,
    pub scope: Scope<'static>,
    functions: AST,
    backend: Shared,
}

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
        // SIGINT/SIGTERM stop a running script (a loop between two ops too).
        engine.on_progress(|_| crate::signals::stop_requested().map(|sig| Dynamic::from(sig.as_str())));
        engine.register_type_with_name::<Error>("Error");
        ns::register(&mut engine, &backend);
        link::register(&mut engine, &backend);
        query::register(&mut engine, &backend);
        router::register(&mut engine, &backend);
        overlay::register(&mut engine, &backend);
        check::register(&mut engine, &backend);
        cidr::register(&mut engine);
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
        let finished = self.backend.borrow_mut().finish().map_err(fail);
        let value = value?;
        finished?;
        Ok(value)
    }
}
