#!/usr/bin/env bash
# memcached vs dkc's memcached front, side by side in one run, measured by dkc-bench.
#
# Starts a real memcached 1.6 (`memcached -p PORT -t 2 -m 1024 -U 0 -l 127.0.0.1`, plus `-u root`
# as root) and a dkc target, then runs REPS repetitions, interleaved (every repetition runs each
# workload on both targets, alternating which goes first), of two workloads over the same keys
# and values, with 32 connections, one request in flight each, 1 KiB values:
#   get100  100% get over 100,000 preloaded keys
#   mix90   90% get / 10% set over 100,000 preloaded keys
# and prints a Markdown table of median ops/s, p50 and p99 latency with the ratio
# dkc/memcached, then the exact commands. If memcaslap (libmemcached-tools) is installed, it
# also runs once against each target as a third-party check.
#
# Targets (--target):
#   memory   `dkc-memcached --backend memory` started here: the memcached front over an
#            in-process map. MEMORY BACKEND, NOT THE CLUSTER: it measures the protocol front only.
#   cluster  a running `dkc-local up` whose memcached front listens on --cluster-port (started
#            by you; this script neither starts nor stops it).
#
# Usage: tools/bench-memcached.sh [--target memory|cluster] [--reps N] [--duration 30s]
#          [--warmup 2s] [--keys 100000] [--connections 32] [--value-size 1024]
#          [--memcached-port 21211] [--dkc-port 21212] [--cluster-port 11211]
# Environment: OUT_DIR (/tmp/memcached-bench), CARGO_TARGET_DIR (cargo's default),
#   BENCH_THREADS (dkc-bench runtime threads, 1), NO_BUILD=1 (use the binaries already built).
# Needs: memcached, python3; optional memcaslap.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT_CMD="tools/bench-memcached.sh $*"

TARGET=memory
REPS=3
DURATION=30s
WARMUP=2s
KEYS=100000
CONNECTIONS=32
VALUE_SIZE=1024
MC_PORT=21211
DKC_PORT=21212
CLUSTER_PORT=11211
while [ $# -gt 0 ]; do
    case "$1" in
    --target) TARGET="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --keys) KEYS="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --value-size) VALUE_SIZE="$2"; shift 2 ;;
    --memcached-port) MC_PORT="$2"; shift 2 ;;
    --dkc-port) DKC_PORT="$2"; shift 2 ;;
    --cluster-port) CLUSTER_PORT="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-memcached: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$TARGET" in
memory) DKC_LABEL="dkc-memcached, memory backend (not the cluster)" ;;
cluster) DKC_LABEL="dkc cluster via dkc-local's memcached front"; DKC_PORT="$CLUSTER_PORT" ;;
*) echo "bench-memcached: --target must be memory or cluster, not $TARGET" >&2; exit 2 ;;
esac
command -v memcached >/dev/null || {
    echo "bench-memcached: memcached is not installed (Debian: apt-get install memcached)" >&2
    exit 1
}
command -v python3 >/dev/null || { echo "bench-memcached: python3 is needed" >&2; exit 1; }

OUT_DIR="${OUT_DIR:-/tmp/memcached-bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
THREADS="${BENCH_THREADS:-1}"
mkdir -p "$OUT_DIR"
RAW="$OUT_DIR/raw.jsonl"
COMMANDS="$OUT_DIR/commands.txt"
: >"$RAW"
: >"$COMMANDS"
echo "# $SCRIPT_CMD" >>"$COMMANDS"

if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "== building (release)" >&2
    cargo build --release -q -p dkc-tools --bin dkc-bench -p dkc-client --bin dkc-memcached
fi
BENCH="$TARGET_DIR/release/dkc-bench"
DKC_MEMCACHED="$TARGET_DIR/release/dkc-memcached"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# Waits until something on 127.0.0.1:$1 answers the memcached `version` command.
wait_ready() {
    local port="$1" what="$2" i
    for i in $(seq 1 100); do
        # A subshell, so the descriptor and the silenced stderr stay local to the probe.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'version\r\n' >&3 &&
            timeout 2 head -c 8 <&3) 2>/dev/null | grep -q VERSION; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-memcached: $what on port $port did not answer 'version' within 10 s" >&2
    exit 1
}

MC_CMD=(memcached -p "$MC_PORT" -t 2 -m 1024 -U 0 -l 127.0.0.1)
[ "$(id -u)" = 0 ] && MC_CMD+=(-u root)
echo "${MC_CMD[*]}" >>"$COMMANDS"
"${MC_CMD[@]}" &
PIDS+=($!)
wait_ready "$MC_PORT" memcached
MC_VERSION="$(memcached -V)"

if [ "$TARGET" = memory ]; then
    DKC_CMD=("$DKC_MEMCACHED" --backend memory -p "$DKC_PORT" -l 127.0.0.1)
    echo "${DKC_CMD[*]}" >>"$COMMANDS"
    RUST_LOG=warn "${DKC_CMD[@]}" >/dev/null 2>"$OUT_DIR/dkc-memcached.log" &
    PIDS+=($!)
fi
wait_ready "$DKC_PORT" "$DKC_LABEL"

run() {
    # run TARGET_NAME WORKLOAD REP PORT GET_RATIO: one dkc-bench run, its JSON line tagged.
    local name="$1" workload="$2" rep="$3" port="$4" ratio="$5"
    local cmd=("$BENCH" memcached --servers "127.0.0.1:$port" --connections "$CONNECTIONS"
        --value-size "$VALUE_SIZE" --keys "$KEYS" --preload --get-ratio "$ratio"
        --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --seed 42 --json)
    echo "${cmd[*]}" >>"$COMMANDS"
    echo "== rep $rep/$REPS $workload $name" >&2
    local line
    line="$("${cmd[@]}" 2>>"$OUT_DIR/bench.log" | tail -n 1)"
    printf '{"target":"%s","workload":"%s","rep":%s,"report":%s}\n' \
        "$name" "$workload" "$rep" "$line" >>"$RAW"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date +%s)"
for rep in $(seq 1 "$REPS"); do
    for wl in get100:1 mix90:0.9; do
        workload="${wl%%:*}"
        ratio="${wl#*:}"
        # Alternate which target goes first, so neither always runs on a warmer machine.
        if [ $((rep % 2)) = 1 ]; then
            run memcached "$workload" "$rep" "$MC_PORT" "$ratio"
            run dkc "$workload" "$rep" "$DKC_PORT" "$ratio"
        else
            run dkc "$workload" "$rep" "$DKC_PORT" "$ratio"
            run memcached "$workload" "$rep" "$MC_PORT" "$ratio"
        fi
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
ELAPSED=$(($(date +%s) - STARTED))

MEMCASLAP_OUT=""
if command -v memcaslap >/dev/null; then
    for pair in "memcached:$MC_PORT" "dkc:$DKC_PORT"; do
        name="${pair%%:*}"
        port="${pair#*:}"
        cmd=(memcaslap -s "127.0.0.1:$port" -T "$THREADS" -c "$CONNECTIONS" -X "$VALUE_SIZE" -t "$DURATION")
        echo "${cmd[*]}" >>"$COMMANDS"
        echo "== memcaslap $name" >&2
        tps="$("${cmd[@]}" 2>&1 | sed -n 's/.*TPS: *\([0-9]*\).*/\1/p' | tail -n 1)"
        MEMCASLAP_OUT+="$name ${tps:-?}"$'\n'
    done
fi

python3 - "$RAW" "$COMMANDS" "$DKC_LABEL" "$MC_VERSION" "$LOAD_BEFORE" "$LOAD_AFTER" \
    "$ELAPSED" "$MEMCASLAP_OUT" "$REPS" "$DURATION" "$CONNECTIONS" "$KEYS" "$VALUE_SIZE" <<'PY'
import json, statistics, sys
(raw, commands, label, mc_version, load_before, load_after, elapsed, memcaslap, reps, duration,
 conns, keys, vsize) = sys.argv[1:]
rows = [json.loads(l) for l in open(raw) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["workload"], r["target"]), []).append(r["report"])
med = lambda xs: statistics.median(xs) if xs else float("nan")
print(f"{mc_version} vs {label}; {conns} connections (one request in flight each), "
      f"{keys} preloaded keys, {vsize} B values, {duration} per run after warm-up, "
      f"median of {reps} interleaved runs; ratio = dkc / memcached "
      f"(for latency, above 1 means dkc is slower)")
print()
print("| workload | memcached ops/s | dkc ops/s | ratio | memcached p50 us | dkc p50 us | ratio "
      "| memcached p99 us | dkc p99 us | ratio |")
print("|---|---|---|---|---|---|---|---|---|---|")
names = {"get100": "100% get", "mix90": "90% get / 10% set"}
errors = 0
for wl in ["get100", "mix90"]:
    m, d = by.get((wl, "memcached"), []), by.get((wl, "dkc"), [])
    errors += sum(r["errors"] for r in m + d)
    cells = []
    for f in [lambda r: r["ops_per_sec"], lambda r: r["latency_us"]["p50"],
              lambda r: r["latency_us"]["p99"]]:
        a, b = med([f(r) for r in m]), med([f(r) for r in d])
        cells += [f"{a:,.0f}" if a >= 100 else f"{a:.1f}", f"{b:,.0f}" if b >= 100 else f"{b:.1f}",
                  f"{b / a:.2f}x" if a else "-"]
    print(f"| {names[wl]} | " + " | ".join(cells) + " |")
print()
spread = []
for (wl, t), rs in sorted(by.items()):
    xs = [r["ops_per_sec"] for r in rs]
    if min(xs) > 0:
        spread.append(f"{wl}/{t} {max(xs) / min(xs):.2f}x")
print(f"operations that failed (errors, wrong values, timeouts), all runs: {errors}")
print(f"misses in all runs (every key is preloaded, so this should be 0): "
      f"{sum(r['report']['misses'] for r in rows)}")
print(f"ops/s spread max/min over the repetitions: {', '.join(spread)}")
print(f"load average before {load_before}, after {load_after}; the runs took {elapsed} s")
if memcaslap.strip():
    tps = dict(l.split() for l in memcaslap.strip().splitlines())
    a, b = tps.get("memcached", "?"), tps.get("dkc", "?")
    ratio = f"{int(b) / int(a):.2f}x" if a.isdigit() and b.isdigit() and int(a) else "-"
    print(f"memcaslap (90% get / 10% set, its own key set, {duration}): memcached {a} TPS, "
          f"dkc {b} TPS, ratio {ratio}")
else:
    print("memcaslap: not installed (Debian: libmemcached-tools), third-party check skipped")
print()
print("Commands (in the order they ran):")
print()
print("```")
print(open(commands).read().rstrip())
print("```")
PY
