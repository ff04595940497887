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
# Usage: Benchmarks/arc-check.sh [iterations]     (default 1000)
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

# Operations that must be ARC-free and allocation-free.
MUST_BE_ZERO='^(STUN\.|TURN\.(routeChannelData|routePeerDataChannel|routePeerDataIndication|isPermitted|sendIndication)$)'

fail=0
printf '%-34s %12s  %s\n' "operation" "instr/op" "ARC / allocator calls in window (function: calls/op)"
for f in $(ls "$OUT"/cg.out.* | sort -V); do
    name="$(sed -n 's/^desc: Trigger: Client Request: //p' "$f")"
    [ -n "$name" ] || continue
    total="$(sed -n 's/^summary: //p' "$f")"
    # Calls into each function inside the window: sum the calls= lines per callee.
    hits="$(awk -v pat="$PATTERN" '
        /^cfn=/ { s = $0; sub(/^cfn=/, "", s)
                  if (match(s, /^\([0-9]+\)/)) { id = substr(s, RSTART, RLENGTH); rest = substr(s, RLENGTH + 2)
                      if (rest != "") names[id] = rest; cur = names[id] } else cur = s
                  next }
        /^fn=/  { s = $0; sub(/^fn=/, "", s)
                  if (match(s, /^\([0-9]+\)/)) { id = substr(s, RSTART, RLENGTH); rest = substr(s, RLENGTH + 2)
                      if (rest != "") names[id] = rest } next }
        /^calls=/ { n = $0; sub(/^calls=/, "", n); split(n, a, " "); if (cur ~ pat) calls[cur] += a[1]; next }
        END { for (k in calls) printf "%s:%d ", k, calls[k] }' "$f")"
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
if [ "$fail" -ne 0 ]; then exit 1; fi
echo "arc-check: OK (data-path operations: 0 retains, 0 releases, 0 allocations over $N calls each)"
