#!/usr/bin/python3
"""topologies.py: one Redis against a three-master Redis Cluster, same load.

Starts redis-server (one, or three cluster masters without replicas), a
2-worker roomd on it, and roomd-bench fanout: CONNS members in ROOMS rooms
(room<i % ROOMS>), SENDERS of them saying RATE messages/s in total for DUR
seconds. Prints, per topology, deliveries/s and latency percentiles from
roomd-bench, and the CPU each redis-server spent per message (utime+stime
from /proc over the measured run, divided by the messages sent).

    ROOMD_BIN=build/normal/src/roomd tests/bench/topologies.py

Environment: ROOMS (100), CONNS (1000), SENDERS (100), RATE (10000),
DUR (10). PIN=1 puts roomd and the redis-servers on CPU 0 and roomd-bench
on CPU 1. Every run is bounded; the whole script takes about a minute.
Not part of CI: its figures depend on the machine.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from roomd import RedisCluster, RedisServer, Roomd  # noqa: E402

ROOMD = os.environ.get("ROOMD_BIN") or "src/roomd"
BENCH = os.environ.get("ROOMD_BENCH_BIN") or os.path.join(os.path.dirname(ROOMD), "bench", "roomd-bench")
ROOMS = int(os.environ.get("ROOMS", "100"))
CONNS = int(os.environ.get("CONNS", "1000"))
SENDERS = int(os.environ.get("SENDERS", "100"))
RATE = int(os.environ.get("RATE", "10000"))
DUR = int(os.environ.get("DUR", "10"))
PIN = os.environ.get("PIN")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def pin(pid, cpu):
    subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], capture_output=True, check=False)


def measure(label, redis_setting, servers, tmp):
    r = Roomd(os.path.join(tmp, label), settings={"redis": redis_setting, "rate_limit": "0",
                                                   "heartbeat_interval": "0", "log_level": "warning"},
              workers=2)
    r.start()
    try:
        if PIN:
            for pid in [r.pid] + r.children() + [s.proc.pid for s in servers]:
                pin(pid, 0)
        before = {s.port: cpu_ticks(s.proc.pid) for s in servers}
        t0 = time.monotonic()
        cmd = [BENCH, "fanout", "-p", str(r.port), "-c", str(CONNS), "-r", str(ROOMS), "-k", str(SENDERS),
               "-T", str(RATE), "-d", str(DUR), "-t", "1", "--label", label]
        if PIN:
            cmd = ["taskset", "-c", "1"] + cmd
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=DUR + 120)
        took = time.monotonic() - t0
        after = {s.port: cpu_ticks(s.proc.pid) for s in servers}
    finally:
        r.stop(check=False)
    lines = [l[5:] for l in out.stdout.splitlines() if l.startswith("JSON {")]
    if out.returncode != 0 or not lines:
        print(out.stdout, out.stderr, file=sys.stderr)
        raise SystemExit(f"{label}: roomd-bench failed ({out.returncode})")
    res = json.loads(lines[-1])
    hz = os.sysconf("SC_CLK_TCK")
    sent = res["sent"]
    per = {p: (after[p] - before[p]) / hz for p in before}
    return res, per, sent, took


def main():
    tmp = tempfile.mkdtemp(prefix="roomd-topo-")
    rows = []
    one = RedisServer(os.path.join(tmp, "one")).start()
    try:
        rows.append(("one Redis", *measure("one", one.url, [one], tmp)))
    finally:
        one.kill()
    cluster = RedisCluster(os.path.join(tmp, "cluster"), masters=3, replicas=0).start()
    try:
        rows.append(("3-master Cluster", *measure("cluster", cluster.url, cluster.nodes, tmp)))
    finally:
        cluster.stop()
    print(f"\n{CONNS} members in {ROOMS} rooms, {SENDERS} senders, {RATE} msg/s offered for {DUR} s, "
          f"roomd 2 workers{', pinned (server CPU 0, bench CPU 1)' if PIN else ''}\n")
    print("| topology | deliveries/s | p50 ms | p99 ms | redis CPU s per shard | redis CPU us per message per shard |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, res, per, sent, _ in rows:
        cpu = ", ".join(f"{v:.2f}" for v in per.values())
        us = ", ".join(f"{v * 1e6 / sent:.1f}" if sent else "-" for v in per.values())
        lat = res["latency"]
        print(f"| {name} | {res['deliveries_per_s']:.0f} (lost {res['lost_others']}) | "
              f"{lat['p50_us'] / 1000:.1f} | {lat['p99_us'] / 1000:.1f} | {cpu} | {us} |")


if __name__ == "__main__":
    main()
