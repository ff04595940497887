#!/usr/bin/env python3
"""Summarize compare.sh runs: DIR/results.tsv (+ DIR/floor-*.txt) -> summary.md, chart.png.

Usage: summarize.py [--other-max N] [--out OUTDIR] DIR [DIR ...]
       summarize.py DIR OTHER_MAX            (old form)

One table per (scenario, harness) pair, in the order they first appear.
Per relay: median and min-max across rounds of the per-round values (rt/s =
median of that round's per-second samples; CPU per round trip over the
round's measured window). Every row names its harness shape (single: one
datagram per send, no UDP_GRO; gso+gro: GSO trains and UDP_GRO receivers)
and its load generator. "ceiling" rows are the bare ChannelData reflector
(cdreflect.c, no TURN); floor rows come from shared/tools/floor/run.sh
output (floor-<harness>.txt, or floor.txt from older runs), shown with the
one-flow flood of the same harness. Then the targets of issue 6, each with
the figures that meet or miss it. Rows from before the scenario column
existed count as scenario "flood (turnflood)", harness "single".
OTHER_MAX=N keeps only rounds where other processes used <= N % CPU mid-run.
Outputs go to OUTDIR (default: the first DIR).
"""
import argparse
import csv
import re
import statistics
import sys
from pathlib import Path

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
    r["scenario"] = r.get("scenario") or "flood (turnflood)"
    r["load"] = r.get("load") or "turnflood"
if other_max is not None:
    rows = [r for r in rows if float(r.get("other_cpu_pct") or 0) <= other_max]
suffix = "" if other_max is None else f"-other-le-{other_max:g}"

LABEL = {"coturn": "coturn 4.6.1", "ceiling": "ceiling: cdreflect, no TURN",
         "ceiling-straight": "ceiling: cdreflect --straight",
         "uturnd-gro": "uturnd-gro (`--gro-client --gro-peer`)", "uturnd-nogso": "uturnd-nogso (`--no-gso`)",
         "uturnd-offload": "uturnd-offload (`--offload tc`)", "uturnd-batch": "uturnd-batch (`--batch-wait-us`)",
         "uturnd-b": "uturnd-b (`$UTURND_B`: another build)", "uturnd-epoll": "uturnd-epoll (`--backend epoll`)"}
TITLE = {
    "flood1": "one flow, 120-byte flood",
    "flood1-gso": "one flow, 120-byte flood, GSO trains and GRO receivers",
    "flood64": "64 flows",
    "voip": "VoIP shape: 1,000 sessions x 50 packets/s",
    "alloc": "allocation churn",
    "invalid": "junk beside one legitimate session",
}


def num(r, k):
    v = r.get(k)
    return float(v) if v not in (None, "") else None


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(v, nd):
    if v is None:
        return "–"
    med, lo, hi = v
    return f"{med:,.{nd}f} ({lo:,.{nd}f}–{hi:,.{nd}f})"


def med(v):
    return None if v is None else v[0]


# (scenario, harness) -> relay -> per-column stats
groups = {}
for r in rows:
    groups.setdefault((r["scenario"], r["harness"]), {}).setdefault(r["relay"], []).append(r)

COLS = ["rt_per_s_median", "relay_cpu_us_per_rt", "relay_cpu_pct", "cpu1_us_per_rt", "cpu0_busy_pct",
        "other_cpu_pct", "loss_pct", "p50_us", "p99_us", "p999_us", "alloc_per_s", "sent", "total_cpu_us_per_rt"]
tables = {}
for key, relays in groups.items():
    tables[key] = []
    for name, rs in relays.items():
        entry = {"relay": name, "load": rs[0]["load"], "rounds": len(rs)}
        for c in COLS:
            entry[c] = stats([num(r, c) for r in rs])
        tables[key].append(entry)

# Floor runs: harness -> mode -> list of (rt/s, fwd µs/rt, fwd %, CPU 1 µs/rt)
floor = {}
for d in dirs:
    for path in sorted(d.glob("floor*.txt")):
        text = path.read_text()
        m = re.search(r"harness_gso=(\d) harness_gro=(\d)", text)
        h = {("0", "0"): "single", ("1", "0"): "gso", ("0", "1"): "gro", ("1", "1"): "gso+gro"}[
            (m.group(1), m.group(2)) if m else ("0", "0")]
        for line in text.splitlines():
            m = re.match(r"^(\S.*?)\s+rt_per_s=(\d+) .*fwd_cpu_us_per_rt=([\d.]+).*fwd_cpu=(\d+)%.*cpu1_us_per_rt=([\d.]+)",
                         line)
            if m:
                # run.sh prints a mode's flags joined with "_" ("fwd-uring_--gro").
                mode = m.group(1).strip().replace("_--", " --")
                floor.setdefault(h, {}).setdefault(mode, []).append(
                    tuple(float(m.group(i)) for i in (2, 3, 4, 5)))


def floor_scenario(harness):
    """The table the floor of `harness` goes with: the one-flow flood of that harness."""
    for s in ("flood1", "flood1-gso", "flood (turnflood)"):
        if (s, harness) in tables:
            return (s, harness)
    return None


md = []
for key, table in tables.items():
    scenario, h = key
    title = f"{scenario}: {TITLE[scenario]}" if scenario in TITLE else scenario
    md += [f"### {title} (harness **{h}**)", ""]
    if scenario == "alloc":
        md += ["| harness | load | relay | rounds | allocations/s, median (min–max) | relay CPU µs / allocation "
               "| relay CPU % | CPU 1 µs / allocation (incl. softirq) | CPU 0 busy % | foreign CPU % mid-run |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for e in table:
            md.append(f"| {h} | {e['load']} | {LABEL.get(e['relay'], e['relay'])} | {e['rounds']} "
                      f"| {fmt(e['alloc_per_s'] or e['rt_per_s_median'], 0)} | {fmt(e['relay_cpu_us_per_rt'], 2)} "
                      f"| {fmt(e['relay_cpu_pct'], 0)} | {fmt(e['cpu1_us_per_rt'], 2)} | {fmt(e['cpu0_busy_pct'], 0)} "
                      f"| {fmt(e['other_cpu_pct'], 0)} |")
    elif scenario == "invalid":
        md += ["| harness | load | relay | rounds | relay CPU µs / junk packet | relay CPU % "
               "| legitimate session loss % | its p99 µs | CPU 0 busy % | foreign CPU % mid-run |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for e in table:
            md.append(f"| {h} | {e['load']} | {LABEL.get(e['relay'], e['relay'])} | {e['rounds']} "
                      f"| {fmt(e['relay_cpu_us_per_rt'], 2)} | {fmt(e['relay_cpu_pct'], 0)} | {fmt(e['loss_pct'], 3)} "
                      f"| {fmt(e['p99_us'], 0)} | {fmt(e['cpu0_busy_pct'], 0)} | {fmt(e['other_cpu_pct'], 0)} |")
    elif scenario == "voip":
        md += ["| harness | load | relay | rounds | round trips/s, median (min–max) | loss % | latency p50 µs "
               "| p99 µs | p99.9 µs | relay CPU µs / rt | relay CPU % | CPU 1 µs / rt (incl. softirq) "
               "| CPU 0 busy % | foreign CPU % mid-run | total CPU µs / rt (all CPUs, perf) |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for e in table:
            md.append(f"| {h} | {e['load']} | {LABEL.get(e['relay'], e['relay'])} | {e['rounds']} "
                      f"| {fmt(e['rt_per_s_median'], 0)} | {fmt(e['loss_pct'], 3)} | {fmt(e['p50_us'], 0)} "
                      f"| {fmt(e['p99_us'], 0)} | {fmt(e['p999_us'], 0)} | {fmt(e['relay_cpu_us_per_rt'], 2)} "
                      f"| {fmt(e['relay_cpu_pct'], 0)} | {fmt(e['cpu1_us_per_rt'], 2)} | {fmt(e['cpu0_busy_pct'], 0)} "
                      f"| {fmt(e['other_cpu_pct'], 0)} | {fmt(e['total_cpu_us_per_rt'], 2)} |")
    else:
        md += ["| harness | load | relay | rounds | round trips/s, median (min–max) | relay CPU µs / rt, median "
               "(min–max) | relay CPU % | CPU 1 µs / rt (incl. softirq) | CPU 0 busy % | foreign CPU % mid-run "
               "| total CPU µs / rt (all CPUs, perf) |",
               "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for e in table:
            md.append(f"| {h} | {e['load']} | {LABEL.get(e['relay'], e['relay'])} | {e['rounds']} "
                      f"| {fmt(e['rt_per_s_median'], 0)} | {fmt(e['relay_cpu_us_per_rt'], 2)} "
                      f"| {fmt(e['relay_cpu_pct'], 0)} | {fmt(e['cpu1_us_per_rt'], 2)} | {fmt(e['cpu0_busy_pct'], 0)} "
                      f"| {fmt(e['other_cpu_pct'], 0)} | {fmt(e['total_cpu_us_per_rt'], 2)} |")
        for fh, modes in floor.items():
            if floor_scenario(fh) != key:
                continue
            for mode, runs in modes.items():
                md.append(f"| {fh} | floor's own client | floor {mode} | {len(runs)} | {fmt(stats([x[0] for x in runs]), 0)} "
                          f"| {fmt(stats([x[1] for x in runs]), 2)} | {fmt(stats([x[2] for x in runs]), 0)} "
                          f"| {fmt(stats([x[3] for x in runs]), 2)} | – | – | – |")
    if scenario in ("flood64", "voip", "alloc", "invalid"):
        md.append("")
        md.append("No floor row: `shared/tools/floor` drives one flow of back-to-back datagrams only, not this shape.")
    md.append("")

# Targets of issue 6, from the medians above.
checks = []


def entry(key, relay):
    return next((e for e in tables.get(key, []) if e["relay"] == relay), None)


for key, table in tables.items():
    scenario, h = key
    if scenario == "invalid":
        continue
    co = entry(key, "coturn")
    # Issue 6: at most 40 % of coturn's on the one-flow flood, at most half on every other scenario.
    limit = 0.40 if scenario in ("flood1", "flood1-gso", "flood (turnflood)") else 0.50
    what = "allocation" if scenario == "alloc" else "round trip"
    for e in table:
        if not e["relay"].startswith("uturnd"):
            continue
        us = med(e["relay_cpu_us_per_rt"])
        name = f"{scenario} / {h} / {e['relay']}"
        if co and us is not None and med(co["relay_cpu_us_per_rt"]):
            ratio = us / med(co["relay_cpu_us_per_rt"])
            checks.append(f"- {name}: relay CPU per {what} {us:.2f} µs = **{ratio:.2f}×** coturn's "
                          f"{med(co['relay_cpu_us_per_rt']):.2f} µs (target ≤ {limit:.2f}×): "
                          f"{'met' if ratio <= limit else '**not met**'}")
            rate_key = "alloc_per_s" if scenario == "alloc" else "rt_per_s_median"
            ours, theirs = med(e[rate_key] or e["rt_per_s_median"]), med(co[rate_key] or co["rt_per_s_median"])
            if ours is not None and theirs:
                checks.append(f"- {name}: delivered {ours:,.0f}/s vs coturn's {theirs:,.0f}/s (target ≥ coturn): "
                              f"{'met' if ours >= theirs else '**not met**'}")
        if scenario == "voip" and e["loss_pct"] is not None:
            loss = med(e["loss_pct"])
            checks.append(f"- {name}: loss {loss:.3f} % (target < 0.1 %): {'met' if loss < 0.1 else '**not met**'}")
        modes = floor.get(h, {}) if floor_scenario(h) == key else {}
        want = "fwd-uring --gro" if e["relay"] == "uturnd-gro" else "fwd-uring"
        runs = modes.get(want)
        if runs and us is not None:
            f_us = statistics.median([x[1] for x in runs])
            checks.append(f"- {name}: {us / f_us:.2f}× the floor ({want}, {f_us:.2f} µs per round trip, same harness) "
                          f"(target ≤ 1.25×): {'met' if us <= 1.25 * f_us else '**not met**'}")
        elif scenario != "alloc":
            checks.append(f"- {name}: no floor in this load shape in this run")
if checks:
    md += ["### Targets (issue 6), from the medians above", ""] + checks + [""]

(out / f"summary{suffix}.md").write_text("\n".join(md) + "\n")
print("\n".join(md))

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no chart", file=sys.stderr)
    sys.exit(0)

keys = list(tables)
fig, axes = plt.subplots(len(keys), 2, figsize=(12, 3.8 * len(keys)), squeeze=False)
short = {"coturn": "coturn\n4.6.1", "ceiling": "ceiling\n(cdreflect)", "uturnd-nogso": "uturnd\n--no-gso",
         "uturnd-gro": "uturnd\n--gro-*"}
for row, key in enumerate(keys):
    scenario, h = key
    table = list(tables[key])
    bars = [(short.get(e["relay"], e["relay"]), e, e["relay"]) for e in table]
    fk = floor_scenario(h) == key and floor.get(h) or {}
    for mode, runs in fk.items():
        bars.append((f"floor\n{mode}", {"rt_per_s_median": stats([x[0] for x in runs]),
                                        "relay_cpu_us_per_rt": stats([x[1] for x in runs]), "alloc_per_s": None},
                     "floor"))
    rate_key = "alloc_per_s" if scenario == "alloc" else "rt_per_s_median"
    rate_title = "allocations/s" if scenario == "alloc" else "round trips/s (thousands)"
    cpu_title = {"alloc": "relay CPU µs per allocation", "invalid": "relay CPU µs per junk packet"}.get(
        scenario, "relay CPU µs per round trip (lower is better)")
    for ax, col, title, scale in ((axes[row][0], rate_key, rate_title, 1 if scenario == "alloc" else 1e-3),
                                  (axes[row][1], "relay_cpu_us_per_rt", cpu_title, 1)):
        data = [(n, e.get(col) or e.get("rt_per_s_median"), kind) for n, e, kind in bars]
        data = [d for d in data if d[1] is not None]
        if not data:
            ax.set_visible(False)
            continue
        meds = [d[1][0] * scale for d in data]
        err = [[(d[1][0] - d[1][1]) * scale for d in data], [(d[1][2] - d[1][0]) * scale for d in data]]
        colors = ["#999999" if k.startswith("ceiling") else "#55a868" if k == "floor" else
                  "#dd8452" if k == "coturn" else "#4c72b0" for _, _, k in data]
        ax.bar([d[0] for d in data], meds, yerr=err, capsize=4, color=colors)
        ax.set_title(f"{scenario} ({h}): {title}", fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        for i, v in enumerate(meds):
            ax.text(i, v, f"{v:.0f}" if scale != 1 or scenario == "alloc" and col != "relay_cpu_us_per_rt"
                    else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
fig.suptitle("Relay on CPU 1, load on CPU 0; bar = median across rounds, whiskers = min–max; "
             "grey = harness ceiling (no TURN), green = floor", fontsize=10)
fig.tight_layout()
fig.savefig(out / f"chart{suffix}.png", dpi=100)
print(f"chart: {out / f'chart{suffix}.png'}")
