//! The test harness: every test runs the real `nsscript` binary inside its own
//! isolated network + mount namespace (`unshare --net --mount`, a private tmpfs on
//! /run, lo up), and observes the kernel with tools that are not ours (`ip -j`,
//! `ip netns`, `ping`, `iptables -S`). Nothing a test does can reach the machine's
//! own network, and everything vanishes when the test's shell exits.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn failed(&self) -> &Self {
        assert_ne!(self.code, 0, "expected failure\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
        self
    }

    /// The text between `==NAME==` and the next marker (or the end) in stdout.
    #[track_caller]
    pub fn section(&self, name: &str) -> String {
        let marker = format!("=={name}==\n");
        let start = self
            .stdout
            .find(&marker)
            .unwrap_or_else(|| panic!("no section {name} in stdout:\n{}\n--- stderr\n{}", self.stdout, self.stderr))
            + marker.len();
        let rest = &self.stdout[start..];
        // An empty section is followed at once by the next marker.
        let end = if rest.starts_with("==") { 0 } else { rest.find("\n==").map(|i| i + 1).unwrap_or(rest.len()) };
        rest[..end].to_string()
    }

    /// A section parsed as JSON (from `ip -j ...`).
    #[track_caller]
    pub fn json(&self, name: &str) -> serde_json::Value {
        let text = self.section(name);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("section {name} is not JSON ({e}):\n{text}"))
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_nsscript")
}

pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

/// Write `files` (name, content) into a fresh directory, then run `bash` there inside
/// an isolated network + mount namespace. In the script: `$NSS` is the binary,
/// `$SCRIPTS` the project's scripts/ directory, and `section NAME` prints a marker
/// that [`Run::section`] finds.
pub fn isolated(files: &[(&str, &str)], bash: &str) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
    }
    let prelude = r#"
set -u
mount -t tmpfs tmpfs /run
ip link set lo up
export NO_COLOR=1
section() { printf '==%s==\n' "$1"; }
"#;
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "bash", "-c"])
        .arg(format!("{prelude}\n{bash}"))
        .current_dir(dir.path())
        .env("NSS", bin())
        .env("SCRIPTS", scripts_dir())
        .output()
        .expect("unshare runs (util-linux)");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What the leftover check compares: namespaces, links, /run/netns and mounts.
pub const SNAPSHOT: &str = r#"snapshot() { ip netns list; ip -br link | awk '{print $1}'; ls -A /run/netns 2>/dev/null; grep -c ' /run/netns/' /proc/self/mountinfo || true; }"#;

/// A command that runs `nsscript ARGS` (the binary as `$NSS`) in the same isolation as
/// [`isolated`], for tests that drive it through a pseudo-terminal.
pub fn isolated_nsscript(args: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--propagation", "private", "bash", "-c"])
        .arg(format!("mount -t tmpfs tmpfs /run && ip link set lo up && exec \"$NSS\" {args}"))
        .env("NSS", bin());
    cmd
}

/// The .rhai files directly in `dir`, without the extension, sorted.
pub fn rhai_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rhai").map(String::from))
        .collect();
    names.sort();
    names
}
