//! The test harness. Kernel tests run the real `nsscript` binary inside their own
//! network + mount + PID namespace ([`isolated`]: `unshare --net --mount --pid --fork
//! --mount-proc`, a private tmpfs on /run, lo up) and observe the kernel with tools that
//! are not ours (`ip -j`, `ip netns`, `ping`, `iptables -S`, `tc -j`, /proc). Nothing a
//! test does can reach the machine's own network; everything it starts is killed when
//! its shell (PID 1 of its namespace) exits, and no test sees or can signal another's
//! processes. Tests that need no kernel objects (plan, graph, the command line, the
//! error catalogue) run through [`plain`], without unshare, as any user.
//!
//! Whether kernel tests can run is decided in one place, [`kernel`]: [`isolated`] and
//! [`isolated_nsscript`] ask it and answer `None` for a user who is not root, after it
//! printed `SKIPPED (needs root): TEST: REASON` on stderr; the test then returns.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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

/// Why kernel tests cannot run in this process, or `None` when they can: they need
/// root with CAP_SYS_ADMIN (unshare, mounts) and CAP_NET_ADMIN (links) in effect.
pub fn why_no_kernel() -> Option<String> {
    static WHY: OnceLock<Option<String>> = OnceLock::new();
    WHY.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim).unwrap_or("");
        let euid = field("Uid:").split_whitespace().nth(1).unwrap_or("?").to_string();
        let caps = u64::from_str_radix(field("CapEff:"), 16).unwrap_or(0);
        const CAP_NET_ADMIN: u64 = 1 << 12;
        const CAP_SYS_ADMIN: u64 = 1 << 21;
        if euid != "0" {
            Some(format!("runs as uid {euid}, and making network namespaces (unshare --net --mount --pid) needs root"))
        } else if caps & (CAP_NET_ADMIN | CAP_SYS_ADMIN) != CAP_NET_ADMIN | CAP_SYS_ADMIN {
            Some(format!(
                "root, but CAP_SYS_ADMIN and CAP_NET_ADMIN are not both in effect (CapEff {caps:x}): namespaces and links need them"
            ))
        } else {
            None
        }
    })
    .clone()
}

/// The one gate of kernel tests: true when they can run; otherwise false, after printing
/// `SKIPPED (needs root): TEST: REASON` on stderr (written to the file descriptor itself,
/// past the test harness's capture, so that the line shows for a test that passes).
/// [`isolated`] and [`isolated_nsscript`] call it; a test calls it directly only when it
/// must decide before it starts threads or a loop of isolated runs.
#[track_caller]
pub fn kernel() -> bool {
    let Some(why) = why_no_kernel() else { return true };
    let at = std::panic::Location::caller();
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => format!("{name} ({}:{})", at.file(), at.line()),
        _ => format!("{}:{}", at.file(), at.line()),
    };
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED (needs root): {test}: {why}");
    false
}

/// The helpers both runners give the script: `section NAME` prints a marker that
/// [`Run::section`] finds; `as_nobody CMD...` runs CMD as user 65534 without
/// capabilities (as it is when the tests already run as a user who is not root).
const HELPERS: &str = r#"
set -u
export NO_COLOR=1
section() { printf '==%s==\n' "$1"; }
as_nobody() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "$@"; else "$@"; fi
}
"#;

/// A fresh directory holding `files` (name, content).
fn workdir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
    }
    dir
}

fn finish(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Write `files` (name, content) into a fresh directory, then run `bash` there inside
/// its own network + mount + PID namespace, as PID 1 of it: whatever the script starts
/// is killed when it exits. In the script: `$NSS` is the binary, `$SCRIPTS` the
/// project's scripts/ directory, `section NAME` prints a marker that [`Run::section`]
/// finds, and `as_nobody CMD...` runs CMD as an unprivileged user.
///
/// `None` when this process cannot make namespaces (see [`kernel`], which has printed
/// why): the test returns, `let Some(run) = isolated(..) else { return };`.
#[track_caller]
#[must_use = "None means the test is skipped: return"]
pub fn isolated(files: &[(&str, &str)], bash: &str) -> Option<Run> {
    if !kernel() {
        return None;
    }
    let dir = workdir(files);
    let prelude = "mount -t tmpfs tmpfs /run\nip link set lo up\n";
    let out = Command::new("unshare")
        .args(UNSHARE)
        .args(["bash", "-c"])
        .arg(format!("{HELPERS}\n{prelude}\n{bash}"))
        .current_dir(dir.path())
        .env("NSS", bin())
        .env("SCRIPTS", scripts_dir())
        .output()
        .expect("unshare runs (util-linux)");
    Some(finish(out))
}

/// How [`isolated`] and [`isolated_nsscript`] isolate a test: its own network and mount
/// namespace (mounts made there stay there) and its own PID namespace with its own
/// /proc (the test's shell is PID 1: when it exits, everything it started is killed).
pub const UNSHARE: &[&str] = &["--net", "--mount", "--pid", "--fork", "--mount-proc", "--propagation", "private"];

/// [`isolated`] for tests that touch no kernel object (plan, graph, errors, the command
/// line): `bash` runs in a fresh directory holding `files`, with the same `$NSS`,
/// `$SCRIPTS`, `section` and `as_nobody`, without unshare and as whoever runs the tests.
pub fn plain(files: &[(&str, &str)], bash: &str) -> Run {
    let dir = workdir(files);
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("{HELPERS}\n{bash}"))
        .current_dir(dir.path())
        .env("NSS", bin())
        .env("SCRIPTS", scripts_dir())
        .output()
        .expect("bash runs");
    finish(out)
}

/// What the leftover check compares: namespaces, links, /run/netns and mounts.
pub const SNAPSHOT: &str = r#"snapshot() { ip netns list; ip -br link | awk '{print $1}'; ls -A /run/netns 2>/dev/null; grep -c ' /run/netns/' /proc/self/mountinfo || true; }"#;

/// A command that runs `nsscript ARGS` (the binary as `$NSS`) in the same isolation as
/// [`isolated`], for tests that drive it through a pseudo-terminal. `None` as for
/// [`isolated`].
#[track_caller]
#[must_use = "None means the test is skipped: return"]
pub fn isolated_nsscript(args: &str) -> Option<Command> {
    if !kernel() {
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(UNSHARE)
        .args(["bash", "-c"])
        // Not `exec`: nsscript must not be PID 1, which the kernel spares the signals it
        // has no handler for (bash stays PID 1 and waits).
        .arg(format!("mount -t tmpfs tmpfs /run && ip link set lo up || exit 1\n\"$NSS\" {args}\nexit $?"))
        .env("NSS", bin());
    Some(cmd)
}

/// The .rhai files directly in `dir`, without the extension, sorted.
pub fn rhai_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rhai").map(String::from))
        .collect();
    names.sort();
    names
}
