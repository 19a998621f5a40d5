#!/usr/bin/env python3
"""Medians per implementation and size from run_bench.py's JSONL, with ratios to cstar."""
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
build, down = defaultdict(list), defaultdict(list)
for r in rows:
    build[(r['impl'], r['N'])].append(r['build_ms']); down[(r['impl'], r['N'])].append(r['teardown_ms'])
impls = sorted({r['impl'] for r in rows}, key=lambda i: statistics.median(build[(i, max(r['N'] for r in rows))]) if (i, max(r['N'] for r in rows)) in build else 1e9)
sizes = sorted({r['N'] for r in rows})
reps = max(len(v) for v in build.values())
print(f"star(N), medians of {reps} interleaved runs (ms); ratio = this / cstar")
print(f"{'impl':<12}" + "".join(f"{'build N=' + str(n):>16}{'x cstar':>9}{'down':>9}{'x cstar':>9}" for n in sizes))
for i in impls:
    line = f"{i:<12}"
    for n in sizes:
        if (i, n) not in build: line += " " * 43; continue
        b, d = statistics.median(build[(i, n)]), statistics.median(down[(i, n)])
        cb = statistics.median(build[('cstar', n)]) if ('cstar', n) in build else None
        cd = statistics.median(down[('cstar', n)]) if ('cstar', n) in down else None
        line += f"{b:>16.1f}{(b / cb if cb else float('nan')):>9.2f}{d:>9.1f}{(d / cd if cd else float('nan')):>9.2f}"
    print(line)
