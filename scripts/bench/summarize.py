#!/usr/bin/env python3
"""Summarize a compare.sh run: OUT/results.tsv (+ OUT/floor.txt) -> OUT/summary.md, OUT/chart.png.

Per relay: median and min-max across rounds of the per-round values
(rt/s = median of that round's per-second samples; CPU per round trip over
the round's measured window). The floor rows come from floor/run.sh output.
"""
import csv
import re
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
rows = list(csv.DictReader(open(out / "results.tsv"), delimiter="\t"))
# OTHER_MAX=N: keep only rounds where other processes used <= N % CPU mid-run
other_max = float(sys.argv[2]) if len(sys.argv) > 2 else None
if other_max is not None:
    rows = [r for r in rows if float(r.get("other_cpu_pct", 0)) <= other_max]
suffix = "" if other_max is None else f"-other-le-{other_max:g}"
relays = list(dict.fromkeys(r["relay"] for r in rows))


def stats(vals):
    return statistics.median(vals), min(vals), max(vals)


def fmt(v, nd):
    med, lo, hi = v
    return f"{med:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})"


table = []
for name in relays:
    rs = [r for r in rows if r["relay"] == name]
    col = lambda k: stats([float(r[k]) for r in rs])
    table.append((name, len(rs), col("rt_per_s_median"), col("relay_cpu_us_per_rt"),
                  col("relay_cpu_pct"), col("cpu1_us_per_rt"), col("cpu0_busy_pct")))

floor = []
floor_txt = out / "floor.txt"
if floor_txt.exists():
    for line in floor_txt.read_text().splitlines():
        m = re.match(r"(\S+)\s+rt_per_s=(\d+).*fwd_cpu_us_per_rt=([\d.]+).*fwd_cpu=(\d+)%.*cpu1_us_per_rt=([\d.]+)", line)
        if m:
            floor.append((m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5))))

md = ["| relay | rounds | round trips/s, median (min–max) | relay CPU µs / rt, median (min–max) "
      "| relay CPU % | CPU 1 µs / rt (incl. softirq) | CPU 0 busy % |",
      "|---|---:|---:|---:|---:|---:|---:|"]
for name, n, rt, us, pct, c1, c0 in table:
    md.append(f"| {name} | {n} | {fmt(rt, 0)} | {fmt(us, 2)} | {fmt(pct, 0)} | {fmt(c1, 2)} | {fmt(c0, 0)} |")
if floor:
    rt = stats([f[1] for f in floor])
    us = stats([f[2] for f in floor])
    pct = stats([f[3] for f in floor])
    c1 = stats([f[4] for f in floor])
    md.append(f"| floor {floor[0][0]} (its own client) | {len(floor)} | {fmt(rt, 0)} | {fmt(us, 2)} "
              f"| {fmt(pct, 0)} | {fmt(c1, 2)} | – |")
(out / f"summary{suffix}.md").write_text("\n".join(md) + "\n")
print("\n".join(md))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no chart", file=sys.stderr)
    sys.exit(0)

names = [t[0] for t in table] + ([f"floor {floor[0][0]}\n(own client)"] if floor else [])
rts = [t[2] for t in table] + ([stats([f[1] for f in floor])] if floor else [])
uss = [t[3] for t in table] + ([stats([f[2] for f in floor])] if floor else [])
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, data, title, scale in ((a1, rts, "round trips/s (thousands)", 1e-3),
                               (a2, uss, "relay CPU µs per round trip (lower is better)", 1)):
    med = [d[0] * scale for d in data]
    err = [[(d[0] - d[1]) * scale for d in data], [(d[2] - d[0]) * scale for d in data]]
    colors = ["#4c72b0" if not n.startswith("floor") else "#999999" for n in names]
    ax.bar(names, med, yerr=err, capsize=4, color=colors)
    ax.set_title(title)
    for i, v in enumerate(med):
        ax.text(i, v, f"{v:.0f}" if scale != 1 else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
fig.suptitle("Relay on CPU 1, load on CPU 0 (see env.txt); bar = median across rounds, whiskers = min–max")
fig.tight_layout()
fig.savefig(out / f"chart{suffix}.png", dpi=110)
print(f"chart: {out / f'chart{suffix}.png'}")
