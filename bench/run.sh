#!/usr/bin/env bash
# star(N) side by side with the anchors (../shared/anchors): nsscript next to cstar,
# cstar_pipe, batch, shell_n and pyr2_fast, interleaved, in ONE run, then the summary
# with ratios.  Runs inside a private network + mount namespace: the machine's own
# network is never touched.
#   bash bench/run.sh [--reps 5] [--ns 10,50,200] [--impls cstar,cstar_pipe,batch,shell_n,pyr2_fast]
#                     [--also NAME=BINARY ...]   another nsscript binary side by side (e.g. before a change)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); top=$(dirname "$here")
anchors=${ANCHORS:-$top/../shared/anchors}
reps=5; ns=10,50,200; impls=cstar,cstar_pipe,batch,shell_n,pyr2_fast; also=()
while [ $# -gt 0 ]; do
  case $1 in
    --reps) reps=$2; shift 2;; --ns) ns=$2; shift 2;; --impls) impls=$2; shift 2;;
    --also) also+=("$2"); shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
command -v hyperfine >/dev/null && python3 -c 'import pyroute2' 2>/dev/null || {
  export DEBIAN_FRONTEND=noninteractive; apt-get update -qq
  apt-get install -y -qq --no-install-recommends iproute2 hyperfine python3-pyroute2 gcc >/dev/null; }
(cd "$top" && cargo build --release --quiet)
# The anchors directory is read-only: work on a copy, with the C floors compiled there.
work=$top/target/anchors; rm -rf "$work"; mkdir -p "$work"; cp -r "$anchors"/. "$work"/; chmod -R u+w "$work"
(cd "$work" && gcc -O2 -Wall -o cstar cstar.c && gcc -O2 -Wall -pthread -o cstar_pipe cstar_pipe.c && gcc -O2 -Wall -pthread -o cstar_par cstar_par.c)
# pyroute2 from Debian runs under /usr/bin/python3, as the anchors did.
sed -i '1s|.*|#!/usr/bin/python3|' "$work"/pyr2.py
nss=$top/target/release/nsscript
# run_bench.py starts its own implementations directly but an --extra one through
# `sh -c`: `exec` makes nsscript the direct child too, as cstar is (a dash in between
# measured 15-25 ms slower at N=200 on this VM, in main() itself, not in dash).
out=$work/results/nsscript_$(date +%Y%m%d_%H%M%S).jsonl; mkdir -p "$work/results"
extra=()
for a in "${also[@]}"; do
  name=${a%%=*}; bin=$(readlink -f "${a#*=}")
  extra+=(--extra "$name='exec $bin $top/bench/star.rhai --var n={N}'::'exec $bin down star --no-wait'")
done
unshare --net --mount --pid --fork --mount-proc --propagation private bash -c "
  mount -t tmpfs tmpfs /run; mount -t sysfs sysfs /sys; ip link set lo up
  cd '$work' && /usr/bin/python3 ./run_bench.py --reps $reps --ns $ns --impls $impls --out '$out' \
    --extra nsscript='exec $nss $top/bench/star.rhai --var n={N}'::'exec $nss down star --no-wait' ${extra[*]}" >/dev/null
python3 "$here/summary.py" "$out"
