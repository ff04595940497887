#!/usr/bin/env bash
# Side-by-side relay benchmark: uturnd vs coturn vs the floor, same load, same run.
#
# Each relay runs pinned to CPU 1 with one relay thread; the load (turnflood:
# TURN client + echo peer, one process) runs pinned to CPU 0. Relays alternate
# within a round and the order reverses every other round (ABC, CBA, ...), as
# docs/BENCHMARKING asks. Each relay start gets WARMUP seconds of load that is
# not measured, then SECS measured seconds. Relay CPU per round trip =
# (utime+stime delta of the relay PID from /proc/PID/stat over the measured
# window) / round trips delivered in that window (turnflood --relay-pid).
# After the relay rounds the floor (shared/tools/floor/run.sh, fwd-uring) runs
# in the same session, with the same harness shape (HARNESS_GSO/HARNESS_GRO).
#
# HARNESS picks the load generator's shape (turnflood flags; every row of
# results.tsv says which ran):
#   single   one datagram per send, no UDP_GRO anywhere in the harness
#   gso      client and echo peer send GSO trains (TRAIN frames), the echo
#            peer receives with UDP_GRO; the client receives single datagrams
#   gro      only the client receives with UDP_GRO
#   gso+gro  both
# Relays (RELAYS, in this order within a round; reversed every other round):
#   uturnd        uturnd, one worker
#   uturnd-nogso  the same with --no-gso
#   uturnd-gro    the same with --gro-client --gro-peer; skipped, with a note,
#                 when `uturnd --help` does not list --gro-client
#   coturn        Debian's turnserver (4.6.1), one relay thread
#   ceiling       scripts/bench/cdreflect.c: bare ChannelData forwarder, no TURN
#                 (client -> peer -> client through the same echo peer, so the
#                 load generator does the same work as against a relay), GRO
#                 receives and GSO sends: the most this harness can show
#   ceiling-straight  cdreflect --straight: frames go straight back to the
#                 client, the echo peer idles (client side alone; looser)
#
# Usage: scripts/bench/compare.sh
#   env: ROUNDS=6 SECS=10 WARMUP=2 WINDOW=256 FLOWS=1 PAYLOAD=120
#        HARNESS=single TRAIN=32
#        RELAYS="uturnd uturnd-nogso uturnd-gro coturn ceiling"
#        FLOOR=1  FLOOR_ROUNDS=2 FLOOR_SECS=10
#        OUT=.build-bench-c/results-<timestamp>
# Ports (127.0.0.1 only): relay 40478, relay range 40500-40599, echo peer 40700;
# the floor uses 39100-39301. Every process started here is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-6}
SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
WINDOW=${WINDOW:-256}
FLOWS=${FLOWS:-1}
PAYLOAD=${PAYLOAD:-120}
HARNESS=${HARNESS:-single}
TRAIN=${TRAIN:-32}
case $HARNESS in
single) hflags=() ;;
gso) hflags=(--gso --train "$TRAIN") ;;
gro) hflags=(--gro) ;;
gso+gro) hflags=(--gso --gro --train "$TRAIN") ;;
*) echo "HARNESS must be single, gso, gro or gso+gro" >&2; exit 2 ;;
esac
read -r -a RELAYS <<<"${RELAYS:-uturnd uturnd-nogso uturnd-gro coturn ceiling}"
FLOOR=${FLOOR:-1}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-2}
FLOOR_SECS=${FLOOR_SECS:-10}
FLOOR_SH=${FLOOR_SH:-$root/../shared/tools/floor/run.sh}
[[ -f $FLOOR_SH ]] || FLOOR_SH=/work/shared/tools/floor/run.sh
OUT=${OUT:-$root/.build-bench-c/results-$(date +%Y%m%d-%H%M%S)}
LISTEN_PORT=40478 MIN_PORT=40500 MAX_PORT=40599 PEER_PORT=40700
REALM=bench.local USER_NAME=bench PASSWORD=bench

mkdir -p "$OUT" .build-bench-c
tf=.build-bench-c/turnflood
cc -O2 -Wall -Wextra -o "$tf" scripts/bench/turnflood.c -lcrypto -lpthread
refl=.build-bench-c/cdreflect
cc -O2 -Wall -Wextra -o "$refl" scripts/bench/cdreflect.c

# uturnd release build; retry a few times while its front end is in flux.
uturnd=$root/.build/release/uturnd
if [[ " ${RELAYS[*]} " == *" uturnd"* ]]; then
	for try in 1 2 3 4 5; do
		if swift build -c release --product uturnd >"$OUT/swift-build.log" 2>&1 &&
			"$uturnd" --help >/dev/null 2>&1; then
			break
		fi
		((try < 5)) || { echo "uturnd does not build or run; see $OUT/swift-build.log" >&2; exit 1; }
		echo "uturnd not ready (try $try), retrying in 180 s" >&2
		sleep 180
	done
fi

notes=()
# uturnd-gro needs uturnd's receive-side GRO flags; skip it (with a note) until they exist.
if [[ " ${RELAYS[*]} " == *" uturnd-gro "* ]] && ! "$uturnd" --help 2>&1 | grep -q gro-client; then
	keep=()
	for r in "${RELAYS[@]}"; do [[ $r == uturnd-gro ]] || keep+=("$r"); done
	RELAYS=("${keep[@]}")
	notes+=("uturnd-gro skipped: this uturnd build has no --gro-client (uturnd --help)")
	echo "note: ${notes[-1]}" >&2
fi

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

forget() {
	local p keep=()
	for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

port_in_use() { [[ -n $(ss -Hulnp "sport = :$1") ]]; }

# Refuse to start when a port is taken: relays bind with SO_REUSEPORT, so a
# leftover server on the same port would silently take part of the load.
check_ports_free() {
	local p
	for p in $LISTEN_PORT $PEER_PORT $MIN_PORT; do
		if port_in_use "$p"; then
			echo "port $p is in use:" >&2
			ss -Hulnp "sport = :$p" >&2
			return 1
		fi
	done
}

start_relay() { # start_relay NAME LOG -> sets relay_pid
	local name=$1 log=$2 tmp
	case $name in
	uturnd | uturnd-nogso | uturnd-gro)
		local extra=()
		[[ $name == uturnd-nogso ]] && extra=(--no-gso)
		[[ $name == uturnd-gro ]] && extra=(--gro-client --gro-peer)
		taskset -c 1 "$uturnd" --listening-ip 127.0.0.1 --listening-port $LISTEN_PORT \
			--relay-ip 127.0.0.1 --min-port $MIN_PORT --max-port $MAX_PORT --realm $REALM \
			--user $USER_NAME:$PASSWORD --lt-cred-mech --allow-loopback-peers --workers 1 \
			"${extra[@]}" >"$log" 2>&1 &
		;;
	coturn)
		tmp=$(mktemp -d /tmp/bench-coturn.XXXXXX)
		taskset -c 1 turnserver -n --no-cli --no-tls --no-dtls -L 127.0.0.1 -E 127.0.0.1 \
			-p $LISTEN_PORT --min-port $MIN_PORT --max-port $MAX_PORT -r $REALM \
			-u $USER_NAME:$PASSWORD --lt-cred-mech --allow-loopback-peers --relay-threads 1 \
			--no-rfc5780 --pidfile "$tmp/turnserver.pid" --db "$tmp/turndb" \
			--log-file stdout --simple-log >"$log" 2>&1 &
		;;
	ceiling)
		taskset -c 1 "$refl" --port $LISTEN_PORT --peer-port $PEER_PORT --relay-port $MIN_PORT >"$log" 2>&1 &
		;;
	ceiling-straight)
		taskset -c 1 "$refl" --port $LISTEN_PORT --straight >"$log" 2>&1 &
		;;
	*) echo "unknown relay $name" >&2; return 1 ;;
	esac
	relay_pid=$!
	pids+=("$relay_pid")
	local i
	for i in $(seq 100); do
		port_in_use $LISTEN_PORT && return 0
		kill -0 "$relay_pid" 2>/dev/null || { echo "$name died at start:" >&2; cat "$log" >&2; return 1; }
		sleep 0.05
	done
	echo "$name not listening after 5 s" >&2
	return 1
}

stop_relay() { # stop_relay PID NAME -> 0 if it was still alive
	local pid=$1 alive=0 i
	kill -0 "$pid" 2>/dev/null || alive=1
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget "$pid"
	return $alive
}

results=$OUT/results.tsv
printf 'round\tharness\trelay\trt_per_s_median\trt_per_s_min_sample\trt_per_s_max_sample\trelay_cpu_pct\trelay_cpu_us_per_rt\tcpu1_us_per_rt\tcpu0_busy_pct\tcpu1_busy_pct\tsent\treceived\twritten_off\tother_cpu_pct\n' >"$results"
{
	echo "kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "ROUNDS=$ROUNDS SECS=$SECS WARMUP=$WARMUP WINDOW=$WINDOW FLOWS=$FLOWS PAYLOAD=$PAYLOAD HARNESS=$HARNESS TRAIN=$TRAIN RELAYS=${RELAYS[*]}"
	echo "turnflood flags: ${hflags[*]:-(none)}"
	for n in "${notes[@]}"; do echo "note: $n"; done
	echo "coturn: $(turnserver --version 2>/dev/null | head -1)"
	echo "uturnd: $(git log -1 --format='%h %s' | cut -c1-80) (+ working tree)"
} | tee "$OUT/env.txt"

for round in $(seq "$ROUNDS"); do
	if ((round % 2)); then
		order=("${RELAYS[@]}")
	else
		order=()
		for ((i = ${#RELAYS[@]} - 1; i >= 0; i--)); do order+=("${RELAYS[$i]}"); done
	fi
	for relay in "${order[@]}"; do
		check_ports_free
		rlog=$OUT/$round.$relay.relay.log
		flog=$OUT/$round.$relay.turnflood.log
		start_relay "$relay" "$rlog"
		status=0
		# what else ran on the machine mid-window (other sessions' builds skew results)
		(sleep $((WARMUP + SECS / 2)); top -b -n 2 -d 1 -w 200 | awk '/^top -/ { n++ } n == 2' |
			head -16 >"$OUT/$round.$relay.top.txt") &
		tflags=("${hflags[@]}")
		[[ $relay == ceiling* ]] && tflags+=(--no-turn)
		taskset -c 0 "$tf" --port $LISTEN_PORT --peer-port $PEER_PORT --user $USER_NAME \
			--password $PASSWORD --realm $REALM --seconds "$SECS" --warmup "$WARMUP" \
			--window "$WINDOW" --flows "$FLOWS" --payload "$PAYLOAD" \
			--relay-pid "$relay_pid" "${tflags[@]}" >"$flog" 2>&1 || status=$?
		wait $! 2>/dev/null || true # the top snapshot
		if ! stop_relay "$relay_pid" "$relay"; then
			echo "round $round: $relay exited before the end of its run; its log:" >&2
			tail -30 "$rlog" >&2
		fi
		if ((status != 0)) || ! grep -q '^summary ' "$flog"; then
			echo "round $round: turnflood against $relay failed (exit $status):" >&2
			cat "$flog" >&2
			echo "$relay log:" >&2
			tail -30 "$rlog" >&2
			exit 1
		fi
		# %CPU of everything but the relay, turnflood and top in the mid-run snapshot
		other=$(awk 'f && $12 !~ /^(turnflood|uturnd|turnserver|cdreflect|top)$/ { s += $9 } /^ *PID/ { f = 1 }
			END { printf "%.0f", s }' "$OUT/$round.$relay.top.txt")
		python3 - "$round" "$relay" "$flog" "$other" >>"$results" <<'EOF'
import json, sys
rnd, relay, path, other = sys.argv[1:5]
line = next(l for l in open(path) if l.startswith("summary "))
s = json.loads(line[len("summary "):])
print("\t".join(str(x) for x in (
    rnd, s.get("harness", "single"), relay, s["rt_per_s_median"], min(s["samples"]), max(s["samples"]),
    s["relay_cpu_pct"], s["relay_cpu_us_per_rt"], s["cpu1_us_per_rt"],
    s["cpu0_busy_pct"], s["cpu1_busy_pct"], s["sent"], s["received"], s["written_off"], other)))
EOF
		tail -1 "$results"
	done
done

if [[ $FLOOR == 1 ]]; then
	fg=0 fr=0
	[[ $HARNESS == gso* ]] && fg=1
	[[ $HARNESS == *gro ]] && fr=1
	echo "# floor: ROUNDS=$FLOOR_ROUNDS SECS=$FLOOR_SECS MODES=fwd-uring HARNESS_GSO=$fg HARNESS_GRO=$fr bash $FLOOR_SH"
	ROUNDS=$FLOOR_ROUNDS SECS=$FLOOR_SECS MODES="fwd-uring" HARNESS_GSO=$fg HARNESS_GRO=$fr \
		FLOOR_BIN="$root/.build-bench-c/floor-bench" \
		bash "$FLOOR_SH" | tee "$OUT/floor.txt"
fi

python3 "$root/scripts/bench/summarize.py" "$OUT"
echo "results in $OUT"
