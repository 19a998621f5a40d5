//! Seeing a lab without building it (`plan`, `graph`: the script runs against the
//! recording backend, no root needed), and getting into a running lab's namespaces
//! (`shell`, `exec`: the same process code as a script's `exec`).

use crate::backend::live::linux::exec as process;
use crate::backend::plan::PlanBackend;
use crate::cli::GraphFormat;
use crate::diag;
use crate::error::{Code, Error, Result};
use crate::ops::process::Command;
use crate::script::{ScriptFile, Shared};
use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;

/// Run `path` against the recording backend. `Ok(None)`: the script failed and its
/// report was printed.
pub fn record(path: &Path, vars: &[(String, String)], name: Option<&str>) -> Result<Option<Rc<RefCell<PlanBackend>>>> {
    let file = ScriptFile::read(Some(path), name)?;
    let plan = Rc::new(RefCell::new(PlanBackend::new(&file.lab, &file.shown)?));
    let shared: Shared = plan.clone();
    let (mut engine, sources) = file.engine(shared, vars);
    // The plan goes to stdout: the script's own output goes to stderr.
    engine.engine.on_print(|s| eprintln!("{s}"));
    match file.run(&mut engine) {
        Ok(()) => Ok(Some(plan)),
        Err(err) => {
            eprint!("{}", diag::render(&diag::from_rhai(&err, &file.shown, &sources)));
            Ok(None)
        }
    }
}

pub fn plan(path: &Path, vars: &[(String, String)], name: Option<&str>) -> Result<ExitCode> {
    match record(path, vars, name)? {
        Some(plan) => {
            print!("{}", plan.borrow().script());
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(1)),
    }
}

pub fn graph(path: &Path, vars: &[(String, String)], format: GraphFormat) -> Result<ExitCode> {
    let Some(plan) = record(path, vars, None)? else { return Ok(ExitCode::from(1)) };
    let plan = plan.borrow();
    use crate::backend::Backend;
    let g = crate::graph::build(&plan.lab_name(), plan.model());
    print!(
        "{}",
        match format {
            GraphFormat::Ascii => crate::graph::ascii(&g),
            GraphFormat::Dot => crate::graph::dot(&g),
            GraphFormat::Mermaid => crate::graph::mermaid(&g),
            GraphFormat::Json => crate::graph::json(&g),
            GraphFormat::Html => crate::ui::standalone_page(&crate::ui::view::from_plan(&plan.lab_name(), plan.model())),
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// The namespace `ns` of the running lab `lab`, opened.
fn lab_netns(lab: &str, ns: &str) -> Result<std::fs::File> {
    let state = crate::lab::load(lab)?;
    if !state.owns_netns(ns) {
        let names = state.netns_names();
        return Err(Error::new(Code::UnknownNamespace, format!("lab {lab:?} has no namespace {ns:?}")).help(if names.is_empty() {
            "this lab has no namespaces of its own".to_string()
        } else {
            format!("its namespaces: {}", names.join(", "))
        }));
    }
    crate::nsexec::open_netns(ns)
}

/// `nsscript exec LAB NS -- CMD...`
pub fn exec(lab: &str, ns: &str, argv: &[String]) -> Result<ExitCode> {
    crate::privilege::require_root("entering a lab's namespace")?;
    let f = lab_netns(lab, ns)?;
    let env = [("NSSCRIPT_LAB", lab.to_string()), ("NSSCRIPT_NS", ns.to_string())];
    let code = process::attached(Some(f.as_raw_fd()), &Command::Argv(argv.to_vec()), &format!("namespace {ns}"), &env)?;
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `nsscript shell LAB NS`: an interactive bash there, its prompt labelled `NS> `.
pub fn shell(lab: &str, ns: &str) -> Result<ExitCode> {
    crate::privilege::require_root("entering a lab's namespace")?;
    let f = lab_netns(lab, ns)?;
    let rc = std::env::temp_dir().join(format!("nsscript-shell-{}.rc", std::process::id()));
    let prompt = ns.replace('\'', "");
    std::fs::write(
        &rc,
        format!(
            "[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc\n[ -f ~/.bashrc ] && . ~/.bashrc\nPS1='{prompt}> '\nrm -f {}\n",
            rc.display()
        ),
    )
    .map_err(|e| Error::io(Code::IoFailed, format!("cannot write {}", rc.display()), &e))?;
    eprintln!("nsscript: a shell in namespace {ns} of lab {lab}; `exit` leaves.");
    let env = [("NSSCRIPT_LAB", lab.to_string()), ("NSSCRIPT_NS", ns.to_string()), ("PS1", format!("{prompt}> "))];
    let argv = vec!["bash".to_string(), "--rcfile".into(), rc.display().to_string(), "-i".into()];
    let code = process::attached(Some(f.as_raw_fd()), &Command::Argv(argv), &format!("namespace {ns}"), &env);
    let _ = std::fs::remove_file(&rc);
    Ok(ExitCode::from(u8::try_from(code?).unwrap_or(1)))
}
