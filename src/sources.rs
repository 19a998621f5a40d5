//! The texts of scripts, as Rhai reads them and as diagnostics show them: the stdlib
//! modules embedded in the binary, lab files and modules read from disk (a `#!` line
//! blanked), and the REPL's entries. Both the module resolver (`stdlib`) and the error
//! reports (`diag`) look sources up here, and nothing here knows either of them.

use std::collections::HashMap;
use std::path::Path;

/// The Rhai modules shipped with nsscript (`stdlib/`), embedded so an installed
/// `nsscript` needs no files beside it: `import "topo" as topo;`.
pub const STDLIB: &[(&str, &str)] = &[
    ("topo", include_str!("../stdlib/topo.rhai")),
    ("machine", include_str!("../stdlib/machine.rhai")),
    ("roles", include_str!("../stdlib/roles.rhai")),
    ("checks", include_str!("../stdlib/checks.rhai")),
];

/// The text of a stdlib module, by its import name ("topo") or its source name
/// ("stdlib/topo.rhai").
pub fn stdlib(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("stdlib/").unwrap_or(name);
    let name = name.strip_suffix(".rhai").unwrap_or(name);
    STDLIB.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
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

/// A script file (a lab, or a module it imports) as Rhai reads it.
pub fn read_file(path: impl AsRef<Path>) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|text| strip_shebang(&text))
}

/// The texts an error may point into, by source name: those given (the lab, the REPL's
/// entries), else a stdlib module, else the file of that name.
#[derive(Default)]
pub struct Sources {
    texts: HashMap<String, String>,
}

impl Sources {
    pub fn add(&mut self, name: &str, text: &str) {
        self.texts.insert(name.to_string(), text.to_string());
    }

    pub fn text(&self, name: &str) -> Option<String> {
        if let Some(t) = self.texts.get(name) {
            return Some(t.clone());
        }
        if let Some(s) = stdlib(name) {
            return Some(s.to_string());
        }
        read_file(name).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shebang_line_is_blanked_keeping_the_line_numbers() {
        assert_eq!(strip_shebang("#!/usr/bin/env nsscript\nnetns(\"a\");\n"), "\nnetns(\"a\");\n");
        assert_eq!(strip_shebang("#!/usr/bin/env nsscript"), "");
        assert_eq!(strip_shebang("netns(\"a\");"), "netns(\"a\");");
    }

    #[test]
    fn stdlib_modules_are_found_by_import_and_by_source_name() {
        assert!(stdlib("topo").is_some_and(|t| t.contains("fn star(")));
        assert_eq!(stdlib("stdlib/topo.rhai"), stdlib("topo"));
        assert_eq!(stdlib("nope"), None);
        let mut sources = Sources::default();
        sources.add("<repl:1>", "let x = 1;");
        assert_eq!(sources.text("<repl:1>").as_deref(), Some("let x = 1;"));
        assert_eq!(sources.text("stdlib/checks.rhai").as_deref(), stdlib("checks"));
    }
}
