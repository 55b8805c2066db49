#!/bin/sh
# suite.sh: `make bench`. Start a fresh roomd (2 workers, private redis, a
# free port, no JSON heartbeats, no rate limit: the suite measures capacity,
# not the limiter), run the standard roomd-bench suite against
# it, stop it, and print a markdown table of the results.
#
#   tests/bench/suite.sh [path/to/roomd]
#
# roomd comes from the argument, else $ROOMD_BIN; roomd-bench from
# $ROOMD_BENCH_BIN, else src/bench/roomd-bench next to roomd. DUR (10),
# HOLD (5) and CONNS_CONNECT (10000) shrink the suite for a quick look;
# OUT names a file to keep the JSON lines in. PIN=cpu runs the pinned split:
# roomd with 1 worker, it and its redis on that CPU, roomd-bench on the
# others (roomd-bench --pin). Every run is bounded, and the whole suite
# takes about two minutes.
set -u

ROOMD_BIN=${1:-${ROOMD_BIN:-}}
if [ -z "$ROOMD_BIN" ] || [ ! -x "$ROOMD_BIN" ]; then
	echo "usage: $0 path/to/roomd   (or set ROOMD_BIN)" >&2
	exit 1
fi
BENCH=${ROOMD_BENCH_BIN:-$(dirname "$ROOMD_BIN")/bench/roomd-bench}
if [ ! -x "$BENCH" ]; then
	echo "$0: no roomd-bench at $BENCH (build it, or set ROOMD_BENCH_BIN)" >&2
	exit 1
fi
PY=/usr/bin/python3
DUR=${DUR:-10}
PIN=${PIN:-}
WORKERS=2
PIN_ARGS=
if [ -n "$PIN" ]; then
	WORKERS=1
	PIN_ARGS="--pin $PIN"
fi
HOLD=${HOLD:-5}
CONNS_CONNECT=${CONNS_CONNECT:-10000}
RUN_LIMIT=120		# seconds any single run may take (roomd-bench bounds itself too)

# 10,000 connections need as many descriptors on both sides.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

DIR=$(mktemp -d "${TMPDIR:-/tmp}/roomd-bench-suite.XXXXXX") || exit 1
JSONL=${OUT:-$DIR/results.jsonl}
: > "$JSONL"
ROOMD_PID=

stop_roomd() {
	[ -n "$ROOMD_PID" ] || return 0
	kill -TERM "$ROOMD_PID" 2>/dev/null
	i=0
	while kill -0 "$ROOMD_PID" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.2
		i=$((i + 1))
	done
	kill -KILL "$ROOMD_PID" 2>/dev/null
	wait "$ROOMD_PID" 2>/dev/null
	ROOMD_PID=
}
cleanup() {
	stop_roomd
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') || exit 1
cat > "$DIR/roomd.conf" <<CONF
listen 127.0.0.1:$PORT
workers $WORKERS
log_file $DIR/roomd.log
log_level notice
pidfile $DIR/roomd.pid
heartbeat_interval 0
rate_limit 0
CONF

"$ROOMD_BIN" -c "$DIR/roomd.conf" >/dev/null 2>"$DIR/stderr.txt" &
ROOMD_PID=$!
ready=no
for i in $(seq 1 100); do
	if $PY -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; then
		ready=yes
		break
	fi
	kill -0 "$ROOMD_PID" 2>/dev/null || break
	sleep 0.1
done
if [ $ready != yes ]; then
	echo "$0: roomd did not become ready on port $PORT" >&2
	cat "$DIR/stderr.txt" "$DIR/roomd.log" >&2 2>/dev/null
	exit 1
fi
echo "roomd $ROOMD_PID on 127.0.0.1:$PORT ($WORKERS worker(s), private redis${PIN:+, pinned to CPU $PIN}); roomd-bench $BENCH" >&2

# run NAME ARGS...: one roomd-bench run; its report to stderr, its JSON line kept.
run() {
	name=$1
	shift
	sleep 1		# let the server settle after the previous run
	echo "### $name: roomd-bench $* -p $PORT --pid $ROOMD_PID" >&2
	# PIN_ARGS unquoted: empty, or the two words --pin CPU.
	timeout -k 5 $RUN_LIMIT "$BENCH" "$@" -p "$PORT" --pid "$ROOMD_PID" $PIN_ARGS \
	    --label "$name" > "$DIR/out.txt" 2>&1
	rc=$?
	grep -v '^JSON ' "$DIR/out.txt" >&2
	if grep -q '^JSON ' "$DIR/out.txt"; then
		sed -n 's/^JSON //p' "$DIR/out.txt" >> "$JSONL"
	else
		echo "{\"label\":\"$name\",\"missing\":1,\"exit\":$rc}" >> "$JSONL"
	fi
}

# connect first: the server's memory per connection means something only on a fresh server.
run connect  connect -c "$CONNS_CONNECT" --hold "$HOLD"
run echo     echo -c 100 -s 32 -d "$DUR"
run fan1_max   fanout -c 1000 -r 1  -k 10 -w 2  -d "$DUR" --drain 20
run fan1_t1000 fanout -c 1000 -r 1  -k 10 -T 1000 -d "$DUR" --drain 20
run fan10_max  fanout -c 1000 -r 10 -k 10 -w 20 -d "$DUR" --drain 20
run fan10_t1000 fanout -c 1000 -r 10 -k 10 -T 1000 -d "$DUR" --drain 20
stop_roomd
if grep -E '\[alert\]|AddressSanitizer|runtime error:' "$DIR/roomd.log" "$DIR/stderr.txt" >&2; then
	echo "$0: roomd logged alerts or sanitizer reports (above)" >&2
fi

$PY - "$JSONL" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(uname -m)" "$(nproc)" "$WORKERS" "$PIN" <<'PYEOF'
import json, sys

path, when, arch, ncpu, workers, pin = sys.argv[1:7]
rows = [json.loads(l) for l in open(path) if l.strip()]
where = f", roomd and redis pinned to CPU {pin}, roomd-bench on the others" if pin else ""
print(f"roomd-bench suite, {when}, {arch}, {ncpu} CPUs (roomd: {workers} worker(s), private redis{where})\n")
print("| test | throughput | p50 | p99 | loss | server CPU | notes |")
print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")

def ms(h, key):
    return f"{h[key] / 1000:.2f} ms" if h and h.get("n") else "-"

for r in rows:
    name = r.get("label", "?")
    if r.get("missing"):
        print(f"| {name} | no result (exit {r.get('exit')}) | | | | | |")
        continue
    cpu = f"{r['cpu_server_pct']:.0f} %" if "cpu_server_pct" in r else "-"
    if "cpu_server_core_pct" in r:
        cpu += f" (core {r['cpu_server_core_pct']:.0f} % busy)"
    notes = []
    if r["mode"] == "connect":
        thr = f"{r['handshakes_per_s']:,.0f} handshakes/s"
        h = r["handshake"]
        loss = f"{r['failed']} failed"
        if "server_rss_per_conn" in r:
            notes.append(f"{r['opened']:,} conns, RSS {r['server_rss_per_conn']:,.0f} B/conn")
    elif r["mode"] == "echo":
        thr = f"{r['msgs_per_s']:,.0f} round trips/s"
        h = r["rtt"]
        loss = f"{r['bad_echo']} bad"
    else:
        thr = f"{r['deliveries_per_s_run']:,.0f} deliveries/s"
        h = r["latency"]
        lost = r["lost_others"] + r["lost_self"]
        loss = f"{lost} of {r['expected_others'] + r['sent']:,}"
        if r["rate_target"]:
            notes.append(f"offered {r['rate_target']:,.0f} msg/s, sent {r['send_rate']:,.0f}/s")
        else:
            notes.append(f"window {r['window']}, {r['send_rate']:,.0f} msg/s")
        if r["dup_deliveries"] or r["seq_gaps"] or r["seq_backwards"]:
            notes.append(f"dup {r['dup_deliveries']} gaps {r['seq_gaps']} back {r['seq_backwards']}")
        if r["stalled"]:
            notes.append("STALLED")
    if r.get("cpu_other_pct", 0) > 25:
        notes.append(f"other load {r['cpu_other_pct']:.0f} %")
    if not r.get("ok", 0):
        notes.append("problems: see the report")
    print(f"| {name} | {thr} | {ms(h, 'p50_us')} | {ms(h, 'p99_us')} | {loss} | {cpu} | {'; '.join(notes)} |")
PYEOF
