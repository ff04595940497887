#!/usr/bin/env bash
# Side-by-side relay benchmark: uturnd vs coturn vs the harness ceiling and
# the floor, same load, same run, per scenario.
#
# Each relay runs pinned to CPU 1 with one relay thread; the load generator
# (TURN client + echo peer, one process) runs pinned to CPU 0. Within a
# scenario the relays alternate in every round and the order reverses every
# other round (ABC, CBA, ...), as ../shared/BENCHMARKING.md asks. Every relay
# start gets WARMUP seconds of load that is not measured, then SECS measured
# seconds. Relay CPU per round trip = (utime+stime delta of the relay PID from
# /proc/PID/stat over the measured window) / round trips delivered in it.
#
# Scenarios (SCENARIOS, run in the order given):
#   flood1      one flow, 120-byte ChannelData flood: uturn-bench flood, 1
#               session, WINDOW in flight. Harness single. Floor: yes.
#   flood1-gso  the same flow with GSO trains and UDP_GRO receivers:
#               uturn-bench flood --gso TRAIN --gro (its peer receives with
#               UDP_GRO and echoes trains whole), or with GSO_LOAD=turnflood
#               the C generator's turnflood --gso --gro --train TRAIN (the
#               load of the earlier runs). Harness gso+gro. Floor: yes,
#               fwd-uring with and without --gro.
#   flood64     64 flows (64 sessions, distinct source ports, each its own
#               allocation), WINDOW/64 in flight each: uturn-bench flood.
#               Harness single. No floor (its client is one flow).
#   voip        1,000 sessions x 50 packets/s (VOIP_SESSIONS, VOIP_RATE),
#               evenly phased: uturn-bench rate. Loss and latency at a fixed
#               offered rate. Harness single. No floor.
#   alloc       allocation churn: uturn-bench alloc, one new client 5-tuple
#               per cycle (Allocate 401, Allocate, Refresh, Refresh 0, one at
#               a time): allocations/s and relay CPU per allocation. No
#               ceiling/floor.
#   invalid     junk at INVALID_RATE packets/s (every uturn-bench invalid
#               kind) beside one legitimate session: relay CPU per junk
#               packet and the session's loss. Not in the default list.
# Relays (RELAYS; each scenario runs those of them it can):
#   uturnd        uturnd, one worker
#   uturnd-nogso  the same with --no-gso                        (flood1)
#   uturnd-gro    the same with --gro-client --gro-peer         (flood1-gso)
#   uturnd-batch  the same with --batch-wait-us $BATCH_WAIT_US (default 200;
#                 opt-in: not in the default RELAYS)            (flood64, voip)
#   uturnd-b      another build of uturnd, $UTURND_B (A/B of two commits, opt-in)
#   uturnd-epoll  uturnd with --backend epoll (where containers refuse io_uring;
#                 opt-in)                                       (every scenario)
#   uturnd-offload  the same with --offload tc on lo (the kernel fast path;
#                 opt-in, needs root)                           (flood1, flood64, voip)
#   uturnd-xdp    the same with --offload xdp on lo (generic XDP: lo has no
#                 native XDP; opt-in, needs root)               (flood1, flood64, voip)
#   coturn        $TURNSERVER (Debian's turnserver 4.6.1 by default), one relay thread
#   ceiling       scripts/bench/cdreflect.c: bare ChannelData forwarder, no
#                 TURN, GRO receives and GSO sends; the load sends with
#                 --no-turn and the same shape. The most the harness can show.
#                 (flood1, flood1-gso, flood64, voip)
# Every row of results.tsv names its scenario, load generator and harness.
# With PERF=1 (the default as root with perf installed) each row also has
# total_cpu_us_per_rt: every CPU's busy time (softirq included), sampled with
# perf record -a -e cpu-clock -F 2000 over the measured window, per round
# trip: the figure that counts the kernel's work for every relay alike.
#
# Usage: scripts/bench/compare.sh
#   env: SCENARIOS="flood1 flood1-gso flood64 voip alloc"  ROUNDS=6 SECS=10 WARMUP=2
#        RELAYS="uturnd uturnd-nogso uturnd-gro coturn ceiling"
#        WINDOW=256 PAYLOAD=120 TRAIN=32 FLOWS64=64 VOIP_SESSIONS=1000 VOIP_RATE=50
#        INVALID_RATE=20000 GSO_LOAD=uturn-bench|turnflood
#        FLOOR=1 FLOOR_ROUNDS=2 FLOOR_SECS=10 (FLOOR_SECS >= 3)
#        SCRATCH=.build-bench6 (swift build -c release --scratch-path)
#        UTURND=/path/uturnd UTURN_BENCH=/path/uturn-bench (skip those builds)
#        TURNSERVER=turnserver  OUT=.build-bench-c/results-<timestamp>
#   Smoke run: SCENARIOS=voip ROUNDS=1 SECS=3 WARMUP=1 FLOOR=0 scripts/bench/compare.sh
# Ports (127.0.0.1 only): relay 40478, echo peer 40700, relay range
# 20000-31999 (MIN_PORT, MAX_PORT): below the kernel's ephemeral range, so no
# load-generator socket takes one, and wide because coturn 4.6.1 keeps a
# deleted allocation's relay port for about a second (with R ports it cannot
# churn more than R allocations/s; it answers 508). The floor uses
# 39100-39301. alloc's clients come from 127.1.x.y (uturn-bench alloc). Every
# process started here is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
read -r -a SCENARIOS <<<"${SCENARIOS:-flood1 flood1-gso flood64 voip alloc}"
ROUNDS=${ROUNDS:-6}
SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
WINDOW=${WINDOW:-256}
PAYLOAD=${PAYLOAD:-120}
TRAIN=${TRAIN:-32}
FLOWS64=${FLOWS64:-64}
VOIP_SESSIONS=${VOIP_SESSIONS:-1000}
VOIP_RATE=${VOIP_RATE:-50}
GSO_LOAD=${GSO_LOAD:-uturn-bench}
INVALID_RATE=${INVALID_RATE:-20000}
read -r -a RELAYS <<<"${RELAYS:-uturnd uturnd-nogso uturnd-gro coturn ceiling}"
FLOOR=${FLOOR:-1}
FLOOR_ROUNDS=${FLOOR_ROUNDS:-2}
FLOOR_SECS=${FLOOR_SECS:-10}
FLOOR_SH=${FLOOR_SH:-$root/../shared/tools/floor/run.sh}
[[ -f $FLOOR_SH ]] || FLOOR_SH=/work/shared/tools/floor/run.sh
SCRATCH=${SCRATCH:-$root/.build-bench6}
# PERF=1: whole-machine busy CPU per round trip (perf record -a), needs perf and root.
PERF=${PERF:-$([[ $(id -u) == 0 ]] && command -v perf >/dev/null && echo 1 || echo 0)}
TURNSERVER=${TURNSERVER:-turnserver}
OUT=${OUT:-$root/.build-bench-c/results-$(date +%Y%m%d-%H%M%S)}
LISTEN_PORT=40478 MIN_PORT=${MIN_PORT:-20000} MAX_PORT=${MAX_PORT:-31999} PEER_PORT=40700
REALM=bench.local USER_NAME=bench PASSWORD=bench

for s in "${SCENARIOS[@]}"; do
	case $s in flood1 | flood1-gso | flood64 | voip | alloc | invalid) ;;
	*) echo "unknown scenario $s (flood1 flood1-gso flood64 voip alloc invalid)" >&2; exit 2 ;;
	esac
done
((VOIP_SESSIONS <= MAX_PORT - MIN_PORT + 1)) || { echo "VOIP_SESSIONS > relay port range" >&2; exit 2; }
for r in "${RELAYS[@]}"; do
	case $r in uturnd | uturnd-nogso | uturnd-gro | uturnd-batch | uturnd-offload | uturnd-xdp | uturnd-b | uturnd-epoll | coturn | ceiling) ;;
	*) echo "unknown relay $r (uturnd uturnd-nogso uturnd-gro uturnd-batch uturnd-offload uturnd-xdp uturnd-b uturnd-epoll coturn ceiling)" >&2; exit 2 ;;
	esac
done

mkdir -p "$OUT" .build-bench-c
needs() { # needs SCENARIO...: true when one of them is selected
	local s t
	for s in "${SCENARIOS[@]}"; do for t in "$@"; do [[ $s == "$t" ]] && return 0; done; done
	return 1
}
has_relay() { [[ " ${RELAYS[*]} " == *" $1 "* ]]; }

refl=.build-bench-c/cdreflect
cc -O2 -Wall -Wextra -o "$refl" scripts/bench/cdreflect.c
tf=.build-bench-c/turnflood
[[ $GSO_LOAD == uturn-bench || $GSO_LOAD == turnflood ]] || { echo "GSO_LOAD: uturn-bench or turnflood" >&2; exit 2; }
if needs flood1-gso && [[ $GSO_LOAD == turnflood ]]; then
	cc -O2 -Wall -Wextra -o "$tf" scripts/bench/turnflood.c -lcrypto -lpthread
fi

# Release builds of uturnd and uturn-bench; retry a few times while the tree is in flux.
build_product() { # build_product NAME -> path on stdout
	local name=$1 try
	for try in 1 2 3; do
		if swift build -c release --scratch-path "$SCRATCH" --product "$name" >>"$OUT/swift-build.log" 2>&1; then
			echo "$SCRATCH/release/$name"
			return 0
		fi
		((try < 3)) || break
		echo "$name does not build (try $try), retrying in 60 s" >&2
		sleep 60
	done
	echo "$name does not build; see $OUT/swift-build.log" >&2
	return 1
}
ub=${UTURN_BENCH:-}
if needs flood1 flood64 voip alloc invalid || { needs flood1-gso && [[ $GSO_LOAD == uturn-bench ]]; }; then
	[[ -n $ub ]] || ub=$(build_product uturn-bench)
fi
uturnd=${UTURND:-}
if [[ " ${RELAYS[*]} " == *" uturnd"* && -z $uturnd ]]; then
	uturnd=$(build_product uturnd)
fi

notes=()
# uturnd's flags, read once (not `uturnd --help | grep -q`: grep exits at the first match, uturnd
# gets SIGPIPE, and under pipefail the test reads as "not found").
uturnd_help=
[[ -n $uturnd ]] && uturnd_help=$("$uturnd" --help 2>&1 || true)
# uturnd-gro needs uturnd's receive-side GRO flags; skip it (with a note) when they are missing.
if has_relay uturnd-gro && needs flood1-gso && [[ $uturnd_help != *--gro-client* ]]; then
	notes+=("uturnd-gro skipped: this uturnd build has no --gro-client (uturnd --help)")
	echo "note: ${notes[-1]}" >&2
	keep=()
	for r in "${RELAYS[@]}"; do [[ $r == uturnd-gro ]] || keep+=("$r"); done
	RELAYS=("${keep[@]}")
fi

# The relays a scenario runs, in RELAYS order.
scenario_relays() {
	local s=$1 r ok
	for r in "${RELAYS[@]}"; do
		case $r in
		uturnd | uturnd-b | uturnd-epoll | coturn) ok=1 ;;
		uturnd-nogso) [[ $s == flood1 ]] && ok=1 || ok=0 ;;
		uturnd-gro) [[ $s == flood1-gso ]] && ok=1 || ok=0 ;;
		uturnd-batch) [[ $s == voip || $s == flood64 ]] && ok=1 || ok=0 ;;
		uturnd-offload | uturnd-xdp) [[ $s == flood1 || $s == flood64 || $s == voip ]] && ok=1 || ok=0 ;;
		ceiling) [[ $s == flood* || $s == voip ]] && ok=1 || ok=0 ;;
		esac
		if ((ok)); then echo "$r"; fi
	done
}

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

start_relay() { # start_relay NAME SCENARIO LOG -> sets relay_pid
	local name=$1 scenario=$2 log=$3 tmp
	case $name in
	uturnd | uturnd-nogso | uturnd-gro | uturnd-batch | uturnd-offload | uturnd-xdp | uturnd-b | uturnd-epoll)
		local extra=() binary=$uturnd
		[[ $name == uturnd-epoll ]] && extra=(--backend epoll)
		[[ $name == uturnd-b ]] && binary=$UTURND_B
		[[ $name == uturnd-offload ]] && extra=(--offload tc --offload-interface lo)
		[[ $name == uturnd-xdp ]] && extra=(--offload xdp --offload-interface lo)
		[[ $name == uturnd-nogso ]] && extra=(--no-gso)
		[[ $name == uturnd-gro ]] && extra=(--gro-client --gro-peer)
		[[ $name == uturnd-batch ]] && extra=(--batch-wait-us "${BATCH_WAIT_US:-200}")
		[[ $uturnd_help == *--no-tcp* ]] && extra+=(--no-tcp)
		taskset -c 1 "$binary" --listening-ip 127.0.0.1 --listening-port $LISTEN_PORT \
			--relay-ip 127.0.0.1 --min-port $MIN_PORT --max-port $MAX_PORT --realm $REALM \
			--user $USER_NAME:$PASSWORD --lt-cred-mech --allow-loopback-peers --workers 1 \
			"${extra[@]}" >"$log" 2>&1 &
		;;
	coturn)
		tmp=$(mktemp -d /tmp/bench-coturn.XXXXXX)
		taskset -c 1 "$TURNSERVER" -n --no-cli --no-tls --no-dtls --no-tcp -L 127.0.0.1 -E 127.0.0.1 \
			-p $LISTEN_PORT --min-port $MIN_PORT --max-port $MAX_PORT -r $REALM \
			-u $USER_NAME:$PASSWORD --lt-cred-mech --allow-loopback-peers --relay-threads 1 \
			--no-rfc5780 --pidfile "$tmp/turnserver.pid" --db "$tmp/turndb" \
			--log-file stdout --simple-log >"$log" 2>&1 &
		;;
	ceiling)
		local tag=()
		[[ $scenario == flood64 || $scenario == voip ]] && tag=(--tag-offset 16)
		taskset -c 1 "$refl" --port $LISTEN_PORT --peer-port $PEER_PORT --relay-port $MIN_PORT "${tag[@]}" \
			>"$log" 2>&1 &
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

stop_relay() { # stop_relay PID -> 0 if it was still alive
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

# The load of SCENARIO against RELAY (argv on stdout, one word per line), and its harness.
harness_of() { [[ $1 == flood1-gso ]] && echo gso+gro || echo single; }
load_of() { [[ $1 == flood1-gso ]] && echo "$GSO_LOAD" || echo uturn-bench; }
load_argv() { # load_argv SCENARIO RELAY JSON
	local s=$1 relay=$2 json=$3 a=()
	if [[ $s == flood1-gso && $GSO_LOAD == turnflood ]]; then
		a=("$tf" --port $LISTEN_PORT --peer-port $PEER_PORT --user $USER_NAME --password $PASSWORD
			--realm $REALM --seconds "$SECS" --warmup "$WARMUP" --window "$WINDOW" --flows 1
			--payload "$PAYLOAD" --relay-pid "$relay_pid" --gso --gro --train "$TRAIN")
		[[ $relay == ceiling ]] && a+=(--no-turn)
		printf '%s\n' "${a[@]}"
		return
	fi
	a=("$ub")
	case $s in
	flood1) a+=(flood --sessions 1 --window "$WINDOW") ;;
	flood1-gso) a+=(flood --sessions 1 --window "$WINDOW" --gso "$TRAIN" --gro) ;;
	flood64) a+=(flood --sessions "$FLOWS64" --window $(((WINDOW + FLOWS64 - 1) / FLOWS64))) ;;
	voip) a+=(rate --sessions "$VOIP_SESSIONS" --rate "$VOIP_RATE") ;;
	alloc) a+=(alloc) ;;
	invalid) a+=(invalid --rate "$INVALID_RATE" --legit-rate 50) ;;
	esac
	a+=(--server 127.0.0.1:$LISTEN_PORT --user $USER_NAME --password $PASSWORD --realm $REALM
		--peer-port $PEER_PORT --payload "$PAYLOAD" --duration "$SECS" --warmup "$WARMUP"
		--relay-pid "$relay_pid" --json "$json")
	[[ $relay == ceiling ]] && a+=(--no-turn)
	printf '%s\n' "${a[@]}"
}

results=$OUT/results.tsv
printf 'scenario\tround\tharness\tload\trelay\trt_per_s_median\trt_per_s_min_sample\trt_per_s_max_sample\trelay_cpu_pct\trelay_cpu_us_per_rt\tcpu1_us_per_rt\tcpu0_busy_pct\tcpu1_busy_pct\tsent\treceived\twritten_off\tloss_pct\tp50_us\tp99_us\tp999_us\talloc_per_s\tother_cpu_pct\ttotal_cpu_us_per_rt\n' >"$results"
{
	echo "kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
	echo "SCENARIOS=${SCENARIOS[*]} ROUNDS=$ROUNDS SECS=$SECS WARMUP=$WARMUP WINDOW=$WINDOW PAYLOAD=$PAYLOAD TRAIN=$TRAIN"
	echo "FLOWS64=$FLOWS64 VOIP_SESSIONS=$VOIP_SESSIONS VOIP_RATE=$VOIP_RATE INVALID_RATE=$INVALID_RATE GSO_LOAD=$GSO_LOAD"
	echo "RELAYS=${RELAYS[*]} FLOOR=$FLOOR FLOOR_ROUNDS=$FLOOR_ROUNDS FLOOR_SECS=$FLOOR_SECS"
	for n in "${notes[@]}"; do echo "note: $n"; done
	echo "coturn: $("$TURNSERVER" --version 2>/dev/null | head -1) ($TURNSERVER)"
	echo "uturnd: ${uturnd:-none} at $(git log -1 --format='%h %s' | cut -c1-80) (+ working tree)"
	echo "uturn-bench: ${ub:-none}"
	if [[ " ${RELAYS[*]} " == *" uturnd-b "* ]]; then echo "uturnd-b: $UTURND_B"; fi
} | tee "$OUT/env.txt"

for scenario in "${SCENARIOS[@]}"; do
	mapfile -t srelays < <(scenario_relays "$scenario")
	harness=$(harness_of "$scenario")
	load=$(load_of "$scenario")
	echo "# scenario $scenario: harness $harness, load $load, relays ${srelays[*]}"
	for round in $(seq "$ROUNDS"); do
		if ((round % 2)); then
			order=("${srelays[@]}")
		else
			order=()
			for ((i = ${#srelays[@]} - 1; i >= 0; i--)); do order+=("${srelays[$i]}"); done
		fi
		for relay in "${order[@]}"; do
			check_ports_free
			tag=$scenario.$round.$relay
			rlog=$OUT/$tag.relay.log
			llog=$OUT/$tag.load.log
			json=$OUT/$tag.json
			start_relay "$relay" "$scenario" "$rlog"
			status=0
			# what else ran on the machine mid-window (other sessions' builds skew results)
			(sleep $((WARMUP + SECS / 2)); top -b -n 2 -d 1 -w 200 | awk '/^top -/ { n++ } n == 2' |
				head -16 >"$OUT/$tag.top.txt") &
			top_pid=$!
			# Whole-machine busy CPU (every CPU, softirq included) sampled by
			# perf over the middle of the measured window: a relay whose work
			# runs in the kernel (--offload) is not seen by its process CPU.
			pdata=$OUT/$tag.perf.data
			perf_pid=
			if ((PERF)); then
				(sleep $((WARMUP + 1)); perf record -a -e cpu-clock -F 2000 -o "$pdata" -- sleep $((SECS - 2)) \
					>/dev/null 2>&1) &
				perf_pid=$!
			fi
			mapfile -t argv < <(load_argv "$scenario" "$relay" "$json")
			taskset -c 0 "${argv[@]}" >"$llog" 2>&1 || status=$?
			[[ -n $perf_pid ]] && wait "$perf_pid" 2>/dev/null
			wait "$top_pid" 2>/dev/null || true # the top snapshot
			if ! stop_relay "$relay_pid"; then
				echo "$tag: $relay exited before the end of its run; its log:" >&2
				tail -30 "$rlog" >&2
			fi
			if ((status != 0)) || { [[ $load == turnflood ]] && ! grep -q '^summary ' "$llog"; } ||
				{ [[ $load == uturn-bench ]] && [[ ! -s $json ]]; }; then
				echo "$tag: $load failed (exit $status): ${argv[*]}" >&2
				cat "$llog" >&2
				echo "$relay log:" >&2
				tail -30 "$rlog" >&2
				exit 1
			fi
			# %CPU of everything but the relay, the load and top in the mid-run snapshot
			other=$(awk 'f && $12 !~ /^(turnflood|uturn-bench|uturnd|turnserver|cdreflect|top)$/ { s += $9 }
				/^ *PID/ { f = 1 } END { printf "%.0f", s }' "$OUT/$tag.top.txt")
			busy=
			if ((PERF)) && [[ -s $pdata ]]; then
				busy=$(perf report -i "$pdata" --sort sym --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ { p = $1; sub("%", "", p)
					if ($0 !~ /(safe_halt|default_idle|cpu_idle_poll|intel_idle|acpi_idle|mwait|poll_idle)/) b += p }
					END { printf "%.4f", b / 100 }')
				rm -f "$pdata"
			fi
			row=$(python3 "$root/scripts/bench/row.py" "$scenario" "$round" "$harness" "$load" "$relay" \
				"$([[ $load == turnflood ]] && echo "$llog" || echo "$json")" "$other")
			total=$(awk -v b="$busy" -v rt="$(cut -f6 <<<"$row")" -v n="$(nproc)" \
				'BEGIN { if (b != "" && rt > 0) printf "%.3f", b * n * 1e6 / rt }')
			printf '%s\t%s\n' "$row" "$total" >>"$results"
			tail -1 "$results"
		done
	done
	if [[ $FLOOR == 1 && ($scenario == flood1 || $scenario == flood1-gso) ]]; then
		if [[ $scenario == flood1 ]]; then
			fg=0 fr=0 modes="fwd-uring"
		else
			fg=1 fr=1 modes="fwd-uring,fwd-uring --gro"
		fi
		echo "# floor ($scenario): ROUNDS=$FLOOR_ROUNDS SECS=$FLOOR_SECS MODES=\"$modes\" HARNESS_GSO=$fg HARNESS_GRO=$fr bash $FLOOR_SH"
		ROUNDS=$FLOOR_ROUNDS SECS=$FLOOR_SECS MODES="$modes" HARNESS_GSO=$fg HARNESS_GRO=$fr \
			FLOOR_BIN="$root/.build-bench-c/floor-bench" \
			bash "$FLOOR_SH" | tee "$OUT/floor-$(harness_of "$scenario").txt"
	fi
done

python3 "$root/scripts/bench/summarize.py" "$OUT"
echo "results in $OUT"
