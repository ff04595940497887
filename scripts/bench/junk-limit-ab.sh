#!/usr/bin/env bash
# A/B of the per-source request limit under a junk flood: the same uturnd
# build with --failed-request-rate 0 --binding-request-rate 0
# --failed-request-rate-total 0 (A: no limit) and with the defaults
# (B), alternating ROUNDS times. uturnd runs one worker on 127.0.0.1;
# uturn-bench invalid sends RATE junk packets/s (all nine kinds, from
# 127.0.0.1) beside one live session at 50 packets/s.
# Usage: scripts/bench/junk-limit-ab.sh [OUTDIR]   (env: UTURND, BENCH, RATE, ROUNDS, DURATION, KINDS)
set -euo pipefail
out=${1:-/tmp/junk-limit-ab}
uturnd=${UTURND:-.build-rel/release/uturnd}
bench=${BENCH:-.build-rel/release/uturn-bench}
rate=${RATE:-40000}
rounds=${ROUNDS:-3}
duration=${DURATION:-6}
kinds=${KINDS:-all}
mkdir -p "$out"
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
run() { # name, extra uturnd args...
	local name=$1; shift
	local port; port=$(free_port)
	"$uturnd" --listening-ip 127.0.0.1 --listening-port "$port" --relay-ip 127.0.0.1 --min-port 40000 --max-port 40999 \
		--realm bench --user bench:bench --allow-loopback-peers --workers 1 --no-tcp --log-level warning "$@" \
		>"$out/$name.uturnd.log" 2>&1 &
	local pid=$!
	sleep 1
	"$bench" invalid --server "127.0.0.1:$port" --realm bench --rate "$rate" --kinds "$kinds" --legit-rate 50 \
		--duration "$duration" --warmup 1 --relay-pid "$pid" --json "$out/$name.json" --quiet >"$out/$name.txt" 2>&1 || true
	kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}
for r in $(seq 1 "$rounds"); do
	run "off-$r" --failed-request-rate 0 --binding-request-rate 0 --failed-request-rate-total 0
	run "on-$r"
done
python3 - "$out" "$rounds" <<'PY'
import json, sys
out, rounds = sys.argv[1], int(sys.argv[2])
print("run     junk/s sent  answered  relay-us/junk  live loss %  live p50/p99 us")
for r in range(1, rounds + 1):
    for name in (f"off-{r}", f"on-{r}"):
        try:
            j = json.load(open(f"{out}/{name}.json"))
        except Exception as e:
            print(name, "no result", e); continue
        inv = j.get("invalid") or {}
        kinds = inv.get("kinds", [])
        sent = sum(k["sent"] for k in kinds)
        ans = sum(k["success"] + sum(k["errors"].values()) + k["other"] for k in kinds)
        cpu = inv.get("relayCPUMicrosPerJunkPacket") or float("nan")
        print(f"{name:7s} {sent / j['durationSeconds']:11.0f}  {ans:8d}  {cpu:13.2f}  {j['lossPercent']:10.3f}  "
              f"{j['latencyP50Micros']:.0f}/{j['latencyP99Micros']:.0f}")
PY
