//! Programs run inside a namespace (`exec`): the program itself is the point.

use crate::error::{Error, Result};
use crate::nsexec;
use crate::op::{Command, ExecOutput};
use std::os::fd::RawFd;
use std::process::Stdio;

pub fn run(ns: Option<RawFd>, cmd: &Command, where_: &str) -> Result<ExecOutput> {
    let (program, mut command) = match cmd {
        Command::Shell(line) => {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c").arg(line);
            ("/bin/sh".to_string(), c)
        }
        Command::Argv(argv) => {
            let Some((first, rest)) = argv.split_first() else {
                return Err(Error::new("cannot run an empty command").help("give the program and its arguments, e.g. [\"ip\", \"addr\"]"));
            };
            let mut c = std::process::Command::new(first);
            c.args(rest);
            (first.clone(), c)
        }
    };
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    nsexec::command_in(ns, &mut command);
    let out = command.output().map_err(|e| {
        let err = Error::io(format!("cannot run {program:?} in {where_}"), &e);
        if e.kind() == std::io::ErrorKind::NotFound {
            err.help(format!("{program} is not installed or not on PATH; install the package that provides it"))
        } else {
            err
        }
    })?;
    use std::os::unix::process::ExitStatusExt;
    let code = out.status.code().map(i64::from).unwrap_or_else(|| 128 + i64::from(out.status.signal().unwrap_or(0)));
    Ok(ExecOutput {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
