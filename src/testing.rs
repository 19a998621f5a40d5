//! Labs as tests: `nsscript check LAB` runs the checks of a running lab against it as
//! it is now, and `nsscript test` builds each lab in a sandbox of its own, runs its
//! checks, takes it down and reports every check as a test case (lines and a summary,
//! TAP, JUnit XML for CI).
//!
//! A lab of `nsscript test` runs as a child `nsscript --sandbox --results FILE LAB`:
//! its own network, mount and PID namespaces, so labs in parallel never meet, nothing
//! reaches the machine, and everything (programs included) ends with the child. The
//! child writes its cases to FILE ([`Results`]).

use crate::backend::live::recheck::Recheck;
use crate::diag::{self, Report};
use crate::error::{Code, Error};
use crate::script::suite::{self, Case};
use crate::script::{ScriptFile, Shared};
use crate::sources::Sources;
use crate::{lab, nsexec, privilege, signals};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

/// What a lab's run wrote for `nsscript test`: its checks.
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct Results {
    pub lab: String,
    pub cases: Vec<Case>,
}

pub fn write_results(path: &Path, lab: &str, cases: Vec<Case>) {
    let text = serde_json::to_string(&Results { lab: lab.to_string(), cases }).expect("results serialize");
    if let Err(e) = std::fs::write(path, text) {
        eprintln!("nsscript: cannot write the results to {}: {e}", path.display());
    }
}

/// How a failed check shows while a script runs: its name, then the report pointing
/// at the line where it failed.
pub fn install_reporter(main: &str) {
    let main = main.to_string();
    suite::set_reporter(move |name, err| {
        // The block's own closure is no frame worth showing: the report starts inside it.
        let (mut err, mut source) = (err, main.clone());
        while let rhai::EvalAltResult::ErrorInFunctionCall(f, src, inner, _) = err {
            if !f.starts_with("anon$") {
                break;
            }
            if !src.is_empty() {
                source = src.clone();
            }
            err = inner;
        }
        // Reports read the lab's files again (its text is what Rhai ran).
        let report = diag::from_rhai(err, &source, &Sources::default());
        format!("check {name:?} failed:\n{}", diag::render(&report))
    });
}

// ---- nsscript check ----

/// `nsscript check LAB [SCRIPT]`.
pub fn check_lab(lab_name: &str, script: Option<&Path>) -> Result<ExitCode, Error> {
    privilege::require_root("nsscript check")?;
    nsexec::init_host_ns()?;
    nsexec::prepare_fd_table();
    signals::install()?;
    let state = lab::load(lab_name)?;
    let source = lab::source(lab_name)?;
    let path = match script {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(source.path.clone().unwrap_or_else(|| source.shown.clone())),
    };
    let file = ScriptFile::read(Some(&path), Some(lab_name))?;
    let backend: Shared = Rc::new(RefCell::new(Recheck::new(lab_name, &file.shown, state)?));
    let (mut engine, sources) = file.engine(backend, &source.vars);
    suite::set_listing(true);
    install_reporter(&file.shown);
    println!("checking lab {lab_name} as it is now ({}):", path.display());
    let start = Instant::now();
    let run = file.run(&mut engine);
    let error = run.as_ref().err().map(|e| {
        let report = diag::from_rhai(e, &file.shown, &sources);
        let report = match signals::interrupted() {
            Some(sig) => report.interrupted(format!("interrupted by {} while checking {lab_name}", sig.as_str())),
            None => report,
        };
        (&**e, diag::render(&report))
    });
    let shown = error.as_ref().map(|(_, s)| s.clone());
    let cases = suite::finish(error);
    if let Some(shown) = shown {
        // The check that stopped the script (it was not listed as it ended).
        if let Some(last) = cases.last() {
            println!("{}", line(last));
        }
        eprint!("{shown}");
        if cases.last().is_some_and(|c| c.name == "build") {
            eprintln!("the script stopped there: the checks after it did not run");
        }
    }
    println!("{} ({:.1} s)", suite::summary(&cases), start.elapsed().as_secs_f64());
    Ok(if cases.iter().all(|c| c.ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn line(case: &Case) -> String {
    let verdict = if case.ok { "ok  " } else { "FAIL" };
    format!("{verdict} {:>7.0} ms  {}", case.ms, case.name)
}

// ---- nsscript test ----

/// One lab's run.
struct LabRun {
    file: PathBuf,
    lab: String,
    cases: Vec<Case>,
    seconds: f64,
    stdout: String,
    stderr: String,
}

/// The labs named: files as given, and the .rhai files directly in each directory
/// (modules in subdirectories, like scripts/lib/, are not labs).
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let paths = if paths.is_empty() { vec![PathBuf::from(".")] } else { paths.to_vec() };
    let mut labs = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| Error::io(Code::MissingScript, format!("cannot read the directory {}", p.display()), &e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "rhai"))
                .collect();
            found.sort();
            labs.extend(found);
        } else if p.is_file() {
            labs.push(p);
        } else {
            return Err(Error::new(Code::MissingScript, format!("cannot read {}", p.display())).why("no such file or directory"));
        }
    }
    if labs.is_empty() {
        return Err(Error::new(Code::MissingScript, "no labs to test").help("name lab files, or directories that hold .rhai files"));
    }
    Ok(labs)
}

fn stem(file: &Path) -> String {
    file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "lab".into())
}

/// Build, check and take down one lab in a child nsscript of its own.
fn run_lab(exe: &Path, dir: &Path, n: usize, file: &Path, filter: Option<&str>) -> LabRun {
    let results = dir.join(format!("lab-{n}.json"));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--sandbox").arg("--results").arg(&results);
    // A lab whose name matches runs all its checks.
    if let Some(f) = filter.filter(|f| !stem(file).contains(f)) {
        cmd.arg("--filter").arg(f);
    }
    cmd.arg(file).stdin(std::process::Stdio::null()).env("NO_COLOR", "1");
    let start = Instant::now();
    let out = cmd.output();
    let seconds = start.elapsed().as_secs_f64();
    let (stdout, stderr, code) = match out {
        Ok(o) => (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.code()),
        Err(e) => (String::new(), format!("cannot run {}: {e}", exe.display()), None),
    };
    let parsed: Option<Results> = std::fs::read_to_string(&results).ok().and_then(|t| serde_json::from_str(&t).ok());
    let _ = std::fs::remove_file(&results);
    let (lab, cases) = match parsed {
        Some(r) => (r.lab, r.cases),
        None => {
            let why = match code {
                Some(c) => format!("nsscript exited with code {c} without results"),
                None => "nsscript was killed before it wrote its results".to_string(),
            };
            (stem(file), vec![Case { name: "build".into(), ok: false, ms: seconds * 1000.0, message: Some(format!("{why}\n{stderr}")) }])
        }
    };
    LabRun { file: file.to_path_buf(), lab, cases, seconds, stdout, stderr }
}

/// The line of a rendered report that says what failed (`x ...`), with its code.
fn headline(message: &str) -> String {
    let code = message.lines().map(str::trim).find(|l| l.starts_with("nsscript::"));
    let what = message
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("x "))
        .or_else(|| message.lines().map(str::trim).find(|l| !l.is_empty()));
    match (code, what) {
        (Some(c), Some(w)) => format!("{c}: {w}"),
        (_, Some(w)) => w.to_string(),
        _ => "failed".into(),
    }
}

/// Text as XML character data: escaped, and without the characters XML 1.0 forbids.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML, as GitHub's and GitLab's test reports read it: a suite per lab, a case per check.
fn junit(runs: &[LabRun], seconds: f64) -> String {
    let all: Vec<&Case> = runs.iter().flat_map(|r| &r.cases).collect();
    let failures = all.iter().filter(|c| !c.ok).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ =
        writeln!(out, "<testsuites name=\"nsscript\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{seconds:.3}\">", all.len());
    for r in runs {
        let failed = r.cases.iter().filter(|c| !c.ok).count();
        let file = xml(&r.file.display().to_string());
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" file=\"{file}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{:.3}\">",
            xml(&r.lab),
            r.cases.len(),
            r.seconds
        );
        for c in &r.cases {
            let head = format!(
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{file}\" time=\"{:.3}\"",
                xml(&r.lab),
                xml(&c.name),
                c.ms / 1000.0
            );
            match (&c.message, c.ok) {
                (Some(m), false) => {
                    let _ = writeln!(
                        out,
                        "{head}>\n      <failure message=\"{}\" type=\"check\">{}</failure>\n    </testcase>",
                        xml(&headline(m)),
                        xml(m)
                    );
                }
                _ => {
                    let _ = writeln!(out, "{head}/>");
                }
            }
        }
        let _ = writeln!(out, "    <system-out>{}</system-out>", xml(&r.stdout));
        let _ = writeln!(out, "    <system-err>{}</system-err>", xml(&r.stderr));
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// One TAP test line (and the failure as YAML), numbered `n`.
fn tap_case(n: usize, lab: &str, c: &Case) -> String {
    let name = format!("{lab}: {}", c.name).replace('#', "\\#");
    let mut out = format!("{} {n} - {name}\n", if c.ok { "ok" } else { "not ok" });
    if let (Some(m), false) = (&c.message, c.ok) {
        out.push_str("  ---\n  message: |\n");
        for l in m.lines() {
            let _ = writeln!(out, "    {l}");
        }
        out.push_str("  ...\n");
    }
    out
}

/// `nsscript test [PATHS] [-j N] [--junit FILE] [--tap] [--filter TEXT]`.
pub fn test(paths: &[PathBuf], jobs: u16, junit_file: Option<&Path>, tap: bool, filter: Option<&str>) -> Result<ExitCode, Error> {
    let labs = collect(paths)?;
    let exe = std::env::current_exe().map_err(|e| Error::io(Code::Internal, "cannot find nsscript's own binary", &e))?;
    // (pids repeat across PID namespaces: the time makes the name this run's)
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("nsscript-test-{}-{nanos}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(Code::IoFailed, format!("cannot create {}", dir.display()), &e))?;
    }
    let start = Instant::now();
    let queue = std::sync::Mutex::new(labs.iter().cloned().enumerate().collect::<std::collections::VecDeque<_>>());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, LabRun)>();
    let mut runs: Vec<Option<LabRun>> = (0..labs.len()).map(|_| None).collect();
    let mut printed = 0;
    if tap {
        println!("TAP version 13");
    }
    std::thread::scope(|s| {
        for _ in 0..usize::from(jobs).min(labs.len()) {
            let (tx, queue, exe, dir) = (tx.clone(), &queue, &exe, &dir);
            s.spawn(move || loop {
                let Some((n, file)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front() else { break };
                let run = run_lab(exe, dir, n, &file, filter);
                if tx.send((n, run)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Each lab's cases as it ends.
        for (n, run) in rx {
            for c in &run.cases {
                printed += 1;
                if tap {
                    print!("{}", tap_case(printed, &run.lab, c));
                } else {
                    println!("{}", line(&Case { name: format!("{}: {}", run.lab, c.name), ..c.clone() }));
                    if let (false, Some(m)) = (c.ok, &c.message) {
                        for l in m.lines() {
                            println!("    {l}");
                        }
                    }
                }
            }
            runs[n] = Some(run);
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let runs: Vec<LabRun> = runs.into_iter().flatten().collect();
    let cases: Vec<Case> = runs.iter().flat_map(|r| r.cases.clone()).collect();
    let seconds = start.elapsed().as_secs_f64();
    if tap {
        println!("1..{}", cases.len());
    } else {
        println!("{} ({} labs, {seconds:.1} s)", suite::summary(&cases), runs.len());
    }
    if let Some(path) = junit_file {
        std::fs::write(path, junit(&runs, seconds))
            .map_err(|e| Error::io(Code::IoFailed, format!("cannot write {}", path.display()), &e))?;
    }
    if cases.is_empty() {
        eprint!(
            "{}",
            diag::render(&Report::plain(
                &Error::new(Code::ChecksFailed, "no check ran").help("the labs hold no checks (or --filter matched none)")
            ))
        );
        return Ok(ExitCode::from(1));
    }
    Ok(if cases.iter().all(|c| c.ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_escape_what_they_quote() {
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
        let failed = Case {
            name: "web #1".into(),
            ok: false,
            ms: 12.0,
            message: Some("nsscript::tcp_failed\n\n  x 10.0.0.1:80 does not accept\n".into()),
        };
        assert_eq!(headline(failed.message.as_deref().unwrap()), "nsscript::tcp_failed: 10.0.0.1:80 does not accept");
        assert_eq!(tap_case(2, "lab", &failed).lines().next(), Some("not ok 2 - lab: web \\#1"));
        let run = LabRun {
            file: "l.rhai".into(),
            lab: "l".into(),
            cases: vec![failed],
            seconds: 1.0,
            stdout: String::new(),
            stderr: String::new(),
        };
        let xml = junit(&[run], 1.0);
        assert!(xml.contains("<testcase classname=\"l\" name=\"web #1\" file=\"l.rhai\" time=\"0.012\">"), "{xml}");
        assert!(xml.contains("failure message=\"nsscript::tcp_failed: 10.0.0.1:80 does not accept\""), "{xml}");
    }
}
