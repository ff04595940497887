#!/usr/bin/env bash
# TURN over TCP, TLS and DTLS, side by side: uturnd vs coturn under the same load.
#
# The load is coturn's own client, turnutils_uclient, with turnutils_peer as
# the UDP echo peer: M clients, each with its own connection and allocation,
# send N ChannelData messages of PAYLOAD bytes as fast as uclient goes
# (-z 0) and count the echoes. The same command runs against each relay, so
# the load is identical; uclient's pace (not the relay) sets the message
# rate, so the figure to compare is relay CPU per round trip: the relay's
# utime+stime delta over the run (/proc/PID/stat) divided by the echoes
# delivered. TRANSPORTS picks the client leg: udp (reference), tcp (-t),
# tls (-t -S), dtls (-S, on the TLS port number as both relays serve it). Relays run pinned to CPU 1 with one relay thread; uclient and
# the peer are pinned to CPU 0. Relays alternate within a round, the order
# reversed every other round.
#
# Usage: scripts/bench/stream-compare.sh
#   env: ROUNDS=4 CLIENTS=20 MESSAGES=2000 PAYLOAD=120 TRANSPORTS="udp tcp tls"
#        RELAYS="uturnd coturn" OUT=.build-bench-c/streams-<timestamp>
# Ports (127.0.0.1 only): relay 41478 (TLS and DTLS 41479), relay range 42000-42999,
# peer 41800-41801. Every process started here is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROUNDS=${ROUNDS:-4}
CLIENTS=${CLIENTS:-20}
MESSAGES=${MESSAGES:-2000}
PAYLOAD=${PAYLOAD:-120}
read -r -a TRANSPORTS <<<"${TRANSPORTS:-udp tcp tls}"
read -r -a RELAYS <<<"${RELAYS:-uturnd coturn}"
OUT=${OUT:-$root/.build-bench-c/streams-$(date +%Y%m%d-%H%M%S)}
PORT=41478 TLS_PORT=41479 MIN_PORT=42000 MAX_PORT=42999 PEER_PORT=41800
REALM=bench.local USER_NAME=bench PASSWORD=bench
mkdir -p "$OUT"

uturnd=${UTURND:-$root/.build/release/uturnd}
if [[ " ${RELAYS[*]} " == *" uturnd "* && -z ${UTURND:-} ]]; then
	swift build -c release --product uturnd >"$OUT/swift-build.log" 2>&1 ||
		{ echo "uturnd does not build; see $OUT/swift-build.log" >&2; exit 1; }
fi

# A throwaway self-signed certificate (EC P-256) for both relays.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	-keyout "$OUT/key.pem" -out "$OUT/cert.pem" >/dev/null 2>&1

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_relay() { # start_relay NAME LOG -> relay_pid
	local name=$1 log=$2 tmp
	case $name in
	uturnd)
		taskset -c 1 "$uturnd" --listening-ip 127.0.0.1 --listening-port $PORT --relay-ip 127.0.0.1 \
			--min-port $MIN_PORT --max-port $MAX_PORT --realm $REALM --user $USER_NAME:$PASSWORD \
			--lt-cred-mech --allow-loopback-peers --workers 1 --cert "$OUT/cert.pem" --pkey "$OUT/key.pem" \
			--tls-listening-port $TLS_PORT --tcp-connections-per-ip 0 --log-level warning >"$log" 2>&1 &
		;;
	coturn)
		tmp=$(mktemp -d /tmp/bench-coturn.XXXXXX)
		taskset -c 1 turnserver -n --no-cli -L 127.0.0.1 -E 127.0.0.1 -p $PORT \
			--tls-listening-port $TLS_PORT --cert "$OUT/cert.pem" --pkey "$OUT/key.pem" \
			--min-port $MIN_PORT --max-port $MAX_PORT -r $REALM -u $USER_NAME:$PASSWORD --lt-cred-mech \
			--allow-loopback-peers --relay-threads 1 --no-rfc5780 --pidfile "$tmp/turnserver.pid" \
			--db "$tmp/turndb" --log-file stdout --simple-log >"$log" 2>&1 &
		;;
	*) echo "unknown relay $name" >&2; return 1 ;;
	esac
	relay_pid=$!
	pids+=("$relay_pid")
	local i
	for i in $(seq 100); do
		[[ -n $(ss -Htlnp "sport = :$TLS_PORT") ]] && return 0
		kill -0 "$relay_pid" 2>/dev/null || { echo "$name died at start:" >&2; cat "$log" >&2; return 1; }
		sleep 0.05
	done
	echo "$name not listening on TLS after 5 s" >&2
	return 1
}

stop_pid() {
	local pid=$1 i keep=() p
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in "${pids[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	pids=("${keep[@]}")
}

taskset -c 0 turnutils_peer -L 127.0.0.1 -p $PEER_PORT >"$OUT/peer.log" 2>&1 &
peer_pid=$!
pids+=("$peer_pid")
sleep 0.5

hz=$(getconf CLK_TCK)
results=$OUT/results.tsv
printf 'round\ttransport\trelay\tsent\treceived\tlost\tseconds\trt_per_s\trelay_cpu_s\trelay_cpu_us_per_rt\n' >"$results"
{
	echo "kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "ROUNDS=$ROUNDS CLIENTS=$CLIENTS MESSAGES=$MESSAGES PAYLOAD=$PAYLOAD TRANSPORTS=${TRANSPORTS[*]} RELAYS=${RELAYS[*]}"
	echo "load: taskset -c 0 turnutils_uclient [-t] [-S] -n $MESSAGES -m $CLIENTS -l $PAYLOAD -z 0 -c -e 127.0.0.1 -r $PEER_PORT -p PORT -u $USER_NAME -w $PASSWORD -X 127.0.0.1"
	echo "coturn: $(turnserver --version 2>/dev/null | head -1)"
	echo "uturnd: $(git log -1 --format='%h %s' | cut -c1-80) (+ working tree)"
} | tee "$OUT/env.txt"

for round in $(seq "$ROUNDS"); do
	order=("${RELAYS[@]}")
	if ((round % 2 == 0)); then
		order=()
		for ((i = ${#RELAYS[@]} - 1; i >= 0; i--)); do order+=("${RELAYS[$i]}"); done
	fi
	for relay in "${order[@]}"; do
		start_relay "$relay" "$OUT/$relay-$round.log"
		for transport in "${TRANSPORTS[@]}"; do
			flags=() port=$PORT
			case $transport in
			udp) ;;
			tcp) flags=(-t) ;;
			tls) flags=(-t -S) port=$TLS_PORT ;;
			dtls) flags=(-S) port=$TLS_PORT ;;
			*) echo "unknown transport $transport" >&2; exit 2 ;;
			esac
			before=$(cpu_ticks "$relay_pid")
			start=$(date +%s.%N)
			log=$OUT/uclient-$relay-$transport-$round.log
			taskset -c 0 timeout 300 turnutils_uclient "${flags[@]}" -n "$MESSAGES" -m "$CLIENTS" -l "$PAYLOAD" -z 0 -c \
				-e 127.0.0.1 -r $PEER_PORT -p $port -u $USER_NAME -w $PASSWORD -X 127.0.0.1 >"$log" 2>&1 || true
			end=$(date +%s.%N)
			after=$(cpu_ticks "$relay_pid")
			python3 - "$log" "$round" "$transport" "$relay" "$start" "$end" "$before" "$after" "$hz" >>"$results" <<-'EOF'
				import re, sys
				log, rnd, transport, relay, start, end, before, after, hz = sys.argv[1:]
				text = open(log, errors="replace").read()
				totals = re.findall(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
				lost = re.findall(r"Total lost packets (\d+)", text)
				sent, recv = map(int, totals[-1]) if totals else (0, 0)
				secs = float(end) - float(start)
				cpu = (int(after) - int(before)) / int(hz)
				per = cpu / recv * 1e6 if recv else float("nan")
				print(f"{rnd}\t{transport}\t{relay}\t{sent}\t{recv}\t{lost[-1] if lost else 'NA'}\t{secs:.2f}\t"
				      f"{recv / secs:.0f}\t{cpu:.2f}\t{per:.2f}")
			EOF
			tail -1 "$results"
		done
		stop_pid "$relay_pid"
	done
done

python3 - "$results" <<'EOF' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| transport | relay | relay CPU µs / round trip, median (range) | round trips/s, median | delivered / sent |")
print("|---|---|---:|---:|---:|")
for t in dict.fromkeys(r["transport"] for r in rows):
    for relay in dict.fromkeys(r["relay"] for r in rows):
        sel = [r for r in rows if r["transport"] == t and r["relay"] == relay]
        if not sel:
            continue
        per = [float(r["relay_cpu_us_per_rt"]) for r in sel]
        rate = [float(r["rt_per_s"]) for r in sel]
        recv = sum(int(r["received"]) for r in sel)
        sent = sum(int(r["sent"]) for r in sel)
        print(f"| {t} | {relay} | {statistics.median(per):.2f} ({min(per):.2f}–{max(per):.2f}) | "
              f"{statistics.median(rate):.0f} | {recv} / {sent} |")
EOF
echo "results: $results"
