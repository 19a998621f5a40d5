#!/usr/bin/env bash
# Benchmark (not a test) for "See the packets": side by side in one run,
#  - capture: `nsscript capture` and `tcpdump -w` on the same veth end at the same time,
#    while iperf3 sends a 1 Gbit/s TCP stream across it for SECONDS; each one's packet
#    count and the drops the kernel reports for it;
#  - trace: `nsscript trace seed000_router vm1 203.0.113.1`, RUNS times, median and worst.
# Runs inside its own network, mount and PID namespaces; traffic only between namespaces
# it made. Usage: bash bench/capture.sh [NSSCRIPT] [SECONDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
NSS=$(readlink -f "${1:-target/release/nsscript}")
SECS=${2:-5}
RUNS=${3:-10}
exec unshare --net --mount --pid --fork --mount-proc bash -s "$NSS" "$SECS" "$RUNS" "$PWD" <<'INNER'
set -euo pipefail
NSS=$1 SECS=$2 RUNS=$3 TOP=$4
mount -t tmpfs tmpfs /run; ip link set lo up
work=$(mktemp -d); cd "$work"
printf 'let a = netns("a");\nlet b = netns("b");\nconnect(a, b, #{ addr: "10.9.0.1/24", peer_addr: "10.9.0.2/24" });\n' > cap.rhai
$NSS -q cap.rhai
ip netns exec b iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.5
$NSS capture cap a:eth0 -w nss.pcapng --for $((SECS + 2)) > nss.out 2> nss.err &
ncap=$!
ip netns exec a tcpdump -i eth0 -s 262144 -w td.pcap > td.out 2> td.err &
tcap=$!
sleep 1
ip netns exec a iperf3 -c 10.9.0.2 -b 1G -t "$SECS" -J > iperf.json
# CPU each capturer used so far (user+system, clock ticks -> ms), both still running
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{printf "%d+%d", $14 * 1000 / hz, $15 * 1000 / hz}' "/proc/$1/stat"; }
ncpu=$(cpu_ms $ncap) tcpu=$(cpu_ms $tcap)
wait $ncap || true
kill -INT $tcap; wait $tcap || true
rate=$(python3 -c 'import json,sys; d=json.load(open("iperf.json")); print("%.0f" % (d["end"]["sum_sent"]["bits_per_second"]/1e6))')
echo "capture: iperf3 sent ${rate} Mbit/s for ${SECS} s across a:eth0"
echo "  nsscript capture: $(tr '\n' ' ' < nss.err)$(tr '\n' ' ' < nss.out)(CPU ${ncpu} ms)"
echo "  nsscript pcapng packets (tshark): $(tshark -r nss.pcapng 2>/dev/null | wc -l)"
echo "  tcpdump -w: $(grep -E 'captured|dropped' td.err | tr '\n' ' ')(CPU ${tcpu} ms)"
$NSS -q down cap >/dev/null
# trace on seed 000
$NSS -q "$TOP/scripts/seed000_router.rhai" >/dev/null
ms=()
for i in $(seq "$RUNS"); do
  s=$(date +%s%N); $NSS trace seed000_router vm1 203.0.113.1 >/dev/null; e=$(date +%s%N)
  ms+=($(( (e - s) / 1000000 )))
done
printf '%s\n' "${ms[@]}" | sort -n | awk -v n="$RUNS" '{a[NR]=$1} END {printf "trace seed000 vm1 -> 203.0.113.1: n=%d median=%d ms worst=%d ms best=%d ms\n", n, a[int((n+1)/2)], a[n], a[1]}'
$NSS -q down seed000_router >/dev/null
INNER
