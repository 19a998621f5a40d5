//! How a family of script functions is declared. Each family file lists its functions'
//! documentation ([`FnDoc`], in a `DOCS` table beside its `register`), and registers
//! them through a [`Registrar`] that knows that table: registering a name the family
//! does not document panics, and so does a documented name that was never registered,
//! both when the engine is built (every run and every test builds one). The same
//! tables, in family order, are the reference (`script::registry`): `:help`, `nsscript
//! functions` and the README's table.

use rhai::{Dynamic, Engine, EvalContext, Expression, ImmutableString, ParseError, RhaiNativeFunc};
use std::fmt::Display;

/// One script function as the reference shows it. Overloads (several signatures under
/// one name) share one entry.
#[derive(Debug)]
pub struct FnDoc {
    pub name: &'static str,
    /// As the user calls it: `netns(name) -> Netns`, `link.up() -> Link`; overloads
    /// are written `a(x) / a(x, y)`.
    pub signature: &'static str,
    /// One line: the reference table and `:help`.
    pub doc: &'static str,
    /// `:help NAME`: a longer description and an example.
    pub details: Option<(&'static str, &'static str)>,
    /// Offered after a dot though documented as a function (`vm1.links()`).
    pub also_method: bool,
}

impl FnDoc {
    pub const fn new(name: &'static str, signature: &'static str, doc: &'static str) -> Self {
        FnDoc { name, signature, doc, details: None, also_method: false }
    }

    /// What `:help NAME` adds to the one-line doc.
    pub const fn details(self, description: &'static str, example: &'static str) -> Self {
        FnDoc { details: Some((description, example)), ..self }
    }

    /// Completed after a dot too (every function can be called as a method).
    pub const fn also_method(self) -> Self {
        FnDoc { also_method: true, ..self }
    }

    /// Whether it is documented as a method (`x.name(...)`).
    pub fn is_method(&self) -> bool {
        self.signature.split('(').next().is_some_and(|head| head.contains('.'))
    }

    /// Whether completion offers it after a dot.
    pub fn after_dot(&self) -> bool {
        self.is_method() || self.also_method
    }
}

/// Registers one family's functions into the engine, each under a name of its `DOCS`.
pub struct Registrar<'e> {
    engine: &'e mut Engine,
    family: &'static str,
    docs: &'static [FnDoc],
    /// The names registered so far, each once, in order.
    registered: Vec<&'static str>,
}

impl<'e> Registrar<'e> {
    pub fn new(engine: &'e mut Engine, family: &'static str, docs: &'static [FnDoc]) -> Self {
        Registrar { engine, family, docs, registered: Vec::new() }
    }

    /// One signature of a documented function.
    pub fn func<A: 'static, const N: usize, const X: bool, R: Clone + 'static, const F: bool>(
        &mut self,
        name: &'static str,
        func: impl RhaiNativeFunc<A, N, X, R, F> + 'static,
    ) -> &mut Self {
        self.documented(name);
        self.engine.register_fn(name, func);
        self
    }

    /// A documented function that Rhai parses as syntax of its own (`spawn` is a
    /// reserved word, so no function may take the name); see
    /// `Engine::register_custom_syntax_with_state_raw`.
    pub fn syntax(
        &mut self,
        name: &'static str,
        parse: impl Fn(&[ImmutableString], &str, &mut Dynamic) -> Result<Option<ImmutableString>, ParseError> + 'static,
        scope_may_be_changed: bool,
        func: impl Fn(&mut EvalContext, &[Expression], &Dynamic) -> Result<Dynamic, Box<rhai::EvalAltResult>> + 'static,
    ) -> &mut Self {
        self.documented(name);
        self.engine.register_custom_syntax_with_state_raw(name, parse, scope_may_be_changed, func);
        self
    }

    /// A handle type (not a function): printed and debug-printed as the call that makes
    /// it, compared by value.
    pub fn handle<T: Clone + Display + PartialEq + 'static>(&mut self, type_name: &str) -> &mut Self {
        self.engine.register_type_with_name::<T>(type_name);
        self.engine.register_fn("to_string", |v: &mut T| v.to_string());
        self.engine.register_fn("to_debug", |v: &mut T| v.to_string());
        self.engine.register_fn("==", |a: T, b: T| a == b);
        self
    }

    /// A property of a handle (`link.name`), not a function.
    pub fn property<T: Clone + 'static, R: Clone + 'static>(&mut self, name: &str, get: impl Fn(&mut T) -> R + 'static) -> &mut Self {
        self.engine.register_get(name, get);
        self
    }

    /// A documented read-only property (`link.mtu`) that may fail (it asks the backend);
    /// a method of the same name (`link.mtu(n)`) is another function and stays.
    pub fn getter<T: Clone + 'static, R: Clone + 'static>(
        &mut self,
        name: &'static str,
        get: impl Fn(&mut T) -> Result<R, Box<rhai::EvalAltResult>> + 'static,
    ) -> &mut Self {
        self.documented(name);
        self.engine.register_get(name, get);
        self
    }

    fn documented(&mut self, name: &'static str) {
        assert!(
            self.docs.iter().any(|d| d.name == name),
            "script function {name:?} of the {} family has no documentation: add FnDoc::new({name:?}, ...) to its DOCS",
            self.family
        );
        if !self.registered.contains(&name) {
            self.registered.push(name);
        }
    }

    /// The family is registered: every function it documents must be there. Returns
    /// the names registered, in order.
    pub fn finish(self) -> Vec<&'static str> {
        let missing: Vec<&str> = self.docs.iter().map(|d| d.name).filter(|n| !self.registered.contains(n)).collect();
        assert!(missing.is_empty(), "the {} family documents {missing:?} but never registers them", self.family);
        self.registered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCS: &[FnDoc] = &[FnDoc::new("twice", "twice(n) -> i64", "n times two")];

    #[test]
    #[should_panic(expected = "script function \"thrice\" of the test family has no documentation")]
    fn registering_an_undocumented_function_panics() {
        let mut engine = Engine::new();
        let mut r = Registrar::new(&mut engine, "test", DOCS);
        r.func("twice", |n: i64| n * 2);
        r.func("thrice", |n: i64| n * 3);
    }

    #[test]
    #[should_panic(expected = "the test family documents [\"twice\"] but never registers them")]
    fn a_documented_function_that_is_not_registered_panics() {
        let mut engine = Engine::new();
        Registrar::new(&mut engine, "test", DOCS).finish();
    }

    #[test]
    fn overloads_share_one_doc() {
        let mut engine = Engine::new();
        let mut r = Registrar::new(&mut engine, "test", DOCS);
        r.func("twice", |n: i64| n * 2).func("twice", |s: &str| format!("{s}{s}"));
        assert_eq!(r.finish(), ["twice"]);
        assert_eq!(engine.eval::<i64>("twice(21)").unwrap(), 42);
        assert_eq!(engine.eval::<String>("twice(\"ab\")").unwrap(), "abab");
    }
}
