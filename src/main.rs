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
mod packets;
mod privilege;
mod progress;
mod recipes;
mod repl;
mod script;
mod serve;
mod signals;
mod sources;
mod stdlib;
mod testing;
mod ui;
mod warnings;

use backend::live::LiveBackend;
use cli::{Cli, Cmd, RunOpts};
use diag::Report;
use error::{Code, Error};
use script::{ScriptFile, Shared};
use std::cell::RefCell;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

fn main() -> ExitCode {
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(e) => return command_line_error(e),
    };
    warnings::set_quiet(cli.quiet);
    init_logs(cli.verbose);
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
        Some(Cmd::Ui { lab, listen }) => ui::command(&lab, listen.as_deref()),
        Some(Cmd::Shell { lab, ns }) => inspect::shell(&lab, &ns),
        Some(Cmd::Exec { lab, ns, cmd }) => inspect::exec(&lab, &ns, &cmd),
        Some(Cmd::Capture { lab, targets, write, filter, count, seconds }) => {
            packets::capture(&lab, &targets, write.as_deref(), filter, count, seconds)
        }
        Some(Cmd::Trace { lab, ns, dst, proto, port }) => packets::trace(&lab, &ns, &dst, proto.as_deref(), port),
        Some(Cmd::Errors { code }) => errors(code.as_deref()),
        Some(Cmd::Check { lab, script }) => testing::check_lab(&lab, script.as_deref()),
        Some(Cmd::Test { paths, jobs, junit, tap, filter }) => testing::test(&paths, jobs, junit.as_deref(), tap, filter.as_deref()),
        Some(Cmd::Serve { proto, port, reply }) => Ok(serve::run(&proto, port, reply)),
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
    if opts.ui && (repl || script.is_none()) {
        return Err(Error::new(Code::Usage, "--ui serves a lab once it is built, not a REPL")
            .help("build it with `nsscript LAB.rhai --ui`, or run `nsscript ui LAB` in another terminal while the REPL runs"));
    }
    // The live view listens where nsscript was started: before the sandbox, so the
    // socket stays in the namespace the user's browser is in.
    let listener = if opts.ui { Some(ui::Listener::open(opts.listen.as_deref())?) } else { None };
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
    let file = ScriptFile::read(script, opts.name.as_deref())?;
    let lab_name = file.lab.clone();
    // One run per lab at a time (held until exit; a second run is refused with our pid).
    lab::lock::hold(&lab_name, "building it")?;
    tracing::debug!(lab = lab_name, sandbox = opts.sandbox, "the lab's lock is held");
    if lab::exists(&lab_name) {
        if !opts.replace {
            return Err(Error::new(Code::LabUp, format!("lab {lab_name:?} is already up")).help(format!(
                "take it down first with `nsscript down {lab_name}`, rebuild it with --replace, or give this run another name with --name"
            )));
        }
        report_down(&lab_name, &backend::live::down(&lab_name, true)?);
    }
    let live = Rc::new(RefCell::new(LiveBackend::new(&lab_name, &file.shown)?));
    live.borrow_mut().set_sandboxed(opts.sandbox);
    let path = script.and_then(|p| std::fs::canonicalize(p).ok()).map(|p| p.display().to_string());
    live.borrow_mut().set_source(path, opts.vars.clone());
    let shared: Shared = live.clone();
    let (mut engine, mut sources) = file.engine(shared, &opts.vars);
    script::suite::set_filter(opts.filter.clone());
    testing::install_reporter(&file.shown);

    let run = file.run(&mut engine);
    let signal = signals::interrupted();
    // Why the run failed, as its report: the script's error, or checks that failed.
    let failure = match &run {
        Err(err) => {
            let report = diag::from_rhai(err, &file.shown, &sources);
            Some(match signal {
                // Whatever error the signal surfaced as, the run stopped because of it.
                Some(sig) => report.interrupted(format!("interrupted by {} while running {}", sig.as_str(), file.shown)),
                None => report,
            })
        }
        Ok(()) => script::suite::verdict().map(|e| Report::plain(&e)),
    };
    let failure = failure.map(|r| diag::render(&r));
    if let Some(results) = &opts.results {
        let stopped = match (&run, &failure) {
            (Err(err), Some(shown)) => Some((&**err, shown.clone())),
            _ => None,
        };
        testing::write_results(results, &lab_name_of(&live.borrow()), script::suite::finish(stopped));
    }
    if let Some(shown) = failure {
        eprint!("{shown}");
        let mut live = live.borrow_mut();
        if !live.has_lab() {
            eprintln!("nothing was built.");
        } else if opts.keep {
            eprintln!("kept what was built (--keep): `nsscript down {}` removes it.", lab_name_of(&live));
        } else {
            let report = live.rollback();
            tracing::debug!(removed = report.removed.len(), failed = report.failed.len(), "rolled back");
            eprintln!(
                "rolled back: removed {} object(s){}.",
                report.removed.len(),
                if report.failed.is_empty() {
                    String::new()
                } else {
                    format!(", {} could not be removed: {}", report.failed.len(), report.failed.join("; "))
                }
            );
        }
        return Ok(ExitCode::from(signal.map(signals::exit_code).unwrap_or(1)));
    }

    if script::suite::blocks_run() > 0 {
        eprintln!("checks: {}.", script::suite::summary(&script::suite::cases()));
    }
    if repl {
        // In the REPL a signal stops the entry that runs, not the session.
        signals::one_entry_at_a_time();
        repl::run(&mut engine, &mut sources, live.clone())?;
    }
    let live = live.borrow();
    if live.has_lab() {
        let name = lab_name_of(&live);
        if let Some(listener) = listener {
            if !opts.sandbox {
                eprintln!("lab {name} is up ({}); `nsscript down {name}` removes it.", live.state().summary());
            }
            ui::serve(&name, listener)?;
            if opts.sandbox {
                eprintln!("lab {name}: sandbox closed, nothing left behind.");
            }
        } else if opts.sandbox {
            if opts.hold {
                let pid = nsexec::outer_pid();
                eprintln!("lab {name} is up in the sandbox (pid {pid}); enter it with `nsenter -t {pid} -n -m -p`. Ctrl-C ends it.");
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
    let waited = if report.waited.is_empty() { String::new() } else { format!("; waited {}", report.waited.join(", ")) };
    eprintln!("lab {lab_name}: removed {} object(s){waited}.", report.removed.len());
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

/// The command line. `-q` and `-v` go anywhere (`nsscript -v plan lab.rhai`); what a
/// run takes (a script, `--sandbox`, `--var`...) is refused before a subcommand, which
/// would ignore it.
fn parse_command_line() -> Result<Cli, clap::Error> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    use clap::parser::ValueSource;
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((sub, _)) = matches.subcommand() {
        let given: Vec<String> = cmd
            .get_arguments()
            .filter(|a| !a.is_global_set() && matches.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
            .map(|a| a.to_string())
            .collect();
        if !given.is_empty() {
            let mut e = clap::Error::new(ErrorKind::ArgumentConflict).with_cmd(&cmd);
            e.insert(ContextKind::InvalidSubcommand, ContextValue::String(sub.to_string()));
            // `nsscript --sandbox repl`: the run's options belong after the subcommand.
            let takes_them = cmd.find_subcommand(sub).is_some_and(|s| s.get_arguments().any(|a| given.contains(&a.to_string())));
            if takes_them {
                let tip = format!("the options of `{sub}` come after it: `nsscript {sub} {}`", given.join(" "));
                e.insert(ContextKind::Suggested, ContextValue::StyledStrs(vec![tip.into()]));
            }
            e.insert(ContextKind::PriorArg, ContextValue::Strings(given));
            e.insert(ContextKind::Usage, ContextValue::StyledStr(cmd.render_usage()));
            return Err(e);
        }
    }
    Cli::from_arg_matches(&matches)
}

/// clap's own errors, as reports with a code like every other error (help and
/// --version are not errors: clap prints them), written from the error's kind and
/// context: what went wrong, then the tips, the usage and where to read more.
fn command_line_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        e.exit();
    }
    eprint!("{}", diag::render(&Report::plain(&usage_error(&e))));
    ExitCode::from(2)
}

/// The values a clap error carries, as text.
struct Context<'e>(&'e clap::Error);

impl Context<'_> {
    fn all(&self, kind: clap::error::ContextKind) -> Vec<String> {
        use clap::error::ContextValue as V;
        match self.0.get(kind) {
            Some(V::String(s)) => vec![s.clone()],
            Some(V::Strings(v)) => v.clone(),
            Some(V::StyledStr(s)) => vec![s.to_string()],
            Some(V::StyledStrs(v)) => v.iter().map(|s| s.to_string()).collect(),
            Some(V::Number(n)) => vec![n.to_string()],
            _ => Vec::new(),
        }
    }

    fn one(&self, kind: clap::error::ContextKind) -> String {
        self.all(kind).join(", ")
    }

    fn quoted(&self, kind: clap::error::ContextKind) -> String {
        self.all(kind).iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
    }
}

fn usage_error(e: &clap::Error) -> Error {
    use clap::error::{ContextKind as K, ErrorKind};
    let c = Context(e);
    let (arg, value) = (c.one(K::InvalidArg), c.one(K::InvalidValue));
    let why = std::error::Error::source(e).map(|s| s.to_string());
    let provided = |n: String| if n == "1" { "1 was provided".to_string() } else { format!("{n} were provided") };
    let what = match e.kind() {
        ErrorKind::ValueValidation if arg.starts_with("--var") => {
            return Error::new(Code::BadVar, format!("invalid --var {value:?}")).why(why.unwrap_or_default());
        }
        ErrorKind::UnknownArgument => format!("unexpected argument '{arg}' found"),
        ErrorKind::InvalidSubcommand => format!("unrecognized subcommand '{}'", c.one(K::InvalidSubcommand)),
        ErrorKind::InvalidValue if value.is_empty() => format!("a value is required for '{arg}' but none was supplied"),
        ErrorKind::InvalidValue => format!("invalid value '{value}' for '{arg}'"),
        ErrorKind::ValueValidation => format!("invalid value '{value}' for '{arg}': {}", why.unwrap_or_default()),
        ErrorKind::MissingRequiredArgument => format!("the following required arguments were not provided: {arg}"),
        ErrorKind::MissingSubcommand => format!("'{}' requires a subcommand but one was not provided", c.one(K::InvalidSubcommand)),
        ErrorKind::ArgumentConflict if c.all(K::PriorArg) == [arg.clone()] => format!("the argument '{arg}' cannot be used multiple times"),
        ErrorKind::ArgumentConflict => {
            let this =
                if arg.is_empty() { format!("the subcommand '{}'", c.one(K::InvalidSubcommand)) } else { format!("the argument '{arg}'") };
            match c.quoted(K::PriorArg) {
                prior if prior.is_empty() => format!("{this} cannot be used with one or more of the other specified arguments"),
                prior => format!("{this} cannot be used with {prior}"),
            }
        }
        ErrorKind::NoEquals => format!("equal sign is needed when assigning values to '{arg}'"),
        ErrorKind::TooManyValues => format!("unexpected value '{value}' for '{arg}' found; no more were expected"),
        ErrorKind::TooFewValues => {
            format!("{} values required by '{arg}'; only {}", c.one(K::MinValues), provided(c.one(K::ActualNumValues)))
        }
        ErrorKind::WrongNumberOfValues => {
            format!("{} values required for '{arg}' but {}", c.one(K::ExpectedNumValues), provided(c.one(K::ActualNumValues)))
        }
        // Not about one argument (input that is not UTF-8, a failed write): clap's words.
        kind => kind.as_str().unwrap_or("the command line is not one nsscript understands").to_string(),
    };
    let mut help = Vec::new();
    for (kind, what) in [(K::ValidValue, "possible values"), (K::ValidSubcommand, "subcommands")] {
        if !c.all(kind).is_empty() {
            help.push(format!("{what}: {}", c.one(kind)));
        }
    }
    for (kind, what) in [(K::SuggestedSubcommand, "subcommand"), (K::SuggestedArg, "argument"), (K::SuggestedValue, "value")] {
        match c.all(kind).len() {
            0 => {}
            1 => help.push(format!("tip: a similar {what} exists: {}", c.quoted(kind))),
            _ => help.push(format!("tip: some similar {what}s exist: {}", c.quoted(kind))),
        }
    }
    help.extend(c.all(K::Suggested).into_iter().map(|tip| format!("tip: {tip}")));
    help.extend(c.all(K::Usage));
    help.push("For more information, try '--help'.".to_string());
    Error::new(Code::Usage, what).help(help.join("\n"))
}

/// `-v`: debug logs on stderr (each op applied, each flush, timings); `-vv`: trace too.
/// Only nsscript's own events, and the progress line is taken away while one prints.
fn init_logs(verbose: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match verbose {
        0 => return,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    struct Stderr;
    impl std::io::Write for Stderr {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            progress::suspend(|| std::io::stderr().write(buf))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            std::io::stderr().flush()
        }
    }
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let logs =
        tracing_subscriber::fmt::layer().with_writer(|| Stderr).with_ansi(colour).with_timer(tracing_subscriber::fmt::time::uptime());
    let only_ours = tracing_subscriber::filter::Targets::new().with_target("nsscript", level);
    tracing_subscriber::registry().with(logs).with(only_ours).init();
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
