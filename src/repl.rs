//! The REPL on the same engine as a lab file: variables and functions persist across
//! entries; an entry goes on over several lines while the parser says it is
//! unfinished; errors are rendered without ending the session.
//!
//! Completion (function names, method names after `.`, the live lab's namespace and
//! link names inside string literals), signature hints and `:help` all come from the
//! function registry (`script::registry`), the same one that makes the README's
//! reference.

use crate::backend::live::LiveBackend;
use crate::backend::Backend;
use crate::cli::OnExit;
use crate::diag;
use crate::error::{Code, Error, Result};
use crate::ops::query::Query;
use crate::ops::{NsRef, Op, Outcome};
use crate::script::{registry, ScriptEngine, Shared};
use crate::sources::Sources;
use rhai::{EvalAltResult, ParseErrorType};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hint, Hinter};
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::borrow::Cow;
use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static ON_EXIT: OnceLock<OnExit> = OnceLock::new();

/// Whether a line is being edited at the prompt now.
static EDITING: AtomicBool = AtomicBool::new(false);

/// What Ctrl-D does with the lab (`nsscript repl --on-exit`).
pub fn set_on_exit(on_exit: OnExit) {
    let _ = ON_EXIT.set(on_exit);
}

pub const COMMANDS: &[(&str, &str)] = &[
    (":help", "all functions, one line each; `:help NAME` for one in full"),
    (":ls", "the lab's namespaces, links and host changes"),
    (":show", "`:show NS`: links, addresses and routes of a namespace, like `ip -br` (NS may be host)"),
    (":load", "`:load FILE`: run a lab file into this session"),
    (":trace", "`:trace NS DST [tcp|udp PORT]`: send one probe and explain its path hop by hop"),
    (":capture", "`:capture [TARGET...]`: print the packets on NS, NS:LINK or a bridge (all links if none) until Ctrl-C"),
    (":down", "take down everything this session built (the session goes on)"),
    (":quit", "leave (as Ctrl-D)"),
];

const KEYWORDS: &[&str] = &[
    "let", "const", "fn", "if", "else", "for", "in", "while", "loop", "do", "until", "return", "break", "continue", "import", "export",
    "as", "true", "false", "throw", "try", "catch", "switch", "private", "this", "global",
];

/// The parser ran out of input: the entry goes on on the next line.
fn is_unfinished(err: &EvalAltResult, entry: &str) -> bool {
    match err {
        EvalAltResult::ErrorParsing(ParseErrorType::UnexpectedEOF, _) => true,
        EvalAltResult::ErrorParsing(ParseErrorType::MissingToken(..), pos) => {
            pos.line().is_some_and(|l| l > entry.trim_end().lines().count())
        }
        // An unterminated string literal or block comment at the end of the entry.
        EvalAltResult::ErrorParsing(ParseErrorType::BadInput(rhai::LexError::UnterminatedString), pos) => {
            pos.line().is_some_and(|l| l >= entry.trim_end().lines().count()) && entry.matches('`').count() % 2 == 1
        }
        _ => false,
    }
}

// ---- the line editor's helper ----

pub struct NsHelper {
    backend: Shared,
    files: FilenameCompleter,
    color: bool,
}

/// Namespace names (`/run/netns`, which is private in the sandbox) and link names.
fn live_names(backend: &Shared) -> (Vec<String>, Vec<String>) {
    let mut netns: Vec<String> = std::fs::read_dir(crate::nsexec::NETNS_RUN_DIR)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    netns.sort();
    let mut links = Vec::new();
    let spaces = std::iter::once(NsRef::Host).chain(netns.iter().map(|n| NsRef::named(n)));
    for ns in spaces {
        if let Ok(mut b) = backend.try_borrow_mut() {
            if let Ok(Outcome::Links(ls)) = b.apply(Op::Query(Query::Links(ns))) {
                links.extend(ls.into_iter().map(|l| l.name).filter(|n| n != "lo"));
            }
        }
    }
    links.sort();
    links.dedup();
    (netns, links)
}

/// Where the string literal around `pos` starts (after its quote), if `pos` is in one.
fn string_start(line: &str, pos: usize) -> Option<usize> {
    let mut open: Option<(char, usize)> = None;
    let mut escaped = false;
    for (i, c) in line[..pos].char_indices() {
        match open {
            Some(_) if escaped => escaped = false,
            Some(_) if c == '\\' => escaped = true,
            Some((q, _)) if c == q => open = None,
            Some(_) => {}
            None if c == '"' || c == '`' => open = Some((c, i + 1)),
            None => {}
        }
    }
    open.map(|(_, s)| s)
}

fn word_start(line: &str, pos: usize) -> usize {
    line[..pos].char_indices().rev().find(|(_, c)| !(c.is_alphanumeric() || *c == '_')).map(|(i, c)| i + c.len_utf8()).unwrap_or(0)
}

fn pairs(names: impl IntoIterator<Item = String>, prefix: &str) -> Vec<Pair> {
    names.into_iter().filter(|n| n.starts_with(prefix)).map(|n| Pair { display: n.clone(), replacement: n }).collect()
}

impl NsHelper {
    fn complete_at(&self, line: &str, pos: usize) -> (usize, Vec<Pair>) {
        // REPL commands.
        if line.starts_with(':') {
            let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
            if pos <= cmd.len() {
                return (0, pairs(COMMANDS.iter().map(|(c, _)| c.to_string()), &line[..pos]));
            }
            let start = cmd.len() + 1 + rest[..pos - cmd.len() - 1].rfind(' ').map(|i| i + 1).unwrap_or(0);
            let prefix = &line[start..pos];
            return match cmd {
                ":help" => (start, pairs(registry::functions().map(|f| f.name.to_string()), prefix)),
                ":show" => {
                    let (netns, _) = live_names(&self.backend);
                    (start, pairs(std::iter::once("host".to_string()).chain(netns), prefix))
                }
                ":load" => self.files.complete_path(line, pos).unwrap_or((pos, vec![])),
                _ => (pos, vec![]),
            };
        }
        // Names of the live lab inside a string literal: namespaces where a namespace is
        // named (`netns("`, `ns("`), links elsewhere (`link(ns, "`...).
        if let Some(start) = string_start(line, pos) {
            let prefix = &line[start..pos];
            let (netns, links) = live_names(&self.backend);
            let before = line[..start.saturating_sub(1)].trim_end();
            let names_a_namespace = ["netns(", "ns("].iter().any(|f| before.ends_with(f) && !before.ends_with(&format!("_{f}")));
            let mut all: Vec<String> = if names_a_namespace { netns } else { links };
            all.sort();
            all.dedup();
            return (start, pairs(all, prefix));
        }
        let start = word_start(line, pos);
        let prefix = &line[start..pos];
        let after_dot = line[..start].ends_with('.');
        let names = registry::completions(prefix, after_dot);
        let mut out: Vec<Pair> = names
            .into_iter()
            .map(|n| Pair {
                display: registry::find(n).map(|f| f.signature.to_string()).unwrap_or_else(|| n.to_string()),
                replacement: n.to_string(),
            })
            .collect();
        if !after_dot {
            // Variables of the session too.
            out.extend(
                KEYWORDS
                    .iter()
                    .filter(|k| k.starts_with(prefix) && prefix.len() > 1)
                    .map(|k| Pair { display: k.to_string(), replacement: k.to_string() }),
            );
        }
        (start, out)
    }
}

impl Completer for NsHelper {
    type Candidate = Pair;
    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(self.complete_at(line, pos))
    }
}

/// A hint: the rest of a function name (accepted with →) and its signature (shown only).
pub struct SigHint {
    display: String,
    completion: Option<String>,
}

impl Hint for SigHint {
    fn display(&self) -> &str {
        &self.display
    }
    fn completion(&self) -> Option<&str> {
        self.completion.as_deref()
    }
}

/// The function whose argument list `pos` is in (innermost unclosed call).
fn open_call(line: &str, pos: usize) -> Option<&'static registry::FnDoc> {
    let head = &line[..pos];
    let mut depth = 0i32;
    for (i, c) in head.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth == 0 => {
                let start = word_start(head, i);
                return registry::find(&head[start..i]);
            }
            '(' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The signature hint for `line` with the cursor at `pos` (only at the end of the line).
pub fn hint_for(line: &str, pos: usize) -> Option<SigHint> {
    if pos < line.len() || line.starts_with(':') || line.trim().is_empty() {
        return None;
    }
    if string_start(line, pos).is_none() {
        let start = word_start(line, pos);
        let prefix = &line[start..pos];
        if prefix.len() >= 2 {
            let after_dot = line[..start].ends_with('.');
            let names = registry::completions(prefix, after_dot);
            if let [only] = names.as_slice() {
                let f = registry::find(only)?;
                let rest = &only[prefix.len()..];
                return Some(SigHint {
                    display: format!("{rest}    {}", f.signature),
                    completion: Some(rest.to_string()).filter(|r| !r.is_empty()),
                });
            }
        }
    }
    open_call(line, pos).map(|f| SigHint { display: format!("    {}", f.signature), completion: None })
}

impl Hinter for NsHelper {
    type Hint = SigHint;
    fn hint(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> Option<SigHint> {
        hint_for(line, pos)
    }
}

/// Strings green, numbers yellow, keywords bold magenta, comments grey.
pub fn highlight_rhai(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut i = 0;
    let end_of = |k: usize| chars.get(k).map(|(b, _)| *b).unwrap_or(line.len());
    while i < chars.len() {
        let (b, c) = chars[i];
        if c == '/' && chars.get(i + 1).is_some_and(|(_, n)| *n == '/') {
            out.push_str(&format!("\x1b[90m{}\x1b[0m", &line[b..]));
            break;
        }
        if c == '"' || c == '`' || c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j].1 != c {
                if chars[j].1 == '\\' {
                    j += 1;
                }
                j += 1;
            }
            let stop = end_of((j + 1).min(chars.len()));
            out.push_str(&format!("\x1b[32m{}\x1b[0m", &line[b..stop]));
            i = j + 1;
            continue;
        }
        if c.is_ascii_digit() && (i == 0 || !(chars[i - 1].1.is_alphanumeric() || chars[i - 1].1 == '_')) {
            let mut j = i;
            while j < chars.len()
                && (chars[j].1.is_ascii_alphanumeric()
                    || chars[j].1 == '_'
                    || (chars[j].1 == '.' && chars.get(j + 1).is_some_and(|(_, n)| n.is_ascii_digit())))
            {
                j += 1;
            }
            out.push_str(&format!("\x1b[33m{}\x1b[0m", &line[b..end_of(j)]));
            i = j;
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].1.is_alphanumeric() || chars[j].1 == '_') {
                j += 1;
            }
            let word = &line[b..end_of(j)];
            if KEYWORDS.contains(&word) {
                out.push_str(&format!("\x1b[1;35m{word}\x1b[0m"));
            } else {
                out.push_str(word);
            }
            i = j;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

impl Highlighter for NsHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.color || line.starts_with(':') {
            return Cow::Borrowed(line);
        }
        Cow::Owned(highlight_rhai(line))
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if !self.color {
            return Cow::Borrowed(hint);
        }
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.color
    }
}

impl Validator for NsHelper {}
impl Helper for NsHelper {}

// ---- the session ----

/// A value as the REPL prints it: handles as the calls that make them.
fn show(v: rhai::Dynamic) -> String {
    use crate::script::types::{Link, Netns};
    if v.is::<Link>() {
        return v.cast::<Link>().to_string();
    }
    if v.is::<Netns>() {
        return v.cast::<Netns>().to_string();
    }
    v.to_string()
}

fn history_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let dir = PathBuf::from(home).join(".local/state/nsscript");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history"))
}

struct Session<'a> {
    engine: &'a mut ScriptEngine,
    sources: &'a mut Sources,
    live: Rc<RefCell<LiveBackend>>,
    n: usize,
}

impl Session<'_> {
    fn eval(&mut self, name: &str, text: &str) {
        self.sources.add(name, text);
        let start = std::time::Instant::now();
        let result = self.engine.compile(name, text).and_then(|ast| self.engine.run(ast));
        tracing::debug!(entry = name, ms = start.elapsed().as_millis() as u64, ok = result.is_ok(), "entry ran");
        match result {
            Ok(v) if !v.is_unit() => println!("{}", show(v)),
            Ok(_) => {}
            Err(e) => eprint!("{}", diag::render(&diag::from_rhai(&e, name, self.sources))),
        }
    }

    fn ns_of(&self, name: &str) -> NsRef {
        if name == "host" || name == "host()" {
            NsRef::Host
        } else {
            NsRef::named(name.trim_matches('"'))
        }
    }

    fn command(&mut self, line: &str) -> bool {
        let (cmd, arg) = line.split_once(char::is_whitespace).map(|(c, a)| (c, a.trim())).unwrap_or((line, ""));
        match cmd {
            ":help" | ":h" if arg.is_empty() => {
                let width = registry::functions().map(|f| f.name.len()).max().unwrap_or(8);
                for f in registry::functions() {
                    println!("  {:width$}  {}", f.name, f.doc);
                }
                println!("\n  stdlib (import \"NAME\" as NAME;):");
                for d in crate::stdlib::docs() {
                    println!("  {}::{}  {}", d.module, d.name, d.signature);
                }
                println!("\n  `:help NAME` shows a function's signature, description and example.");
                for (c, d) in COMMANDS {
                    println!("  {c:7} {d}");
                }
            }
            ":help" | ":h" => match registry::help(arg) {
                Some(text) => print!("{text}"),
                None => {
                    let near = registry::similar(arg);
                    eprintln!(
                        "no function {arg:?}{}",
                        if near.is_empty() { String::new() } else { format!("; did you mean {}?", near.join(" or ")) }
                    );
                }
            },
            ":ls" => {
                let live = self.live.borrow();
                let state = live.state();
                if state.is_empty() {
                    println!("lab {}: nothing built yet", live.lab_name());
                } else {
                    println!("lab {}:", live.lab_name());
                    for (_, n) in state.netns() {
                        println!("  netns {}", n.name);
                    }
                    for (_, l) in state.links().filter(|(_, l)| !state.owns_ns(&l.ns)) {
                        println!("  link  {} ({}) in {}", l.name, l.kind, l.ns);
                    }
                    println!("  {}", state.summary());
                }
            }
            ":show" if arg.is_empty() => eprintln!("usage: :show NS   (a namespace name, or host)"),
            ":show" => {
                let ns = self.ns_of(arg);
                let mut b = self.live.borrow_mut();
                let links = b.apply(Op::Query(Query::Links(ns.clone())));
                let addrs = b.apply(Op::Query(Query::Addrs(ns.clone())));
                let routes = b.apply(Op::Query(Query::Routes(ns.clone())));
                drop(b);
                match (links, addrs, routes) {
                    (Ok(Outcome::Links(links)), Ok(Outcome::Addrs(addrs)), Ok(Outcome::Routes(routes))) => {
                        print!("{}", crate::ops::query::show(&links, &addrs, &routes))
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => eprint!("{}", diag::render(&diag::Report::plain(&e))),
                    _ => {}
                }
            }
            ":trace" => self.trace(arg),
            ":capture" => {
                let args: Vec<String> = arg.split_whitespace().map(String::from).collect();
                let mut live = self.live.borrow_mut();
                let run = live.lab_links().and_then(|links| crate::packets::resolve(&links, &args)).and_then(|taps| {
                    let opts = crate::backend::live::capture::Options::default();
                    crate::packets::run_capture(live.kernel(), &taps, opts, true, || crate::signals::stop_requested().is_some())
                });
                match run {
                    Ok((packets, dropped)) => eprintln!("{packets} packet(s), {dropped} dropped by the kernel"),
                    Err(e) => eprint!("{}", diag::render(&diag::Report::plain(&e))),
                }
            }
            ":load" if arg.is_empty() => eprintln!("usage: :load FILE"),
            ":load" => match crate::sources::read_file(arg) {
                Ok(text) => self.eval(arg, &text),
                Err(e) => {
                    eprint!("{}", diag::render(&diag::Report::plain(&Error::io(Code::MissingScript, format!("cannot read {arg}"), &e))))
                }
            },
            ":down" => self.down(),
            ":quit" | ":q" | ":exit" => return false,
            _ => eprintln!("unknown command {cmd}; the commands are {}", COMMANDS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")),
        }
        true
    }

    /// `:trace NS DST [tcp|udp PORT]`
    fn trace(&mut self, arg: &str) {
        let words: Vec<&str> = arg.split_whitespace().collect();
        let (ns, dst, proto, port) = match words.as_slice() {
            [ns, dst] => (ns, dst, None, None),
            [ns, dst, proto, port] => (ns, dst, Some(*proto), port.parse::<u16>().ok()),
            _ => return eprintln!("usage: :trace NS DST [tcp|udp PORT]"),
        };
        let spec = crate::packets::probe(proto, port).and_then(|probe| {
            let dst = dst.parse().map_err(|_| Error::new(Code::MalformedAddress, format!("malformed IP address {dst:?}")))?;
            Ok(crate::ops::trace::Trace { ns: self.ns_of(ns), dst, probe, timeout_ms: crate::ops::trace::DEFAULT_TIMEOUT_MS })
        });
        match spec.and_then(|t| self.live.borrow_mut().apply(Op::Trace(t))) {
            Ok(Outcome::Trace(r)) => println!("{}", r.text()),
            Ok(_) => {}
            Err(e) => eprint!("{}", diag::render(&diag::Report::plain(&e))),
        }
    }

    fn down(&mut self) {
        let mut live = self.live.borrow_mut();
        if !live.has_lab() {
            println!("nothing to take down");
            return;
        }
        let report = live.rollback();
        println!("lab {}: removed {} object(s)", live.lab_name(), report.removed.len());
        for f in &report.failed {
            eprintln!("could not remove {f}");
        }
    }
}

/// Warnings come while an entry runs, and print as anywhere else (the progress line
/// out of the way); one that comes while a line is being edited at a terminal is
/// printed above the prompt, which is drawn again below it.
fn route_warnings(rl: &mut Editor<NsHelper, DefaultHistory>) {
    use rustyline::ExternalPrinter;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return;
    }
    let Ok(mut printer) = rl.create_external_printer() else { return };
    crate::warnings::route(move |message| {
        if !EDITING.load(Ordering::SeqCst) || printer.print(message.to_string()).is_err() {
            crate::warnings::print(message);
        }
    });
}

pub fn run(engine: &mut ScriptEngine, sources: &mut Sources, live: Rc<RefCell<LiveBackend>>) -> Result<()> {
    let backend: Shared = live.clone();
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .max_history_size(5000)
        .map_err(|e| Error::new(Code::IoFailed, "cannot start the REPL").why(e.to_string()))?
        .build();
    let mut rl: Editor<NsHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| Error::new(Code::IoFailed, "cannot start the REPL").why(e.to_string()))?;
    rl.set_helper(Some(NsHelper { backend, files: FilenameCompleter::new(), color }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    eprintln!("nsscript REPL: Rhai statements; Tab completes, :help lists the functions, Ctrl-C drops the entry, Ctrl-D leaves.");
    let mut session = Session { engine, sources, live: live.clone(), n: 0 };
    route_warnings(&mut rl);
    let mut entry = String::new();
    loop {
        let prompt = if entry.is_empty() { "nsscript> " } else { "     ...> " };
        EDITING.store(true, Ordering::SeqCst);
        let line = rl.readline(prompt);
        EDITING.store(false, Ordering::SeqCst);
        match line {
            Ok(line) => {
                if entry.is_empty() && line.trim_start().starts_with(':') {
                    let _ = rl.add_history_entry(line.trim());
                    if !session.command(line.trim()) {
                        break;
                    }
                    continue;
                }
                if entry.is_empty() && line.trim().is_empty() {
                    continue;
                }
                entry.push_str(&line);
                entry.push('\n');
                session.n += 1;
                let name = format!("<repl:{}>", session.n);
                match session.engine.compile(&name, &entry) {
                    Err(e) if is_unfinished(&e, &entry) => continue,
                    Err(e) => {
                        session.sources.add(&name, &entry);
                        eprint!("{}", diag::render(&diag::from_rhai(&e, &name, session.sources)));
                    }
                    Ok(_) => {
                        let _ = rl.add_history_entry(entry.trim_end());
                        let text = std::mem::take(&mut entry);
                        session.eval(&name, &text);
                    }
                }
                entry.clear();
            }
            Err(ReadlineError::Interrupted) => {
                if !entry.is_empty() {
                    eprintln!("(entry dropped)");
                }
                entry.clear();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(Error::new(Code::IoFailed, "cannot read input").why(e.to_string())),
        }
    }
    crate::warnings::unroute();
    if let Some(h) = &history {
        let _ = rl.save_history(h);
    }
    let on_exit = ON_EXIT.get().copied().unwrap_or_default();
    if live.borrow().has_lab() {
        let down = match on_exit {
            OnExit::Down => true,
            OnExit::Keep => false,
            OnExit::Ask if std::io::stdin().is_terminal() => {
                let q = format!("take lab {} down? [y/N] ", live.borrow().lab_name());
                matches!(rl.readline(&q).as_deref().map(str::trim), Ok("y" | "Y" | "yes"))
            }
            OnExit::Ask => false,
        };
        if down {
            session.down();
        }
    }
    Ok(())
}
