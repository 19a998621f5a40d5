//! Issue 5: `nsscript plan` prints a lab as a bash walkthrough. For every lab in
//! scripts/, that walkthrough run by bash builds the same kernel state as nsscript's own
//! run: namespaces, links, addresses, routes, qdiscs (with their parameters), firewall
//! rules (iptables-save), the sysctls the lab changed and the programs left running;
//! and the qdiscs are the same at each of the lab's own commands too (a lab may shape a
//! link, measure and take the shaping back). Its "take it down" section removes all of
//! it, programs included. Everything is observed with the kernel's tools (ip -j, tc -j,
//! iptables-save, sysctl, /proc), never taken from nsscript's word.

use crate::support::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// `dump PHASE [LEVEL]` prints the kernel state of the host and of every named namespace
/// as sections `PHASE-netns` and `PHASE-NS-KIND`: LEVEL `state` (the default) the qdiscs,
/// links, addresses, routes and firewall rules; `full` also the `net.*` sysctls of every
/// namespace and of a namespace made just now for comparison (`PHASE-fresh-sysctls`),
/// and the programs running (`PHASE-programs`). (A checkpoint, [`CPSH`], prints the
/// netns and qdiscs sections only, its own quicker way.)
const DUMP: &str = r#"
section() { printf '==%s==\n' "$1"; }
dump() {
  local level=${2:-state} ns ipn tcn ex
  section "$1-netns"; ip netns list | awk '{print $1}' | sort
  for ns in host $(ip netns list | awk '{print $1}' | sort); do
    if [ "$ns" = host ]; then ipn=ip; tcn=tc; ex=; else ipn="ip -n $ns"; tcn="tc -n $ns"; ex="ip netns exec $ns"; fi
    section "$1-$ns-qdiscs"; $tcn -raw -j qdisc show
    section "$1-$ns-links"; $ipn -j -d link show
    section "$1-$ns-addrs"; $ipn -j addr show
    section "$1-$ns-routes"; $ipn -j route show
    section "$1-$ns-rules"; $ex iptables-save 2>/dev/null; $ex ip6tables-save 2>/dev/null | sed 's/^\*/*6:/'
    [ "$level" = full ] || continue
    section "$1-$ns-sysctls"; $ex sysctl -a 2>/dev/null | grep '^net\.'
  done
  if [ "$level" = full ]; then
    section "$1-fresh-sysctls"; unshare --net sysctl -a 2>/dev/null | grep '^net\.'
    section "$1-programs"; programs
  fi
  true
}
# Every process of the test's PID namespace but its shell (PID 1, which runs this with
# builtins only, so none of its helpers is seen): "NS COMM", NS the named namespace it
# runs in, or host. First, up to 5 s for the plan's `ip netns exec NS PROG &` lines to
# have become PROG.
# comm and state of the process of /proc directory $1 (false if gone or a zombie).
proc_of() {
  local st
  read -r st < "$1/stat" 2>/dev/null || return 1
  comm=${st#*\(}; comm=${comm%\)*}; state=${st##*\) }; state=${state%% *}
  [ "$state" != Z ]
}
programs() {
  local i d p comm state where n busy
  for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25; do
    busy=
    for d in /proc/[0-9]*; do
      proc_of "$d" && [ "$comm" = ip ] && busy=1
    done
    [ -z "$busy" ] && break
    sleep 0.2
  done
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = 1 ] || [ "$p" = "$BASHPID" ] && continue
    proc_of "$d" || continue
    where=
    if [ "$d/ns/net" -ef /proc/1/ns/net ]; then where=host; else
      for n in /run/netns/*; do [ "$d/ns/net" -ef "$n" ] && { where=${n#/run/netns/}; break; }; done
    fi
    echo "${where:-elsewhere} $comm"
  done
}
"#;

/// `/bin/sh` while the lab runs (bind-mounted over the real one, in the test's own mount
/// namespace; `@W@` is the test's directory, which holds a copy of the real shell as
/// `real/sh`). The lab's `exec("LINE")` calls are `/bin/sh -c LINE` children of nsscript
/// with their output in pipes (a spawned program's goes to its log file); the plan's are
/// its `sh -c LINE` lines under "# run in ...", which the test points at this file as
/// `@W@/cpsh`. The Nth of them records LINE and a checkpoint (the sections `dump PHASE`
/// prints for the namespaces and their qdiscs), then runs as the real shell.
///
/// A checkpoint delays the lab's command, and a lab may rely on the time between two
/// commands: shaping.rhai starts a sender that connects 0.3 s later, then its receiver;
/// on a loaded machine a checkpoint in between made the receiver late and the lab fail.
/// So a checkpoint is taken only where the lab itself did something since the last one
/// (line N of `cp/decisions`, which the test derives from the plan, says `dump` or
/// `same`; `same` checkpoints are the previous one again), and it starts no process but
/// one `tc` per namespace, at a higher priority (nice -10).
const CPSH: &str = r#"#!@W@/real/sh
if [ "${1-}" = -c ] && [ $# -ge 2 ]; then
  mode=
  case "$0" in
    */cpsh) mode=plan ;;
    *) if [ -e @W@/cp/live.on ] && read -r parent < /proc/$PPID/comm && [ "$parent" = nsscript ] && [ -p /proc/$$/fd/1 ]; then
         mode=live
       fi ;;
  esac
  if [ -n "$mode" ]; then
    n=0
    [ -e @W@/cp/$mode.count ] && read -r n < @W@/cp/$mode.count
    n=$((n + 1))
    echo $n > @W@/cp/$mode.count
    printf '%s\n' "$2" > @W@/cp/$mode-$n.line
    p=cp-$mode-$n
    what=dump i=0
    while read -r d; do i=$((i + 1)); [ $i = $n ] && { what=$d; break; }; done < @W@/cp/decisions
    if [ "$what" = same ] && [ $n -gt 1 ]; then
      printf '==%s-same==\n' $p > @W@/cp/$mode-$n.dump
    else
      {
        printf '==%s-netns==\n' $p
        for f in /run/netns/*; do [ -e "$f" ] && printf '%s\n' "${f#/run/netns/}"; done
        printf '==%s-host-qdiscs==\n' $p
        nice -n -10 nsenter --net=/proc/1/ns/net tc -raw -j qdisc show
        for f in /run/netns/*; do
          [ -e "$f" ] || continue
          printf '==%s-%s-qdiscs==\n' $p "${f#/run/netns/}"
          nice -n -10 tc -n "${f#/run/netns/}" -raw -j qdisc show
        done
      } > @W@/cp/$mode-$n.dump 2>&1
    fi
  fi
fi
exec @W@/real/sh "$@"
"#;

/// Programs: which ones the walkthrough left running (`running`), which of those are
/// still alive after its undo (`still_running`), and, whatever happens, none survives
/// the test (`cleanup`, on exit; the test's PID namespace would end them too).
const PROGRAMS: &str = r#"
running() {
  for ns in $(ip netns list | awk '{print $1}'); do ip netns pids "$ns"; done
  cat /run/nsscript-plan-*.pids 2>/dev/null; true
}
alive() { s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }
still_running() {
  while read -r p; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do alive "$p" || break; sleep 0.1; done
    if alive "$p"; then echo "$p $(tr '\0' ' ' < "/proc/$p/cmdline")"; fi
  done
  true
}
cleanup() {
  for p in $(running) $(cat /run/dnsmasq-*.pid 2>/dev/null); do kill "$p" 2>/dev/null; done
  true
}
trap cleanup EXIT
"#;

/// What a normalised state holds: (namespace, kind, the object in words).
type State = BTreeSet<(String, String, String)>;

/// How much of a dump [`normalised`] reads (what `dump PHASE LEVEL` printed).
#[derive(Clone, Copy, PartialEq)]
enum Level {
    /// The qdiscs only: a checkpoint at one of the lab's commands ([`CPSH`]).
    Qdiscs,
    /// Namespaces, links, addresses, routes, qdiscs and firewall rules: before the lab
    /// and after the plan's undo (which cannot know the host's old sysctls, and whose
    /// programs are still being stopped; `left_running` checks those).
    State,
    /// Everything, sysctls and programs too: what each run built.
    Full,
}

/// The dump of `phase` as comparable lines. Links as kind, master, up, mtu (not their
/// MAC or ifindex); addresses as LINK=ADDR/LEN without link-local ones (derived from the
/// MAC); routes as dst via gw dev; qdiscs as dev, kind, handle, parent and their options
/// (not refcnt); firewall rules as iptables-save prints them without its comment lines,
/// counters and `-m comment` annotations, with built-in chains whose policy is ACCEPT
/// left out (iptables-nft makes them when a tool lists or checks a table, and they
/// change nothing); sysctls: see [`changed_sysctls`]; programs by name (comm).
/// `dynamic`: "NS LINK" whose addresses a DHCP server hands out (they may differ).
fn normalised(run: &Run, phase: &str, dynamic: &[&str], level: Level) -> State {
    let mut out = State::new();
    let mut add = |ns: &str, kind: &str, what: String| {
        out.insert((ns.to_string(), kind.to_string(), what));
    };
    let netns: Vec<String> = run.section(&format!("{phase}-netns")).lines().map(str::to_string).collect();
    let fresh = if level == Level::Full { sysctl_map(&run.section(&format!("{phase}-fresh-sysctls"))) } else { BTreeMap::new() };
    for ns in std::iter::once("host".to_string()).chain(netns) {
        add(&ns, "netns", "exists".into());
        for q in arr(&run.json(&format!("{phase}-{ns}-qdiscs"))) {
            add(&ns, "qdisc", qdisc_text(q));
        }
        if level == Level::Qdiscs {
            continue;
        }
        let links = run.json(&format!("{phase}-{ns}-links"));
        for l in arr(&links) {
            let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or("");
            let up = l["flags"].as_array().unwrap().iter().any(|f| f == "UP");
            add(
                &ns,
                "link",
                format!(
                    "{} kind={kind} master={} up={up} mtu={}",
                    l["ifname"].as_str().unwrap(),
                    l["master"].as_str().unwrap_or("-"),
                    l["mtu"]
                ),
            );
        }
        for l in arr(&run.json(&format!("{phase}-{ns}-addrs"))) {
            for a in l["addr_info"].as_array().unwrap() {
                let name = l["ifname"].as_str().unwrap();
                if dynamic.contains(&format!("{ns} {name}").as_str()) && a["family"] == "inet" {
                    add(&ns, "addr", format!("{name}=(by DHCP)/{}", a["prefixlen"]));
                } else if a["scope"] != "link" {
                    add(&ns, "addr", format!("{name}={}/{}", a["local"].as_str().unwrap(), a["prefixlen"]));
                }
            }
        }
        for r in arr(&run.json(&format!("{phase}-{ns}-routes"))) {
            add(
                &ns,
                "route",
                format!(
                    "{} via {} dev {}",
                    r["dst"].as_str().unwrap_or("?"),
                    r["gateway"].as_str().unwrap_or("-"),
                    r["dev"].as_str().unwrap_or("-")
                ),
            );
        }
        for rule in firewall_rules(&run.section(&format!("{phase}-{ns}-rules"))) {
            add(&ns, "firewall", rule);
        }
        if level != Level::Full {
            continue;
        }
        let names: Vec<&str> = arr(&links).iter().filter_map(|l| l["ifname"].as_str()).collect();
        for line in changed_sysctls(&run.section(&format!("{phase}-{ns}-sysctls")), &fresh, &names) {
            add(&ns, "sysctl", line);
        }
    }
    if level == Level::Full {
        let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
        for line in run.section(&format!("{phase}-programs")).lines() {
            let (ns, comm) = line.split_once(' ').unwrap_or((line, ""));
            *count.entry((ns.to_string(), comm.to_string())).or_default() += 1;
        }
        for ((ns, comm), n) in count {
            add(&ns, "program", if n == 1 { comm } else { format!("{comm} (x{n})") });
        }
    }
    out
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_else(|| panic!("not a JSON array: {v}"))
}

/// One qdisc of `tc -raw -j qdisc show`: "DEV KIND handle=H parent=P OPTION=VALUE ...",
/// without its refcnt (a count of users, not a parameter).
fn qdisc_text(q: &Value) -> String {
    let parent = if q["root"] == true { "root".to_string() } else { q["parent"].as_str().unwrap_or("?").to_string() };
    let handle = q["handle"].as_str().unwrap_or("?");
    // A handle the kernel picked (tc without `handle`) counts up from 8001: across the
    // whole machine; which one it was is chance, that the kernel picked it is not.
    let major = handle.split(':').next().and_then(|m| u32::from_str_radix(m, 16).ok());
    let handle = if major.is_some_and(|m| m >= 0x8000) { "8000+:(chosen by the kernel)" } else { handle };
    let mut text = format!("{} {} handle={handle} parent={parent}", q["dev"].as_str().unwrap_or("?"), q["kind"].as_str().unwrap_or("?"));
    let mut options = Vec::new();
    flatten("", &q["options"], &mut options);
    // -raw adds what tc otherwise leaves out (tbf's limit), and the same numbers again
    // in the kernel's units (burst_raw: the burst as a time), which add nothing.
    for (k, v) in options.into_iter().filter(|(k, _)| !k.ends_with("_raw")) {
        text.push_str(&format!(" {k}={v}"));
    }
    text
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        Value::Null => {}
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// The rules of iptables-save and ip6tables-save (tables of the latter as `6:NAME`) as
/// "TABLE RULE" and "TABLE :CHAIN POLICY": no `#` lines, no COMMIT, no counters, no
/// `-m comment --comment ...`, and no built-in chain whose policy is ACCEPT.
fn firewall_rules(text: &str) -> Vec<String> {
    const BUILT_IN: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"];
    let mut table = String::from("?");
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && *l != "COMMIT") {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(chain) = line.strip_prefix(':') {
            let mut words = chain.split_whitespace();
            let (name, policy) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            if !(BUILT_IN.contains(&name) && policy == "ACCEPT") {
                out.push(format!("{table} :{name} {policy}"));
            }
        } else {
            // A counter prefix ([packets:bytes], from iptables-save -c) and comments go.
            let rule = if line.starts_with('[') { line.split_once(' ').map(|x| x.1).unwrap_or("") } else { line };
            out.push(format!("{table} {}", without_comment(rule)));
        }
    }
    out
}

/// A rule without its `-m comment --comment WORD|"WORDS"` (a note, not a match).
fn without_comment(rule: &str) -> String {
    let Some(at) = rule.find("-m comment --comment ") else { return rule.to_string() };
    let rest = &rule[at + "-m comment --comment ".len()..];
    let after = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map(|i| &quoted[i + 1..]).unwrap_or("")
    } else {
        rest.find(' ').map(|i| &rest[i..]).unwrap_or("")
    };
    format!("{}{}", &rule[..at], after).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `sysctl -a` lines as key -> value (white space in values made single spaces).
fn sysctl_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect()
}

/// Sysctls that differ between two namespaces by nature, not because a lab set them:
/// counters of the traffic seen, keys made at random for each namespace.
const SYSCTLS_BY_NATURE: &[&str] = &["net.netfilter.nf_conntrack_count", "net.ipv4.tcp_fastopen_key", "net.ipv4.fib_multipath_hash_seed"];

/// The `net.*` sysctls of one namespace (`dump`) whose value differs from the one in a
/// namespace made just now (`fresh`), as "KEY = VALUE". A key of one of the namespace's
/// links (`net.ipv4.conf.LINK.KEY`, `net.ipv6.neigh.LINK.KEY`, ...) that a fresh namespace
/// lacks is compared with its `default` one there, which a new link starts from (or, for
/// the neighbour keys `default` lacks, with lo's). Keys that differ by nature are left
/// out: SYSCTLS_BY_NATURE, stable_secret (sysctl -a cannot read it) and a link's IPv6
/// mtu (it follows the link's MTU, which the links compare).
fn changed_sysctls(dump: &str, fresh: &BTreeMap<String, String>, links: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (key, value) in sysctl_map(dump) {
        if SYSCTLS_BY_NATURE.contains(&key.as_str()) || key.ends_with(".stable_secret") {
            continue;
        }
        let parts: Vec<&str> = key.split('.').collect();
        let per_link = parts.len() >= 5
            && ["ipv4", "ipv6", "mpls"].contains(&parts[1])
            && ["conf", "neigh"].contains(&parts[2])
            && links.iter().any(|l| l.replace('.', "/") == parts[3]);
        if per_link && parts[1] == "ipv6" && parts[2] == "conf" && parts[4] == "mtu" {
            continue;
        }
        let like = |link: &str| fresh.get(&[&parts[..3], &[link], &parts[4..]].concat().join("."));
        let reference = fresh.get(&key).or_else(|| if per_link { like("default").or_else(|| like("lo")) } else { None });
        if reference != Some(&value) {
            out.push(format!("{key} = {value}"));
        }
    }
    out
}

/// The differences between two states as a diff grouped by namespace and kind: `-` for
/// what only `a` has, `+` for what only `b` has. Empty when they are the same.
fn diff(a: &State, b: &State) -> String {
    let mut groups: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    for (sign, x) in a.difference(b).map(|x| ('-', x)).chain(b.difference(a).map(|x| ('+', x))) {
        groups.entry((&x.0, &x.1)).or_default().push(format!("      {sign} {}", x.2));
    }
    let mut out = String::new();
    for ((ns, kind), mut lines) in groups {
        // What nsscript's run has first, then what the plan's has, each sorted.
        lines.sort_by_key(|l| (l.as_bytes()[6] != b'-', l[8..].to_string()));
        let ns = if ns == "host" { "the host namespace".to_string() } else { format!("namespace {ns}") };
        out.push_str(&format!("    {ns}, {kind}:\n{}\n", lines.join("\n")));
    }
    out
}

/// The lab of scripts/ named `lab`: see [`plan_matches`].
fn plan_matches_run(lab: &str, dynamic: &[&str]) {
    plan_matches(&[], &format!("$SCRIPTS/{lab}.rhai"), lab, dynamic);
}

/// What [`compare`] found.
struct Comparison {
    /// The test's output; section `plan` is the plan.
    run: Run,
    /// How the plan's lab differs from nsscript's (empty: not at all), for people.
    drift: String,
    /// The lab's commands that only one of the runs ran (from where they part), which
    /// is not drift by itself.
    notes: String,
    /// How the state after the plan's undo differs from the one before the lab.
    not_undone: String,
}

/// Extra commands for [`compare`]'s self-test: `before_first` runs in the plan's run just
/// before the lab's first command that checkpoints, `after` once the plan has run.
#[derive(Default)]
struct Tamper<'a> {
    before_first: &'a str,
    after: &'a str,
}

/// Build the lab of file `script` (named `lab`) with nsscript and dump the state; `down`;
/// run its plan by bash and dump again; compare the two, and the qdiscs at each of the
/// lab's `exec("...")` commands (checkpoints, see [`CPSH`]); then run the plan's own "To
/// take it down again" lines and compare the state with the one before. `None` where
/// kernel tests are skipped.
fn compare(files: &[(&str, &str)], script: &str, lab: &str, dynamic: &[&str], tamper: Tamper) -> Option<Comparison> {
    let mut files = files.to_vec();
    files.extend([("dump.sh", DUMP), ("cpsh.in", CPSH), ("tamper-first.sh", tamper.before_first), ("tamper-after.sh", tamper.after)]);
    let run = isolated(
        &files,
        &format!(
            r##". ./dump.sh
{PROGRAMS}
# The plan's dnsmasq keeps its leases in /var/lib/misc: this test's own, not the machine's.
[ -d /var/lib/misc ] && mount -t tmpfs tmpfs /var/lib/misc
# Checkpoints: CPSH stands in for /bin/sh in this test's mount namespace.
mkdir -p real cp && cp "$(readlink -f /bin/sh)" real/sh && sed "s|@W@|$PWD|g" cpsh.in > cpsh && chmod 755 cpsh || exit 1
mount --bind cpsh "$(readlink -f /bin/sh)" || exit 1
$NSS plan {script} > plan.sh 2>plan.err || {{ cat plan.err; exit 1; }}
section plan; cat plan.sh
# The plan's commands under "# run in ..." that run `sh -c LINE` (perhaps in a
# namespace, perhaps under `timeout`) go through CPSH. cp/decisions gets a line for each:
# `dump` if the plan did anything since the one before but run the lab's commands and
# probe with ping (or if it is the first), else `same`.
awk -v cpsh="$PWD/cpsh" -v first="$PWD/tamper-first.sh" -v decisions="$PWD/cp/decisions" '
  /^# run in /{{run=1}} /^# ping /{{ping=1}} /^$/{{run=0; ping=0}}
  {{
    line=$0
    if (run && line ~ /^(timeout [^ ]+ )?(ip netns exec [^ ]+ )?sh -c /) {{
      if (!n++) print "bash " first
      print (changed || n == 1 ? "dump" : "same") > decisions; changed=0
      if (!sub(/^sh -c /, cpsh " -c ", line)) sub(/ sh -c /, " " cpsh " -c ", line)
    }} else if (!run && !ping && line !~ /^(#.*)?$/ && line != "set -e") changed=1
    print line
  }}' plan.sh > plan-cp.sh
touch cp/decisions
dump before state
touch cp/live.on
$NSS {script} > run.out 2>&1 || {{ cat run.out; exit 1; }}
rm cp/live.on
dump live full
$NSS down {lab} >/dev/null 2>&1 || exit 1
bash plan-cp.sh > plan.out 2>&1 || {{ echo "plan.sh failed"; cat plan.out; exit 1; }}
. ./tamper-after.sh
dump plan full
running > running.pids
sed -n '/^# To take it down again:$/,$ s/^#   //p' plan.sh > undo.sh
[ -s undo.sh ] || {{ echo "the plan has no 'To take it down again' section"; exit 1; }}
bash -e undo.sh > undo.out 2>&1 || {{ echo "the plan's undo failed"; cat undo.sh undo.out; exit 1; }}
dump undone state
section left_running; still_running < running.pids
for mode in live plan; do
  section "cp-$mode-count"; cat cp/$mode.count 2>/dev/null || echo 0
  n=0
  while [ -e "cp/$mode-$((n + 1)).line" ]; do
    n=$((n + 1)); section "cp-$mode-$n-line"; cat "cp/$mode-$n.line"; cat "cp/$mode-$n.dump"
  done
done
"##
        ),
    )?;
    run.ok();
    let (live, plan) = (normalised(&run, "live", dynamic, Level::Full), normalised(&run, "plan", dynamic, Level::Full));
    assert!(live.iter().any(|l| l.1 == "link"), "the dump saw links");
    let mut drift = String::new();
    let end = diff(&live, &plan);
    if !end.is_empty() {
        drift.push_str(&format!("  when the lab is built:\n{end}"));
    }
    // The checkpoints, as far as both runs ran the same commands in the same order (a
    // plan answers exec() with no output and cannot know what the kernel will refuse,
    // so a lab may take another branch in it: where the commands part, what follows is
    // only noted). At each, the same qdiscs.
    let count = |mode: &str| -> usize { run.section(&format!("cp-{mode}-count")).trim().parse().unwrap() };
    let line = |mode: &str, n: usize| run.section(&format!("cp-{mode}-{n}-line")).trim_end().to_string();
    let same = |mode: &str, n: usize| run.stdout.contains(&format!("\n==cp-{mode}-{n}-same==\n"));
    let (live_n, plan_n) = (count("live"), count("plan"));
    let common = (1..=live_n.min(plan_n)).take_while(|&n| line("live", n) == line("plan", n)).count();
    let mut notes = String::new();
    if common < live_n.max(plan_n) {
        notes.push_str(&format!("  the lab's commands part after #{common}; compared up to there:\n"));
        for (mode, sign, count) in [("live", '-', live_n), ("plan", '+', plan_n)] {
            for n in common + 1..=count {
                notes.push_str(&format!("      {sign} #{n} `{}`\n", line(mode, n)));
            }
        }
    }
    for n in 1..=common {
        if same("live", n) && same("plan", n) {
            continue; // the checkpoint before, compared already
        }
        // The latest checkpoint taken at or before command n.
        let at = |mode: &str| {
            let k = (1..=n).rev().find(|&k| !same(mode, k)).unwrap_or(1);
            normalised(&run, &format!("cp-{mode}-{k}"), dynamic, Level::Qdiscs)
        };
        let d = diff(&at("live"), &at("plan"));
        if !d.is_empty() {
            drift.push_str(&format!("  at the lab's command #{n} (`{}`), before it ran:\n{d}", line("live", n)));
        }
    }
    let (before, undone) = (normalised(&run, "before", &[], Level::State), normalised(&run, "undone", &[], Level::State));
    let not_undone = diff(&before, &undone);
    Some(Comparison { run, drift, notes, not_undone })
}

/// [`compare`], asserting that the plan builds what nsscript builds, that its undo
/// restores the state before, and that no program the plan started is left. Returns the
/// run (section `plan` is the plan); `None` where kernel tests are skipped.
fn plan_matches(files: &[(&str, &str)], script: &str, lab: &str, dynamic: &[&str]) -> Option<Run> {
    let Comparison { run, drift, notes, not_undone } = compare(files, script, lab, dynamic, Tamper::default())?;
    let plan = run.section("plan");
    assert!(
        drift.is_empty(),
        "{lab}: the plan, run by bash, builds another lab than nsscript's run (- nsscript's run, + the plan's):\n{drift}{notes}--- plan\n{plan}"
    );
    assert!(
        not_undone.is_empty(),
        "{lab}: the plan's undo does not restore the state before (- before, + after the undo):\n{not_undone}--- plan\n{plan}"
    );
    let left = run.section("left_running");
    assert!(left.trim().is_empty(), "{lab}: programs the plan started outlive its undo:\n{left}\n--- plan\n{plan}");
    Some(run)
}

/// The comparison itself is tested: a plan run that differs from nsscript's in each kind
/// of state (changed after the plan ran, or only while the lab's command runs) is caught,
/// and the report names the namespace, the kind and the lines.
#[test]
fn the_comparison_reports_each_kind_of_drift() {
    let lab = r#"
let a = netns("a");
connect(a, netns("b"), #{ ifname: "eth0", addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24" });
a.exec("true");
"#;
    let tamper = Tamper {
        before_first: "tc -n a qdisc add dev eth0 root handle 1: tbf rate 1mbit burst 4000 latency 40ms\n",
        after: "tc -n a qdisc del dev eth0 root\nip -n a link set eth0 mtu 1400\n\
                ip netns exec a iptables -A INPUT -s 192.0.2.9 -j DROP\n\
                ip netns exec a sysctl -qw net.ipv4.conf.all.rp_filter=2\n\
                ip netns exec a sleep 600 &\n",
    };
    let Some(c) = compare(&[("drift.rhai", lab)], "drift.rhai", "drift", &[], tamper) else { return };
    let want = "  when the lab is built:
    namespace a, firewall:
      + filter -A INPUT -s 192.0.2.9/32 -j DROP
    namespace a, link:
      - eth0 kind=veth master=- up=true mtu=1500
      + eth0 kind=veth master=- up=true mtu=1400
    namespace a, program:
      + sleep
    namespace a, sysctl:
      + net.ipv4.conf.all.rp_filter = 2
  at the lab's command #1 (`true`), before it ran:
    namespace a, qdisc:
      - eth0 noqueue handle=0: parent=root
      + eth0 tbf handle=1: parent=root burst=4000 lat=40000 limit=9000 rate=125000
";
    assert_eq!(c.drift, want, "\n--- plan\n{}", c.run.section("plan"));
    assert!(c.notes.is_empty(), "{}", c.notes);
    assert!(c.not_undone.is_empty(), "{}", c.not_undone);
}

/// One test per lab in scripts/ (the lab is the test's name); `dynamic` as for
/// [`normalised`]. COVERED lists them for `every_lab_in_scripts_has_a_plan_test`.
macro_rules! plan_equivalence {
    ($($lab:ident: $dynamic:expr;)*) => {
        const COVERED: &[&str] = &[$(stringify!($lab)),*];
        mod builds_the_same_state {
            use super::plan_matches_run;
            $(
                #[test]
                fn $lab() {
                    plan_matches_run(stringify!($lab), $dynamic);
                }
            )*
        }
    };
}

plan_equivalence! {
    dnat: &[];
    load_balancer: &[];
    macvlan: &[];
    relay_dns: &["c1 eth0"];
    seed000_router: &["vm2 eth0"];
    seed000_router_short: &["vm2 eth0"];
    seed001_homework: &["vm2 eth0"];
    seed001_homework_short: &[];
    seed001_netns: &["r2 eth0"];
    seed002_bridge: &[];
    seed002_veth: &[];
    seed003_bridge: &[];
    seed003_nat: &[];
    seed004_bridge: &[];
    seed004_bridge_nat: &[];
    seed004_bridge_short: &[];
    seed004_two_ns: &[];
    // Its measurements (bit rates read from socat's output) are not known to a plan,
    // which reports those asserts as not checked; what it builds and shapes is compared.
    shaping: &[];
    stateful_firewall: &[];
    topologies: &[];
    two_offices: &[];
    // What br0 learns is not known to a plan (reported as not checked); the plan's pings
    // and the built state are what is compared.
    vxlan_bridge: &[];
    vxlan_multicast: &[];
    vxlan_unicast: &[];
}

#[test]
fn every_lab_in_scripts_has_a_plan_test() {
    let labs: BTreeSet<String> = rhai_files(&scripts_dir()).into_iter().collect();
    let covered: BTreeSet<String> = COVERED.iter().map(|s| s.to_string()).collect();
    let untested: Vec<_> = labs.difference(&covered).collect();
    let gone: Vec<_> = covered.difference(&labs).collect();
    assert!(
        untested.is_empty() && gone.is_empty(),
        "add these labs to plan_equivalence! in tests/plan.rs: {untested:?}; no such lab in scripts/: {gone:?}"
    );
}

/// Files in subdirectories of scripts/ are modules that labs import: planned on their
/// own they build nothing. A lab put there would escape the test above.
#[test]
fn files_below_scripts_are_modules_that_build_nothing() {
    let mut modules = Vec::new();
    for dir in std::fs::read_dir(scripts_dir()).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        for name in rhai_files(&dir.path()) {
            modules.push(format!("{}/{name}.rhai", dir.file_name().to_string_lossy()));
        }
    }
    assert!(!modules.is_empty(), "scripts/lib holds the modules of two_offices");
    for module in modules {
        let run = plain(&[], &format!("$NSS plan $SCRIPTS/{module}"));
        run.ok();
        let commands: Vec<&str> = run.stdout.lines().filter(|l| !l.is_empty() && !l.starts_with('#') && *l != "set -e").collect();
        assert!(commands.is_empty(), "scripts/{module} builds something on its own: move it to scripts/ as a lab\n{}", run.stdout);
    }
}

#[test]
fn plan_undo_takes_the_hosts_links_and_rules_back() {
    // A lab in the host's namespace too: a bridge, a veth pair with both ends there,
    // rules appended, inserted and deleted, and a sysctl the undo cannot know the old value of.
    let lab = r#"
let br = bridge("br0").addr("10.5.0.1/24");
veth("v0", "v1");
link("v0").master(br).up();
link("v1").addr("10.5.0.2/24").up();
host().sysctl("net.ipv4.ip_forward", 1);
iptables(host(), "-t nat -A POSTROUTING -s 10.5.0.0/24 ! -d 10.5.0.0/24 -j MASQUERADE");
iptables(host(), "-I FORWARD 1 -i br0 -j ACCEPT");
iptables(host(), "-A FORWARD -i br0 -o br0 -j ACCEPT");
iptables(host(), "-D FORWARD -i br0 -o br0 -j ACCEPT");
forward_accept(host(), #{ iif: "v1", oif: "br0" });
let a = netns("a");
connect(a, br, #{ ifname: "eth0", addr: "10.5.0.3/24" });
spawn(a, ["sleep", "600"]);
"#;
    let Some(run) = plan_matches(&[("hostlab.rhai", lab)], "hostlab.rhai", "hostlab", &[]) else { return };
    let plan = run.section("plan");
    assert!(plan.contains("#   # the host's net.ipv4.ip_forward changed: set back by hand what it was before"), "{plan}");
}

#[test]
fn plan_needs_no_root_and_answers_queries_from_its_model() {
    let lab = r#"
let a = netns("a");
connect(a, netns("b"), #{ ifname: "eth0", peer: "eth9", addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24" });
let names = links(a).map(|l| l.name);
print(`links of a: ${names}`);
print(`routes of a: ${routes(a).map(|r| r.dest)}`);
print(`families of a: ${addrs(a).map(|x| x.family)} ${routes(a).map(|r| r.family)}`);
print(`peer: ${link(a, "eth0").peer().name}`);
"#;
    // As nobody (root's tests switch to it): the plan touches no kernel state and needs
    // no privilege.
    let run = plain(&[("lab.rhai", lab)], "chmod 755 . && chmod 644 lab.rhai && as_nobody $NSS plan lab.rhai");
    run.ok();
    assert!(run.stderr.contains(r#"links of a: ["lo", "eth0"]"#), "{}", run.stderr);
    assert!(run.stderr.contains(r#"routes of a: ["10.1.0.0/24"]"#), "{}", run.stderr);
    // The same numbers as in a run (4 and 6), which pingall and the stdlib filter on.
    assert!(run.stderr.contains("families of a: [4, 4] [4]"), "{}", run.stderr);
    assert!(run.stderr.contains("peer: eth9"), "{}", run.stderr);
    assert!(run.stdout.starts_with("#!/bin/bash"), "{}", run.stdout);
    assert!(run.stdout.contains("ip -n b link add eth9 type veth peer name eth0 netns a"), "{}", run.stdout);
    assert!(run.stdout.contains("ip -n a addr add 10.1.0.1/24 dev eth0"), "{}", run.stdout);
}

#[test]
fn plan_reports_the_checks_it_cannot_make_and_goes_on() {
    let lab = r#"
let a = netns("a");
let b = netns("b");
connect(a, b, #{ ifname: "eth0", addr: "10.1.0.1/24", peer_addr: "10.1.0.2/24" });
let c = netns("c");
assert_ping(a, "10.1.0.2");
assert_no_ping(a, "10.9.0.1");
pingall([a, b]);
let r = b.exec("cat /proc/loadavg");
assert(r.stdout.len() > 0, "b has a load average");
spawn(b, ["sleep", "600"]);
print("the end");
"#;
    let run = plain(&[("lab.rhai", lab)], "$NSS plan lab.rhai");
    run.ok();
    // Only what a plan cannot know is reported: the exec's output.
    let not_checked: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with("plan: not checked")).collect();
    assert_eq!(not_checked, ["plan: not checked (needs the real lab): b has a load average"], "{}", run.stderr);
    assert!(run.stderr.contains("the end"), "{}", run.stderr);
    // It is a warning: --quiet drops it (the script's own output stays).
    let quiet = plain(&[("lab.rhai", lab)], "$NSS -q plan lab.rhai >/dev/null");
    quiet.ok();
    assert_eq!(quiet.stderr.trim(), "the end", "{}", quiet.stderr);
    // Each planned ping probes once, says what the model expects, and never stops the walkthrough.
    let plan = &run.stdout;
    assert!(
        plan.contains("# ping 10.1.0.2 from namespace a (the plan expects an answer)\nip netns exec a ping -c 1 -W 1 10.1.0.2 || true"),
        "{plan}"
    );
    assert!(
        plan.contains("# ping 10.9.0.1 from namespace a (the plan expects no answer)\nip netns exec a ping -c 1 -W 0.2 10.9.0.1 || true"),
        "{plan}"
    );
    assert!(plan.contains("(the plan expects answers in 2 of 2)"), "{plan}");
    // The undo stops what runs in the namespaces before deleting them, newest first.
    let undo = &plan[plan.find("# To take it down again:").expect("an undo section")..];
    assert_eq!(
        undo.lines().skip(1).collect::<Vec<_>>(),
        [
            "#   for ns in b; do ip netns pids \"$ns\" | xargs -r kill; done   # what the lab left running",
            "#   ip netns del c",
            "#   ip netns del b",
            "#   ip netns del a",
        ],
        "{plan}"
    );
}
