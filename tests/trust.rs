//! Issue 13: `down` removes exactly what the lab made, also after a SIGKILL at any
//! point, and no process escapes. Each test first puts the machine in the state a
//! defect needed (a run held at an exact point by strace's fault injection and then
//! killed, a ledger edited, a namespace swapped), then checks with tools that are not
//! ours (`ip`, `ls /run/netns`, `/proc`, `ps`) that the foreign object survives, the
//! process is stopped, the file is gone, the signal rolls back.
//!
//! Every test runs in its own PID namespace as well as its own network and mount
//! namespaces, so `ps` sees only what the test started and nothing can outlive it.
//! `NSS_UNDER_TEST=/path/to/nsscript` runs the tests against another binary (an older
//! build, to see each of them fail).

use crate::support::*;

/// Shell helpers for the tests' scripts.
const HELPERS: &str = r#"
set -u
section() { printf '==%s==\n' "$1"; }
NSS=${NSS_UNDER_TEST:-$NSS}
# Wait (a bound against a hang, never an assertion) until FILE holds PATTERN.
until_in() { for _ in $(seq 3000); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done; echo "timed out waiting for $2 in $1"; return 1; }
# Wait until process $1 is gone (or a zombie).
gone() { while [ -e /proc/$1 ] && [ "$(awk '{print $3}' /proc/$1/stat 2>/dev/null)" != Z ]; do sleep 0.02; done; }
# The pid of the run that wrote lab $1's ledger.
lab_pid() { sed -n '1s/.*"pid":\([0-9]*\).*/\1/p' /run/nsscript/labs/$1/ledger.jsonl; }
# Until a process named $1 runs (in this test's PID namespace).
until_runs() { for _ in $(seq 3000); do ps -e -o stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | grep -qx "$1" && return 0; sleep 0.01; done; echo "no $1 ever ran"; return 1; }
# The processes of this PID namespace, the test's own shell and tools aside.
procs() {
    local p=$(ps -e -o stat=,comm= | awk '$1 !~ /^Z/ {print $2}' | grep -vxE 'bash|ps|awk|grep|sort|sed|cat|head|tr|wc|diff|ls|ip|strace|timeout|paste' | sort | paste -sd' ')
    echo "${p:-none}"
}
"#;

/// Run `body` (with [`HELPERS`]) in the harness's isolated network, mount and PID
/// namespaces (None: the test is skipped, see `support::kernel`).
fn trusted(files: &[(&str, &str)], body: &str) -> Option<Run> {
    let script = format!("{HELPERS}\n{body}");
    let mut all: Vec<(&str, &str)> = files.to_vec();
    all.push(("body.sh", &script));
    isolated(&all, "exec bash ./body.sh")
}

/// A rendered report on one line (miette wraps at 80 columns, continuing with `|`).
fn flat(text: &str) -> String {
    text.lines().map(|l| l.trim_start().trim_start_matches('|').trim()).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `held_kill LAB PATTERN ARGS...`: run nsscript ARGS with every write(2) held 0.3 s
/// after it returns (strace's fault injection), and SIGKILL it as soon as lab LAB's
/// ledger shows PATTERN: the kill takes effect when that write returns, so the run dies
/// right after writing the entry and before the kernel call that follows it.
const HELD_KILL: &str = r#"
held_kill() {
    local lab=$1 pat=$2; shift 2
    strace -f -o /dev/null -e trace=write -e inject=write:delay_exit=300000 $NSS "$@" > held.out 2>&1 &
    local st=$!
    until_in /run/nsscript/labs/$lab/ledger.jsonl "$pat" || cat held.out
    local pid=$(lab_pid $lab)
    kill -9 $pid; gone $pid; wait $st 2>/dev/null
}
"#;

#[test]
fn an_entry_written_just_before_a_sigkill_never_deletes_what_someone_made_under_its_name() {
    let Some(run) = trusted(
        &[
            ("k1n.rhai", "netns(\"k1n\");\nprint(\"never\");\n"),
            ("k1b.rhai", "bridge(\"k1-br\");\nprint(\"never\");\n"),
            ("k1x.rhai", "netns(\"k1x\");\nbridge(\"k1x-br\");\n"),
        ],
        &format!(
            "{HELD_KILL}{}",
            r#"
# A namespace: killed right after its intent; someone then makes their own, with an address.
held_kill k1n '"phase":"intent","entry":"netns"' k1n.rhai
section n_ledger; tail -1 /run/nsscript/labs/k1n/ledger.jsonl
ip netns add k1n; ip -n k1n addr add 10.77.0.1/32 dev lo
section n_down; $NSS down k1n; echo "code=$?"
section n_left; ip netns list | awk '{print $1}'; ip -n k1n -br addr show lo | awk '{print $3}'
ip netns del k1n
# A bridge, the same way.
held_kill k1b '"phase":"intent","entry":"link"' k1b.rhai
section b_ledger; tail -1 /run/nsscript/labs/k1b/ledger.jsonl
ip link add k1-br type bridge
section b_down; $NSS down k1b; echo "code=$?"
section b_left; ip -br link show k1-br | awk '{print $1}'
ip link del k1-br
# An intent injected into a ledger, naming the machine's eth0.
ip link add eth0 type veth peer name eth0-peer
$NSS k1x.rhai >/dev/null || exit 1
echo '{"id":90,"phase":"intent","entry":"link","ns":"Host","name":"eth0","kind":"veth","index":null,"pair":null}' >> /run/nsscript/labs/k1x/ledger.jsonl
section x_down; $NSS down k1x; echo "code=$?"
section x_left; ip -br link show eth0 | awk '{print $1}' | sed 's/@.*//'; ip netns list | wc -l
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let err = flat(&run.stderr);
    assert_eq!(run.section("n_left"), "k1n\n10.77.0.1/32\n", "the namespace someone made survives down:\n{err}");
    assert!(run.section("n_down").contains("code=0"), "{err}");
    // The intents already say which object they mean.
    assert!(run.section("n_ledger").contains("\"cookie\":"), "{}", run.section("n_ledger"));
    assert!(!run.section("b_ledger").contains("\"index\":null"), "{}", run.section("b_ledger"));
    assert!(err.contains("skipped netns k1n: exists but is not the one this lab created (cookie"), "{err}");
    assert_eq!(run.section("b_left"), "k1-br\n", "the bridge someone made survives down:\n{err}");
    assert!(err.contains("skipped link k1-br in the host namespace: exists but is not the one this lab created (ifindex"), "{err}");
    assert_eq!(run.section("x_left"), "eth0\n0\n", "eth0 survives; the rest of the lab went:\n{err}");
    assert!(err.contains("skipped link eth0 in the host namespace: the ledger holds no identity for it"), "{err}");
}

#[test]
fn a_namespace_is_known_by_its_cookie_not_by_an_inode_the_kernel_reuses() {
    let Some(run) = trusted(
        &[("solo.rhai", "netns(\"solo\");\n")],
        r#"
$NSS solo.rhai >/dev/null || exit 1
i0=$(stat -L -c %i /run/netns/solo)
# Someone replaces it, until the kernel hands out the same inode number again (it does,
# about one time in eight here; 200 tries at most).
tries=0
while :; do
    ip netns del solo; ip netns add solo; tries=$((tries + 1))
    [ "$(stat -L -c %i /run/netns/solo)" = "$i0" ] && break
    [ $tries -ge 200 ] && break
done
ip -n solo link add theirs type bridge
section tries; echo "$tries $([ "$(stat -L -c %i /run/netns/solo)" = "$i0" ] && echo same-inode || echo other-inode)"
section down; $NSS down solo; echo "code=$?"
section left; ip netns list | awk '{print $1}'; ip -n solo -br link show theirs | awk '{print $1}'
"#,
    ) else {
        return;
    };
    run.ok();
    eprintln!("replacements until the inode came back: {}", run.section("tries").trim());
    assert!(run.section("down").contains("code=0"), "{}", run.stderr);
    assert_eq!(run.section("left"), "solo\ntheirs\n", "the new namespace survives:\n{}", run.stderr);
    assert!(flat(&run.stderr).contains("skipped netns solo: exists but is not the one this lab created (cookie"), "{}", run.stderr);
}

#[test]
fn a_process_started_just_before_a_sigkill_is_stopped_by_down() {
    let dhcp = r#"let rt = netns("p3");
connect(rt, bridge("p3-br"), #{ ifname: "eth0", peer: "p3-host", addr: "10.3.0.1/24" });
dhcp_server(rt, #{ iface: "eth0", range: ["10.3.0.10", "10.3.0.20"] });
"#;
    let spawn = "let s = netns(\"p4\");\nconnect(s, bridge(\"p4-br\"), #{ ifname: \"eth0\", peer: \"p4-host\" });\nspawn(s, [\"sleep\", \"1000\"]);\n";
    let Some(run) = trusted(
        &[("p3.rhai", dhcp), ("p4.rhai", spawn)],
        r#"
# The fork is held (strace: 2 s after clone returns in the parent) while the child
# goes on; nsscript is killed there, before it has written the pid to the ledger.
held_fork() {
    local lab=$1; shift
    strace -f -o /dev/null -e trace=clone -e inject=clone:delay_exit=2000000 $NSS "$@" > held.out 2>&1 &
    local st=$!
    until_in /run/nsscript/labs/$lab/ledger.jsonl '"phase":"intent","entry":"proc"' || cat held.out
    sleep 0.2
    local pid=$(lab_pid $lab)
    kill -9 $pid; gone $pid
}
for lab in p3 p4; do
    held_fork $lab $lab.rhai
    section ${lab}_killed; tail -1 /run/nsscript/labs/$lab/ledger.jsonl | grep -o '"pid":[a-z0-9]*'
    section ${lab}_down; $NSS down $lab; echo "code=$?"
    # what is left: processes, namespaces, /run/netns, the host's links
    section ${lab}_left; sleep 0.3; procs; ip netns list | wc -l; ls -A /run/netns | wc -l; ip -br link | awk '{print $1}' | sed 's/@.*//' | tr '\n' ' '; echo
done
"#,
    ) else {
        return;
    };
    run.ok();
    for lab in ["p3", "p4"] {
        assert_eq!(run.section(&format!("{lab}_killed")).trim(), "\"pid\":null", "killed before the pid was recorded");
        assert!(run.section(&format!("{lab}_down")).contains("code=0"), "{}", run.stderr);
        let left = run.section(&format!("{lab}_left"));
        assert_eq!(
            left.lines().collect::<Vec<_>>(),
            ["none", "0", "0", "lo "],
            "{lab}: no process, namespace or veth end is left:\n{left}"
        );
    }
}

#[test]
fn processes_started_by_exec_are_stopped_and_down_says_what_it_waited_for() {
    let bg = "let n = netns(\"e4\");\nconnect(n, bridge(\"e4-br\"), #{ ifname: \"eth0\", peer: \"e4-host\" });\nn.exec(\"sleep 300 >/dev/null 2>&1 &\");\n";
    let fg = "let n = netns(\"e5\");\nconnect(n, bridge(\"e5-br\"), #{ ifname: \"eth0\", peer: \"e5-host\" });\nn.exec(\"sleep 301\");\n";
    // (an argv command: the shell of a command line would fork its own children, which
    // outlive a SIGKILL of nsscript in the host namespace; SIGINT and SIGTERM kill the
    // whole process group)
    let host = "netns(\"e6\");\nhost().exec([\"sleep\", \"302\"]);\n";
    let Some(run) = trusted(
        &[("e4.rhai", bg), ("e5.rhai", fg), ("e6.rhai", host)],
        r#"
$NSS e4.rhai >/dev/null 2>&1 || exit 1
section e4_up; procs
section e4_down; $NSS down e4; echo "code=$?"
section e4_left; procs; ip -br link | awk '{print $1}' | sed 's/@.*//' | tr '\n' ' '; echo
# SIGKILL while an exec runs in a lab namespace, then down.
$NSS e5.rhai > e5.out 2>&1 & pid=$!
until_runs sleep; kill -9 $pid; wait $pid 2>/dev/null
section e5_down; $NSS down e5; echo "code=$?"
section e5_left; procs; ip -br link | awk '{print $1}' | sed 's/@.*//' | tr '\n' ' '; echo
# SIGKILL while an exec runs in the host namespace: the command goes with nsscript.
$NSS e6.rhai > e6.out 2>&1 & pid=$!
until_runs sleep; kill -9 $pid; wait $pid 2>/dev/null
for _ in $(seq 500); do procs | grep -qw sleep || break; sleep 0.01; done
section e6_left; procs
$NSS down e6 >/dev/null 2>&1
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(run.section("e4_up").trim(), "sleep", "the exec'd server runs while the lab is up");
    assert!(run.section("e4_down").contains("code=0"), "{}", run.stderr);
    let err = flat(&run.stderr);
    assert!(err.contains("lab e4: removed") && err.contains("ms for 1 process(es) found in the lab's namespaces to end"), "{err}");
    assert!(err.contains("ms for the kernel to free the 1 veth end(s) of deleted namespaces"), "{err}");
    for lab in ["e4", "e5"] {
        assert_eq!(run.section(&format!("{lab}_left")), "none\nlo \n", "{lab}: the process and the host's veth end are gone:\n{err}");
    }
    assert!(run.section("e5_down").contains("code=0"), "{err}");
    assert_eq!(run.section("e6_left").trim(), "none", "a command run in the host namespace dies with nsscript");
}

#[test]
fn a_sigkill_between_unmount_and_unlink_leaves_no_file_that_blames_a_foreign_namespace() {
    let Some(run) = trusted(
        &[("u1.rhai", "netns(\"u1\");\n"), ("u2.rhai", "netns(\"u2\");\nassert(false, \"failing on purpose, to roll back\");\n")],
        r#"
# The unlink(2) of the namespace's file held 3 s before it runs (strace -P: only that path's);
# nsscript killed there, once the namespace is unmounted: the kill takes effect before the unlink.
held_unlink() {
    local lab=$1; shift
    strace -f -o /dev/null -P /run/netns/$lab -e trace=unlink,unlinkat -e inject=unlink,unlinkat:delay_enter=3000000 $NSS "$@" > held.out 2>&1 &
    local st=$!
    until_in /run/nsscript/locks/$lab.lock . >/dev/null
    # the file is there and no longer a mount point, seen twice 50 ms apart (a build mounts its
    # namespace right after making the file; only the held unlink lasts)
    unmounted() { [ -e /run/netns/$lab ] && ! grep -q " /run/netns/$lab " /proc/self/mountinfo; }
    for _ in $(seq 3000); do unmounted && sleep 0.05 && unmounted && break; sleep 0.01; done
    # the pid in the lock is the run's (down's, or the build's)
    local pid=$(cut -d' ' -f1 /run/nsscript/locks/$lab.lock)
    kill -9 $pid; gone $pid; wait $st 2>/dev/null
}
$NSS u1.rhai >/dev/null || exit 1
until_in /run/nsscript/locks/u1.lock . >/dev/null
held_unlink u1 down u1
section u1_killed; ls -A /run/netns; grep -c ' /run/netns/' /proc/self/mountinfo
section u1_down; $NSS down u1; echo "code=$?"
section u1_left; ls -A /run/netns | wc -l
section u1_rebuild; $NSS u1.rhai; echo "code=$?"; $NSS down u1 >/dev/null 2>&1
# The same during a rollback.
held_unlink u2 u2.rhai
section u2_killed; ls -A /run/netns; grep -c ' /run/netns/' /proc/self/mountinfo
section u2_down; $NSS down u2; echo "code=$?"
section u2_left; ls -A /run/netns | wc -l
section u2_rebuild; printf 'netns("u2");\n' > u2.rhai; $NSS u2.rhai; echo "code=$?"; $NSS down u2 >/dev/null 2>&1
"#,
    ) else {
        return;
    };
    run.ok();
    let err = flat(&run.stderr);
    for lab in ["u1", "u2"] {
        assert_eq!(run.section(&format!("{lab}_killed")), format!("{lab}\n0\n"), "killed between unmount and unlink:\n{err}");
        assert!(run.section(&format!("{lab}_down")).contains("code=0"), "{err}");
        assert_eq!(run.section(&format!("{lab}_left")).trim(), "0", "{lab}: the next down removes the file:\n{err}");
        assert!(run.section(&format!("{lab}_rebuild")).contains("code=0"), "{lab}: the name is free again:\n{err}");
    }
    assert!(!err.contains("name_taken"), "{err}");
}

#[test]
fn sigint_or_sigterm_during_the_last_exec_rolls_back() {
    let Some(run) = trusted(
        &[("l6.rhai", "netns(\"l6\");\nnetns(\"l6\").exec(\"sleep 20\");\n")],
        r#"
for sig in TERM INT; do
    env --default-signal=INT $NSS l6.rhai > out 2> err & pid=$!
    until_runs sleep
    kill -$sig $pid; wait $pid; echo "$sig code=$?" >> codes
    cat err >> errs
    echo "$sig left: $(ip netns list | wc -l) $(ls -A /run/nsscript/labs | wc -l) $(procs)" >> codes
done
section codes; cat codes
section errs; cat errs
"#,
    ) else {
        return;
    };
    run.ok();
    assert_eq!(
        run.section("codes").lines().collect::<Vec<_>>(),
        ["TERM code=143", "TERM left: 0 0 none", "INT code=130", "INT left: 0 0 none"],
        "{}",
        run.section("errs")
    );
    let errs = flat(&run.section("errs"));
    assert!(
        errs.contains("interrupted by SIGTERM while running l6.rhai") && errs.contains("interrupted by SIGINT while running l6.rhai"),
        "{errs}"
    );
    assert_eq!(errs.matches("rolled back: removed").count(), 2, "{errs}");
}

#[test]
fn process_entries_a_run_could_never_have_written_are_refused_or_left_alone() {
    let Some(run) = trusted(
        &[("v7.rhai", "let n = netns(\"v7\");\nspawn(n, [\"sleep\", \"500\"]);\n")],
        r#"
$NSS v7.rhai >/dev/null 2>&1 || exit 1
L=/run/nsscript/labs/v7/ledger.jsonl; cp $L good
sleep 400 & victim=$!
echo precious > victim.txt
# pid 1: killpg(1) is kill(-1), every process
sed -i 's/"pid":[0-9]*,"start":[0-9]*/"pid":1,"start":5/' $L
section pid1; $NSS down v7 2>&1; echo "code=$?"; cp good $L
# a file outside the lab's own directory
sed -i "s|\"files\":\[\"[^\"]*\"\]|\"files\":[\"$PWD/victim.txt\"]|" $L
section file; $NSS down v7 2>&1; echo "code=$?"; cat victim.txt; cp good $L
# no start time: the pid may be anyone's (here: the test's own sleep)
sed -i "s/\"pid\":[0-9]*,\"start\":[0-9]*/\"pid\":$victim,\"start\":null/" $L
section nostart; $NSS down v7 2>&1; echo "code=$?"
section left; kill -0 $victim && echo "victim alive"; procs; ip netns list | wc -l
"#,
    ) else {
        return;
    };
    run.ok();
    // The test's sleep survives; the lab's own sleep was found in its namespace and stopped.
    assert_eq!(run.section("left"), "victim alive\nsleep\n0\n", "{}", run.stderr);
    assert!(flat(&run.section("file")).contains("precious"), "the file outside the lab survives");
    let pid1 = flat(&run.section("pid1"));
    assert!(pid1.contains("names an invalid process id 1") && pid1.ends_with("code=2"), "{pid1}");
    let file = flat(&run.section("file"));
    assert!(file.contains("names an invalid process file") && file.contains("code=2 precious"), "the file survives: {file}");
    let nostart = flat(&run.section("nostart"));
    assert!(nostart.contains("the ledger has no start time for it") && nostart.contains("code=0"), "{nostart}");
}

#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit_and_given_back_to_commands() {
    let Some(run) = trusted(
        &[("f8.rhai", "print(host().exec(\"ulimit -n\").stdout);\nprint(\"built\");\nhost().exec(\"sleep 60\");\n")],
        r#"
ulimit -Sn 1024
section hard; ulimit -Hn
$NSS f8.rhai > out 2> err & pid=$!
until_in out built
section limits; awk '/^Max open files/ {print $4, $5}' /proc/$pid/limits
section child; head -1 out
kill -TERM $pid; wait $pid; true
"#,
    ) else {
        return;
    };
    run.ok();
    let hard = run.section("hard").trim().to_string();
    assert_eq!(run.section("limits").trim(), format!("{hard} {hard}"), "soft raised to the hard limit");
    assert_eq!(run.section("child").trim(), "1024", "commands get the limit nsscript was given");
}

#[test]
fn a_foreign_link_standing_where_the_labs_veth_end_was_is_skipped_not_counted_as_removed() {
    let Some(run) = trusted(
        &[("f9.rhai", "connect(netns(\"f9\"), bridge(\"f9-br\"), #{ ifname: \"eth0\", peer: \"f9-host\" });\n")],
        r#"
$NSS f9.rhai >/dev/null 2>&1 || exit 1
ip link del f9-host; ip link add f9-host type veth peer name f9-other
section down; $NSS down f9 2>&1; echo "code=$?"
section left; ip -br link | awk '{print $1}' | sed 's/@.*//' | sort | tr '\n' ' '; echo
"#,
    ) else {
        return;
    };
    run.ok();
    let down = flat(&run.section("down"));
    assert!(down.contains("skipped link f9-host in the host namespace: exists but is not the one this lab created (ifindex"), "{down}");
    assert!(down.contains("lab f9: removed 2 object(s)"), "the bridge and the namespace, not the foreign link: {down}");
    assert_eq!(run.section("left").trim(), "f9-host f9-other lo");
}

#[test]
fn lab_state_reached_through_a_symbolic_link_is_refused() {
    let Some(run) = trusted(
        &[("s10.rhai", "netns(\"s10\");\n")],
        r#"
mkdir elsewhere
ln -s $PWD/elsewhere /run/nsscript
section root; $NSS s10.rhai 2>&1; echo "code=$?"; ls -A elsewhere | wc -l; ip netns list | wc -l
rm /run/nsscript; mkdir -m 700 /run/nsscript; ln -s $PWD/elsewhere /run/nsscript/labs
section labs; $NSS s10.rhai 2>&1; echo "code=$?"; ls -A elsewhere | wc -l; ip netns list | wc -l
# A lab that is up, whose state directory is then replaced by a link to a copy.
rm /run/nsscript/labs
$NSS s10.rhai >/dev/null || exit 1
cp -a /run/nsscript/labs elsewhere/real; rm -r /run/nsscript/labs; ln -s $PWD/elsewhere/real /run/nsscript/labs
section down; $NSS down s10 2>&1; echo "code=$?"; ip netns list | wc -l
section ls; $NSS ls | wc -l
"#,
    ) else {
        return;
    };
    run.ok();
    // (the lock, under /run/nsscript, refuses before the run; the ledger, under labs/,
    // at the first object: the run then fails at that line, building nothing)
    for (sec, code) in [("root", 2), ("labs", 1)] {
        let out = flat(&run.section(sec));
        assert!(out.contains("refusing to use the lab state under /run/nsscript") && out.contains("is a symbolic link"), "{sec}: {out}");
        assert!(out.ends_with(&format!("code={code} 0 0")), "{sec}: nothing written through the link, nothing built: {out}");
    }
    let down = flat(&run.section("down"));
    assert!(down.contains("/run/nsscript/labs is a symbolic link") && down.ends_with("code=2 1"), "down refuses, removes nothing: {down}");
    assert_eq!(run.section("ls").trim(), "0");
}

#[test]
fn the_sandbox_of_a_user_who_is_not_root_runs_dnsmasq() {
    let Some(run) = trusted(
        &[],
        r#"
chmod 755 .
section seed000; setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all $NSS --sandbox $SCRIPTS/seed000_router.rhai; echo "code=$?"
"#,
    ) else {
        return;
    };
    run.ok();
    let out = run.section("seed000");
    assert!(out.ends_with("code=0\n"), "{out}\n{}", run.stderr);
    assert!(!run.stderr.contains("failed to change group-id"), "{}", run.stderr);
}

#[test]
fn nothing_a_sandboxed_run_started_outlives_it() {
    let lab = "host().exec(\"sleep 310 >/dev/null 2>&1 &\");\nnetns(\"x12\").exec(\"sleep 311 >/dev/null 2>&1 &\");\nspawn(host(), [\"sleep\", \"312\"]);\nprint(\"built\");\n";
    let Some(run) = trusted(
        &[("s12.rhai", lab)],
        r#"
section run; $NSS --sandbox s12.rhai; echo "code=$?"
section left; procs
# SIGKILL of a sandbox held open: everything in it goes too.
$NSS --sandbox --hold s12.rhai > h.out 2> h.err & pid=$!
until_in h.err "is up in the sandbox"
section hold_up; procs
kill -9 $pid; wait $pid 2>/dev/null
for _ in $(seq 500); do procs | grep -qw sleep || break; sleep 0.01; done
section hold_left; procs
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("run").ends_with("code=0\n"), "{}", run.stderr);
    assert_eq!(run.section("left").trim(), "none", "no process outlives the sandbox");
    // the run outside the sandbox's PID namespace, and PID 1 inside it
    assert_eq!(run.section("hold_up").trim(), "nsscript nsscript sleep sleep sleep", "{}", run.stderr);
    assert_eq!(run.section("hold_left").trim(), "none", "no process outlives a killed sandbox");
}

/// The lab of the randomized kill test: a bridge, a DHCP server and a DHCP exchange, a
/// spawned TCP server, a host veth pair; with FAIL it fails at the end and rolls back.
const KILL_LAB: &str = r#"
let br = bridge("rk-br").addr("10.66.0.1/24");
let srv = netns("rk-srv");
connect(srv, br, #{ ifname: "eth0", peer: "rk-srv-h", addr: "10.66.0.2/24", gw: "10.66.0.1" });
dhcp_server(srv, #{ iface: "eth0", range: ["10.66.0.100", "10.66.0.150"] });
spawn(srv, "busybox httpd -f -p 8080 -h /", #{ listen: 8080 });
let c = netns("rk-c");
connect(c, br, #{ ifname: "eth0", peer: "rk-c-h" });
let lease = dhcp_client(c, "eth0");
veth("rk-va", "rk-vb");
c.exec("ip -br addr");
if FAIL { assert(false, "failing on purpose, to roll back"); }
"#;

#[test]
fn sigkill_at_random_points_of_build_down_and_rollback_then_down_leaves_nothing_and_spares_what_is_not_the_labs() {
    let iterations: u32 = std::env::var("NSS_KILL_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(105);
    let Some(run) = trusted(
        &[("rk.rhai", KILL_LAB)],
        &format!(
            r#"
N={iterations}
NAMESPACES="rk-srv rk-c"
LINKS="rk-br rk-srv-h rk-c-h rk-va rk-vb"
snap() {{
    ip netns list | awk '{{print "netns", $1}}'
    ls -A /run/netns 2>/dev/null | sed 's/^/file /'
    ip -br link | awk '{{print "link", $1}}' | sed 's/@.*//'
    grep ' /run/netns/' /proc/self/mountinfo | awk '{{print "mount", $5}}'
    ls -A /run/nsscript/labs 2>/dev/null | sed 's/^/lab /'
    procs | tr ' ' '\n' | grep -vx none | sed 's/^/proc /'
}}
us() {{ echo $(( $(date +%s%N) / 1000 )); }}
pause() {{ sleep "$(printf '%d.%06d' $(($1 / 1000000)) $(($1 % 1000000)))"; }}
rnd() {{ echo $(( (RANDOM * 32768 + RANDOM) % ($1 + 1) )); }}
snap > before
# How long each phase takes here, to spread the kills over it.
s=$(us); $NSS --var FAIL=false rk.rhai >/dev/null 2>&1 || {{ echo "the lab does not build"; exit 1; }}; m=$(us)
$NSS down rk >/dev/null 2>&1 || exit 1; e=$(us)
$NSS --var FAIL=true rk.rhai >/dev/null 2>&1; f=$(us)
build=$((m - s)); down=$((e - m)); failing=$((f - e))
section timing; echo "build=$build down=$down fail_and_rollback=$failing"
section iters
for i in $(seq $N); do
    case $((i % 3)) in
    0) phase=build; d=$(rnd $((build * 11 / 10)))
       $NSS --var FAIL=false rk.rhai >/dev/null 2>&1 & pid=$! ;;
    1) phase=down; $NSS --var FAIL=false rk.rhai >/dev/null 2>&1 || echo "iter $i: build failed"
       d=$(rnd $((down * 11 / 10))); $NSS down rk >/dev/null 2>&1 & pid=$! ;;
    2) phase=rollback; d=$(( build / 2 + $(rnd $((failing - build / 2))) ))
       $NSS --var FAIL=true rk.rhai >/dev/null 2>&1 & pid=$! ;;
    esac
    pause $d; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; rc=$?
    lines=$(cat /run/nsscript/labs/rk/ledger.jsonl 2>/dev/null | wc -l)
    # where the kill landed: the ledger's length, and what stood then
    at="ledger${{lines}}-ns$(ls -A /run/netns | wc -l)-links$(ip -br link | wc -l)-procs$(procs | grep -vx none | wc -w)"
    # Someone makes a namespace and a link under names of the lab that are free now.
    planted=""
    for n in $(echo $NAMESPACES | tr ' ' '\n' | shuf); do
        [ -e /run/netns/$n ] && continue
        ip netns add $n && ip -n $n link add mine type bridge && planted="$planted netns:$n"; break
    done
    for l in $(echo $LINKS | tr ' ' '\n' | shuf); do
        ip link show $l >/dev/null 2>&1 && continue
        ip link add $l type bridge && planted="$planted link:$l"; break
    done
    if $NSS ls | grep -q '^rk'; then $NSS down rk > down.out 2>&1 || {{ echo "iter $i: down failed"; cat down.out; }}; fi
    # What was planted is untouched, then goes; then the machine is as before.
    kept=yes
    for p in $planted; do
        case $p in
        netns:*) n=${{p#netns:}}; ip -n $n link show mine >/dev/null 2>&1 || kept="no($p)"; ip netns del $n ;;
        link:*) l=${{p#link:}}; ip link show $l >/dev/null 2>&1 || kept="no($p)"; ip link del $l ;;
        esac
    done
    for _ in $(seq 100); do snap > now; diff -q before now >/dev/null && break; sleep 0.02; done
    if diff before now > d.out; then same=same; else same="DIFF $(tr '\n' ' ' < d.out)"; fi
    echo "iter $i phase=$phase delay_us=$d rc=$rc at=$at planted=[${{planted# }}] kept=$kept $same"
done
section ls; $NSS ls
"#
        ),
    ) else {
        return;
    };
    run.ok();
    let iters = run.section("iters");
    eprintln!("{}\n{iters}", run.section("timing").trim());
    let lines: Vec<&str> = iters.lines().collect();
    assert_eq!(lines.len(), iterations as usize, "every iteration ran to its end:\n{iters}");
    for l in &lines {
        assert!(l.contains(" kept=yes ") && l.ends_with(" same"), "planted objects survive and nothing is left:\n{l}\n\n{iters}");
    }
    // The kills landed inside each phase, at many points (told apart by what they left).
    for phase in ["build", "down", "rollback"] {
        let killed = lines.iter().filter(|l| l.contains(&format!("phase={phase} ")) && l.contains("rc=137")).count();
        assert!(killed > 0, "no kill landed in {phase}\n{iters}");
    }
    let mut points: Vec<&str> =
        lines.iter().filter(|l| l.contains("rc=137")).filter_map(|l| l.split(" at=").nth(1)?.split(' ').next()).collect();
    points.sort();
    points.dedup();
    eprintln!("{} kill points: {points:?}", points.len());
    // (a weak bound: how the kills spread depends on the machine's load)
    assert!(points.len() >= 5, "kills landed at too few points: {points:?}\n{iters}");
    assert_eq!(run.section("ls").trim(), "");
}

/// A `down` killed between removing the ledger and the lab's directory leaves the
/// directory, empty: the next look at the labs (`nsscript ls`) finishes it. A directory
/// without a ledger that still holds something, or whose lab a run holds the lock of
/// (a build that has made it and not yet its ledger), is not touched.
#[test]
fn an_empty_lab_directory_a_killed_down_left_goes_at_the_next_look_and_nothing_else_does() {
    let Some(run) = trusted(
        &[("tiny.rhai", "let t = netns(\"tn-a\");\n")],
        r#"
$NSS tiny.rhai >/dev/null 2>&1 || exit 1
$NSS down tiny >/dev/null 2>&1 || exit 1
L=/run/nsscript/labs
mkdir -m 700 $L/cut && mkdir -m 700 $L/kept && touch $L/kept/hook.sh && mkdir -m 700 $L/building
# this shell holds the lab "building"'s lock, as a run does while its directory has no ledger yet
exec 9>>/run/nsscript/locks/building.lock; flock -n 9 || exit 1
section ls; $NSS ls; echo "exit $?"
section left; ls -A $L | sort | tr '\n' ' '; echo
exec 9>&-
section after; $NSS ls >/dev/null; ls -A $L | sort | tr '\n' ' '; echo
"#,
    ) else {
        return;
    };
    run.ok();
    assert!(run.section("ls").contains("exit 0"), "{}", run.stdout);
    assert_eq!(run.section("left").trim(), "building kept", "the empty one goes; the others stay:\n{}", run.stdout);
    assert_eq!(run.section("after").trim(), "kept", "once no run holds its lock, the empty one goes too:\n{}", run.stdout);
}
