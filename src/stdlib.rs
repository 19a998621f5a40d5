//! The Rhai modules shipped with nsscript (`stdlib/`, embedded in the binary: see
//! `sources::STDLIB`): how `import` finds them and lab-relative files, and their
//! documentation from their `///` comments.

use crate::sources::{self, STDLIB};
use rhai::{Engine, EvalAltResult, Module, Position, Scope};

/// Resolves `import "NAME"` to an embedded module, and `import "./name"` (or "../",
/// or an absolute path) to name.rhai next to the file that imports it: the lab, or a
/// module imported from it, so modules can import their own neighbours. A module read
/// from a file gets that file's path (as the lab's was given, e.g. "./lib/x.rhai") as
/// its source, which diagnostics read to show the line. Anything not found falls
/// through to the next resolver.
pub struct Resolver;

impl rhai::ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<rhai::Shared<Module>, Box<EvalAltResult>> {
        let not_found = || Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos));
        let (name, text) = match STDLIB.iter().find(|(n, _)| *n == path) {
            Some((_, src)) => (format!("stdlib/{path}.rhai"), src.to_string()),
            None => {
                let file = relative_file(source, path).ok_or_else(not_found)?;
                let text = sources::read_file(&file).map_err(|_| not_found())?;
                (file, text)
            }
        };
        // Errors name the module's file, so the report can show its lines.
        let label = if name.starts_with("stdlib/") { path.to_string() } else { name.clone() };
        let in_module = |e: Box<EvalAltResult>| Box::new(EvalAltResult::ErrorInModule(label.clone(), e, pos));
        let mut ast = engine.compile(&text).map_err(|e| in_module(e.into()))?;
        tracing::debug!(module = path, source = name, "import");
        ast.set_source(name);
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        Ok(module.into())
    }
}

/// The file `import "./x"` means inside `source` (the importing file's path): x.rhai
/// in that file's directory, as a path that stays readable from the current directory.
fn relative_file(source: Option<&str>, path: &str) -> Option<String> {
    use std::path::{Component, Path, PathBuf};
    if !(path.starts_with("./") || path.starts_with("../") || path.starts_with('/')) {
        return None;
    }
    let dir = source.filter(|s| !s.starts_with("stdlib/")).map(Path::new).and_then(Path::parent).unwrap_or(Path::new(""));
    let mut file: PathBuf = dir.join(path).components().filter(|c| *c != Component::CurDir).collect();
    file.set_extension("rhai");
    if !file.is_file() {
        return None;
    }
    // A bare "topo.rhai" would read as the stdlib's topo in diagnostics: keep "./".
    let bare = file.parent().is_some_and(|p| p.as_os_str().is_empty());
    Some(if bare { format!("./{}", file.display()) } else { file.display().to_string() })
}

/// One documented function of a stdlib module, from its `///` comment: the first line
/// is the signature, then the description, then an `Example:` line (which may go on
/// over the following comment lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StdlibDoc {
    pub module: &'static str,
    pub name: String,
    pub signature: String,
    pub description: String,
    pub example: String,
}

/// The documentation of every public function of every embedded module, in file order.
/// `private fn` and functions without a `///` comment are left out.
pub fn docs() -> Vec<StdlibDoc> {
    let mut out = Vec::new();
    for (module, src) in STDLIB {
        let mut comment: Vec<&str> = Vec::new();
        for line in src.lines() {
            let line = line.trim();
            if let Some(text) = line.strip_prefix("///") {
                comment.push(text.strip_prefix(' ').unwrap_or(text));
                continue;
            }
            if let Some(rest) = line.strip_prefix("fn ") {
                let name = rest.split('(').next().unwrap_or("").trim().to_string();
                if let Some((signature, body)) = comment.split_first() {
                    let mut description = Vec::new();
                    let mut example = Vec::new();
                    for l in body {
                        match l.strip_prefix("Example:") {
                            Some(e) => example.push(e.trim()),
                            None if !example.is_empty() => example.push(l.trim()),
                            None => description.push(l.trim()),
                        }
                    }
                    out.push(StdlibDoc {
                        module,
                        name,
                        signature: signature.trim().to_string(),
                        description: description.join(" "),
                        example: example.join("\n"),
                    });
                }
            }
            comment.clear();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_stdlib_function_is_documented() {
        let docs = docs();
        for (module, src) in STDLIB {
            for line in src.lines().filter(|l| l.starts_with("fn ")) {
                let name = line[3..].split('(').next().unwrap().trim();
                let arity = line.split('(').nth(1).unwrap().split(')').next().unwrap().split(',').filter(|a| !a.trim().is_empty()).count();
                let doc = docs
                    .iter()
                    .find(|d| {
                        d.module == *module
                            && d.name == name
                            && d.signature.split(')').next().unwrap().split(',').filter(|a| !a.trim().ends_with('(')).count() == arity
                    })
                    .unwrap_or_else(|| panic!("{module}::{name} with {arity} argument(s) has no /// comment"));
                assert!(
                    doc.signature.starts_with(&format!("{name}(")),
                    "{module}::{name}: the first line is not the signature: {}",
                    doc.signature
                );
                assert!(doc.description.len() > 10, "{module}::{name} has no description");
                assert!(!doc.example.is_empty(), "{module}::{name} has no Example: line");
            }
        }
        let star =
            docs.iter().find(|d| d.module == "topo" && d.name == "star" && d.signature.starts_with("star(n, opts)")).expect("topo::star");
        assert_eq!(star.signature, "star(n, opts) -> #{ bridge, gateway, subnet, nodes, node }");
        assert!(star.description.starts_with("A bridge and n namespaces plugged into it"), "{}", star.description);
        assert!(star.example.starts_with("let lab = topo::star(3"), "{}", star.example);
        // Private helpers stay out.
        assert!(!docs.iter().any(|d| d.name == "first_hops" || d.name == "as_bridge"));
        for m in ["topo", "roles", "checks", "machine"] {
            assert!(docs.iter().any(|d| d.module == m), "no docs for module {m}");
        }
    }

    #[test]
    fn every_module_compiles() {
        let mut engine = rhai::Engine::new();
        engine.set_max_expr_depths(64, 32); // as ScriptEngine sets them
        for (name, src) in STDLIB {
            engine.compile(src).unwrap_or_else(|e| panic!("stdlib/{name}.rhai: {e}"));
        }
    }
}
