//! Command-line arguments.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "nsscript",
    version,
    about = "Linux network-namespace labs as scripts",
    long_about = "Runs a lab script (Rhai) that builds network namespaces, veth pairs, bridges and routes over netlink, \
                  and leaves the lab up until `nsscript down LAB`. Without a script, starts a REPL.",
    // A script or a subcommand, not both (main.rs refuses a run's arguments before a
    // subcommand; -q and -v go anywhere).
    override_usage = "nsscript [OPTIONS] [SCRIPT]\n       nsscript [-q] [-v] <COMMAND>"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Cmd>,

    /// The lab script to run (a first line `#!/usr/bin/env nsscript` is allowed)
    pub script: Option<PathBuf>,

    #[command(flatten)]
    pub run: RunOpts,

    /// Print no warnings (errors are still reported)
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Log what nsscript does on stderr: each operation, each flush, timings (-vv: more)
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Args, Debug, Default, Clone)]
pub struct RunOpts {
    /// Pass a constant to the script: integers and true/false arrive typed, the rest as strings
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// The lab's name (default: the script file's stem, or what the script sets with lab("NAME"))
    #[arg(long)]
    pub name: Option<String>,

    /// Run inside a private network + mount namespace: the host is never touched and
    /// everything vanishes when nsscript exits
    #[arg(long)]
    pub sandbox: bool,

    /// With --sandbox: keep the lab alive after the script, until Ctrl-C
    #[arg(long, requires = "sandbox")]
    pub hold: bool,

    /// When the script fails, keep what it built instead of rolling it back
    #[arg(long)]
    pub keep: bool,

    /// If the lab is already up, take it down first, then build it again
    #[arg(long)]
    pub replace: bool,

    /// (nsscript test) Write the run's checks, as test cases, to this file (JSON)
    #[arg(long, hide = true, requires = "sandbox")]
    pub results: Option<PathBuf>,

    /// (nsscript test) Only the checks whose name contains this text
    #[arg(long, hide = true)]
    pub filter: Option<String>,

    /// After the build, serve a live view of the lab in the browser until Ctrl-C
    /// (with --sandbox it holds the sandbox, as --hold does)
    #[arg(long)]
    pub ui: bool,

    /// With --ui: the address to listen on (default 127.0.0.1 and a free port)
    #[arg(long, value_name = "ADDR:PORT", requires = "ui")]
    pub listen: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Remove everything a lab created, and nothing else
    Down {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// Return as soon as everything is deleted, without waiting for the kernel to
        /// finish freeing the namespaces' veth ends (as `ip netns del` does)
        #[arg(long)]
        no_wait: bool,
    },
    /// List the labs that are up, with what they hold
    Ls,
    /// Print the script functions, one line each (Markdown), as in the README
    Functions,
    /// Start the REPL, optionally after running a lab script
    Repl {
        script: Option<PathBuf>,
        #[command(flatten)]
        run: RunOpts,
        /// What Ctrl-D does with the lab: ask (the default on a terminal), keep it up, or take it down
        #[arg(long, value_enum, default_value_t = OnExit::Ask)]
        on_exit: OnExit,
    },
    /// Print the shell commands (ip, bridge, sysctl, iptables, tc, dnsmasq) that build the
    /// same lab, as a bash script; runs the script against a model, no root needed
    Plan {
        /// The lab script
        script: PathBuf,
        /// Pass a constant to the script (as for a run)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// The lab's name (default: the script file's stem)
        #[arg(long)]
        name: Option<String>,
    },
    /// Draw the lab's topology: namespaces and bridges as boxes, veth and vxlan links
    /// as edges; no root needed
    Graph {
        /// The lab script
        script: PathBuf,
        #[arg(long, short, value_enum, default_value_t = GraphFormat::Ascii)]
        format: GraphFormat,
        /// Pass a constant to the script (as for a run)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Serve a live view of a running lab in the browser: its topology as the kernel
    /// has it, kept up to date, with link states, rates and each namespace's details;
    /// prints the URL (with its token); Ctrl-C stops it
    Ui {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// The address to listen on (default 127.0.0.1 and a free port)
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<String>,
    },
    /// Open an interactive shell inside a namespace of a running lab (prompt "NS> ")
    Shell {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// One of the lab's namespaces
        ns: String,
    },
    /// Run one command inside a namespace of a running lab; exits with its code
    Exec {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// One of the lab's namespaces
        ns: String,
        /// The command and its arguments (after `--`)
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Run the checks of a running lab (its check blocks, assert*, pingall) against the
    /// lab as it is now, building and changing nothing; one line per check and a summary
    Check {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// The script whose checks to run (default: the one the lab was built from)
        script: Option<PathBuf>,
    },
    /// Build each lab in a sandbox of its own, run its checks, take it down, and report
    /// every check as a test case (a summary, TAP, JUnit XML); exits 1 if any failed
    Test {
        /// Lab files, or directories whose .rhai files are labs (default: the current directory)
        paths: Vec<PathBuf>,
        /// How many labs run at once
        #[arg(long, short, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Write the results as JUnit XML to this file (for CI)
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Print the results as TAP (Test Anything Protocol) instead of lines
        #[arg(long)]
        tap: bool,
        /// Only the checks (and labs) whose name contains this text
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
    },
    /// The responder serve() starts inside a lab's namespace (nsscript in a hidden mode)
    #[command(name = "__serve", hide = true)]
    Serve {
        proto: String,
        port: u16,
        #[arg(long)]
        reply: Option<String>,
    },
    /// Capture packets on the links of a running lab (every link, or the targets named):
    /// one line per packet, or pcapng with -w; Ctrl-C stops it
    Capture {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// NS (every link of a namespace), NS:LINK, or a bridge's name (it and its ports);
        /// none: every link of the lab
        targets: Vec<String>,
        /// Write pcapng to FILE (`-` for stdout: `nsscript capture LAB -w - | wireshark -k -i -`)
        #[arg(short = 'w', value_name = "FILE")]
        write: Option<PathBuf>,
        /// A filter in tcpdump's syntax, e.g. "icmp or arp"
        #[arg(short = 'f', long = "filter")]
        filter: Option<String>,
        /// Stop after COUNT packets
        #[arg(short = 'c', value_name = "COUNT")]
        count: Option<u64>,
        /// Stop after SECONDS
        #[arg(long = "for", value_name = "SECONDS")]
        seconds: Option<f64>,
    },
    /// Send one probe from a namespace of a running lab and explain its path and the
    /// reply's, hop by hop; where it stops, why
    Trace {
        /// The lab's name (see `nsscript ls`)
        lab: String,
        /// The namespace the probe leaves from
        ns: String,
        /// The address it goes to
        dst: String,
        /// The probe: an ICMP echo (the default), a TCP SYN or a UDP datagram to --port
        #[arg(long, value_parser = ["icmp", "tcp", "udp"])]
        proto: Option<String>,
        /// The port of a TCP or UDP probe
        #[arg(long)]
        port: Option<u16>,
    },
    /// Print the catalogue of errors: every code nsscript reports (as `nsscript::CODE`),
    /// with what it means
    Errors {
        /// Show one code in full, with its help, e.g. `nsscript errors name_taken`
        code: Option<String>,
    },
    /// Print a shell completion script: `nsscript completions bash > /etc/bash_completion.d/nsscript`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// What leaving the REPL does with the lab it built.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExit {
    /// Ask on a terminal; keep the lab when input is not a terminal
    #[default]
    Ask,
    /// Leave the lab up (`nsscript down LAB` removes it later)
    Keep,
    /// Take the lab down
    Down,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    Ascii,
    Dot,
    Mermaid,
    Json,
    /// A standalone web page (the live view's drawing, of the script's plan)
    Html,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let valid = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !k.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!("{k:?} is not a valid variable name (letters, digits, '_', not starting with a digit)"));
    }
    Ok((k.to_string(), v.to_string()))
}
