//! Every error becomes one miette diagnostic: its code from the catalogue, the span
//! in the script (or module), what went wrong, what the kernel said in words, a help
//! line, and the chain of calls that led there.

use crate::error::{Code, Error};
use crate::script::registry;
use crate::sources::{self, Sources};
use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceCode, SourceSpan};
use rhai::{EvalAltResult, Position};
use std::fmt;
use std::io::IsTerminal;

#[derive(Debug)]
pub struct Report {
    /// None only for the frames of a call chain, which are places, not errors.
    pub code: Option<Code>,
    pub message: String,
    src: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    pub help: Option<String>,
    related: Vec<Report>,
}

impl Report {
    /// An error that is not about a place in a script (bad arguments, `down`...).
    pub fn plain(e: &Error) -> Self {
        let message = match &e.why {
            Some(why) => format!("{}: {why}", e.what),
            None => e.what.clone(),
        };
        Report { code: Some(e.code), message, src: None, labels: vec![], help: Some(help_for(e.code, e.help.clone())), related: vec![] }
    }
}

impl Report {
    /// This report as the interruption it really is: a signal stopped the script at
    /// the place shown (the error it surfaced as says nothing more).
    pub fn interrupted(mut self, message: String) -> Self {
        self.code = Some(Code::Interrupted);
        self.message = message;
        self.help = Some(Code::Interrupted.help().to_string());
        for label in &mut self.labels {
            *label = LabeledSpan::new_with_span(Some("stopped here".into()), label.inner().to_owned());
        }
        self
    }
}

/// The error's own help, or else its code's generic one: every report has a help line.
fn help_for(code: Code, own: Option<String>) -> String {
    own.unwrap_or_else(|| code.help().to_string())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.code.map(|c| Box::new(c.qualified()) as Box<dyn fmt::Display>)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.src.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
        }
    }
}

/// Rhai positions are line + character column; miette wants a byte span.
fn span_at(text: &str, pos: Position) -> Option<SourceSpan> {
    let line = pos.line()?;
    let col = pos.position().unwrap_or(1);
    let line_start: usize = text.split_inclusive('\n').take(line - 1).map(str::len).sum();
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let offset_in_line: usize = line_text.chars().take(col.saturating_sub(1)).map(char::len_utf8).sum();
    let rest = &line_text[offset_in_line.min(line_text.len())..];
    // Underline the word at the position (a function name, usually).
    let len = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').map(char::len_utf8).sum::<usize>().max(1);
    Some(SourceSpan::new((line_start + offset_in_line).into(), len))
}

/// A report pointing at `pos` in `source`; `code` None for a frame of a call chain.
fn located(
    sources: &Sources,
    source: &str,
    pos: Position,
    code: Option<Code>,
    label: String,
    message: String,
    help: Option<String>,
) -> Report {
    let text = sources.text(source);
    let span = text.as_deref().and_then(|t| span_at(t, pos));
    let labels = span.map(|s| vec![LabeledSpan::new_with_span(Some(label), s)]).unwrap_or_default();
    Report { code, message, src: text.map(|t| NamedSource::new(source, t)), labels, help, related: vec![] }
}

/// The innermost error's code, message, label and help.
fn describe(err: &EvalAltResult) -> (Code, String, String, Option<String>) {
    match err {
        EvalAltResult::ErrorRuntime(value, _) => {
            if let Some(e) = value.clone().try_cast::<Error>() {
                return (e.code, e.what.clone(), e.why.clone().unwrap_or_else(|| "here".into()), e.help.clone());
            }
            (Code::ScriptError, format!("script error: {value}"), "thrown here".into(), None)
        }
        EvalAltResult::ErrorParsing(pe, _) => (Code::Syntax, format!("syntax error: {pe}"), "here".into(), None),
        EvalAltResult::ErrorTerminated(value, _) => (Code::Interrupted, format!("interrupted by {value}"), "stopped here".into(), None),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split('(').next().unwrap_or(sig).trim();
            let name = name.rsplit("::").next().unwrap_or(name);
            let help = match registry::find(name) {
                Some(f) => Some(format!("{name} is called as {}", f.signature)),
                None => {
                    let near = registry::similar(name);
                    if near.is_empty() {
                        None
                    } else {
                        Some(format!(
                            "did you mean {}?",
                            near.iter().map(|n| registry::find(n).map(|f| f.signature).unwrap_or(n)).collect::<Vec<_>>().join(" or ")
                        ))
                    }
                }
            };
            let (code, message) = if registry::find(name).is_some() {
                (Code::WrongArguments, format!("wrong arguments for {name}: {sig}"))
            } else {
                (Code::UnknownFunction, format!("unknown function {sig}"))
            };
            (code, message, "called here".into(), help)
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            Code::ScriptLimit,
            format!("{what} is larger than nsscript allows"),
            "grown here".into(),
            Some(format!(
                "strings may hold {} MiB, arrays and maps {} items: look for a loop that keeps doubling a value",
                crate::script::MAX_STRING >> 20,
                crate::script::MAX_ITEMS
            )),
        ),
        EvalAltResult::ErrorStackOverflow(_) | EvalAltResult::ErrorTooManyOperations(_) => (
            Code::ScriptLimit,
            err.to_string().lines().next().unwrap_or("too deep").to_string(),
            "here".into(),
            Some("look for a function that calls itself without end".into()),
        ),
        EvalAltResult::ErrorVariableNotFound(name, _) => (
            Code::UnknownVariable,
            format!("unknown variable {name}"),
            "used here".into(),
            Some(format!("define it with `let {name} = ...;`, or pass it with --var {name}=VALUE")),
        ),
        EvalAltResult::ErrorModuleNotFound(name, _) => (
            Code::UnknownModule,
            format!("cannot find module {name:?}"),
            "imported here".into(),
            Some(format!(
                "stdlib modules: {}; other imports are files relative to the lab (\"./name\" for name.rhai)",
                sources::STDLIB.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )),
        ),
        other => {
            let text = other.to_string();
            let first = text.lines().next().unwrap_or("error").to_string();
            (Code::ScriptError, first, "here".into(), None)
        }
    }
}

fn origin_of(err: &EvalAltResult) -> Option<crate::error::Origin> {
    match err {
        EvalAltResult::ErrorRuntime(value, _) => value.clone().try_cast::<Error>().and_then(|e| e.origin.map(|o| *o)),
        _ => None,
    }
}

/// Build the report for a script error raised while running `main`.
pub fn from_rhai(err: &EvalAltResult, main: &str, sources: &Sources) -> Report {
    let mut frames: Vec<(String, Position, String)> = Vec::new();
    let mut source = main.to_string();
    let mut cur = err;
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                frames.push((source.clone(), *pos, format!("in the call to {name}()")));
                if !src.is_empty() {
                    source = src.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                frames.push((source.clone(), *pos, format!("while importing {path:?}")));
                source = sources::stdlib(path).map(|_| format!("stdlib/{path}.rhai")).unwrap_or_else(|| path.clone());
                cur = inner;
            }
            _ => break,
        }
    }
    let (code, message, label, help) = describe(cur);
    // A queued request refused at a later flush: point at the call that made it (the
    // calls that led to the flush have nothing to do with it).
    if let Some(origin) = origin_of(cur) {
        let source = match origin.source.as_str() {
            "" => main.to_string(),
            s if !s.starts_with("stdlib/") && sources::stdlib(s).is_some() => format!("stdlib/{s}.rhai"),
            s => s.to_string(),
        };
        let at = Position::new(origin.line as u16, origin.column as u16);
        return located(sources, &source, at, Some(code), label, message, Some(help_for(code, help)));
    }
    let mut report = located(sources, &source, cur.position(), Some(code), label, message, Some(help_for(code, help)));
    report.related =
        frames.into_iter().rev().map(|(src, pos, what)| located(sources, &src, pos, None, "called here".into(), what, None)).collect();
    report
}

/// Fancy on a terminal, plain (no colour, ASCII, fixed width) otherwise.
pub fn render(report: &Report) -> String {
    let fancy = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    render_as(report, fancy)
}

fn render_as(report: &Report, fancy: bool) -> String {
    let handler =
        if fancy { GraphicalReportHandler::new() } else { GraphicalReportHandler::new_themed(GraphicalTheme::none()).with_width(100) };
    let mut out = String::new();
    if handler.render_report(&mut out, report).is_err() {
        out = format!("error: {}\n", report.message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `internal` cannot be caused from outside (a thread or runtime of nsscript's own
    /// failing), so its rendering is checked here instead of in tests/interactive.rs.
    #[test]
    fn an_internal_error_renders_with_its_code_and_help() {
        let e = Error::new(Code::Internal, "the namespace worker failed");
        assert_eq!(
            render_as(&Report::plain(&e), false),
            "nsscript::internal\n\n  x the namespace worker failed\n  help: this is a bug or a broken environment: please report it with the command and the script\n"
        );
    }

    #[test]
    fn every_code_renders_with_its_name_and_a_help_line() {
        for code in Code::ALL {
            let out = render_as(&Report::plain(&Error::new(*code, "what failed").why("why")), false);
            assert!(out.starts_with(&format!("{}\n", code.qualified())), "{out}");
            assert!(out.contains("x what failed: why") && out.contains("help: "), "{out}");
        }
    }
}
