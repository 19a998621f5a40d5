//! nsscript: Linux network-namespace labs as Rhai scripts.

mod backend;
mod cli;
mod diag;
mod error;
mod graph;
mod inspect;
mod lab;
mod nsexec;
mod ops;
mod privilege;
mod progress;
mod recipes;
mod repl;
mod script;
mod signals;
mod stdlib;

use backend::live::LiveBackend;
use clap::Parser;
use cli::{Cli, Cmd, RunOpts};
use diag::Report;
use error::{Code, Error};
use script::{ScriptEngine, Shared};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(e),
    };
    let result = match cli.command {
        Some(Cmd::Down { lab, no_wait }) => down(&lab, !no_wait),
        Some(Cmd::Ls) => ls(),
        Some(Cmd::Functions) => {
            print!("{}", script::registry::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Some(Cmd::Repl { script, run, on_exit }) => {
            repl::set_on_exit(on_exit);
            start(script.as_deref(), &run, true)
        }
        Some(Cmd::Plan { script, vars, name }) => inspect::plan(&script, &vars, name.as_deref()),
        Some(Cmd::Graph { script, format, vars }) => inspect::graph(&script, &vars, format),
        Some(Cmd::Shell { lab, ns }) => inspect::shell(&lab, &ns),
        Some(Cmd::Exec { lab, ns, cmd }) => inspect::exec(&lab, &ns, &cmd),
        Some(Cmd::Errors { code }) => errors(code.as_deref()),
        Some(Cmd::Completions { shell }) => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "nsscript", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        None => start(cli.script.as_deref(), &cli.run, cli.script.is_none()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprint!("{}", diag::render(&Report::plain(&e)));
            ExitCode::from(2)
        }
    }
}

/// Run a lab script, then (or only) the REPL.
fn start(script: Option<&Path>, opts: &RunOpts, repl: bool) -> Result<ExitCode, Error> {
    // The sandbox must be entered while the process has a single thread.
    if opts.sandbox {
        // Root gets a plain private netns + mount ns; anyone else gets them inside a
        // user namespace of their own (no sudo needed).
        if privilege::is_privileged() {
            nsexec::enter_sandbox()?;
        } else {
            nsexec::enter_user_sandbox()?;
        }
        privilege::require_root("--sandbox")?;
    }
    nsexec::init_host_ns()?;
    if !opts.sandbox {
        privilege::require_root("building a lab")?;
    }
    // Before any other thread exists: the descriptor table grows without waiting,
    // and SIGINT/SIGTERM only set a flag from now on.
    nsexec::prepare_fd_table();
    signals::install()?;
    if script.is_some() {
        // A lab script (not a bare REPL) almost always creates namespaces: start now.
        nsexec::make_namespaces_ahead();
    }
    let source = match script {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::io(Code::MissingScript, format!("cannot read {}", path.display()), &e).help("check the path of the lab script")
            })?;
            Some((path.to_path_buf(), script::strip_shebang(&text)))
        }
        None => None,
    };
    let lab_name = match (&opts.name, script) {
        (Some(n), _) => n.clone(),
        (None, Some(path)) => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "lab".into()),
        (None, None) => "repl".into(),
    };
    // One run per lab at a time (held until exit; a second run is refused with our pid).
    lab::lock::hold(&lab_name, "building it")?;
    if lab::exists(&lab_name) {
        if !opts.replace {
            return Err(Error::new(Code::LabUp, format!("lab {lab_name:?} is already up")).help(format!(
                "take it down first with `nsscript down {lab_name}`, rebuild it with --replace, or give this run another name with --name"
            )));
        }
        report_down(&lab_name, &backend::live::down(&lab_name, true)?);
    }
    let script_display = script.map(|p| p.display().to_string()).unwrap_or_else(|| "<repl>".into());
    let live = Rc::new(RefCell::new(LiveBackend::new(&lab_name, &script_display)?));
    live.borrow_mut().set_sandboxed(opts.sandbox);
    let shared: Shared = live.clone();
    let base_dir = script.and_then(|p| p.parent()).map(|d| if d.as_os_str().is_empty() { PathBuf::from(".") } else { d.to_path_buf() });
    let mut engine = ScriptEngine::new(shared, base_dir.as_deref());
    for (k, v) in &opts.vars {
        engine.set_var(k, script::var_value(v));
    }
    let mut sources = diag::Sources::default();

    if let Some((path, text)) = source {
        let name = path.display().to_string();
        sources.add(&name, &text);
        let outcome = engine.compile(&name, &text).and_then(|ast| engine.run(ast));
        if let Err(err) = outcome {
            let signal = signals::interrupted();
            let report = diag::from_rhai(&err, &name, &sources);
            let report = match signal {
                // Whatever error the signal surfaced as, the run stopped because of it.
                Some(sig) => report.interrupted(format!("interrupted by {} while running {name}", sig.as_str())),
                None => report,
            };
            eprint!("{}", diag::render(&report));
            let mut live = live.borrow_mut();
            let lab = live.state().clone();
            if !live.has_lab() {
                eprintln!("nothing was built.");
            } else if opts.keep {
                eprintln!("kept what was built (--keep): `nsscript down {}` removes it.", lab_name_of(&live));
            } else {
                let report = live.rollback();
                eprintln!(
                    "rolled back: removed {} object(s){}.",
                    report.removed.len(),
                    if report.failed.is_empty() {
                        String::new()
                    } else {
                        format!(", {} could not be removed: {}", report.failed.len(), report.failed.join("; "))
                    }
                );
                let _ = lab;
            }
            return Ok(ExitCode::from(signal.map(signals::exit_code).unwrap_or(1)));
        }
    }

    if repl {
        // In the REPL a signal stops the entry that runs, not the session.
        signals::one_entry_at_a_time();
        repl::run(&mut engine, &mut sources, live.clone())?;
    }
    let live = live.borrow();
    if live.has_lab() {
        let name = lab_name_of(&live);
        if opts.sandbox {
            if opts.hold {
                eprintln!(
                    "lab {name} is up in the sandbox (pid {}); enter it with `nsenter -t {} -n -m`. Ctrl-C ends it.",
                    std::process::id(),
                    std::process::id()
                );
                privilege::wait_for_interrupt();
            }
            eprintln!("lab {name}: sandbox closed, nothing left behind.");
        } else {
            eprintln!("lab {name} is up ({}); `nsscript down {name}` removes it.", live.state().summary());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lab_name_of(live: &LiveBackend) -> String {
    use backend::Backend;
    live.lab_name()
}

fn report_down(lab_name: &str, report: &lab::report::Report) {
    for s in &report.skipped {
        eprintln!("skipped {s}");
    }
    for f in &report.failed {
        eprintln!("could not remove {f}");
    }
    eprintln!("lab {lab_name}: removed {} object(s).", report.removed.len());
}

fn down(lab_name: &str, wait: bool) -> Result<ExitCode, Error> {
    privilege::require_root("nsscript down")?;
    nsexec::init_host_ns()?;
    let _lock = lab::lock::lab(lab_name, "taking it down")?;
    let report = backend::live::down(lab_name, wait)?;
    report_down(lab_name, &report);
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn ls() -> Result<ExitCode, Error> {
    for name in lab::list() {
        match lab::load(&name) {
            Ok(state) => println!("{name}\t{}", state.summary()),
            Err(e) => println!("{name}\t(unreadable ledger: {e})"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// clap's own errors, as reports with a code like every other error (help and
/// --version are not errors: clap prints them).
fn command_line_error(e: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        e.exit();
    }
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let arg = context(ContextKind::InvalidArg).unwrap_or_default();
    let err = if e.kind() == ErrorKind::ValueValidation && arg.starts_with("--var") {
        let value = context(ContextKind::InvalidValue).unwrap_or_default();
        let why = std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default();
        Error::new(Code::BadVar, format!("invalid --var {value:?}")).why(why)
    } else {
        // clap's text: a first paragraph "error: WHAT" (with the missing arguments
        // indented below it), then tips, the usage line and where to read more.
        let text = e.render().to_string();
        let (first, rest) = text.split_once("\n\n").unwrap_or((&text, ""));
        let what = first.lines().map(str::trim).collect::<Vec<_>>().join(" ");
        let rest: Vec<&str> = rest.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let err = Error::new(Code::Usage, what.strip_prefix("error: ").unwrap_or(&what));
        if rest.is_empty() {
            err
        } else {
            err.help(rest.join("\n"))
        }
    };
    eprint!("{}", diag::render(&Report::plain(&err)));
    ExitCode::from(2)
}

/// `nsscript errors [CODE]`: the catalogue, or one code in full.
fn errors(code: Option<&str>) -> Result<ExitCode, Error> {
    match code {
        None => {
            let width = Code::ALL.iter().map(|c| c.qualified().len()).max().unwrap_or(0);
            for c in Code::ALL {
                println!("{:width$}  {}", c.qualified(), c.description());
            }
        }
        Some(name) => {
            let c = Code::by_name(name)
                .ok_or_else(|| Error::new(Code::Usage, format!("no error code {name:?}")).help("`nsscript errors` lists every code"))?;
            println!("{}\n  {}\n  help: {}", c.qualified(), c.description(), c.help());
        }
    }
    Ok(ExitCode::SUCCESS)
}
