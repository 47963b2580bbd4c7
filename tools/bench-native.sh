#!/usr/bin/env bash
# The dkc-server/dkc-client issue's performance figures, in one run, on one host:
#
#   raw  the raw chmpx round trip (chmpxbench with chmpx-echo attached as the server): through
#        one daemon (client and echo on the same chmpx, the chmpx issue's figure) and through
#        two daemons (client on a slave chmpx, echo on a server chmpx: the path a dkc request
#        takes on one host); 64 B and 4 KiB bodies.
#   (a)  `dkc-local up --nodes 1 --replica 0`, dkc-bench native: 1 KiB values, 90% get /
#        10% set over 100,000 preloaded keys, 32 concurrent callers, --duration (30 s).
#   (b)  the same on `dkc-local up --nodes 3 --replica 1` (ACKLEVEL all, from conf/).
#        For (a) and (b): ops/s, p50/p99/p99.9 latency, chmpx messages and bytes per operation
#        (summed over every chmpx's metrics: a message is counted at each daemon it passes),
#        median of --reps runs, and p50 ratios against the raw round trips. Each run is
#        followed by one with a single caller for --lat-duration (10 s): the unloaded latency.
#   (c)  on the (b) cluster under the same load: SIGKILL one server node's dkc-server and
#        chmpx, keep it down --down seconds (10), restart both, and time from the restart until
#        every node's merge is over; items and bytes the merges moved.
#   (d)  a fresh 4-node cluster (REPLICA 1) whose 4th node is taken out (SERVICEOUT) before
#        any data exists; --items (1,000,000) items of --item-size (100 B) are stored; then
#        SERVICEIN of the 4th node, timed until the merge is over and the ring settled; items
#        and bytes moved against the ideal (REPLICA+1)/N share.
#
# Merge figures come from each node's STATUSJSON (merge state and progress: slots, items and
# bytes moved by its last merge job) and, when the chmpx metrics page has them, from
# cumulative chmpx_merge_*_total counters (delta over the phase).
#
# Usage: tools/bench-native.sh [--duration 30s] [--lat-duration 10s] [--warmup 2s] [--reps 3] [--down 10]
#          [--items 1000000] [--item-size 100] [--base-port 15400] [--only raw,a,b,c,d]
#          [--commit REV]
# --commit REV measures exactly that commit: the tree is exported (git archive) to
# $OUT_DIR/src, built there, and the script runs from there (without it: the working tree,
# uncommitted changes included; the report says how many tracked files differ from HEAD).
# Environment: OUT_DIR (/tmp/bench-native), CARGO_TARGET_DIR (cargo's default),
#   NO_BUILD=1 (use the binaries already built). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SCRIPT_CMD="tools/bench-native.sh $*"

DURATION=30s
LAT_DURATION=10s
WARMUP=2s
REPS=3
DOWN_SECS=10
ITEMS=1000000
ITEM_SIZE=100
BASE=15400  # below the tests' port range 20000-31999; uses up to BASE + 1000 + 311
ONLY=raw,a,b,c,d
COMMIT_REV=""
# Fixed workload of the issue.
CONNECTIONS=32
KEYS=100000
VALUE_SIZE=1024
GET_RATIO=0.9
# Bounds (seconds).
READY_TIMEOUT_SECS=90
MERGE_TIMEOUT_SECS=300
PRELOAD_TIMEOUT_SECS=900
DROP_TIMEOUT_SECS=60
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --lat-duration) LAT_DURATION="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --down) DOWN_SECS="$2"; shift 2 ;;
    --items) ITEMS="$2"; shift 2 ;;
    --item-size) ITEM_SIZE="$2"; shift 2 ;;
    --base-port) BASE="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --commit) COMMIT_REV="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-native: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

OUT_DIR=${OUT_DIR:-/tmp/bench-native}
mkdir -p "$OUT_DIR"
if [ -n "$COMMIT_REV" ]; then
    REV=$(git rev-parse --short "$COMMIT_REV^{commit}") ||
        { echo "bench-native: --commit $COMMIT_REV is not a commit" >&2; exit 2; }
    # One source folder for every commit, updated file by file (a changed file gets a fresh
    # mtime, an unchanged one keeps its own), so cargo rebuilds only what the commit changed.
    SRC="$OUT_DIR/src"
    NEW="$OUT_DIR/src.new"
    rm -rf "$NEW"; mkdir -p "$NEW" "$SRC"
    git archive "$REV" | tar -x -C "$NEW"
    (cd "$NEW" && find . -type f) | while IFS= read -r f; do
        cmp -s "$NEW/$f" "$SRC/$f" || { mkdir -p "$(dirname "$SRC/$f")"; cp "$NEW/$f" "$SRC/$f"; }
    done
    (cd "$SRC" && find . -path ./target -prune -o -type f -print) | while IFS= read -r f; do
        [ -e "$NEW/$f" ] || rm -f "$SRC/$f"
    done
    rm -rf "$NEW"
    ARGS=()
    set -- $SCRIPT_CMD
    shift
    while [ $# -gt 0 ]; do
        if [ "$1" = --commit ]; then shift 2; else ARGS+=("$1"); shift; fi
    done
    echo "bench-native: measuring commit $REV from $SRC" >&2
    BENCH_COMMIT="$REV" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$SRC/target}" OUT_DIR="$OUT_DIR" \
        exec "$SRC/tools/bench-native.sh" "${ARGS[@]}"
fi
RES="$OUT_DIR/results"
rm -rf "$RES"
mkdir -p "$RES"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
T0=$(date +%s)
log() { printf '[bench-native +%4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }

if [ "${NO_BUILD:-0}" != 1 ]; then
    log "building release binaries"
    cargo build -q --release -p chmpx -p dkc-server -p dkc-client -p dkc-tools --bins
fi
for b in chmpx chmpx-echo chmpxbench chmpxstatus chmpxctl dkc-server dkc-local dkc-bench dkc; do
    [ -x "$BIN/$b" ] || { echo "bench-native: $BIN/$b missing (build, or set CARGO_TARGET_DIR)" >&2; exit 2; }
done
PY="$OUT_DIR/bench_native.py"
if [ -n "${BENCH_COMMIT:-}" ]; then
    COMMIT="$BENCH_COMMIT"; DIRTY=0 # an exported tree: exactly that commit
else
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
fi
echo "load_start $(cut -d' ' -f1-3 /proc/loadavg)" >"$RES/load"

# ---- the JSON/metrics helper -----------------------------------------------------------------
cat >"$PY" <<'PYEOF'
"""bench-native helper: polls chmpx STATUSJSON and metrics, parses reports, prints tables."""
import json, os, re, socket, statistics, subprocess, sys, time

BIN = os.environ["BIN"]

def status(ctl):
    try:
        out = subprocess.run([BIN + "/chmpxstatus", "--host", "127.0.0.1", "--ctlport", str(ctl), "--json"],
                             capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0:
        return None
    try:
        return json.loads(out.stdout)
    except ValueError:
        return None

def metrics(port):
    """Every chmpx_merge* sample of a metrics page: {"counters": {name: v}, "gauges": {name: v}}."""
    out = {"counters": {}, "gauges": {}}
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: chmpx\r\n\r\n")
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
        s.close()
    except OSError:
        return out
    types = {}
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("# TYPE chmpx_merge"):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
        elif line.startswith("chmpx_merge"):
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                v = float(parts[1])
            except ValueError:
                continue
            kind = "counters" if types.get(parts[0].split("{")[0]) == "counter" else "gauges"
            out[kind][parts[0]] = v
    return out

def self_node(r):
    for n in r.get("nodes", []):
        if n.get("is_self"):
            return n
    return None

def busy(r):
    return r.get("pending_epoch") is not None or any(
        n.get("merge") in ("Pending", "Doing") for n in r.get("nodes", []))

def snapshot(ctls, mports):
    """Per node: its own merge state and progress, and its merge metrics."""
    snap = {"t": time.time(), "nodes": {}}
    for ctl, mp in zip(ctls, mports):
        r = status(ctl)
        me = self_node(r) if r else None
        prog = (me or {}).get("progress") or {}
        snap["nodes"][str(ctl)] = {
            "uptime": r.get("uptime_secs") if r else None,
            "totals": prog.get("totals"),
            "merge": me.get("merge") if me else None,
            "progress": me.get("progress") if me else None,
            "epoch": r.get("epoch") if r else None,
            "metrics": metrics(mp),
        }
    return snap

def moved(before, after):
    """Items/bytes moved between two snapshots. Per node, its last merge job counts when it
    started after `before`: its STATUSJSON progress is younger than the gap, or (progress is
    cleared when a membership change completes) its chmpx_merge_*_moved gauges changed.
    Cumulative merge counters (chmpx_merge_*_total, when chmpx has them) count as deltas."""
    gap = after["t"] - before["t"]
    items = byts = 0
    jobs = []
    totals = {}
    for ctl, a in after["nodes"].items():
        b = before["nodes"].get(ctl, {})
        pa, pb = a.get("progress"), b.get("progress")
        ga = a.get("metrics", {}).get("gauges", {})
        gb = b.get("metrics", {}).get("gauges", {})
        keys = ("chmpx_merge_items_moved", "chmpx_merge_bytes_moved", "chmpx_merge_slots_total")
        job = None
        if pa and (pb is None or pa["elapsed_secs"] < pb["elapsed_secs"] + gap - 0.5):
            job = {"node": ctl, "slots": pa["slots_total"], "items": pa["items_moved"],
                   "bytes": pa["bytes_moved"], "secs": round(pa["elapsed_secs"], 2), "from": "status"}
        elif all(k in ga for k in keys) and any(ga.get(k) != gb.get(k) for k in keys):
            job = {"node": ctl, "slots": int(ga[keys[2]]), "items": int(ga[keys[0]]),
                   "bytes": int(ga[keys[1]]), "secs": None, "from": "metrics"}
        if job:
            items += job["items"]
            byts += job["bytes"]
            jobs.append(job)
        # A daemon restarted in between (uptime below the gap) starts its counts from zero.
        restarted = a.get("uptime") is not None and a["uptime"] < gap
        cb = {} if restarted else b.get("metrics", {}).get("counters", {})
        for k, v in a.get("metrics", {}).get("counters", {}).items():
            totals[k] = totals.get(k, 0) + v - cb.get(k, 0)
        ta = a.get("totals")
        if ta:
            tb = {} if restarted else (b.get("totals") or {})
            for k, v in ta.items():
                if isinstance(v, (int, float)):
                    key = "status_totals." + k
                    totals[key] = totals.get(key, 0) + v - tb.get(k, 0)
    return {"items": items, "bytes": byts, "jobs": jobs, "counters": totals}

def cmd_snapshot(args):
    ctls, mports, out = args[0].split(","), args[1].split(","), args[2]
    json.dump(snapshot(ctls, [int(m) for m in mports]), open(out, "w"))

def cmd_wait_settled(args):
    """wait-settled CTLS TIMEOUT [MEMBERS]: every node's view settled, one epoch, MEMBERS in."""
    ctls, timeout = args[0].split(","), float(args[1])
    members = int(args[2]) if len(args) > 2 else None
    deadline = time.time() + timeout
    while time.time() < deadline:
        rs = [status(c) for c in ctls]
        if all(rs) and not any(busy(r) for r in rs) and len({r["epoch"] for r in rs}) == 1:
            if members is None or all(
                    sum(n["ring"] == "ServiceIn" for n in r["nodes"]) == members for r in rs):
                return 0
        time.sleep(0.2)
    print("not settled after %.0f s" % timeout, file=sys.stderr)
    return 1

def cmd_watch_merge(args):
    """watch-merge CTLS MPORTS BEFORE T_START TIMEOUT OUT KIND [RESTARTED_CTL | EPOCH0 MEMBERS]
    Waits until the merge is over: for `recovery`, the restarted node finished its own merge
    (state Done) and no node is Pending/Doing; for `join`, every node has an epoch above EPOCH0
    with MEMBERS members and nothing pending. Holds for 1 s, then writes the figures."""
    ctls, mports = args[0].split(","), [int(m) for m in args[1].split(",")]
    before = json.load(open(args[2]))
    t_start, timeout, out, kind = float(args[3]), float(args[4]), args[5], args[6]
    deadline = t_start + timeout
    done_at = None
    seen_busy = False
    last_print = 0
    while time.time() < deadline:
        rs = {c: status(c) for c in ctls}
        ok = all(rs.values()) and not any(busy(r) for r in rs.values())
        if any(r and busy(r) for r in rs.values()):
            seen_busy = True
        if ok and kind == "recovery":
            me = self_node(rs[args[7]])
            ok = me is not None and me.get("merge") == "Done"
        elif ok and kind == "join":
            e0, members = int(args[7]), int(args[8])
            ok = all(r["epoch"] > e0 and sum(n["ring"] == "ServiceIn" for n in r["nodes"]) == members
                     for r in rs.values()) and len({r["epoch"] for r in rs.values()}) == 1
        now = time.time()
        if ok:
            if done_at is None:
                done_at = now
            elif now - done_at >= 1.0:
                break
        else:
            done_at = None
        if now - last_print >= 2:
            last_print = now
            prog = []
            for c, r in rs.items():
                me = self_node(r) if r else None
                if me is None:
                    prog.append("%s: no answer" % c)
                    continue
                p = me.get("progress") or {}
                prog.append("%s %s %s/%s slots %s items" % (c, me.get("merge"), p.get("slots_done", "-"),
                                                         p.get("slots_total", "-"), p.get("items_moved", "-")))
            print("  [%5.1f s] %s" % (now - t_start, "; ".join(prog)), file=sys.stderr)
        time.sleep(0.1)
    after = snapshot(ctls, mports)
    res = moved(before, after)
    res["settled"] = done_at is not None
    res["secs"] = (done_at - t_start) if done_at is not None else None
    res["seen_busy"] = seen_busy
    json.dump(res, open(out, "w"))
    return 0 if done_at is not None else 1

def cmd_wait_copies(args):
    """wait-copies CONF CTL TARGET TIMEOUT T_START OUT: polls `dkc stats` until the copies held
    (sum of curr_items) are down to TARGET (old owners dropped what they handed off); writes
    {"copies": N, "secs": seconds since T_START or null}."""
    conf, ctl, target, timeout, t_start, out = args[0], args[1], int(args[2]), float(args[3]), float(args[4]), args[5]
    deadline = time.time() + timeout
    copies, secs = None, None
    while True:
        try:
            r = subprocess.run([BIN + "/dkc", "--conf", conf, "--ctlport", ctl, "--json", "stats"],
                               capture_output=True, text=True, timeout=20)
            copies = sum(n["stats"]["curr_items"] for n in json.loads(r.stdout)["nodes"])
        except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
            copies = None
        if copies is not None and copies <= target:
            secs = time.time() - t_start
            break
        if time.time() >= deadline:
            break
        time.sleep(1)
    json.dump({"copies": copies, "secs": secs}, open(out, "w"))

def parse_chmpxbench(path):
    """p50/p99 per size from chmpxbench's text."""
    out = {}
    for line in open(path):
        m = re.search(r"round trip\s+(\d+) B: p50\s+([\d.]+) us\s+p99\s+([\d.]+) us", line)
        if m:
            out[m.group(1)] = {"p50": float(m.group(2)), "p99": float(m.group(3))}
        m = re.search(r"pipelined 64 B,\s+(\d+) outstanding:\s+([\d.]+)", line)
        if m:
            out["pipe%s" % m.group(1)] = float(m.group(2))
    return out

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(v, d=0):
    if v is None:
        return "n/a"
    return "{:,.{d}f}".format(v, d=d)

def cmd_report(args):
    res = args[0]
    files = sorted(os.listdir(res))
    raw = {}
    for f in files:
        m = re.match(r"raw-(1d|2d)-(\d+)\.txt$", f)
        if m:
            raw.setdefault(m.group(1), []).append(parse_chmpxbench(os.path.join(res, f)))
    def rawmed(kind, size, q):
        return med([r.get(size, {}).get(q) for r in raw.get(kind, [])])
    lines = []
    P = lines.append
    if raw:
        P("Raw chmpx round trip (chmpxbench -> chmpx-echo), median of %d runs:" % max(len(v) for v in raw.values()))
        P("")
        P("| path | p50 64 B us | p99 64 B us | p50 4 KiB us | p99 4 KiB us | 1 outstanding msg/s | 16 outstanding msg/s |")
        P("|---|---|---|---|---|---|---|")
        for kind, label in (("1d", "1 daemon (client and echo on one chmpx)"), ("2d", "2 daemons (slave chmpx -> server chmpx)")):
            if kind in raw:
                P("| %s | %s | %s | %s | %s | %s | %s |" % (label, fmt(rawmed(kind, "64", "p50"), 1), fmt(rawmed(kind, "64", "p99"), 1),
                  fmt(rawmed(kind, "4096", "p50"), 1), fmt(rawmed(kind, "4096", "p99"), 1),
                  fmt(med([r.get("pipe1") for r in raw[kind]])), fmt(med([r.get("pipe16") for r in raw[kind]]))))
        P("")
    r1, r2 = rawmed("1d", "64", "p50"), rawmed("2d", "64", "p50")
    cfgs = [("a", "(a) 1 node, REPLICA 0, 32 callers"), ("b", "(b) 3 nodes, REPLICA 1, ack all, 32 callers"),
            ("a1", "(a) 1 node, REPLICA 0, 1 caller"), ("b1", "(b) 3 nodes, REPLICA 1, ack all, 1 caller")]
    rows = []
    for key, label in cfgs:
        reps = []
        for f in files:
            if re.match(r"native-%s-\d+\.json$" % key, f):
                try:
                    reps.append(json.load(open(os.path.join(res, f))))
                except ValueError:
                    pass
        if reps:
            rows.append((label, reps))
    if rows:
        P("dkc-bench native, %s keys, %s B values, %d%% get; median of the runs (each column on its own):" % (
            fmt(rows[0][1][0]["keys"]), rows[0][1][0]["value_size"], round(rows[0][1][0]["get_ratio"] * 100)))
        P("")
        P("| configuration | runs | ops/s | p50 us | p99 us | p99.9 us | messages/op | bytes/op | errors | p50 / raw 1-daemon 64 B | p50 / raw 2-daemon 64 B |")
        P("|---|---|---|---|---|---|---|---|---|---|---|")
        for label, reps in rows:
            p50 = med([r["latency_us"]["p50"] for r in reps])
            P("| %s | %d | %s | %s | %s | %s | %s | %s | %d | %s | %s |" % (
                label, len(reps), fmt(med([r["ops_per_sec"] for r in reps])), fmt(p50),
                fmt(med([r["latency_us"]["p99"] for r in reps])), fmt(med([r["latency_us"]["p999"] for r in reps])),
                fmt(med([r.get("messages_per_op") for r in reps]), 2), fmt(med([r.get("bytes_per_op") for r in reps])),
                sum(r["errors"] + r["wrong_values"] for r in reps),
                ("%.1fx" % (p50 / r1)) if p50 and r1 else "n/a", ("%.1fx" % (p50 / r2)) if p50 and r2 else "n/a"))
        P("")
        P("ops/s per run: " + "; ".join("%s: %s" % (l, ", ".join(fmt(r["ops_per_sec"]) for r in reps)) for l, reps in rows))
        P("")
    merges = {}
    for key in ("c", "d"):
        p = os.path.join(res, "merge-%s.json" % key)
        if os.path.exists(p):
            merges[key] = json.load(open(p))
    if merges:
        P("Merges (time from the restart / the SERVICEIN until every node's merge is over and the ring settled;")
        P("items and bytes copied by the merge jobs that ran in that time, summed over the nodes):")
        P("")
        P("| merge | settled | seconds | items moved | bytes moved | cumulative totals: items / bytes moved, items dropped | for comparison |")
        P("|---|---|---|---|---|---|---|")
        def cum(m):
            t = m.get("counters", {})
            if "status_totals.items_moved" not in t:
                return "n/a (chmpx has no totals)"
            return "%s / %s / %s" % (fmt(t.get("status_totals.items_moved")), fmt(t.get("status_totals.bytes_moved")),
                                     fmt(t.get("status_totals.items_dropped")))
        c = merges.get("c")
        if c:
            P("| (c) node SIGKILLed for %s s under load, restarted | %s | %s | %s | %s | %s | about %s sets were made while it was down (load %s ops/s, %s errors) |" % (
                fmt(c.get("down_secs")), "yes" if c.get("settled") else "**no**", fmt(c.get("secs"), 1),
                fmt(c.get("items")), fmt(c.get("bytes")), cum(c), fmt(c.get("sets_in_down_window_est")),
                fmt(c.get("load_ops_per_sec")), c.get("load_errors", "n/a")))
        d = merges.get("d")
        if d:
            P("| (d) 4th node SERVICEIN, %s items of %s B stored | %s | %s | %s | %s | %s | ideal (REPLICA+1)/N = 2/4: %s items; moved %s of the items |" % (
                fmt(d.get("items_stored")), d.get("item_value_bytes"), "yes" if d.get("settled") else "**no**",
                fmt(d.get("secs"), 1), fmt(d.get("items")), fmt(d.get("bytes")), cum(d), fmt(d.get("ideal_moved_items")),
                d.get("moved_share_of_items")))
        P("")
        for key, m in sorted(merges.items()):
            P("(%s) merge jobs (node: slots / items / bytes / seconds, from STATUSJSON or metrics): %s" % (key, "; ".join(
                "%s: %s / %s / %s / %s" % (j["node"], j["slots"], j["items"], j["bytes"], j["secs"]) for j in m.get("jobs", []))))
            if m.get("counters"):
                P("(%s) cumulative merge counters (delta, summed over the nodes): %s" % (key, ", ".join(
                    "%s %s" % (k, fmt(v)) for k, v in sorted(m["counters"].items()))))
            if key == "d":
                P("(d) items per node (curr_items, bytes) before: %s" % m.get("curr_items_bytes_before"))
                P("(d) old owners back to %s copies: %s" % (fmt(m.get("copies_before")),
                  ("%.1f s after the SERVICEIN" % m["dropped_secs"]) if m.get("dropped_secs") is not None else
                  "**not within the wait** (%s copies at the end)" % fmt(m.get("copies_at_end"))))
                P("(d) after: %s; copies before %s, after %s (ideal after: %s); the newcomer holds %s items (%s of all), %s bytes; preload took %s s" % (
                    m.get("curr_items_bytes_after"), fmt(m.get("copies_before")), fmt(m.get("copies_after")),
                    fmt(2 * m.get("items_stored", 0)), fmt(m.get("newcomer_items")), m.get("newcomer_share"),
                    fmt(m.get("newcomer_bytes")), m.get("preload_secs")))
        P("")
    print("\n".join(lines))

def cmd_bench_field(args):
    r = json.load(open(args[0]))
    v = r
    for k in args[1].split("."):
        v = v[k]
    print(v)

if __name__ == "__main__":
    cmd = sys.argv[1].replace("-", "_")
    sys.exit(globals()["cmd_" + cmd](sys.argv[2:]) or 0)
PYEOF
export BIN
py() { python3 "$PY" "$@"; }

# ---- process bookkeeping ---------------------------------------------------------------------
RAW_PIDS=""
EXTRA_PIDS=""
LOCAL_DIRS=""
RAW_GROUP=""
cleanup() {
    set +e
    for p in $RAW_PIDS $EXTRA_PIDS; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in $RAW_PIDS $EXTRA_PIDS; do kill -9 "$p" 2>/dev/null; done
    for d in $LOCAL_DIRS; do "$BIN/dkc-local" down --dir "$d" >/dev/null 2>&1; done
    [ -n "$RAW_GROUP" ] && remove_ipc "$RAW_GROUP"
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Removes the queues and segments killed processes of GROUP left (as bench-chmpx.sh does).
remove_ipc() {
    python3 "$ROOT/tools/remove-group-ipc.py" "$1" || true
}

wait_ctl() { # wait_ctl CTLPORT: until chmpx answers on its control port
    local i=0
    until "$BIN/chmpxctl" --host 127.0.0.1 --ctlport "$1" VERSION >/dev/null 2>&1; do
        i=$((i + 1)); [ $i -lt 400 ] || { echo "bench-native: chmpx $1 did not answer" >&2; return 1; }
        sleep 0.05
    done
}

# local_up NAME NODES REPLICA BASEPORT: a detached dkc-local cluster in $OUT_DIR/NAME.
local_up() {
    local dir="$OUT_DIR/$1"
    "$BIN/dkc-local" down --dir "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    LOCAL_DIRS="$LOCAL_DIRS $dir"
    "$BIN/dkc-local" up --detach --nodes "$2" --replica "$3" --dir "$dir" --base-port "$4" \
        --port 0 --group "bn$$$1" --conf-dir conf --ready-timeout "$READY_TIMEOUT_SECS" >"$OUT_DIR/$1-up.log" 2>&1 ||
        { cat "$OUT_DIR/$1-up.log" >&2; return 1; }
}
local_down() {
    "$BIN/dkc-local" down --dir "$OUT_DIR/$1" >/dev/null 2>&1 || true
}
# Ports of a dkc-local plan (see tools/src/local/config_gen.rs): node i ctl base+2i+1,
# metrics ctl+1000; slave ctl base+max(11, 2N+1).
node_ctls() { local i out=""; for ((i = 0; i < $2; i++)); do out="$out${out:+,}$(($1 + 2 * i + 1))"; done; echo "$out"; }
node_mports() { local i out=""; for ((i = 0; i < $2; i++)); do out="$out${out:+,}$(($1 + 2 * i + 1001))"; done; echo "$out"; }
slave_ctl() { local off=$((2 * $2 + 1)); [ $off -ge 11 ] || off=11; echo $(($1 + off)); }

native() { # native NAME BASE NODES OUTFILE EXTRA...: dkc-bench native against a dkc-local run
    local name=$1 base=$2 nodes=$3 out=$4
    shift 4
    local sctl
    sctl=$(slave_ctl "$base" "$nodes")
    "$BIN/dkc-bench" native --conf "$OUT_DIR/$name/slave.ini" --ctlport "$sctl" \
        --connections "${NCONN:-$CONNECTIONS}" --value-size "$VALUE_SIZE" --keys "$KEYS" --get-ratio "$GET_RATIO" \
        --metrics "127.0.0.1:$((sctl + 1000)),$(node_mports "$base" "$nodes" | sed 's/\([0-9]\+\)/127.0.0.1:\1/g')" \
        --json "$@" >"$out" 2>"$out.log"
}
CMD_NATIVE="dkc-bench native --conf DIR/slave.ini --ctlport SLAVE_CTL --connections $CONNECTIONS --value-size $VALUE_SIZE --keys $KEYS --get-ratio $GET_RATIO --warmup $WARMUP --duration $DURATION --metrics SLAVE_METRICS,NODE_METRICS... --json (first run also --preload)"

# ---- raw chmpx round trip --------------------------------------------------------------------
if want raw; then
    log "raw chmpx round trip: one server chmpx + chmpx-echo, one slave chmpx"
    RAW_GROUP="bn$$r"
    RDIR="$OUT_DIR/raw"
    rm -rf "$RDIR"; mkdir -p "$RDIR"
    RPORT=$((BASE + 300)); RCTL=$((BASE + 301)); RSLV=$((BASE + 311))
    cat >"$RDIR/raw.ini" <<INI
[GLOBAL]
GROUP = $RAW_GROUP
REPLICA = 0
AUTOMERGE = off
DATADIR = $RDIR
[SVRNODE]
NAME = 127.0.0.1
PORT = $RPORT
CTLPORT = $RCTL
[SLVNODE]
NAME = 127.0.0.1
CTLPORT = $RSLV
INI
    "$BIN/chmpx" --conf "$RDIR/raw.ini" --ctlport "$RCTL" --log-level warn 2>"$RDIR/chmpx-server.log" &
    RAW_PIDS="$RAW_PIDS $!"
    wait_ctl "$RCTL"
    "$BIN/chmpx" --conf "$RDIR/raw.ini" --ctlport "$RSLV" --log-level warn 2>"$RDIR/chmpx-slave.log" &
    RAW_PIDS="$RAW_PIDS $!"
    wait_ctl "$RSLV"
    "$BIN/chmpx-echo" --cluster "$RAW_GROUP" --ctlport "$RCTL" --node-id "127.0.0.1:$RCTL" 2>"$RDIR/echo.log" &
    RAW_PIDS="$RAW_PIDS $!"
    i=0
    until "$BIN/chmpxstatus" --host 127.0.0.1 --ctlport "$RSLV" --json 2>/dev/null | grep -q '"server_attached": true'; do
        i=$((i + 1)); [ $i -lt 400 ] || { echo "bench-native: echo server not seen by the slave" >&2; exit 1; }
        sleep 0.05
    done
    for ((r = 1; r <= REPS; r++)); do
        for kind in 1d 2d; do
            ctl=$RCTL; [ $kind = 2d ] && ctl=$RSLV
            msgs=100000; [ $kind = 2d ] && msgs=10000 # the 2-daemon path pipelines slowly
            timeout 300 "$BIN/chmpxbench" --cluster "$RAW_GROUP" --ctlport "$ctl" --rtt-iters 20000 \
                --pipelined-msgs "$msgs" >"$RES/raw-$kind-$r.txt" 2>&1 ||
                log "chmpxbench $kind run $r failed (see $RES/raw-$kind-$r.txt)"
            log "raw $kind run $r: $(grep -m1 'round trip' "$RES/raw-$kind-$r.txt" || echo failed)"
        done
    done
    for p in $RAW_PIDS; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    RAW_PIDS=""
    remove_ipc "$RAW_GROUP"
fi

# ---- (a) and (b) -------------------------------------------------------------------------------
run_config() { # run_config KEY NODES REPLICA BASE
    local key=$1 nodes=$2 replica=$3 base=$4
    log "($key) dkc-local up --nodes $nodes --replica $replica --base-port $base"
    local_up "$key" "$nodes" "$replica" "$base"
    for ((r = 1; r <= REPS; r++)); do
        local pre=()
        [ "$r" = 1 ] && pre=(--preload)
        log "($key) run $r/$REPS: dkc-bench native --duration $DURATION ${pre[*]}"
        native "$key" "$base" "$nodes" "$RES/native-$key-$r.json" --warmup "$WARMUP" --duration "$DURATION" "${pre[@]}" ||
            { log "($key) run $r failed:"; tail -5 "$RES/native-$key-$r.json.log" >&2; }
        grep -h 'latency\|ops  \|errors\|chmpx ' "$RES/native-$key-$r.json.log" >&2 || true
        # One caller: the unloaded latency of one operation, the figure to set beside the raw
        # round trip (with 32 callers, p50 includes queueing: 32 / ops/s on average).
        log "($key) run $r/$REPS: dkc-bench native --connections 1 --duration $LAT_DURATION"
        NCONN=1 native "$key" "$base" "$nodes" "$RES/native-${key}1-$r.json" --warmup 1s --duration "$LAT_DURATION" ||
            { log "($key) 1-caller run $r failed:"; tail -5 "$RES/native-${key}1-$r.json.log" >&2; }
        grep -h 'latency' "$RES/native-${key}1-$r.json.log" >&2 || true
    done
}
if want a; then
    run_config a 1 0 "$BASE"
    local_down a
fi
BB=$((BASE + 100))
if want b || want c; then
    if want b; then
        run_config b 3 1 "$BB"
    else
        log "(c) dkc-local up --nodes 3 --replica 1 --base-port $BB"
        local_up b 3 1 "$BB"
        native b "$BB" 3 "$RES/preload-c.json" --preload --warmup 0s --duration 1s
    fi
fi

# ---- (c) recovery merge after a node was down under load --------------------------------------
if want c; then
    CTLS=$(node_ctls "$BB" 3); MPORTS=$(node_mports "$BB" 3)
    VICTIM=$((BB + 3)) # the second node
    LOAD_SECS=$((DOWN_SECS + 40))
    log "(c) load for ${LOAD_SECS}s; node $VICTIM is killed at +5 s for ${DOWN_SECS}s"
    native b "$BB" 3 "$RES/merge-c-load.json" --warmup 0s --duration "${LOAD_SECS}s" --timeout 2s &
    LOADPID=$!
    sleep 5
    py snapshot "$CTLS" "$MPORTS" "$RES/merge-c-before.json"
    RUNF="$OUT_DIR/b/dkc-local.run"
    SPID=$(awk -v c="$VICTIM" '$1=="proc" && $4=="dkc-server" && $5==c {print $2}' "$RUNF")
    CPID=$(awk -v c="$VICTIM" '$1=="proc" && $4=="chmpx" && $5==c {print $2}' "$RUNF")
    [ -n "$SPID" ] && [ -n "$CPID" ] || { echo "bench-native: node $VICTIM not in $RUNF" >&2; exit 1; }
    kill -9 "$SPID" "$CPID"
    T_KILL=$(date +%s.%N)
    log "(c) SIGKILL dkc-server $SPID and chmpx $CPID of node $VICTIM"
    sleep "$DOWN_SECS"
    T_RESTART=$(date +%s.%N)
    "$BIN/chmpx" --conf "$OUT_DIR/b/server.ini" --ctlport "$VICTIM" </dev/null >/dev/null 2>"$OUT_DIR/b/logs/chmpx-$VICTIM-restarted.log" &
    EXTRA_PIDS="$EXTRA_PIDS $!"
    wait_ctl "$VICTIM"
    "$BIN/dkc-server" --conf "$OUT_DIR/b/server.ini" --ctlport "$VICTIM" </dev/null >/dev/null 2>"$OUT_DIR/b/logs/dkc-server-$VICTIM-restarted.log" &
    EXTRA_PIDS="$EXTRA_PIDS $!"
    log "(c) restarted node $VICTIM after $(python3 -c "print(round($T_RESTART-$T_KILL,1))") s; waiting for its merge"
    py watch-merge "$CTLS" "$MPORTS" "$RES/merge-c-before.json" "$T_RESTART" "$MERGE_TIMEOUT_SECS" \
        "$RES/merge-c.json" recovery "$VICTIM" || log "(c) merge did not finish within ${MERGE_TIMEOUT_SECS}s"
    wait "$LOADPID" || log "(c) the load run failed (see $RES/merge-c-load.json.log)"
    python3 - "$RES/merge-c.json" "$RES/merge-c-load.json" "$DOWN_SECS" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
try:
    l = json.load(open(sys.argv[2]))
    m["load_ops_per_sec"] = round(l["ops_per_sec"])
    m["load_errors"] = l["errors"]
    m["load_wrong_values"] = l["wrong_values"]
    m["load_misses"] = l["misses"]
    m["sets_in_down_window_est"] = round(l["sets"] / l["elapsed_secs"] * float(sys.argv[3]))
except (OSError, ValueError, KeyError):
    m["load"] = "load report missing"
m["down_secs"] = float(sys.argv[3])
json.dump(m, open(sys.argv[1], "w"))
PY
    log "(c) $(cat "$RES/merge-c.json")"
fi
if want b || want c; then local_down b; fi
for p in $EXTRA_PIDS; do kill "$p" 2>/dev/null || true; done
EXTRA_PIDS=""

# ---- (d) a 4th node joins with ITEMS items stored ----------------------------------------------
if want d; then
    BD=$((BASE + 200))
    CTLS=$(node_ctls "$BD" 4); MPORTS=$(node_mports "$BD" 4)
    NEW=$((BD + 7))
    SCTL=$(slave_ctl "$BD" 4)
    log "(d) dkc-local up --nodes 4 --replica 1 --base-port $BD; SERVICEOUT 127.0.0.1:$NEW before any data"
    local_up d 4 1 "$BD"
    # Let the start-up recovery merges finish first: a SERVICEOUT given while a node still
    # wants its start-up recovery merge stays Pending for good (seen at 02ce8c7).
    py wait-settled "$CTLS" 60 4
    "$BIN/chmpxctl" --host 127.0.0.1 --ctlport "$SCTL" SERVICEOUT "127.0.0.1:$NEW" >&2
    py wait-settled "$CTLS" 60 3
    log "(d) storing $ITEMS items of $ITEM_SIZE B (dkc-bench native --preload, $CONNECTIONS callers)"
    T=$(date +%s)
    timeout "$PRELOAD_TIMEOUT_SECS" "$BIN/dkc-bench" native --conf "$OUT_DIR/d/slave.ini" --ctlport "$SCTL" \
        --connections "$CONNECTIONS" --keys "$ITEMS" --value-size "$ITEM_SIZE" --preload --get-ratio 1 \
        --warmup 0s --ops 1 --duration 1s >"$RES/preload-d.txt" 2>&1 ||
        { tail -5 "$RES/preload-d.txt" >&2; echo "bench-native: (d) preload failed" >&2; exit 1; }
    PRELOAD_SECS=$(($(date +%s) - T))
    log "(d) $(grep -m1 preloaded "$RES/preload-d.txt")"
    "$BIN/dkc" --conf "$OUT_DIR/d/slave.ini" --ctlport "$SCTL" --json stats >"$RES/stats-d-before.json" 2>&1 || true
    py wait-settled "$CTLS" 60 3 || true
    E0=$("$BIN/chmpxstatus" --host 127.0.0.1 --ctlport "$SCTL" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')
    py snapshot "$CTLS" "$MPORTS" "$RES/merge-d-before.json"
    T_IN=$(date +%s.%N)
    "$BIN/chmpxctl" --host 127.0.0.1 --ctlport "$SCTL" SERVICEIN "127.0.0.1:$NEW" >&2
    log "(d) SERVICEIN 127.0.0.1:$NEW (epoch $E0); waiting for the merge"
    py watch-merge "$CTLS" "$MPORTS" "$RES/merge-d-before.json" "$T_IN" "$MERGE_TIMEOUT_SECS" \
        "$RES/merge-d.json" join "$E0" 4 || log "(d) merge did not finish within ${MERGE_TIMEOUT_SECS}s"
    "$BIN/dkc" --conf "$OUT_DIR/d/slave.ini" --ctlport "$SCTL" --json stats >"$RES/stats-d-after.json" 2>&1 || true
    COPIES0=$(python3 -c 'import json,sys; print(sum(n["stats"]["curr_items"] for n in json.load(open(sys.argv[1]))["nodes"]))' "$RES/stats-d-before.json" || echo 0)
    log "(d) waiting up to ${DROP_TIMEOUT_SECS}s for the old owners to drop what they handed off ($COPIES0 copies)"
    py wait-copies "$OUT_DIR/d/slave.ini" "$SCTL" "$COPIES0" "$DROP_TIMEOUT_SECS" "$T_IN" "$RES/drop-d.json"
    python3 - "$RES/merge-d.json" "$RES/stats-d-before.json" "$RES/stats-d-after.json" "$ITEMS" "$ITEM_SIZE" "$NEW" "$PRELOAD_SECS" "$RES/drop-d.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
try:
    drop = json.load(open(sys.argv[8]))
    m["copies_at_end"] = drop["copies"]
    m["dropped_secs"] = drop["secs"]
except (OSError, ValueError, KeyError):
    pass
items, size, new = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
def per_node(path):
    """node -> (curr_items, bytes) from `dkc --json stats`."""
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        return {}
    return {n["node"]: [n["stats"].get("curr_items"), n["stats"].get("bytes")] for n in d.get("nodes", [])}
m["items_stored"] = items
m["item_value_bytes"] = size
m["preload_secs"] = int(sys.argv[7])
m["curr_items_bytes_before"] = per_node(sys.argv[2])
m["curr_items_bytes_after"] = per_node(sys.argv[3])
ideal = 2 / 4
m["ideal_moved_items"] = round(items * ideal)
m["moved_share_of_items"] = round(m["items"] / items, 3)
got = [v for k, v in m["curr_items_bytes_after"].items() if k.endswith(":" + new)]
if got:
    m["newcomer_items"], m["newcomer_bytes"] = got[0]
    m["newcomer_share"] = round(got[0][0] / items, 3)
m["copies_before"] = sum(v[0] for v in m["curr_items_bytes_before"].values())
m["copies_after"] = sum(v[0] for v in m["curr_items_bytes_after"].values())
json.dump(m, open(sys.argv[1], "w"))
PY
    log "(d) $(cat "$RES/merge-d.json")"
    local_down d
fi

# ---- report ------------------------------------------------------------------------------------
echo "load_end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$RES/load"
{
    echo "bench-native: $SCRIPT_CMD"
    echo "commit $COMMIT (uncommitted changes in $DIRTY tracked files), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores"
    echo "load average (1/5/15 min): start $(sed -n 's/load_start //p' "$RES/load"), end $(sed -n 's/load_end //p' "$RES/load")"
    echo
    py report "$RES"
    echo "Commands: $CMD_NATIVE; 1-caller runs: the same with --connections 1 --warmup 1s --duration $LAT_DURATION; raw: chmpxbench --cluster G --ctlport (server|slave) --rtt-iters 20000 --pipelined-msgs (100000|10000)"
    echo "Results and logs: $RES, $OUT_DIR/{a,b,d}/logs"
} | tee "$OUT_DIR/report.md"
