#!/usr/bin/env python3
"""One results.tsv row from one load run (compare.sh).

Usage: row.py SCENARIO ROUND HARNESS LOAD RELAY OUTPUT OTHER_CPU_PCT
  LOAD uturn-bench: OUTPUT is its --json summary.
  LOAD turnflood:   OUTPUT is its log; the line starting "summary {" is read.
Columns (tab-separated, in compare.sh's header order). For the alloc
scenario the rt columns hold allocations per second and the per-rt columns
are per allocation; for invalid they are the legitimate session's round
trips and relay CPU per junk packet.
"""
import json
import sys

scenario, rnd, harness, load, relay, path, other = sys.argv[1:8]


def f(v, nd=3):
    return "" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


if load == "turnflood":
    line = next(l for l in open(path) if l.startswith("summary "))
    s = json.loads(line[len("summary "):])
    sent, received = s["sent"], s["received"]
    row = dict(
        harness=s.get("harness", harness), rt=s["rt_per_s_median"], rt_min=min(s["samples"]),
        rt_max=max(s["samples"]), cpu_pct=s["relay_cpu_pct"], us=s["relay_cpu_us_per_rt"],
        cpu1_us=s["cpu1_us_per_rt"], cpu0=s["cpu0_busy_pct"], cpu1=s["cpu1_busy_pct"], sent=sent,
        received=received, written_off=s["written_off"],
        loss=(sent - min(sent, received)) * 100.0 / sent if sent else 0.0,
        p50=None, p99=None, p999=None, alloc=None)
else:
    s = json.load(open(path))
    samples = s.get("perSecond") or [0.0]
    busy = s.get("cpuBusyPercent") or []
    busy_us = s.get("cpuBusyMicros") or []
    if scenario == "alloc":
        ops = s.get("allocations") or 0
        us = s.get("relayCPUMicrosPerRoundTrip")
        rt = s.get("allocationsPerSecond") or 0.0
    elif scenario == "invalid":
        inv = s.get("invalid") or {}
        ops = sum(k["sent"] for k in inv.get("kinds", []))
        us = inv.get("relayCPUMicrosPerJunkPacket")
        rt = s["roundTripsPerSecond"]
    else:
        ops = s["received"]
        us = s.get("relayCPUMicrosPerRoundTrip")
        rt = s["roundTripsPerSecond"]
    row = dict(
        harness=s.get("harness") or harness, rt=rt, rt_min=min(samples), rt_max=max(samples),
        cpu_pct=s.get("relayCPUPercent"), us=us,
        cpu1_us=busy_us[1] / ops if len(busy_us) > 1 and ops else None,
        cpu0=busy[0] if busy else None, cpu1=busy[1] if len(busy) > 1 else None,
        sent=s["sent"], received=s["received"], written_off=0, loss=s["lossPercent"],
        p50=s["latencyP50Micros"], p99=s["latencyP99Micros"], p999=s["latencyP999Micros"],
        alloc=s.get("allocationsPerSecond"))
    if scenario == "alloc":
        row.update(p50=None, p99=None, p999=None, loss=None)

print("\t".join(f(x) for x in (
    scenario, rnd, row["harness"], load, relay, float(row["rt"]), float(row["rt_min"]), float(row["rt_max"]),
    row["cpu_pct"], row["us"], row["cpu1_us"], row["cpu0"], row["cpu1"], row["sent"], row["received"],
    row["written_off"], row["loss"], row["p50"], row["p99"], row["p999"], row["alloc"], other)))
