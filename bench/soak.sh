#!/usr/bin/env bash
# Soak: build and take down a mid-size lab many times and check that nothing grows.
#
#   bench/soak.sh [CYCLES]        (default 200; as root; CI runs 10 through `cargo test`)
#
# Runs in a private network + mount + PID namespace with its own /run and /proc
# (unshare), so the machine's network is never touched and nothing it starts outlives it. The lab: 20 namespaces on a bridge, a router
# namespace with forwarding on an uplink bridge, and, when the binary has them,
# masquerade() and dhcp_server() in the router. Each cycle is a fresh `nsscript` run
# followed by `nsscript down`. Reported, before and after:
#   - leftovers after each down: namespaces, links, /run/netns entries, netns mounts,
#     processes started by this soak (found by an environment tag), labs in `ls`
#   - mounts in the soak's mount namespace, processes, fds of the soak shell
#   - per nsscript run: its own open fds and VmRSS at the end of the build (the lab
#     script reads /proc/$PPID) and its peak RSS (/usr/bin/time -f %M)
#   - one long-running nsscript process that adds and deletes links CHURN times
#     (fds and RSS of that one process, sampled each round from round 10): in-process growth
# Prints "soak: ... leftovers=N" and key=value lines that tests/reliability.rs reads, and
# fails if anything was left or grew. Descriptors must not grow: a count may be lower at
# the end (a transient descriptor, open when the first count was taken, has closed).
set -u
CYCLES=${1:-${CYCLES:-200}}
CHURN=${CHURN:-$CYCLES}
NSS=${NSS:-$(cd "$(dirname "$0")/.." && pwd)/target/debug/nsscript}

if [ "${SOAK_INSIDE:-}" != 1 ]; then
    [ "$(id -u)" = 0 ] || { echo "soak.sh: run as root (it makes a private network namespace)" >&2; exit 2; }
    exec env SOAK_INSIDE=1 NSS="$NSS" CYCLES="$CYCLES" CHURN="$CHURN" \
        unshare --net --mount --pid --fork --mount-proc --propagation private \
        bash -c 'mount -t tmpfs tmpfs /run && ip link set lo up && bash "$0" "$1"' "$0" "$CYCLES"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export SOAK_TAG="soak-$$-$RANDOM"

cat > soak.rhai <<'RHAI'
// 20 namespaces on a bridge, a router namespace with forwarding and an uplink.
let br = bridge("sk-br");
let up = bridge("sk-up").addr("192.168.250.1/24");
let rt = netns("sk-rt").forward(true);
connect(rt, br, #{ ifname: "eth0", addr: "10.77.0.254/24" });
connect(rt, up, #{ ifname: "eth1", addr: "192.168.250.2/24" });
if nat {
    masquerade(rt, #{ src: "10.77.0.0/24", out: "eth1" });
    dhcp_server(rt, #{ iface: "eth0", range: ["10.77.0.100", "10.77.0.150"], router: "10.77.0.254" });
}
for i in 1..=count {
    let n = netns(`sk${i}`);
    connect(n, br, #{ ifname: "eth0", addr: `10.77.0.${i}/24`, gw: "10.77.0.254" });
}
if check {
    let r = ns("sk1").exec(`ping -c1 -W1 10.77.0.${count}`);
    assert(r.code == 0, `sk1 cannot reach sk${count}: ${r.stdout}`);
}
let me = host().exec("printf '%s %s\n' $(ls /proc/$PPID/fd | wc -l) $(awk '/^VmRSS/ {print $2}' /proc/$PPID/status)");
print(`self ${me.stdout}`);
RHAI

cat > churn.rhai <<'RHAI'
// One process: add and delete links over and over; report its own fds and RSS.
let br = bridge("ch-br");
let n = netns("ch-ns");
let self_stat = || host().exec("printf '%s %s' $(ls /proc/$PPID/fd | wc -l) $(awk '/^VmRSS/ {print $2}' /proc/$PPID/status)").stdout;
for c in 0..rounds {
    connect(n, br, #{ ifname: "c0", addr: "10.78.0.2/24" });
    veth("ch-a", "ch-b").up();
    link(n, "c0").delete();
    link("ch-a").delete();
    if c >= 9 { print(`sample ${self_stat.call()}`); }
}
print(`late ${self_stat.call()}`);
RHAI

nat=false
if "$NSS" functions | grep -q '`masquerade(' && "$NSS" functions | grep -q '`dhcp_server('; then nat=true; fi

procs() {   # processes started by this soak, other than the shell's own helpers
    for f in /proc/[0-9]*/environ; do
        grep -qz "^SOAK_TAG=$SOAK_TAG\$" "$f" 2>/dev/null || continue
        p=${f#/proc/}; p=${p%/environ}
        cat "/proc/$p/comm" 2>/dev/null
    done | grep -vxE 'bash|grep|cat|sort|wc|ls|awk|sed|ip|mount|tr' | sort | tr '\n' ' '
}
leftovers() {   # what a lab could leave: one word per object
    ip netns list | awk '{print "netns:"$1}'
    ip -br link | awk '$1 != "lo" {print "link:"$1}'
    ls -A /run/netns 2>/dev/null | sed 's/^/file:/'
    grep ' /run/netns/' /proc/self/mountinfo | awk '{print "mount:"$5}'
    "$NSS" ls | awk '{print "lab:"$1}'
    for p in $(procs); do echo "proc:$p"; done
}
mounts() { wc -l < /proc/self/mountinfo; }
fds() { ls /proc/$$/fd | wc -l; }

# One warm-up cycle first: the first namespace ever made turns /run/netns into a
# shared mount (as iproute2 does), which stays; growth is measured after it.
"$NSS" soak.rhai --var count=20 --var nat=$nat --var check=false > /dev/null 2>&1 && "$NSS" down soak > /dev/null 2>&1
mounts_before=$(mounts); fds_before=$(fds); procs_before=$(procs)
bad=0; first_self=""; last_self=""; first_peak=""; last_peak=""; max_peak=0; build_fds=()
t0=$(date +%s%N)
for c in $(seq "$CYCLES"); do
    if ! /usr/bin/time -f %M -o peak "$NSS" soak.rhai --var count=20 --var nat=$nat --var check=$([ "$c" = 1 ] && echo true || echo false) > out 2> err; then
        echo "cycle $c: build failed"; cat err; bad=$((bad + 1)); "$NSS" down soak >/dev/null 2>&1
    fi
    "$NSS" down soak > /dev/null 2> derr || { echo "cycle $c: down failed"; cat derr; bad=$((bad + 1)); }
    left=$(leftovers)
    if [ -n "$left" ]; then echo "cycle $c: leftovers:" $left; bad=$((bad + 1)); fi
    self=$(sed -n 's/^self //p' out); peak=$(tail -1 peak)
    [ -z "$first_self" ] && first_self=$self && first_peak=$peak
    last_self=$self; last_peak=$peak; build_fds+=("${self%% *}")
    [ "$peak" -gt "$max_peak" ] 2>/dev/null && max_peak=$peak
done
t1=$(date +%s%N)
mounts_after=$(mounts); fds_after=$(fds); procs_after=$(procs)

churn_out=$(/usr/bin/time -f %M -o churn_peak "$NSS" churn.rhai --var rounds="$CHURN" 2>&1); churn_rc=$?
"$NSS" down churn > /dev/null 2>&1 || churn_rc=1
[ -n "$(leftovers)" ] && { echo "churn: leftovers:" $(leftovers); bad=$((bad + 1)); }
[ "$churn_rc" = 0 ] || { echo "churn failed: $churn_out"; bad=$((bad + 1)); }
early=$(sed -n 's/^sample //p' <<< "$churn_out" | head -1); late=$(sed -n 's/^late //p' <<< "$churn_out")
churn_fds=($(sed -n 's/^sample \([0-9]*\) .*/\1/p' <<< "$churn_out"))

# Descriptors are compared as the least count seen over a few samples at the start and
# at the end: a descriptor that is open only for a moment (a command's pipes, a
# helper's socket) makes one sample higher, a leak makes every later one higher.
min_of() { local m="" x; for x in "$@"; do [ -z "$m" ] || [ "$x" -lt "$m" ] && m=$x; done; echo "$m"; }
max_of() { local m="" x; for x in "$@"; do [ -z "$m" ] || [ "$x" -gt "$m" ] && m=$x; done; echo "$m"; }
window() {   # FROM COUNT VALUES...: min of COUNT values from index FROM (0-based)
    local from=$1 count=$2; shift 2; local all=("$@"); min_of "${all[@]:from:count}"
}
window_max() {   # FROM COUNT VALUES...: max of COUNT values from index FROM
    local from=$1 count=$2; shift 2; local all=("$@"); max_of "${all[@]:from:count}"
}
n=${#build_fds[@]}; w=$(( n / 3 > 0 ? n / 3 : 1 ))
# Cycle 1 also pings (check=true): a different path; the early window starts at cycle 2.
first=$(( n > 1 ? 1 : 0 ))
# Each build is a process of its own: its count also holds the namespaces the worker is
# making ahead at that moment (two descriptors each, up to four of them), so a later
# build grew only if its least count is above every count of the early builds.
build_fds_early=$(window_max "$first" "$w" "${build_fds[@]}"); build_fds_late=$(window $(( n - w )) "$w" "${build_fds[@]}")
m=${#churn_fds[@]}; v=$(( m >= 3 ? 3 : m ))
churn_fds_early=$(window 0 "$v" "${churn_fds[@]}"); churn_fds_late=$(window $(( m - v )) "$v" "${churn_fds[@]}")

echo "soak: cycles=$CYCLES nat_dhcp=$nat lab=20 namespaces + router leftovers=$bad seconds=$(( (t1 - t0) / 1000000000 ))"
echo "mounts_before=$mounts_before mounts_after=$mounts_after"
echo "shell_fds_before=$fds_before shell_fds_after=$fds_after"
echo "procs_before=[${procs_before}] procs_after=[${procs_after}]"
echo "build_fds_rss_first=${first_self// /,} build_fds_rss_last=${last_self// /,} (open fds, VmRSS KB of nsscript at the end of a build)"
echo "peak_rss_first=$first_peak peak_rss_last=$last_peak peak_rss_max=$max_peak (KB, /usr/bin/time -f %M, one nsscript run each)"
echo "churn_rounds=$CHURN churn_early=${early// /,} churn_late=${late// /,} churn_peak=$(tail -1 churn_peak) (one process: fds,VmRSS KB after 10 rounds and at the end)"
echo "build_fds_max_early=$build_fds_early build_fds_min_late=$build_fds_late (fds at the end of a build: most of cycles $((first + 1))-$((first + w)), least of cycles $((n - w + 1))-$n)"
echo "churn_fds_min_early=$churn_fds_early churn_fds_min_late=$churn_fds_late (least fds of the churning process: its first $v samples from round 10 on, its last $v)"

# No growth of descriptors: FIRST and LAST are counts of one kind, LAST may be lower.
# (The soak shell's own count is one sample each: its descriptors are all its own.)
grew() {   # WHAT FIRST LAST
    if ! [ "$2" -ge 0 ] 2>/dev/null || ! [ "$3" -ge 0 ] 2>/dev/null; then
        echo "fd check: $1: no count (first=[$2] last=[$3])"; return 0
    fi
    if [ "$3" -gt "$2" ]; then echo "fd check: $1 grew from $2 to $3"; return 0; fi
    return 1
}
fd_growth=0
grew "the soak shell's fds" "$fds_before" "$fds_after" && fd_growth=$((fd_growth + 1))
grew "nsscript's fds at the end of a build (most of the first cycles vs least of the last)" "$build_fds_early" "$build_fds_late" && fd_growth=$((fd_growth + 1))
grew "the churning process's fds (least of its first samples vs of its last)" "$churn_fds_early" "$churn_fds_late" && fd_growth=$((fd_growth + 1))
echo "fd_growth=$fd_growth"
[ "$bad" = 0 ] && [ "$fd_growth" = 0 ]
