#!/usr/bin/env python3
"""Summarize compare.sh runs: DIR/results.tsv (+ DIR/floor.txt) -> summary.md, chart.png.

Usage: summarize.py DIR [OTHER_MAX]
       summarize.py [--other-max N] [--out OUTDIR] DIR [DIR ...]

One table per harness shape (the "harness" column; rows from before it
existed count as "single"). Per relay: median and min-max across rounds of
the per-round values (rt/s = median of that round's per-second samples; CPU
per round trip over the round's measured window). "ceiling" rows are the bare
ChannelData reflector (cdreflect.c). The floor rows come from floor/run.sh
output. OTHER_MAX=N keeps only rounds where other processes used <= N % CPU
mid-run. Outputs go to OUTDIR (default: the first DIR).
"""
import csv
import re
import statistics
import sys
from pathlib import Path

import argparse

ap = argparse.ArgumentParser()
ap.add_argument("--other-max", type=float)
ap.add_argument("--out")
ap.add_argument("dirs", nargs="+")
args = ap.parse_args()
dirs = [Path(d) for d in args.dirs]
other_max = args.other_max
if len(dirs) == 2 and re.fullmatch(r"[\d.]+", args.dirs[1]) and other_max is None:
    dirs, other_max = dirs[:1], float(args.dirs[1])  # old form: DIR OTHER_MAX
out = Path(args.out) if args.out else dirs[0]
rows = []
for d in dirs:
    rows += list(csv.DictReader(open(d / "results.tsv"), delimiter="\t"))
for r in rows:
    r["harness"] = r.get("harness") or "single"
if other_max is not None:
    rows = [r for r in rows if float(r.get("other_cpu_pct", 0)) <= other_max]
suffix = "" if other_max is None else f"-other-le-{other_max:g}"
harnesses = list(dict.fromkeys(r["harness"] for r in rows))
LABEL = {"coturn": "coturn 4.6.1", "ceiling": "ceiling: cdreflect, no TURN",
         "ceiling-straight": "ceiling: cdreflect --straight"}


def stats(vals):
    return statistics.median(vals), min(vals), max(vals)


def fmt(v, nd):
    med, lo, hi = v
    return f"{med:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})"


tables = {}
for h in harnesses:
    hrows = [r for r in rows if r["harness"] == h]
    table = []
    for name in dict.fromkeys(r["relay"] for r in hrows):
        rs = [r for r in hrows if r["relay"] == name]
        col = lambda k: stats([float(r[k]) for r in rs])
        table.append((name, len(rs), col("rt_per_s_median"), col("relay_cpu_us_per_rt"),
                      col("relay_cpu_pct"), col("cpu1_us_per_rt"), col("cpu0_busy_pct"),
                      col("other_cpu_pct")))
    tables[h] = table

floor = []
for d in dirs:
    floor_txt = d / "floor.txt"
    if floor_txt.exists():
        for line in floor_txt.read_text().splitlines():
            m = re.match(r"(\S+)\s+rt_per_s=(\d+).*fwd_cpu_us_per_rt=([\d.]+).*fwd_cpu=(\d+)%.*cpu1_us_per_rt=([\d.]+)", line)
            if m:
                floor.append((m.group(1), float(m.group(2)), float(m.group(3)), float(m.group(4)), float(m.group(5))))

md = []
for h, table in tables.items():
    md += [f"Harness **{h}**:", "",
           "| harness | relay | rounds | round trips/s, median (min–max) | relay CPU µs / rt, median (min–max) "
           "| relay CPU % | CPU 1 µs / rt (incl. softirq) | CPU 0 busy % | foreign CPU % mid-run |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, n, rt, us, pct, c1, c0, oth in table:
        md.append(f"| {h} | {LABEL.get(name, name)} | {n} | {fmt(rt, 0)} | {fmt(us, 2)} | {fmt(pct, 0)} "
                  f"| {fmt(c1, 2)} | {fmt(c0, 0)} | {fmt(oth, 0)} |")
    md.append("")
if floor:
    rt = stats([f[1] for f in floor])
    us = stats([f[2] for f in floor])
    pct = stats([f[3] for f in floor])
    c1 = stats([f[4] for f in floor])
    md.append(f"| floor | floor {floor[0][0]} (its own client) | {len(floor)} | {fmt(rt, 0)} | {fmt(us, 2)} "
              f"| {fmt(pct, 0)} | {fmt(c1, 2)} | – | – |")
(out / f"summary{suffix}.md").write_text("\n".join(md) + "\n")
print("\n".join(md))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no chart", file=sys.stderr)
    sys.exit(0)

fig, axes = plt.subplots(len(tables), 2, figsize=(12, 4.2 * len(tables)), squeeze=False)
for row, (h, table) in enumerate(tables.items()):
    short = {"coturn": "coturn\n4.6.1", "ceiling": "ceiling\n(cdreflect)", "ceiling-straight": "ceiling\n(--straight)"}
    names = [short.get(t[0], t[0]) for t in table]
    rts = [t[2] for t in table]
    uss = [t[3] for t in table]
    for ax, data, title, scale in ((axes[row][0], rts, "round trips/s (thousands)", 1e-3),
                                   (axes[row][1], uss, "relay CPU µs per round trip (lower is better)", 1)):
        med = [d[0] * scale for d in data]
        err = [[(d[0] - d[1]) * scale for d in data], [(d[2] - d[0]) * scale for d in data]]
        colors = ["#999999" if t[0].startswith("ceiling") else "#dd8452" if t[0] == "coturn" else "#4c72b0"
                  for t in table]
        ax.bar(names, med, yerr=err, capsize=4, color=colors)
        ax.set_title(f"harness {h}: {title}", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        for i, v in enumerate(med):
            ax.text(i, v, f"{v:.0f}" if scale != 1 else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
fig.suptitle("Relay on CPU 1, load on CPU 0; bar = median across rounds, whiskers = min–max; "
             "grey = harness ceiling (no TURN)", fontsize=10)
fig.tight_layout()
fig.savefig(out / f"chart{suffix}.png", dpi=110)
print(f"chart: {out / f'chart{suffix}.png'}")
