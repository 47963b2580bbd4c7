#!/usr/bin/env bash
# What TLS costs on the link between two chmpx daemons: plain TCP against SSL = on, same build,
# same host, alternating runs.
#
# Each run starts a server chmpx with chmpx-echo attached and a slave chmpx on 127.0.0.1 and
# runs chmpxbench attached to the slave, so every message crosses the slave -> server link and
# back (client -> slave chmpx -> link -> server chmpx -> echo -> back). TLS runs use a throwaway
# CA and a certificate for 127.0.0.1 made with openssl, SSL_VERIFY_PEER on (both ends show a
# certificate). Prints each run and the medians per mode with the TLS / plain ratio.
#
# Usage: tools/bench-link-tls.sh [REPS (3)] [RTT_ITERS (20000)] [MSGS (200000)]
# Environment: CARGO_TARGET_DIR (the build to use; cargo's default), OUT_DIR (/tmp/link-tls),
#   BASE_PORT (18800; the run uses BASE_PORT..+2).
# Needs: a release build of chmpx, chmpx-echo, chmpxbench and chmpxctl; openssl; python3.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS="${1:-3}"
ITERS="${2:-20000}"
MSGS="${3:-200000}"
OUT_DIR="${OUT_DIR:-/tmp/link-tls}"
BASE_PORT="${BASE_PORT:-18800}"
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
for b in chmpx chmpx-echo chmpxbench chmpxctl; do
    [ -x "$BIN/$b" ] || { echo "bench-link-tls: no $BIN/$b (cargo build --release -p chmpx)" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "bench-link-tls: needs openssl (apt-get install openssl)" >&2; exit 1; }
rm -rf "$OUT_DIR"
mkdir -p "$OUT_DIR"

# A CA and one certificate for 127.0.0.1, shown by both ends.
PKI="$OUT_DIR/pki"
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=dkc bench CA" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$PKI/node.key" -out "$PKI/node.csr" 2>/dev/null
printf "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n" >"$PKI/node.ext"
openssl x509 -req -in "$PKI/node.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 1 -extfile "$PKI/node.ext" -out "$PKI/node.pem" 2>/dev/null

PIDS=()
GROUP=""
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
    # A killed echo process cannot remove its queues and segment; remove what the run left.
    [ -z "$GROUP" ] || python3 tools/remove-group-ipc.py "$GROUP" || true
}
trap stop_all EXIT

# One run: MODE plain|tls, REP; appends "MODE rtt64p50 rtt64p99 rtt4kp50 pipe1 pipe16".
run_once() {
    local mode="$1" rep="$2" dir="$OUT_DIR/$1-$2"
    mkdir -p "$dir"
    GROUP="lt$$$rep${mode:0:1}"
    # Fixed ports below the tests' 20000-31999 (ephemeral ones can be taken by the previous
    # run's outgoing connections).
    PORT=$BASE_PORT; CTL=$((BASE_PORT + 1)); SLV=$((BASE_PORT + 2))
    {
        echo "[GLOBAL]"
        echo "GROUP = $GROUP"
        echo "REPLICA = 0"
        echo "AUTOMERGE = off"
        echo "DATADIR = $dir"
        if [ "$mode" = tls ]; then
            echo "SSL = on"
            echo "SSL_VERIFY_PEER = on"
            echo "CAPATH = $PKI/ca.pem"
            echo "SERVER_CERT = $PKI/node.pem"
            echo "SERVER_PRIKEY = $PKI/node.key"
            echo "SLAVE_CERT = $PKI/node.pem"
            echo "SLAVE_PRIKEY = $PKI/node.key"
        fi
        printf "[SVRNODE]\nNAME = 127.0.0.1\nPORT = %s\nCTLPORT = %s\n" "$PORT" "$CTL"
        printf "[SLVNODE]\nNAME = 127.0.0.1\nCTLPORT = %s\n" "$SLV"
    } >"$dir/bench.ini"
    "$BIN/chmpx" --conf "$dir/bench.ini" --ctlport "$CTL" --log-level warn 2>"$dir/server.log" &
    PIDS+=($!)
    "$BIN/chmpx" --conf "$dir/bench.ini" --ctlport "$SLV" --log-level warn 2>"$dir/slave.log" &
    PIDS+=($!)
    local i=0
    until "$BIN/chmpxctl" --host 127.0.0.1 --ctlport "$CTL" VERSION >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 200 ] || { echo "chmpx did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
        sleep 0.05
    done
    "$BIN/chmpx-echo" --cluster "$GROUP" --ctlport "$CTL" --node-id "127.0.0.1:$CTL" 2>"$dir/echo.log" &
    PIDS+=($!)
    # Ready when a short run through the slave succeeds (link UP, echo attached).
    i=0
    until "$BIN/chmpxbench" --cluster "$GROUP" --ctlport "$SLV" --rtt-iters 20 --pipelined-msgs 20 >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 100 ] || { echo "the slave path did not come up" >&2; cat "$dir"/*.log >&2; exit 1; }
        sleep 0.1
    done
    local out
    out=$("$BIN/chmpxbench" --cluster "$GROUP" --ctlport "$SLV" --rtt-iters "$ITERS" --pipelined-msgs "$MSGS")
    echo "$out" >"$dir/chmpxbench.txt"
    local r64 r4k p1 p16
    r64=$(awk '/round trip +64 B/ {print $6, $9}' <<<"$out")
    r4k=$(awk '/round trip +4096 B/ {print $6}' <<<"$out")
    p1=$(awk '/ 1 outstanding/ {print $(NF-1)}' <<<"$out")
    p16=$(awk '/16 outstanding/ {print $(NF-1)}' <<<"$out")
    echo "$mode $r64 $r4k $p1 $p16" >>"$OUT_DIR/results.txt"
    echo "run $rep $mode: rtt 64 B p50/p99 $r64 us, rtt 4 KiB p50 $r4k us, pipelined 1: $p1 msg/s, 16: $p16 msg/s"
    stop_all
}

for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) -eq 1 ]; then order="plain tls"; else order="tls plain"; fi
    for mode in $order; do run_once "$mode" "$rep"; done
done

python3 - "$OUT_DIR/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cols = [("round trip 64 B p50, us", 1), ("round trip 64 B p99, us", 2),
        ("round trip 4 KiB p50, us", 3), ("pipelined 64 B, 1 outstanding, msg/s", 4),
        ("pipelined 64 B, 16 outstanding, msg/s", 5)]
print("\n| slave -> server link (medians) | plain | TLS | TLS / plain |")
print("|---|---|---|---|")
for name, c in cols:
    p = statistics.median(float(r[c]) for r in rows if r[0] == "plain")
    t = statistics.median(float(r[c]) for r in rows if r[0] == "tls")
    print(f"| {name} | {p:,.1f} | {t:,.1f} | {t / p:.2f}x |")
PY
