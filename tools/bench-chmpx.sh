#!/bin/sh
# chmpx round trips and throughput, side by side with the bare POSIX mq floor (mqbench).
# Starts one chmpx server node and one chmpx-echo server process on 127.0.0.1, runs chmpxbench
# as the client, then mqbench; cleans up on exit. Usage: tools/bench-chmpx.sh [RTT_ITERS] [MSGS]
# BENCH_BIN=DIR runs the binaries in DIR without building; BENCH_CHMPX=FILE runs that chmpx
# daemon instead of DIR's (to compare two daemons with the same client and echo server).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ITERS=${1:-20000}
MSGS=${2:-200000}
cd "$ROOT"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN=$BENCH_BIN
else
  cargo build -q --release -p chmpx --bins
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
DIR=$(mktemp -d)
GROUP=bench$$
PORTS=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(3)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))')
set -- $PORTS
PORT=$1; CTL=$2; SLV=$3
cat > "$DIR/bench.ini" <<INI
[GLOBAL]
GROUP = $GROUP
REPLICA = 0
AUTOMERGE = off
DATADIR = $DIR
[SVRNODE]
NAME = 127.0.0.1
PORT = $PORT
CTLPORT = $CTL
[SLVNODE]
NAME = 127.0.0.1
CTLPORT = $SLV
INI
"${BENCH_CHMPX:-$BIN/chmpx}" --conf "$DIR/bench.ini" --ctlport "$CTL" --threads "${CHMPX_THREADS:-1}" --log-level warn 2>"$DIR/chmpx.log" &
CHMPX=$!
cleanup() {
  kill "$ECHO" "$CHMPX" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"
  # A killed echo process cannot remove its queues and segment; remove what this run left.
  python3 "$ROOT/tools/remove-group-ipc.py" "$GROUP" || true
}
ECHO=
trap cleanup EXIT INT TERM
# Readiness: poll the control port, never a fixed sleep.
i=0
until "$BIN/chmpxctl" --host 127.0.0.1 --ctlport "$CTL" VERSION >/dev/null 2>&1; do
  i=$((i+1)); [ $i -lt 200 ] || { echo "chmpx did not start"; cat "$DIR/chmpx.log"; exit 1; }
  sleep 0.05
done
"$BIN/chmpx-echo" --cluster "$GROUP" --ctlport "$CTL" --node-id "127.0.0.1:$CTL" &
ECHO=$!
i=0
until "$BIN/chmpxstatus" --host 127.0.0.1 --ctlport "$CTL" --json 2>/dev/null | grep -q '"servers": 1'; do
  i=$((i+1)); [ $i -lt 200 ] || { echo "echo server did not attach"; exit 1; }
  sleep 0.05
done
# Idle cost: chmpx's CPU time over IDLE_SECS with the echo server attached and no traffic.
IDLE_SECS=${BENCH_IDLE_SECS:-2}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$CHMPX/stat"; }
sleep 0.2
T0=$(cpu_ticks)
sleep "$IDLE_SECS"
T1=$(cpu_ticks)
echo "chmpx idle with chmpx-echo attached: $((T1 - T0)) CPU ticks in ${IDLE_SECS} s ($(getconf CLK_TCK) ticks/s)"
"$BIN/chmpxbench" --cluster "$GROUP" --ctlport "$CTL" --rtt-iters "$ITERS" --pipelined-msgs "$MSGS"
echo
"$BIN/mqbench" --rtt-iters "$ITERS" --pipelined-msgs "$MSGS"
