#!/usr/bin/env bash
# A/B/C of the per-source request limits under a junk flood: the same uturnd
# build run alternately ROUNDS times as
#   off:     --failed-request-rate 0 --binding-request-rate 0 --failed-request-rate-total 0
#   limits:  the default limits, dropping in user space only (--kernel-source-filter off)
#   kfilter: the default limits with the kernel source filter (--kernel-source-filter on;
#            needs root or CAP_BPF)
# uturnd runs one worker on 127.0.0.1; uturn-bench invalid sends RATE junk
# packets/s (KINDS, one socket per kind, from 127.0.0.1) beside one live
# session at 50 packets/s. Per run: relay CPU per junk packet (uturnd
# user+sys over the window / junk sent), whole-machine CPU per junk packet
# (busy time of every CPU from /proc/stat over the window / junk sent: on
# loopback the kernel's receive work runs in the sender's softirq, which the
# relay's own times do not show; on a machine shared with other work this
# counts theirs too), host CPU per junk packet (uturnd's and uturn-bench's
# user+sys time and every CPU's softirq time over the whole bench run, per
# junk packet sent in it: the sender's own cost is the same in every arm, so
# the differences between arms are what the relay host saves), answers, the kernel filter's drops (from
# /metrics), and the live session's loss and p50/p99.
# PIN=1 (the default) runs uturnd on the last CPU and uturn-bench on CPU 0 (taskset), so
# the relay's times hold its own work only: unpinned, on a 2-CPU machine the
# scheduler now and then puts uturnd on the sender's CPU, where it is charged
# for the loopback softirq work of the flood (the kernel filter included).
# Usage: scripts/bench/junk-limit-ab.sh [OUTDIR]
#   (env: UTURND, BENCH, RATE, ROUNDS, DURATION, KINDS, ARMS="off limits kfilter", PIN)
set -euo pipefail
out=${1:-/tmp/junk-limit-ab}
uturnd=${UTURND:-.build/release/uturnd}
bench=${BENCH:-.build/release/uturn-bench}
rate=${RATE:-40000}
rounds=${ROUNDS:-3}
duration=${DURATION:-6}
kinds=${KINDS:-all}
arms=${ARMS:-off limits kfilter}
relay_cpu=(); sender_cpu=()
if [[ ${PIN:-1} == 1 ]]; then
	last=$(($(nproc) - 1))
	relay_cpu=(taskset -c "$last"); sender_cpu=(taskset -c 0)
fi
mkdir -p "$out"
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sample() { # uturnd pid: "seconds relay-ticks softirq-ticks"
	python3 - "$1" <<'PY'
import sys, time
def ticks(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
        f = s[s.rindex(")") + 2:].split()
        return int(f[11]) + int(f[12])
    except OSError:
        return 0
softirq = sum(int(line.split()[7]) for line in open("/proc/stat") if line.startswith("cpu") and not line.startswith("cpu "))
print(time.monotonic(), ticks(sys.argv[1]), softirq)
PY
}
run() { # name, extra uturnd args...
	local name=$1; shift
	local port metrics; port=$(free_port); metrics=$(free_port)
	"${relay_cpu[@]}" "$uturnd" --listening-ip 127.0.0.1 --listening-port "$port" --relay-ip 127.0.0.1 --min-port 40000 --max-port 40999 \
		--realm bench --user bench:bench --allow-loopback-peers --workers 1 --no-tcp --log-level warning \
		--metrics-listen "127.0.0.1:$metrics" "$@" >"$out/$name.uturnd.log" 2>&1 &
	local pid=$!
	sleep 1
	# CPU over the whole bench run (warm-up and window): uturnd's ticks and
	# the machine's softirq ticks before and after, and uturn-bench's own
	# user+sys time from its rusage.
	sample "$pid" >"$out/$name.ticks"
	python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.ru_utime + r.ru_stime)' "$out/$name.txt" \
		"${sender_cpu[@]}" "$bench" invalid --server "127.0.0.1:$port" --realm bench --rate "$rate" --kinds "$kinds" --legit-rate 50 \
		--duration "$duration" --warmup 1 --relay-pid "$pid" --json "$out/$name.json" --quiet >"$out/$name.benchcpu" || true
	sample "$pid" >>"$out/$name.ticks"
	curl -s "http://127.0.0.1:$metrics/metrics" >"$out/$name.metrics" 2>/dev/null || true
	kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
for r in $(seq 1 "$rounds"); do
	for arm in $arms; do
		case $arm in
		off) run "off-$r" --failed-request-rate 0 --binding-request-rate 0 --failed-request-rate-total 0 --kernel-source-filter off ;;
		limits) run "limits-$r" --kernel-source-filter off ;;
		kfilter) run "kfilter-$r" --kernel-source-filter on ;;
		esac
	done
done
python3 - "$out" "$rounds" "$arms" "$duration" <<'PY'
import json, sys
out, rounds, arms, duration = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), float(sys.argv[4])
def kernel_drops(name):
    try:
        for line in open(f"{out}/{name}.metrics"):
            if line.startswith("uturn_rate_limited_kernel_drops_total"):
                return int(float(line.split()[-1]))
    except OSError:
        pass
    return 0
import os
hz = os.sysconf("SC_CLK_TCK")
def host_us_per_junk(name, rate, warmup=1.0):
    """(uturnd + uturn-bench CPU + softirq) over the whole bench run, per
    junk packet sent in it (the sender keeps its rate through the warm-up)."""
    try:
        a, b = [list(map(float, l.split())) for l in open(f"{out}/{name}.ticks")]
        bench = float(open(f"{out}/{name}.benchcpu").read())
    except (OSError, ValueError):
        return float("nan")
    seconds = (b[1] - a[1] + b[2] - a[2]) / hz + bench
    junk = rate * (duration + warmup)
    return seconds * 1e6 / junk if junk else float("nan")
print("run        junk/s sent  answered  kernel drops  relay-us/junk  machine-us/junk  host-us/junk  live loss %  live p50/p99 us")
for r in range(1, rounds + 1):
    for arm in arms:
        name = f"{arm}-{r}"
        try:
            j = json.load(open(f"{out}/{name}.json"))
        except Exception as e:
            print(name, "no result", e); continue
        inv = j.get("invalid") or {}
        kinds = inv.get("kinds", [])
        sent = sum(k["sent"] for k in kinds)
        ans = sum(k["success"] + sum(k["errors"].values()) + k["other"] for k in kinds)
        cpu = inv.get("relayCPUMicrosPerJunkPacket") or float("nan")
        busy = j.get("cpuBusyMicros")
        machine = sum(busy) / sent if busy and sent else float("nan")
        print(f"{name:10s} {sent / j['durationSeconds']:11.0f}  {ans:8d}  {kernel_drops(name):12d}  {cpu:13.2f}  "
              f"{machine:15.2f}  {host_us_per_junk(name, sent / j['durationSeconds']):12.2f}  {j['lossPercent']:10.3f}  {j['latencyP50Micros']:.0f}/{j['latencyP99Micros']:.0f}")
PY
