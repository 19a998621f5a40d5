//! The Rhai modules shipped with nsscript (`stdlib/`), embedded in the binary so an
//! installed `nsscript` needs no files beside it: `import "topo" as topo;`.

use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};

pub const MODULES: &[(&str, &str)] = &[("topo", include_str!("../stdlib/topo.rhai")), ("machine", include_str!("../stdlib/machine.rhai"))];

pub fn source_of(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("stdlib/").unwrap_or(name);
    let name = name.strip_suffix(".rhai").unwrap_or(name);
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// Resolves `import "NAME"` to an embedded module; anything else falls through to the
/// file resolver (imports relative to the lab file).
pub struct Resolver;

impl rhai::ModuleResolver for Resolver {
    fn resolve(&self, engine: &Engine, _source: Option<&str>, path: &str, pos: Position) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let Some(src) = MODULES.iter().find(|(n, _)| *n == path).map(|(_, s)| *s) else {
            return Err(Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)));
        };
        let mut ast = engine.compile(src).map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), Box::new(e.into()), pos)))?;
        ast.set_source(format!("stdlib/{path}.rhai"));
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| Box::new(EvalAltResult::ErrorInModule(path.to_string(), e, pos)))?;
        Ok(module.into())
    }
}
