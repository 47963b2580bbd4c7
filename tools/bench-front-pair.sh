#!/usr/bin/env bash
# Two dkc-memcached fronts that differ only in their options, side by side on one cluster.
#
# Starts a 1-node cluster (`dkc-local up --detach --nodes 1 --replica 0`) and two fronts of the
# same build attached to its server chmpx (as bench-memcached.sh's node1direct), front A with
# the options in A_ARGS and front B with those in B_ARGS (both also get --attach-spin-us 0, as
# dkc-local's processes do). It preloads 100,000 keys of 1 KiB, then runs REPS rounds, each a
# 10 s dkc-bench run (32 connections, one request in flight each) of 100% get and of 90/10 on
# A then on B, and prints one line per run and the medians of ops/s, p50 and p99 per front
# and workload with the ratio B/A. Everything it started is stopped at the end.
#
# Usage: A_ARGS="-t 2" B_ARGS="-t 1" tools/bench-front-pair.sh [REPS (4)] [DURATION (10s)]
# Environment: CARGO_TARGET_DIR (the build to use; cargo's default), OUT_DIR
#   (/tmp/front-pair), BASE_PORT (18700; the cluster uses BASE_PORT..+20 and its metrics ports
#   up to +1260, the fronts BASE_PORT+60 and +61: below the tests' 20000-31999).
# Needs: a release build of dkc-local, dkc-memcached, chmpx, dkc-server and dkc-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS="${1:-4}"
DURATION="${2:-10s}"
A_ARGS="${A_ARGS:-}"
B_ARGS="${B_ARGS:-}"
OUT_DIR="${OUT_DIR:-/tmp/front-pair}"
BASE_PORT="${BASE_PORT:-18700}"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
for b in dkc-local dkc-memcached chmpx dkc-server dkc-bench; do
    [ -x "$BIN/$b" ] || { echo "bench-front-pair: no $BIN/$b (cargo build --release)" >&2; exit 1; }
done
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"
PORT_A=$((BASE_PORT + 60))
PORT_B=$((BASE_PORT + 61))
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    "$BIN/dkc-local" down --dir "$OUT_DIR/node1" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$BIN/dkc-local" up --detach --nodes 1 --replica 0 --dir "$OUT_DIR/node1" \
    --base-port "$BASE_PORT" --port $((BASE_PORT + 50)) --group FRONTPAIR >"$OUT_DIR/up.log" 2>&1 ||
    { cat "$OUT_DIR/up.log" >&2; exit 1; }
start_front() {
    local port="$1" args="$2" log="$3"
    # shellcheck disable=SC2086 # the options are words on purpose
    RUST_LOG=warn "$BIN/dkc-memcached" --backend cluster --conf "$OUT_DIR/node1/server.ini" \
        --ctlport $((BASE_PORT + 1)) -p "$port" -l 127.0.0.1 --attach-spin-us 0 $args \
        >"$log" 2>&1 &
    PIDS+=($!)
    echo "front on $port: dkc-memcached ... --attach-spin-us 0 $args"
}
start_front "$PORT_A" "$A_ARGS" "$OUT_DIR/front-a.log"
start_front "$PORT_B" "$B_ARGS" "$OUT_DIR/front-b.log"
for port in "$PORT_A" "$PORT_B"; do
    for _ in $(seq 1 100); do
        grep -q "listening on" "$OUT_DIR/front-$([ "$port" = "$PORT_A" ] && echo a || echo b).log" && break
        sleep 0.1
    done
done

bench() {
    "$BIN/dkc-bench" memcached --servers "127.0.0.1:$1" --connections 32 --value-size 1024 \
        --keys 100000 --get-ratio "$2" --duration "$3" --warmup 1s --threads 1 --seed 42 "${@:4}"
}
bench "$PORT_A" 1 1s --preload >/dev/null
RESULTS="$OUT_DIR/results.txt"
: >"$RESULTS"
for rep in $(seq 1 "$REPS"); do
    for front in A B; do
        port=$PORT_A
        [ "$front" = B ] && port=$PORT_B
        for ratio in 1 0.9; do
            out=$(bench "$port" "$ratio" "$DURATION")
            ops=$(awk '$1 == "ops" {print $3}' <<<"$out")
            p50=$(grep -o 'p50 [0-9.]*' <<<"$out" | awk '{print $2}')
            p99=$(grep -o 'p99 [0-9.]*' <<<"$out" | awk '{print $2}')
            errors=$(awk '$1 == "errors" {print $2}' <<<"$out")
            echo "$front $ratio $ops $p50 $p99 $errors" >>"$RESULTS"
            echo "round $rep front $front get-ratio $ratio: $ops ops/s, p50 $p50 us, p99 $p99 us, errors $errors"
        done
    done
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(front, ratio, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == front and r[1] == ratio)
print("\n| workload | front | ops/s (median) | p50 us | p99 us |")
print("|---|---|---|---|---|")
for ratio, name in (("1", "100% get"), ("0.9", "90% get / 10% set")):
    for front in ("A", "B"):
        print(f"| {name} | {front} | {med(front, ratio, 2):,.0f} | {med(front, ratio, 3):.0f} | {med(front, ratio, 4):.0f} |")
    print(f"| {name} | B/A | {med('B', ratio, 2) / med('A', ratio, 2):.2f}x | "
          f"{med('B', ratio, 3) / med('A', ratio, 3):.2f}x | {med('B', ratio, 4) / med('A', ratio, 4):.2f}x |")
print("errors in all runs:", sum(int(r[5]) for r in rows))
PY
