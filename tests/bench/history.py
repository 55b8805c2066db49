#!/usr/bin/python3
"""history.py: what message history costs (issue 17's "Measure").

The same roomd binary twice, each time a fresh 2-worker roomd on a
redis-server of its own (rate_limit 0, heartbeat_interval 0): history off
(history_size 0) and on (history_size 100, the default). For each:

  memory    roomd-bench fills 200 rooms with 100 chat messages of 32 bytes
            each; Redis INFO used_memory after (members gone) minus before,
            per room and per message.
  replay    (history on) a python-websockets client enters a room holding
            100 messages with {"history":100}: time from sending the enter
            to the 100th replayed message event, median and p99 of 50 tries.
  fanout    roomd-bench fanout at the issue's offered loads, 1 x 1000 at
            100 msg/s (-c 1000 -r 1 -k 1 -T 100) and 10 x 100 at 1000 msg/s
            (-c 1000 -r 10 -k 10 -T 1000), and the closed-loop maximum
            (-c 1000 -r 1 -k 10 -w 2), DUR seconds each: deliveries/s, p50/p99
            latency, lost (lost_others), and server CPU per delivery: the
            utime+stime (from /proc/PID/stat) of the roomd master, its workers
            and the redis-server over the whole roomd-bench process (connect,
            join, run, drain), divided by deliveries_total; beside it the
            server's share of one core in the run+drain window only (roomd-bench
            --pid) and that share divided by deliveries/s: the hot path's CPU
            per delivery without the 1000 handshakes and enters.

    ROOMD_BIN=build/normal/src/roomd tests/bench/history.py

Both instances are up together and the loads alternate between them (off
then on for the first load, on then off for the next, ...), because a run
after another on this shared machine is measured under different
conditions: run one after the other, the order changed the CPU figures more
than history did. Environment: DUR (10), ROOMS_MEM (200), TRIES (50), ORDER
(off,on: which instance goes first; on,off the other way). PIN=1 puts roomd and
redis-server on CPU 0, roomd-bench and this script's replay client on CPU 1.
Every run is bounded; the whole script takes about two minutes. Not part of
CI: its figures depend on the machine (and on whatever else runs on it).
"""
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from roomd import RedisServer, Roomd, http_get  # noqa: E402
from topologies import cpu_ticks, pin  # noqa: E402

import websockets  # noqa: E402

ROOMD = os.environ.get("ROOMD_BIN") or "src/roomd"
BENCH = os.environ.get("ROOMD_BENCH_BIN") or os.path.join(os.path.dirname(ROOMD), "bench", "roomd-bench")
DUR = int(os.environ.get("DUR", "10"))
ROOMS_MEM = int(os.environ.get("ROOMS_MEM", "200"))
TRIES = int(os.environ.get("TRIES", "50"))
PIN = os.environ.get("PIN")
ORDER = os.environ.get("ORDER", "off,on").split(",")
SIZES = {"off": 0, "on": 100}
HZ = os.sysconf("SC_CLK_TCK")

LOADS = [
    ("1 x 1000 at 100 msg/s", "a", ["-c", "1000", "-r", "1", "-k", "1", "-T", "100"]),
    ("10 x 100 at 1000 msg/s", "b", ["-c", "1000", "-r", "10", "-k", "10", "-T", "1000"]),
    ("closed loop 1 x 1000, 10 senders, -w 2", "c", ["-c", "1000", "-r", "1", "-k", "10", "-w", "2"]),
]


def bench(r, redis, args, label, allow_loss=True, timeout=None):
    """Run roomd-bench fanout against r; its JSON figures, and the CPU seconds
    (roomd tree, redis-server) spent while it ran."""
    roomd_pids = [r.pid] + r.children()
    cmd = [BENCH, "fanout", "-p", str(r.port), "-t", "1", "--label", label,
           "--pid", f"{r.pid},{redis.proc.pid}"] + args
    if PIN:
        cmd = ["taskset", "-c", "1"] + cmd
    before = [cpu_ticks(p) for p in roomd_pids], cpu_ticks(redis.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or DUR + 120)
    after = [cpu_ticks(p) for p in roomd_pids], cpu_ticks(redis.proc.pid)
    lines = [l[5:] for l in out.stdout.splitlines() if l.startswith("JSON {")]
    if out.returncode not in ((0, 2) if allow_loss else (0,)) or not lines:
        print(out.stdout, out.stderr, file=sys.stderr)
        raise SystemExit(f"{label}: roomd-bench failed ({out.returncode})")
    res = json.loads(lines[-1])
    res["rc"] = out.returncode
    cpu_roomd = (sum(after[0]) - sum(before[0])) / HZ
    cpu_redis = (after[1] - before[1]) / HZ
    return res, cpu_roomd, cpu_redis


def redis_keys(redis, pattern):
    return redis.command("KEYS", pattern) or []


def memory(r, redis):
    """Fill ROOMS_MEM rooms with 100 messages each; used_memory per room and per message."""
    before = int(redis.info("memory")["used_memory"])
    res, _, _ = bench(r, redis, ["-c", str(ROOMS_MEM), "-r", str(ROOMS_MEM), "-k", str(ROOMS_MEM),
                                 "-T", str(ROOMS_MEM * 40), "-d", "5", "--max-msgs", "100",
                                 "--room-prefix", "mem"], "fill", allow_loss=False)
    # Wait for the members to be gone (their keys and the workers' subscriptions).
    deadline = time.monotonic() + 10
    while redis_keys(redis, "*{mem*}:m") and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    after = int(redis.info("memory")["used_memory"])
    streams = redis_keys(redis, "*{mem*}:h")
    stored = sum(int(redis.command("XLEN", k)) for k in streams)
    usage = int(redis.command("MEMORY", "USAGE", streams[0], "SAMPLES", "0")) if streams else 0
    return {"sent": res["sent"], "rooms": ROOMS_MEM, "diff": after - before, "streams": len(streams),
            "stored": stored, "stream_usage": usage}


async def replay_once(port, room):
    async with websockets.connect(f"ws://127.0.0.1:{port}/", max_size=None) as ws:
        t0 = time.perf_counter_ns()
        await ws.send(json.dumps({"event": "enter", "message": "replayer", "roomid": room, "history": 100}))
        n, t100, rec = 0, None, None
        while rec is None:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if ev.get("event") == "message" and ev.get("roomid") == room:
                n += 1
                if n == 100:
                    t100 = time.perf_counter_ns()
            elif ev.get("event") == "recovered":
                rec = ev
            elif ev.get("event") == "error":
                raise SystemExit(f"replay: error event {ev}")
        if t100 is None or not rec.get("recovered") or rec.get("count") != 100:
            raise SystemExit(f"replay: {n} messages, then {rec}")
        return (t100 - t0) / 1e6


def replay(port):
    """TRIES enters with {"history":100} into the filled rooms; ms to the 100th message."""
    async def run():
        return [await replay_once(port, f"mem{i % ROOMS_MEM}") for i in range(TRIES)]
    ms = sorted(asyncio.run(run()))
    return {"median": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
            "min": ms[0], "max": ms[-1]}


def gap_counters(port):
    """roomd's repair counters from /metrics: every load should leave them at 0."""
    status, _, body = http_get(port, "/metrics")
    if status != 200:
        return {}
    want = ("roomd_gaps_repaired_total", "roomd_gaps_unrecoverable_total")
    return {l.split()[0]: l.split()[1] for l in body.decode().splitlines() if l.startswith(want)}


def start(name, size, tmp, servers):
    """A fresh redis-server and a 2-worker roomd on it with history_size size."""
    redis = RedisServer(os.path.join(tmp, f"redis-{name}")).start()
    servers.append(redis)
    r = Roomd(os.path.join(tmp, f"roomd-{name}"),
              settings={"redis": redis.url, "rate_limit": "0", "heartbeat_interval": "0",
                        "log_level": "warning", "history_size": str(size)}, workers=2)
    servers.append(r)
    r.start()
    if PIN:
        for pid in [r.pid] + r.children() + [redis.proc.pid]:
            pin(pid, 0)
    return r, redis


def measure(tmp):
    """Both instances stay up; each load runs on one, then at once on the other
    (the order alternating from load to load), so that the machine's drift
    (other work coming and going) falls on both alike."""
    servers, inst, out = [], {}, {}
    try:
        for name in ORDER:
            inst[name] = start(name, SIZES[name], tmp, servers)
        for name in ORDER:
            r, redis = inst[name]
            out[name] = {"memory": memory(r, redis), "replay": replay(r.port) if SIZES[name] else None,
                         "loads": [None] * len(LOADS)}
        for i, (what, prefix, args) in enumerate(LOADS):
            for name in (ORDER if i % 2 == 0 else ORDER[::-1]):
                r, redis = inst[name]
                res, roomd_s, redis_s = bench(r, redis, args + ["-d", str(DUR), "--room-prefix", prefix],
                                              f"{name} {what}")
                out[name]["loads"][i] = (what, res, roomd_s, redis_s)
        for name in ORDER:
            out[name]["gaps"] = gap_counters(inst[name][0].port)
        return out
    finally:
        for s in reversed(servers):
            if isinstance(s, Roomd):
                if s.proc is not None:
                    s.stop(check=False)
            else:
                s.kill()


def us(sec, n):
    return f"{sec * 1e6 / n:.2f}" if n else "-"


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if PIN:
        os.sched_setaffinity(0, {1})
    tmp = tempfile.mkdtemp(prefix="roomd-hist-")
    t0 = time.monotonic()
    if sorted(ORDER) != ["off", "on"]:
        raise SystemExit("ORDER is off,on or on,off")
    done = measure(tmp)
    runs = [(name, SIZES[name], done[name]) for name in ("off", "on")]
    print(f"\nroomd 2 workers, one redis-server each, rate_limit 0, heartbeat_interval 0, {DUR} s per load"
          f"{', pinned (server CPU 0, bench CPU 1)' if PIN else ''}; loads alternate between the two, "
          f"{ORDER[0]} first; took {time.monotonic() - t0:.0f} s\n")
    print("| load | history_size | deliveries/s | p50 ms | p99 ms | lost | sent | "
          "server CPU us/delivery, whole bench (roomd + redis) | run window: server % of a core, "
          "us/delivery | bench rc |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    per, per_run = {}, {}
    for i, (what, _, _) in enumerate(LOADS):
        for name, size, out in runs:
            _, res, roomd_s, redis_s = out["loads"][i]
            n = res["deliveries_total"]
            lat = res["latency"]
            per[(what, name)] = (roomd_s + redis_s) / n if n else None
            pct = res.get("cpu_server_pct", -1)
            run_us = pct * 1e4 / res["deliveries_per_s"] if res["deliveries_per_s"] and pct >= 0 else None
            per_run[(what, name)] = run_us
            print(f"| {what} | {size} | {res['deliveries_per_s']:.0f} | {lat['p50_us'] / 1000:.1f} | "
                  f"{lat['p99_us'] / 1000:.1f} | {res['lost_others']} | {res['sent']} | "
                  f"{us(roomd_s + redis_s, n)} ({us(roomd_s, n)} + {us(redis_s, n)}) | "
                  f"{pct:.0f} %, {run_us or 0:.2f} | {res['rc']} |")
    print("\nCPU per delivery, history on against off: " + ", ".join(
        f"{what}: {100 * (per[(what, 'on')] / per[(what, 'off')] - 1):+.1f} %"
        for what, _, _ in LOADS if per[(what, 'on')] and per[(what, 'off')]) + " (whole bench); " + ", ".join(
        f"{what}: {100 * (per_run[(what, 'on')] / per_run[(what, 'off')] - 1):+.1f} %"
        for what, _, _ in LOADS if per_run[(what, 'on')] and per_run[(what, 'off')]) + " (run window)")
    print("\n| history_size | rooms | messages sent | stream entries | used_memory diff | per room | "
          "per message | MEMORY USAGE of one stream |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, size, out in runs:
        m = out["memory"]
        print(f"| {size} | {m['rooms']} | {m['sent']} | {m['stored']} | {m['diff']} B | "
              f"{m['diff'] / m['rooms']:.0f} B | {m['diff'] / m['sent']:.0f} B | {m['stream_usage']} B |")
    print("\nroomd's gap counters after the loads: " + "; ".join(
        f"history_size {size}: " + (", ".join(f"{k} {v}" for k, v in out["gaps"].items()) or "no /metrics")
        for name, size, out in runs))
    rp = runs[1][2]["replay"]
    print(f"\nreplay of 100 messages (enter with \"history\":100 to the 100th message event, python-websockets, "
          f"{TRIES} tries): median {rp['median']:.2f} ms, p99 {rp['p99']:.2f} ms "
          f"(min {rp['min']:.2f}, max {rp['max']:.2f})")


if __name__ == "__main__":
    main()
