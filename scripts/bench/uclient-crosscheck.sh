#!/usr/bin/env bash
# Cross-check uturn-bench against an independent client: the same server and the
# same echo peer (turnutils_peer) get M clients x N ChannelData messages of LEN
# bytes, first from coturn's turnutils_uclient (-c -n N -m M -l LEN -z 0),
# then from uturn-bench (flood --sessions M --count N --payload LEN); both
# delivered counts are printed next to what each client says it sent.
#
# Debian's uclient 4.6.1 has no flood mode: -z 0 sends as fast as its event
# loop goes, and counts what comes back. uturn-bench keeps WINDOW (default 8)
# messages in flight per session: turnutils_peer reads one datagram per
# syscall from a default-sized socket buffer, and a deeper flood overflows it
# (that loss would be the peer's, not the relay's).
#
# Usage: scripts/bench/uclient-crosscheck.sh
#   env: N=1000 M=10 LEN=120 WINDOW=8 SERVER=uturnd|coturn
#        UTURND=... UTURN_BENCH=... (default: release builds in SCRATCH=.build-bench6)
#        TURNSERVER=turnserver PORT=40578 PEER_PORT=40800 MIN_PORT=36000 MAX_PORT=36999
# Exit status 0 when each client's delivered count equals what it sent and
# the two agree; 1 otherwise. Loopback only; every process started here is
# stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
N=${N:-1000}
M=${M:-10}
LEN=${LEN:-120}
WINDOW=${WINDOW:-8}
SERVER=${SERVER:-uturnd}
SCRATCH=${SCRATCH:-$root/.build-bench6}
TURNSERVER=${TURNSERVER:-turnserver}
PORT=${PORT:-40578} PEER_PORT=${PEER_PORT:-40800} MIN_PORT=${MIN_PORT:-36000} MAX_PORT=${MAX_PORT:-36999}
REALM=bench.local USER_NAME=bench PASSWORD=bench

for tool in turnutils_uclient turnutils_peer; do
	command -v $tool >/dev/null || { echo "$tool not installed (Debian package coturn)" >&2; exit 2; }
done
ub=${UTURN_BENCH:-}
if [[ -z $ub ]]; then
	swift build -c release --scratch-path "$SCRATCH" --product uturn-bench >/dev/null
	ub=$SCRATCH/release/uturn-bench
fi
if [[ $SERVER == uturnd && -z ${UTURND:-} ]]; then
	swift build -c release --scratch-path "$SCRATCH" --product uturnd >/dev/null
	UTURND=$SCRATCH/release/uturnd
fi

work=$(mktemp -d /tmp/uclient-crosscheck.XXXXXX)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

for p in $PORT $PEER_PORT $((PEER_PORT + 1)); do
	[[ -z $(ss -Hulnp "sport = :$p") ]] || { echo "port $p is in use" >&2; exit 2; }
done
case $SERVER in
uturnd)
	extra=()
	help=$("$UTURND" --help 2>&1 || true) # not `| grep -q`: SIGPIPE under pipefail
	[[ $help == *--no-tcp* ]] && extra=(--no-tcp)
	"$UTURND" "${extra[@]}" --listening-ip 127.0.0.1 --listening-port "$PORT" --relay-ip 127.0.0.1 \
		--min-port "$MIN_PORT" --max-port "$MAX_PORT" --realm $REALM --user $USER_NAME:$PASSWORD \
		--lt-cred-mech --allow-loopback-peers --workers 1 >"$work/server.log" 2>&1 &
	;;
coturn)
	"$TURNSERVER" -n --no-cli --no-tls --no-dtls --no-tcp -L 127.0.0.1 -E 127.0.0.1 -p "$PORT" \
		--min-port "$MIN_PORT" --max-port "$MAX_PORT" -r $REALM -u $USER_NAME:$PASSWORD --lt-cred-mech \
		--allow-loopback-peers --relay-threads 1 --no-rfc5780 --pidfile "$work/turnserver.pid" \
		--db "$work/turndb" --log-file stdout --simple-log >"$work/server.log" 2>&1 &
	;;
*) echo "SERVER must be uturnd or coturn" >&2; exit 2 ;;
esac
pids+=($!)
# turnutils_peer binds PEER_PORT and PEER_PORT+1 (uclient's "RTCP" peer).
turnutils_peer -p "$PEER_PORT" -L 127.0.0.1 >"$work/peer.log" 2>&1 &
pids+=($!)
for i in $(seq 100); do
	[[ -n $(ss -Hulnp "sport = :$PORT") && -n $(ss -Hulnp "sport = :$PEER_PORT") ]] && break
	((i < 100)) || { echo "server or peer not listening:" >&2; cat "$work/server.log" "$work/peer.log" >&2; exit 1; }
	sleep 0.05
done

timeout 120 turnutils_uclient -c -n "$N" -m "$M" -l "$LEN" -z 0 -e 127.0.0.1 -r "$PEER_PORT" -p "$PORT" \
	-u $USER_NAME -w $PASSWORD -X 127.0.0.1 >"$work/uclient.log" 2>&1 || true
timeout 120 "$ub" flood --server 127.0.0.1:"$PORT" --user $USER_NAME --password $PASSWORD --sessions "$M" \
	--count "$N" --window "$WINDOW" --payload "$LEN" --peer 127.0.0.1:"$PEER_PORT" --duration 100 \
	--json "$work/bench.json" >"$work/bench.log" 2>&1 || { cat "$work/bench.log" >&2; exit 1; }

python3 - "$work/uclient.log" "$work/bench.json" "$N" "$M" "$SERVER" <<'EOF'
import json, re, sys
log, path, n, m, server = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
text = open(log, errors="replace").read()
totals = re.findall(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text)
if not totals:
    print("turnutils_uclient printed no totals:\n" + "\n".join(text.splitlines()[-20:]), file=sys.stderr)
    sys.exit(1)
u_sent, u_recv = map(int, totals[-1])
b = json.load(open(path))
rows = [("turnutils_uclient", u_sent, u_recv), ("uturn-bench", b["sent"], b["received"])]
print(f"server {server}, {m} clients x {n} messages = {n * m}")
print(f"{'client':<20}{'sent':>10}{'delivered':>12}{'lost':>8}")
for name, sent, recv in rows:
    print(f"{name:<20}{sent:>10}{recv:>12}{sent - recv:>8}")
ok = all(sent == n * m and recv == sent for _, sent, recv in rows)
print("delivered counts agree with what each sent" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
EOF
