#!/usr/bin/env bash
# Live relaying with the kernel source filter attached (--kernel-source-filter on,
# default limits) or not (off), no junk: uturn-bench flood, 4 sessions, one
# worker on 127.0.0.1, 3 rounds alternating. Release builds in .build/release.
# Usage: scripts/bench/source-filter-live-ab.sh   (writes /tmp/kdrop-live-ab)
set -euo pipefail
out=/tmp/kdrop-live-ab; mkdir -p $out
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for r in 1 2 3; do for mode in off on; do
  port=$(free_port)
  .build/release/uturnd --listening-ip 127.0.0.1 --listening-port $port --relay-ip 127.0.0.1 --min-port 41000 --max-port 41999 \
    --realm bench --user bench:bench --allow-loopback-peers --workers 1 --no-tcp --log-level warning --kernel-source-filter $mode >$out/$mode-$r.log 2>&1 &
  pid=$!; sleep 1
  .build/release/uturn-bench flood --server 127.0.0.1:$port --user bench --password bench --realm bench --sessions 4 --window 8 \
     --duration 5 --warmup 1 --relay-pid $pid --json $out/$mode-$r.json --quiet >$out/$mode-$r.txt 2>&1 || true
  kill $pid; wait $pid 2>/dev/null || true
  python3 -c "
import json; j=json.load(open('$out/$mode-$r.json'))
print('$mode-$r', round(j['received']/j['durationSeconds']), 'rt/s', round(j['relayCPUMicrosPerRoundTrip'],2), 'us/rt', j['latencyP50Micros'], j['latencyP99Micros'])"
done; done
