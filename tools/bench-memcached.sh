#!/usr/bin/env bash
# memcached vs dkc's memcached front, side by side in one run, measured by dkc-bench.
#
# Starts a real memcached 1.6 (`memcached -p PORT -t 2 -m 1024 -U 0 -l 127.0.0.1`, plus `-u root`
# as root) and every dkc target asked for, then runs REPS repetitions, interleaved (every
# repetition runs each workload on every target, rotating which goes first), of two workloads
# over the same keys and values, with 32 connections, one request in flight each, 1 KiB values:
#   get100  100% get over 100,000 preloaded keys
#   mix90   90% get / 10% set over 100,000 preloaded keys
# and prints a Markdown table of median ops/s, p50 and p99 latency per dkc target with the
# ratio dkc/memcached, then the exact commands. It also prints the CPU time per operation of
# the server side (memcached; for a dkc target every process it runs: chmpx, dkc-server and
# the front), read from /proc/PID/stat (10 ms ticks) over the measured window (from a warm-up
# after dkc-bench reports the preload done to its exit; the load generator is not counted). If memcaslap (libmemcached-tools) is installed,
# it also runs once against each target as a third-party check.
#
# Targets (--target, comma-separated; default node1,cluster3):
#   memory    `dkc-memcached --backend memory` started here: the memcached front over an
#             in-process map. MEMORY BACKEND, NOT THE CLUSTER: it measures the protocol front only.
#   node1     `dkc-local up --detach --nodes 1 --replica 0` started here (its own data directory
#             under OUT_DIR, ports from --node-base-port): the issue's target configuration
#             (dkc-memcached -> slave chmpx -> TCP -> server chmpx -> dkc-server).
#   node1direct  the same 1-node cluster (started once for both), with a second dkc-memcached
#             started here that attaches to the SERVER chmpx as a client (no slave chmpx, no
#             TCP hop: dkc-memcached -> server chmpx -> dkc-server). Its own row, not node1.
#   cluster3  `dkc-local up --detach --nodes 3 --replica 1` started here (ports from
#             --node-base-port + 100).
#   cluster   a running `dkc-local up` whose memcached front listens on --cluster-port (started
#             by you; this script neither starts nor stops it).
#   node1-base, node1direct-base  node1 and node1direct run with the binaries of --base-dir (a
#             second 1-node cluster, ports from --node-base-port + 200, group MCBENCH1B): a
#             before/after comparison in the same run. Added by --base-dir for node1 and
#             node1direct.
# The clusters started here are stopped (`dkc-local down`) when the script ends.
#
# Usage: tools/bench-memcached.sh [--target LIST] [--reps N] [--duration 30s]
#          [--warmup 2s] [--keys 100000] [--connections 32] [--value-size 1024]
#          [--memcached-port 18211] [--dkc-port 18212] [--cluster-port 11211]
#          [--node-base-port 18300] [--base-dir DIR]
#   --base-dir DIR: a folder holding dkc-local, dkc-memcached, chmpx and dkc-server of another
#          build (say target/release of the commit before a change); adds the -base targets.
# Environment: OUT_DIR (/tmp/memcached-bench), CARGO_TARGET_DIR (cargo's default),
#   BENCH_THREADS (dkc-bench runtime threads, 1), NO_BUILD=1 (use the binaries already built),
#   DIRECT_SPIN_US (--attach-spin-us of the node1direct fronts, 0 like dkc-local's processes;
#   a node1direct-base front whose build lacks the flag keeps its build's default),
#   DIRECT_THREADS (-t of the node1direct fronts; default one per 2 CPUs like dkc-local's front).
# Default ports lie below 20000: the tests reserve 20000-31999 (chmpx::testkit::ports), and a
#   node base port uses up to base + 1000 + 260 (metrics ports of dkc-local).
# Needs: memcached, python3; optional memcaslap.
set -euo pipefail
cd "$(dirname "$0")/.."
SCRIPT_CMD="tools/bench-memcached.sh $*"

TARGETS=node1,cluster3
REPS=3
DURATION=30s
WARMUP=2s
KEYS=100000
CONNECTIONS=32
VALUE_SIZE=1024
MC_PORT=18211
DKC_PORT=18212
CLUSTER_PORT=11211
NODE_BASE_PORT=18300
BASE_DIR=""
DIRECT_SPIN_US=${DIRECT_SPIN_US:-0}
DIRECT_THREADS=${DIRECT_THREADS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
while [ $# -gt 0 ]; do
    case "$1" in
    --target) TARGETS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --keys) KEYS="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --value-size) VALUE_SIZE="$2"; shift 2 ;;
    --memcached-port) MC_PORT="$2"; shift 2 ;;
    --dkc-port) DKC_PORT="$2"; shift 2 ;;
    --cluster-port) CLUSTER_PORT="$2"; shift 2 ;;
    --node-base-port) NODE_BASE_PORT="$2"; shift 2 ;;
    --base-dir) BASE_DIR="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-memcached: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
[ "${#TARGET_LIST[@]}" -gt 0 ] || { echo "bench-memcached: --target is empty" >&2; exit 2; }
if [ -n "$BASE_DIR" ]; then
    for b in dkc-local dkc-memcached chmpx dkc-server; do
        [ -x "$BASE_DIR/$b" ] || { echo "bench-memcached: --base-dir $BASE_DIR has no $b" >&2; exit 2; }
    done
    for t in "${TARGET_LIST[@]}"; do
        case "$t" in node1 | node1direct) TARGET_LIST+=("$t-base") ;; esac
    done
fi
# Each target: a label for the table and the port its memcached front listens on.
declare -A LABEL PORT DIRECT_PID
for t in "${TARGET_LIST[@]}"; do
    case "$t" in
    memory) LABEL[$t]="dkc-memcached, memory backend (not the cluster)"; PORT[$t]="$DKC_PORT" ;;
    node1) LABEL[$t]="dkc 1 node, REPLICA=0 (dkc-local)"; PORT[$t]=$((NODE_BASE_PORT + 50)) ;;
    node1direct)
        LABEL[$t]="dkc 1 node, REPLICA=0, front attached to the server chmpx (no slave chmpx)"
        PORT[$t]=$((NODE_BASE_PORT + 60))
        ;;
    cluster3) LABEL[$t]="dkc 3 nodes, REPLICA=1 (dkc-local)"; PORT[$t]=$((NODE_BASE_PORT + 150)) ;;
    cluster) LABEL[$t]="dkc cluster via a running dkc-local"; PORT[$t]="$CLUSTER_PORT" ;;
    node1-base) LABEL[$t]="node1 with the binaries of $BASE_DIR"; PORT[$t]=$((NODE_BASE_PORT + 250)) ;;
    node1direct-base)
        LABEL[$t]="node1direct with the binaries of $BASE_DIR"
        PORT[$t]=$((NODE_BASE_PORT + 260))
        ;;
    *) echo "bench-memcached: unknown target $t (memory, node1, node1direct, cluster3, cluster)" >&2; exit 2 ;;
    esac
done
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
    cargo build --release -q -p dkc-tools --bin dkc-bench --bin dkc-local -p dkc-client \
        --bin dkc-memcached -p chmpx --bin chmpx -p dkc-server --bin dkc-server
fi
BENCH="$TARGET_DIR/release/dkc-bench"
DKC_MEMCACHED="$TARGET_DIR/release/dkc-memcached"
DKC_LOCAL="$TARGET_DIR/release/dkc-local"

PIDS=()
CLUSTER_DIRS=()
cleanup() {
    # The fronts started here first (one may be attached to a cluster's chmpx), then the
    # clusters.
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    for dir in "${CLUSTER_DIRS[@]}"; do
        "$DKC_LOCAL" down --dir "$dir" >/dev/null 2>&1 || true
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

# start_cluster NAME NODES REPLICA BASE_PORT FRONT_PORT [DKC_LOCAL GROUP]: a local cluster in
# the background.
start_cluster() {
    local name="$1" nodes="$2" replica="$3" base="$4" port="$5"
    local local_bin="${6:-$DKC_LOCAL}" group="${7:-MCBENCH$nodes}"
    local dir="$OUT_DIR/$name"
    rm -rf "$dir"
    local cmd=("$local_bin" up --detach --nodes "$nodes" --replica "$replica" --dir "$dir"
        --base-port "$base" --port "$port" --group "$group")
    echo "${cmd[*]}" >>"$COMMANDS"
    echo "== starting $name: ${cmd[*]}" >&2
    CLUSTER_DIRS+=("$dir")
    "${cmd[@]}" >"$OUT_DIR/$name-up.log" 2>&1 || {
        echo "bench-memcached: dkc-local up for $name failed; see $OUT_DIR/$name-up.log" >&2
        tail -n 20 "$OUT_DIR/$name-up.log" >&2
        exit 1
    }
}
# The 1-node cluster, started once whether node1, node1direct or both are targets.
NODE1_STARTED=0
start_node1() {
    if [ "$NODE1_STARTED" = 0 ]; then
        start_cluster node1 1 0 "$NODE_BASE_PORT" $((NODE_BASE_PORT + 50))
        NODE1_STARTED=1
    fi
}
# The same with the binaries of --base-dir.
NODE1_BASE_STARTED=0
start_node1_base() {
    if [ "$NODE1_BASE_STARTED" = 0 ]; then
        start_cluster node1-base 1 0 $((NODE_BASE_PORT + 200)) $((NODE_BASE_PORT + 250)) \
            "$BASE_DIR/dkc-local" MCBENCH1B
        NODE1_BASE_STARTED=1
    fi
}
for t in "${TARGET_LIST[@]}"; do
    case "$t" in
    memory)
        DKC_CMD=("$DKC_MEMCACHED" --backend memory -p "$DKC_PORT" -l 127.0.0.1)
        echo "${DKC_CMD[*]}" >>"$COMMANDS"
        RUST_LOG=warn "${DKC_CMD[@]}" >/dev/null 2>"$OUT_DIR/dkc-memcached.log" &
        PIDS+=($!)
        DIRECT_PID[$t]=$!
        ;;
    node1) start_node1 ;;
    node1direct)
        # The 1-node cluster of `node1` (one cluster for both targets); node i's control port
        # is base+2i+1, so the server chmpx listens on NODE_BASE_PORT+1.
        start_node1
        # It polls as long as the processes dkc-local started (its --attach-spin-us default).
        DIRECT_CMD=("$DKC_MEMCACHED" --backend cluster --conf "$OUT_DIR/node1/server.ini"
            --ctlport $((NODE_BASE_PORT + 1)) -p "${PORT[$t]}" -l 127.0.0.1
            --attach-spin-us "$DIRECT_SPIN_US" -t "$DIRECT_THREADS")
        echo "${DIRECT_CMD[*]}" >>"$COMMANDS"
        RUST_LOG=warn "${DIRECT_CMD[@]}" >/dev/null 2>"$OUT_DIR/dkc-memcached-direct.log" &
        PIDS+=($!)
        DIRECT_PID[$t]=$!
        ;;
    cluster3) start_cluster cluster3 3 1 $((NODE_BASE_PORT + 100)) "${PORT[$t]}" ;;
    node1-base) start_node1_base ;;
    node1direct-base)
        start_node1_base
        DIRECT_CMD=("$BASE_DIR/dkc-memcached" --backend cluster
            --conf "$OUT_DIR/node1-base/server.ini" --ctlport $((NODE_BASE_PORT + 201))
            -p "${PORT[$t]}" -l 127.0.0.1 -t "$DIRECT_THREADS")
        # Polling as the node1direct front does, if that build has the flag.
        if "$BASE_DIR/dkc-memcached" --help 2>/dev/null | grep -q -- --attach-spin-us; then
            DIRECT_CMD+=(--attach-spin-us "$DIRECT_SPIN_US")
        fi
        echo "${DIRECT_CMD[*]}" >>"$COMMANDS"
        RUST_LOG=warn "${DIRECT_CMD[@]}" >/dev/null 2>"$OUT_DIR/dkc-memcached-direct-base.log" &
        PIDS+=($!)
        DIRECT_PID[$t]=$!
        ;;
    esac
    wait_ready "${PORT[$t]}" "${LABEL[$t]}"
done

# The processes serving each target, for the CPU per operation: memcached; a cluster's every
# process (the "started NAME (pid N)" lines of its dkc-local log); node1direct's own front plus
# the server side of node1 (its chmpx and dkc-server, not the slave chmpx nor node1's front).
declare -A SERVE_PIDS
SERVE_PIDS[memcached]="${PIDS[0]}"
cluster_pids() {
    # cluster_pids NAME [server]: pids from $OUT_DIR/NAME/dkc-local.log; "server": only the
    # server chmpx and dkc-server.
    local log="$OUT_DIR/$1/dkc-local.log" pattern='^started '
    [ "${2:-}" = server ] && pattern='^started (chmpx|dkc-server) [0-9]+ \(pid '
    [ -f "$log" ] || return 0
    { grep -E "$pattern" "$log" || true; } | sed -n 's/.*(pid \([0-9]*\)).*/\1/p' | tr '\n' ' '
}
for t in "${TARGET_LIST[@]}"; do
    case "$t" in
    node1) SERVE_PIDS[$t]="$(cluster_pids node1)" ;;
    node1-base) SERVE_PIDS[$t]="$(cluster_pids node1-base)" ;;
    cluster3) SERVE_PIDS[$t]="$(cluster_pids cluster3)" ;;
    node1direct) SERVE_PIDS[$t]="$(cluster_pids node1 server) ${DIRECT_PID[$t]}" ;;
    node1direct-base) SERVE_PIDS[$t]="$(cluster_pids node1-base server) ${DIRECT_PID[$t]}" ;;
    memory) SERVE_PIDS[$t]="${DIRECT_PID[$t]}" ;;
    *) SERVE_PIDS[$t]="" ;; # a cluster started elsewhere: CPU not measured
    esac
done
CLK_TCK="$(getconf CLK_TCK)"
# Warm-up in seconds, for the start of the CPU window ("2s" or "500ms"; else no CPU figure).
case "$WARMUP" in
*ms) WARMUP_SECS="$(awk -v v="${WARMUP%ms}" 'BEGIN { print v / 1000 }')" ;;
*s) WARMUP_SECS="${WARMUP%s}" ;;
*) WARMUP_SECS="" ;;
esac
# CPU ticks (user + system, all threads) used so far by the pids given; empty if one is gone.
cpu_ticks() {
    local total=0 pid stat
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || { echo ""; return; }
        # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        stat="${stat##*) }"
        # shellcheck disable=SC2086 # split into fields on purpose
        set -- $stat
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
# Upper bound of the wait for dkc-bench's "preloaded" line, tenths of a second.
PRELOAD_WAIT_MAX_TENTHS=1200

run() {
    # run TARGET_NAME WORKLOAD REP PORT GET_RATIO: one dkc-bench run, its JSON line tagged.
    local name="$1" workload="$2" rep="$3" port="$4" ratio="$5"
    local cmd=("$BENCH" memcached --servers "127.0.0.1:$port" --connections "$CONNECTIONS"
        --value-size "$VALUE_SIZE" --keys "$KEYS" --preload --get-ratio "$ratio"
        --duration "$DURATION" --warmup "$WARMUP" --threads "$THREADS" --seed 42 --json)
    echo "${cmd[*]}" >>"$COMMANDS"
    echo "== rep $rep/$REPS $workload $name" >&2
    # shellcheck disable=SC2206 # a space-separated list of pids, split on purpose
    local pids=(${SERVE_PIDS[$name]:-}) out="$OUT_DIR/run.out" err="$OUT_DIR/run.err"
    "${cmd[@]}" >"$out" 2>"$err" &
    local bench_pid=$! before="" after="" i
    if [ "${#pids[@]}" -gt 0 ] && [ -n "$WARMUP_SECS" ]; then
        # The measured window starts a warm-up after the preload ends.
        for i in $(seq 1 "$PRELOAD_WAIT_MAX_TENTHS"); do
            grep -q 'preloaded' "$err" 2>/dev/null && break
            kill -0 "$bench_pid" 2>/dev/null || break
            sleep 0.1
        done
        if grep -q 'preloaded' "$err" 2>/dev/null; then
            sleep "$WARMUP_SECS"
            before="$(cpu_ticks "${pids[@]}")"
        fi
    fi
    local rc=0
    wait "$bench_pid" || rc=$?
    [ -n "$before" ] && after="$(cpu_ticks "${pids[@]}")"
    cat "$err" >>"$OUT_DIR/bench.log"
    if [ "$rc" != 0 ]; then
        echo "bench-memcached: dkc-bench against $name ($workload) exited with $rc:" >&2
        tail -n 5 "$err" >&2
        exit 1
    fi
    local line cpu=null
    line="$(tail -n 1 "$out")"
    if [ -n "$before" ] && [ -n "$after" ]; then
        cpu="$(awk -v a="$after" -v b="$before" -v t="$CLK_TCK" 'BEGIN { print (a - b) / t }')"
    fi
    printf '{"target":"%s","workload":"%s","rep":%s,"cpu_secs":%s,"report":%s}\n' \
        "$name" "$workload" "$rep" "$cpu" "$line" >>"$RAW"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date +%s)"
ALL=(memcached "${TARGET_LIST[@]}")
PORT[memcached]="$MC_PORT"
for rep in $(seq 1 "$REPS"); do
    for wl in get100:1 mix90:0.9; do
        workload="${wl%%:*}"
        ratio="${wl#*:}"
        # Rotate which target goes first, so none always runs on a warmer (or busier) machine.
        n=${#ALL[@]}
        for i in $(seq 0 $((n - 1))); do
            t="${ALL[$(((i + rep - 1) % n))]}"
            run "$t" "$workload" "$rep" "${PORT[$t]}" "$ratio"
        done
    done
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
ELAPSED=$(($(date +%s) - STARTED))

MEMCASLAP_OUT=""
if command -v memcaslap >/dev/null; then
    for name in "${ALL[@]}"; do
        port="${PORT[$name]}"
        cmd=(memcaslap -s "127.0.0.1:$port" -T "$THREADS" -c "$CONNECTIONS" -X "$VALUE_SIZE" -t "$DURATION")
        echo "${cmd[*]}" >>"$COMMANDS"
        echo "== memcaslap $name" >&2
        tps="$("${cmd[@]}" 2>&1 | sed -n 's/.*TPS: *\([0-9]*\).*/\1/p' | tail -n 1)"
        MEMCASLAP_OUT+="$name ${tps:-?}"$'\n'
    done
fi

LABELS="$(for t in "${TARGET_LIST[@]}"; do printf '%s=%s\n' "$t" "${LABEL[$t]}"; done)"
python3 - "$RAW" "$COMMANDS" "$LABELS" "$MC_VERSION" "$LOAD_BEFORE" "$LOAD_AFTER" \
    "$ELAPSED" "$MEMCASLAP_OUT" "$REPS" "$DURATION" "$CONNECTIONS" "$KEYS" "$VALUE_SIZE" <<'PY'
import json, statistics, sys
(raw, commands, labels, mc_version, load_before, load_after, elapsed, memcaslap, reps, duration,
 conns, keys, vsize) = sys.argv[1:]
labels = dict(l.split("=", 1) for l in labels.splitlines() if l)
rows = [json.loads(l) for l in open(raw) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["workload"], r["target"]), []).append(r["report"])
med = lambda xs: statistics.median(xs) if xs else float("nan")
fmt = lambda a: f"{a:,.0f}" if a >= 100 else f"{a:.1f}"
print(f"{mc_version}; {conns} connections (one request in flight each), {keys} preloaded keys, "
      f"{vsize} B values, {duration} per run after warm-up, median of {reps} interleaved runs; "
      f"ratio = dkc / memcached (for latency, above 1 means dkc is slower)")
print()
for t, label in labels.items():
    print(f"- {t}: {label}")
print()
print("| workload | dkc target | memcached ops/s | dkc ops/s | ratio | memcached p50 us "
      "| dkc p50 us | memcached p99 us | dkc p99 us | p99 ratio | memcached CPU us/op "
      "| dkc CPU us/op |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
def cpu_per_op(xs):
    # Median over the runs of the serving processes' CPU time per measured operation.
    v = [x["cpu_secs"] * 1e6 / x["report"]["ops"] for x in xs
         if x.get("cpu_secs") is not None and x["report"]["ops"]]
    return f"{statistics.median(v):.1f}" if v else "-"
full = {}
for r in rows:
    full.setdefault((r["workload"], r["target"]), []).append(r)
names = {"get100": "100% get", "mix90": "90% get / 10% set"}
errors = 0
for wl in ["get100", "mix90"]:
    m = by.get((wl, "memcached"), [])
    errors += sum(r["errors"] for r in m)
    for t in labels:
        d = by.get((wl, t), [])
        errors += sum(r["errors"] for r in d)
        ops = [med([r["ops_per_sec"] for r in xs]) for xs in (m, d)]
        p50 = [med([r["latency_us"]["p50"] for r in xs]) for xs in (m, d)]
        p99 = [med([r["latency_us"]["p99"] for r in xs]) for xs in (m, d)]
        ratio = lambda a, b: f"{b / a:.2f}x" if a else "-"
        print(f"| {names[wl]} | {t} | {fmt(ops[0])} | {fmt(ops[1])} | {ratio(*ops)} "
              f"| {fmt(p50[0])} | {fmt(p50[1])} | {fmt(p99[0])} | {fmt(p99[1])} "
              f"| {ratio(*p99)} | {cpu_per_op(full.get((wl, 'memcached'), []))} "
              f"| {cpu_per_op(full.get((wl, t), []))} |")
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
    a = tps.get("memcached", "?")
    parts = [f"memcached {a} TPS"]
    for t in labels:
        b = tps.get(t, "?")
        r = f"{int(b) / int(a):.2f}x" if a.isdigit() and b.isdigit() and int(a) else "-"
        parts.append(f"{t} {b} TPS ({r})")
    print(f"memcaslap (its default mix, 90% get / 10% set, its own key set, {duration}): "
          + ", ".join(parts))
else:
    print("memcaslap: not installed (Debian: libmemcached-tools), third-party check skipped")
print()
print("Commands (in the order they ran):")
print()
print("```")
print(open(commands).read().rstrip())
print("```")
PY
