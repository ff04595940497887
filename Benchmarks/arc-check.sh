#!/usr/bin/env bash
# Proves the benchmarked hot paths make no ARC traffic and no heap allocation.
#
# package-benchmark's ARC metrics (.retainCount, .releaseCount, + .arc) crash
# in _swift_retain_hook on Swift 6.3 Linux unless the optional
# swift-runtime-interposer package is present, which it is not here. So this
# runs the very same operations (BenchmarkFixtures' STUNOps, DataPathOps,
# ControlOps) in the ARCCheck tool under callgrind, one collection window per
# operation (N calls after a warm-up; callgrind client requests switch
# collection on and off around exactly the loop), and lists every Swift
# runtime reference-counting / object-allocation entry point and every
# malloc-family call that ran inside the window. Data-path operations must
# show none; control-path ones are reported. A positive control that does
# allocate and retain must show both, so an empty list cannot be vacuous.
#
# Part 2 does the same for the relay engine's per-packet path: a real Engine
# (RelayARCCheck serve, under callgrind) relays N ChannelData round trips
# between a client and a peer (RelayARCCheck drive, a native process), and
# callgrind collects only inside the worker's Worker.dispatch
# (--toggle-collect), in a window cut by the worker itself (dumps on entry to
# and exit from Worker.handleSTUN, around two Binding markers), so the
# control-path setup (Allocate, ChannelBind) is not in it. That window must
# show no ARC and no allocator call; the "after" dump of a control Allocate
# (same thread, same toggle) must show swift_allocObject, swift_retain and
# malloc. A second run collects everything the worker thread does inside
# Worker.run (ring waits, send flushes, once-a-second ticks) over the same
# window, reported with the caller of each call, not gated.
#
# Usage: Benchmarks/arc-check.sh [iterations]     (default 1000)
#        UTURN_ARC_BACKEND=epoll Benchmarks/arc-check.sh   (part 2 on the epoll backend)
#        UTURN_ARC_LIMITS=1 Benchmarks/arc-check.sh        (part 2 with every traffic limit on)
# Needs valgrind (callgrind_annotate comes with it). Exit 1 on any violation.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
SCRATCH="${SCRATCH:-.build-bench}"

UTURN_BENCHMARKS=1 swift build --scratch-path "$SCRATCH" -c release --product ARCCheck >/dev/null
BIN="$(UTURN_BENCHMARKS=1 swift build --scratch-path "$SCRATCH" -c release --show-bin-path 2>/dev/null)/ARCCheck"

OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
# valgrind 3.19 cannot read the DWARF 5 that Swift emits; callgrind needs only
# the symbol table, so profile a copy without debug info.
objcopy --strip-debug "$BIN" "$OUT/ARCCheck"
valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$OUT/cg.out" \
    "$OUT/ARCCheck" "$N" >"$OUT/stdout" 2>"$OUT/stderr" || { cat "$OUT/stderr"; exit 1; }

# Swift runtime ARC and heap-object entry points, and the C allocator.
# (swift_initStackObject is a stack-promoted object: no heap, no refcount atomics.)
PATTERN='(^|[^A-Za-z0-9_])(swift_(nonatomic_)?(retain|release|retain_n|release_n|tryRetain|bridgeObjectRetain|bridgeObjectRelease|bridgeObjectRetain_n|bridgeObjectRelease_n|unknownObjectRetain|unknownObjectRelease|allocObject|deallocObject|deallocClassInstance|slowAlloc|slowDealloc|allocBox|weak[A-Za-z]*|unownedRetain[A-Za-z]*|unownedRelease[A-Za-z]*)|malloc|calloc|realloc|free|cfree|posix_memalign|aligned_alloc|memalign|_Znwm|_Znam|_ZdlPv)( |$|@| \[)'

# "callee:count " for every ARC/allocator function called in dump $1 (summing
# the calls= lines per callee); with $2 = callers, "callee<-caller:count ".
arc_calls() {
    awk -v pat="$PATTERN" -v by="${2:-}" '
        /^cfn=/ { s = $0; sub(/^cfn=/, "", s)
                  if (match(s, /^\([0-9]+\)/)) { id = substr(s, RSTART, RLENGTH); rest = substr(s, RLENGTH + 2)
                      if (rest != "") names[id] = rest; cur = names[id] } else cur = s
                  next }
        /^fn=/  { s = $0; sub(/^fn=/, "", s)
                  if (match(s, /^\([0-9]+\)/)) { id = substr(s, RSTART, RLENGTH); rest = substr(s, RLENGTH + 2)
                      if (rest != "") names[id] = rest; caller = names[id] } else caller = s
                  next }
        /^calls=/ { n = $0; sub(/^calls=/, "", n); split(n, a, " ")
                    if (cur ~ pat) { k = by == "callers" ? cur "<-" caller : cur; gsub(/ /, "~", k); calls[k] += a[1] }
                    next }
        END { for (k in calls) printf "%s:%d ", k, calls[k] }' "$1"
}

# Operations that must be ARC-free and allocation-free.
MUST_BE_ZERO='^(STUN\.|TURN\.(routeChannelData|routePeerDataChannel|routePeerDataIndication|isPermitted|sendIndication|rateLimitedDrop|unansweredCharge)$)'

fail=0
printf '%-34s %12s  %s\n' "operation" "instr/op" "ARC / allocator calls in window (function: calls/op)"
for f in $(ls "$OUT"/cg.out.* | sort -V); do
    name="$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")"
    [ -n "$name" ] || continue
    total="$(sed -n 's/^summary: //p' "$f")"
    hits="$(arc_calls "$f")"
    perop="$(awk -v t="$total" -v n="$N" 'BEGIN { printf "%.0f", t / n }')"
    summary=""
    for h in $hits; do
        fn="${h%:*}"; c="${h##*:}"
        summary+="$fn: $(awk -v c="$c" -v n="$N" 'BEGIN { printf "%.2f", c / n }')  "
    done
    printf '%-34s %12s  %s\n' "$name" "$perop" "${summary:-none}"
    if [ "$perop" -le 0 ]; then
        echo "  FAIL: $name: empty collection window"
        fail=1
    fi
    if [[ "$name" =~ $MUST_BE_ZERO ]] && [ -n "$hits" ]; then
        echo "  FAIL: $name must make no ARC or allocator calls"
        fail=1
    fi
    if [ "$name" = "Control.allocateAndRetain" ] && { [[ "$hits" != *swift_allocObject* ]] || [[ "$hits" != *swift_retain* ]]; }; then
        echo "  FAIL: positive control saw no allocation/retain: the check is blind"
        fail=1
    fi
done
[ "$fail" -eq 0 ] && echo "arc-check: part 1 OK (data-path operations: 0 retains, 0 releases, 0 allocations over $N calls each)"

# ---- Part 2: the relay engine's worker, end to end on 127.0.0.1 ----
UTURN_BENCHMARKS=1 swift build --scratch-path "$SCRATCH" -c release --product RelayARCCheck >/dev/null
objcopy --strip-debug "$(dirname "$BIN")/RelayARCCheck" "$OUT/RelayARCCheck"
DISPATCH='$s5Relay6WorkerV8dispatch_*'
RUN='$s5Relay6WorkerV3runyyF'
# Two patterns for the same function: callgrind keeps one trigger per pattern.
STUN_BEFORE='$s5Relay6WorkerV10handleSTUN_*'
STUN_AFTER='*Relay6WorkerV10handleSTUN_*'
nm "$OUT/RelayARCCheck" >"$OUT/symbols"
grep -q '6WorkerV8dispatch_' "$OUT/symbols" || { echo "FAIL: no Worker.dispatch symbol (inlined?)"; exit 1; }

# relay_run TAG TOGGLE: serve under callgrind, drive natively; leaves $OUT/TAG.cg.out.* and $OUT/TAG.drive.
relay_run() {
    local tag="$1" toggle="$2" port vpid rc=0
    port="$("$OUT/RelayARCCheck" free-port)"
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect="$toggle" \
        --dump-before="$STUN_BEFORE" --dump-after="$STUN_AFTER" --callgrind-out-file="$OUT/$tag.cg.out" \
        "$OUT/RelayARCCheck" serve "$port" >"$OUT/$tag.serve.out" 2>"$OUT/$tag.serve.err" &
    vpid=$!
    timeout 600 "$OUT/RelayARCCheck" drive "$port" "$N" 2 >"$OUT/$tag.drive" 2>&1 || rc=$?
    # The engine never exits by itself; its dumps are on disk once drive has its replies.
    kill -9 "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        echo "relay $tag run failed (drive exit $rc):"; tail -5 "$OUT/$tag.drive"; tail -5 "$OUT/$tag.serve.err"
        rm -f "$OUT/$tag".cg.out*
        return 1
    fi
}
# One retry: a loopback run under valgrind has, rarely, stalled in setup here.
relay_run dispatch "$DISPATCH" || relay_run dispatch "$DISPATCH" || exit 1
relay_run worker "$RUN" || relay_run worker "$RUN" || exit 1

field() { sed -n "s/.*$1=\([0-9,]*\).*/\1/p" "$2"; }
show() {  # show LABEL FILE PER [callers]
    local label="$1" f="$2" per="$3" total hits summary=""
    total="$(sed -n 's/^summary: //p' "$f")"
    hits="$(arc_calls "$f" "${4:-}")"
    for h in $hits; do
        fn="${h%:*}"; c="${h##*:}"
        [ "${4:-}" = callers ] && fn="$(echo "$fn" | swift demangle --simplified --compact)"
        summary+="$fn: $(awk -v c="$c" -v n="$per" 'BEGIN { printf "%.2f", c / n }')  "
    done
    printf '%-34s %12s  %s\n' "$label" "$(awk -v t="${total:-0}" -v n="$per" 'BEGIN { printf "%.0f", t / n }')" "${summary:-none}"
    LAST_TOTAL="${total:-0}"; LAST_HITS="$hits"
}
window="$(field window "$OUT/dispatch.drive")"; controls="$(field control "$OUT/dispatch.drive")"
dumps="$(field dumps "$OUT/dispatch.drive")"
got="$(ls "$OUT"/dispatch.cg.out.* | wc -l)"
if [ "$got" -ne "$dumps" ]; then echo "FAIL: expected $dumps dumps from the worker, got $got"; exit 1; fi
echo
echo "relay engine, per ChannelData round trip (4 completions: 2 receives, 2 sends), N=$N; instructions and calls per round trip"
show "Relay.dispatch_roundTrip" "$OUT/dispatch.cg.out.$window" "$N"
if [ "$LAST_TOTAL" -le 0 ]; then echo "  FAIL: empty collection window (toggle on Worker.dispatch matched nothing?)"; fail=1; fi
if [ -n "$LAST_HITS" ]; then
    echo "  FAIL: Worker.dispatch made ARC or allocator calls on the ChannelData path; callers:"
    show "  (callers)" "$OUT/dispatch.cg.out.$window" "$N" callers
    fail=1
fi
c="${controls%%,*}"
show "Relay.control_Allocate (per call)" "$OUT/dispatch.cg.out.$c" 1
if [[ "$LAST_HITS" != *swift_allocObject* ]] || [[ "$LAST_HITS" != *swift_retain* ]] || [[ "$LAST_HITS" != *malloc* ]]; then
    echo "  FAIL: positive control (Allocate through the worker) saw no allocation/retain: the check is blind"
    fail=1
fi
# The whole worker thread over the same window (reported, not gated).
wwindow="$(field window "$OUT/worker.drive")"
show "Relay.workerThread_roundTrip" "$OUT/worker.cg.out.$wwindow" "$N" callers

if [ "$fail" -ne 0 ]; then exit 1; fi
echo "arc-check: OK (data-path operations: 0 retains, 0 releases, 0 allocations over $N calls each;"
echo "           relay worker dispatch: 0 over $N ChannelData round trips, positive control non-zero)"
