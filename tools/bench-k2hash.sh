#!/usr/bin/env bash
# k2hash vs Tokyo Cabinet (hash database) vs std HashMap, side by side in one run.
#
# Builds `k2htool` (release) and benches/tc/tcbench.c, checks that both generate the same keys,
# then runs every configuration -- value size {40, 1024} x threads {1, 2} x store {tc, k2hash
# memory, k2hash full-map, k2hash index-map, HashMap} -- REPS times, interleaved (each repetition
# runs every store once before the next repetition starts), and prints Markdown tables of the
# median ops/s, the ratio k2hash/TC and the file size per raw key+value byte.
#
# Usage: tools/bench-k2hash.sh [N] [REPS]      (defaults: 1000000 keys, 3 repetitions)
# Environment: STORES (all five: "tc memory full index hashmap"; a subset for a quick check,
# e.g. STORES="tc memory full"), SEED (42), DATA_DIR (/dev/shm: TC's file and k2hash's files live on tmpfs so
# the disk is not measured), OUT_DIR (/tmp/k2hash-bench), CARGO_TARGET_DIR (cargo's default),
# K2HTOOL (a prebuilt k2htool to measure instead of building one, e.g. to compare two builds).
# Needs: gcc, python3, Debian packages tokyocabinet-bin and libtokyocabinet-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

N="${1:-1000000}"
REPS="${2:-3}"
SEED="${SEED:-42}"
DATA_DIR="${DATA_DIR:-/dev/shm}"
OUT_DIR="${OUT_DIR:-/tmp/k2hash-bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
VALUE_SIZES=(40 1024)
THREAD_COUNTS=(1 2)
read -r -a STORES <<<"${STORES:-tc memory full index hashmap}"

mkdir -p "$OUT_DIR"
RAW="$OUT_DIR/raw.txt"
COMMANDS="$OUT_DIR/commands.txt"
: >"$RAW"
: >"$COMMANDS"

for store in "${STORES[@]}"; do
    case "$store" in
        tc | memory | full | index | hashmap) ;;
        *) echo "bench-k2hash: unknown store '$store' in STORES (tc memory full index hashmap)" >&2
           exit 2 ;;
    esac
done

if [ -n "${K2HTOOL:-}" ]; then
    echo "== using the prebuilt $K2HTOOL" >&2
else
    echo "== building (release)" >&2
    cargo build --release -q -p dkc-tools --bin k2htool
    K2HTOOL="$TARGET_DIR/release/k2htool"
fi
TCBENCH="$OUT_DIR/tcbench"
gcc -O2 -Wall -o "$TCBENCH" benches/tc/tcbench.c -ltokyocabinet -lpthread

if ! cmp -s <("$TCBENCH" --print-keys 1000 "$SEED") \
    <("$K2HTOOL" bench --print-keys 1000 --seed "$SEED"); then
    echo "bench-k2hash: tcbench and k2htool generate different keys; fix keygen first" >&2
    exit 1
fi

run() {
    # Records the exact command, then runs it and keeps its BENCH lines.
    echo "$*" >>"$COMMANDS"
    "$@" | grep '^BENCH ' >>"$RAW"
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date +%s)"
for rep in $(seq 1 "$REPS"); do
    for vb in "${VALUE_SIZES[@]}"; do
        for th in "${THREAD_COUNTS[@]}"; do
            for store in "${STORES[@]}"; do
                echo "== rep $rep/$REPS value_bytes=$vb threads=$th store=$store" >&2
                if [ "$store" = tc ]; then
                    run "$TCBENCH" "$DATA_DIR/tcbench-$$.tch" "$N" "$vb" "$th" "$SEED"
                else
                    run "$K2HTOOL" bench --target "$store" --n "$N" --value-bytes "$vb" \
                        --threads "$th" --seed "$SEED" --dir "$DATA_DIR"
                fi
            done
        done
    done
done

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
ELAPSED="$(( $(date +%s) - STARTED ))"

python3 - "$RAW" "$N" "$REPS" >"$OUT_DIR/table.md" <<'EOF'
import statistics, sys
from collections import defaultdict

raw, n, reps = sys.argv[1], sys.argv[2], sys.argv[3]
ops = defaultdict(list)      # (store, vb, threads, phase) -> [ops/s]
size = defaultdict(list)     # (store, vb, threads) -> [file_bytes / raw_bytes]
errors = 0
for line in open(raw):
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    store = "tc" if f["engine"] == "tc" else ("hashmap" if f["engine"] == "hashmap" else f["mode"])
    key = (store, int(f["value_bytes"]), int(f["threads"]))
    if f["phase"] == "size":
        if int(f["file_bytes"]) > 0:
            size[key].append(int(f["file_bytes"]) / int(f["raw_bytes"]))
    else:
        ops[key + (f["phase"],)].append(float(f["ops_per_sec"]))
        errors += int(f["errors"])

def med(xs):
    return statistics.median(xs) if xs else float("nan")

names = [("memory", "k2hash memory"), ("full", "k2hash full-map"),
         ("index", "k2hash index-map"), ("hashmap", "HashMap")]
print(f"n = {n} keys of 36 bytes, median of {reps} interleaved runs, ops/s in thousands; "
      f"ratio = store / Tokyo Cabinet")
print()
print("| value | threads | op | TC | " + " | ".join(f"{t} | ratio" for _, t in names) + " |")
print("|---|---|---|---|" + "---|---|" * len(names))
for vb in (40, 1024):
    for th in (1, 2):
        for phase in ("set", "get"):
            tc = med(ops[("tc", vb, th, phase)])
            cells = []
            for s, _ in names:
                v = med(ops[(s, vb, th, phase)])
                cells.append(f"{v / 1e3:,.0f} | {v / tc:.2f}x")
            print(f"| {vb} B | {th} | {phase} | {tc / 1e3:,.0f} | " + " | ".join(cells) + " |")
print()
print("File size / raw key+value bytes (40-byte values, 1 thread; memory mode = its image):")
print()
print("| store | overhead |")
print("|---|---|")
for s, t in [("tc", "Tokyo Cabinet")] + names[:3]:
    print(f"| {t} | {med(size[(s, 40, 1)]):.2f} |")
print()
spreads = [max(v) / min(v) for v in ops.values() if v and min(v) > 0]
print(f"operations that failed or returned a wrong value: {errors}; spread (max/min over the "
      f"{reps} runs) of one configuration: {min(spreads):.2f} to {max(spreads):.2f}")
EOF

cat "$OUT_DIR/table.md"
echo
echo "Run took ${ELAPSED} s on $(nproc) cores; load average before: $LOAD_BEFORE, after: $LOAD_AFTER."
echo
echo "Commands (each run $REPS times, interleaved; raw lines in $RAW):"
sort -u "$COMMANDS" | sed 's/^/    /'
