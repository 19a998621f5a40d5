//! The reference of script functions, read from the families' own tables (see
//! `script::registrar`): the single source for "did you mean", completion, `:help` and
//! the README's reference.

pub use super::registrar::FnDoc;

/// Every script function's documentation, in the order of the reference: each
/// family's `DOCS`, the same tables its `register` is checked against.
pub fn functions() -> impl Iterator<Item = &'static FnDoc> {
    super::functions()
}

pub fn find(name: &str) -> Option<&'static FnDoc> {
    functions().find(|f| f.name == name)
}

/// Registry names close to `name` (edit distance at most 2), best first.
pub fn similar(name: &str) -> Vec<&'static str> {
    let mut scored: Vec<(usize, &'static str)> = functions().map(|f| (distance(name, f.name), f.name)).filter(|(d, _)| *d <= 2).collect();
    scored.sort();
    scored.into_iter().map(|(_, n)| n).collect()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The reference table of the README: built-in functions, then the stdlib modules'
/// documented functions (from their `///` comments).
pub fn markdown() -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut out = String::from("| function | what it does |\n| --- | --- |\n");
    for f in functions() {
        out.push_str(&format!("| `{}` | {} |\n", cell(f.signature), cell(f.doc)));
    }
    out.push_str("\nstdlib modules (`import \"NAME\" as NAME;`, embedded in the binary):\n\n| function | what it does |\n| --- | --- |\n");
    for d in crate::stdlib::docs() {
        out.push_str(&format!("| `{}::{}` | {} |\n", d.module, cell(&d.signature), cell(&d.description)));
    }
    out
}

/// Registry names starting with `prefix`, methods only when `methods`.
pub fn completions(prefix: &str, methods: bool) -> Vec<&'static str> {
    functions().filter(|f| f.name.starts_with(prefix) && (!methods || f.after_dot())).map(|f| f.name).collect()
}

/// The text of `:help NAME` (a built-in function, or a stdlib one as `module::name`
/// or plain `name`).
pub fn help(name: &str) -> Option<String> {
    let Some(f) = find(name) else {
        let (module, fname) = name.split_once("::").map(|(m, n)| (Some(m), n)).unwrap_or((None, name));
        let d = crate::stdlib::docs().into_iter().find(|d| d.name == fname && module.is_none_or(|m| m == d.module))?;
        let mut out = format!("{}::{}  (import \"{}\" as {};)\n\n  {}\n", d.module, d.signature, d.module, d.module, d.description);
        if !d.example.is_empty() {
            out.push_str("\nexample:\n");
            for line in d.example.lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        return Some(out);
    };
    let mut out = format!("{}\n  {}\n", f.signature, f.doc);
    if let Some((desc, example)) = f.details {
        out.push_str(&format!("\n  {desc}\n\nexample:\n"));
        for line in example.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    Some(out)
}
