//! Programs inside a namespace: `exec` (wait for it) and `spawn` (in the background,
//! stopped at `down`). The program itself is the point, so it runs as a process.

use super::shell::{Sh, Step};
use super::NsRef;
use crate::error::{Code, Error, Result};
use serde::{Deserialize, Serialize};

/// A command for `exec` or `spawn`.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Run by `sh -c`.
    Shell(String),
    /// argv, no shell.
    Argv(Vec<String>),
}

impl Command {
    pub fn validate(&self) -> Result<()> {
        match self {
            Command::Argv(argv) if argv.is_empty() => Err(Error::new(Code::ExecFailed, "cannot run an empty command")
                .help("give the program and its arguments, e.g. [\"ip\", \"addr\"]")),
            _ => Ok(()),
        }
    }

    /// The command as it runs inside ns, every word quoted.
    pub fn shell(&self, ns: &NsRef) -> String {
        match self {
            Command::Shell(line) => Sh::inside(ns, "sh").raw("-c").w(line).done(),
            Command::Argv(argv) => Sh::within(ns).words(argv).done(),
        }
    }

    /// The command in a few words, for reports (`sleep 60`, a long one cut short).
    pub fn short(&self) -> String {
        let text = match self {
            Command::Shell(line) => line.clone(),
            Command::Argv(argv) => argv.join(" "),
        };
        if text.chars().count() > 60 {
            format!("`{}...`", text.chars().take(57).collect::<String>())
        } else {
            format!("`{text}`")
        }
    }
}

/// Run a command inside ns and wait; past `timeout_ms` its process group is killed
/// and the answer is code 124, as timeout(1) answers.
#[derive(Clone, Debug, PartialEq)]
pub struct Exec {
    pub ns: NsRef,
    pub cmd: Command,
    pub timeout_ms: Option<u32>,
}

impl Exec {
    pub fn shell(&self) -> Step {
        let cmd = self.cmd.shell(&self.ns);
        match self.timeout_ms {
            None => Step::new(format!("run in {} (the script checks the result)", self.ns), vec![format!("{cmd} || true")]),
            Some(ms) => {
                let secs = f64::from(ms) / 1000.0;
                Step::new(format!("run in {} for at most {secs} s", self.ns), vec![format!("timeout {secs} {cmd} || true")])
            }
        }
    }
}

/// Start a command in the background inside ns, tracked until `down`; `listen` waits
/// (up to `wait_ms`) until that TCP port listens in ns.
#[derive(Clone, Debug, PartialEq)]
pub struct Spawn {
    pub ns: NsRef,
    pub cmd: Command,
    pub listen: Option<u16>,
    pub wait_ms: u32,
}

impl Spawn {
    /// `host_pids`: where a walkthrough keeps the pids of the host's background programs.
    pub fn shell(&self, host_pids: &str) -> Step {
        let mut cmds = vec![format!("{} &", self.cmd.shell(&self.ns))];
        if self.ns == NsRef::Host {
            cmds.push(format!("echo $! >> {}", super::shell::quote(host_pids)));
        }
        if let Some(port) = self.listen {
            cmds.push(format!("until {} | grep -q ':{port} '; do sleep 0.1; done", Sh::inside(&self.ns, "ss").raw("-Hltn").done()));
        }
        Step::new(format!("start in the background in {}", self.ns), cmds)
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// What the ledger keeps of a background process of the lab (spawn, dhcp_server).
/// `pid` and `start` (field 22 of /proc/PID/stat) identify it; `files` are its log and
/// lease files, removed with it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ProcRecord {
    pub ns: NsRef,
    pub what: String,
    pub pid: Option<u32>,
    pub start: Option<u64>,
    pub files: Vec<String>,
}
