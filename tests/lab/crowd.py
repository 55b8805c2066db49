"""The test's handles on the lab's traffic: Crowd runs chatload.py in a client
namespace and talks to it over its stdin and stdout; RedisTap runs
redistap.py in the Redis namespace. Every wait is bounded."""
import collections
import json
import os
import queue
import subprocess
import sys
import threading
import time

from netlab import HAPROXY_IP, LB_PORT

HERE = os.path.dirname(os.path.abspath(__file__))


class Lines:
    """A process's stdout, line by line, read by a thread so that waits can time out."""

    def __init__(self, proc, what):
        self.proc = proc
        self.what = what
        self.q = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def expect(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.what}: nothing expected within {timeout}s; "
                                     f"last lines {self.seen[-3:]}")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.what} ended (rc {self.proc.poll()}); "
                                     f"last lines {self.seen[-3:]}")
            self.seen.append(line.strip())
            v = pred(line)
            if v:
                return v


class Crowd:
    """N chat clients (plus a who-asking watcher per room if watchers) in client
    namespace `net`, through HAProxy."""

    def __init__(self, lab, net="c1", clients=300, rooms=10, first=0, prefix="c", watchers=True,
                 interval=4.0, max_seconds=150.0):
        self.lab = lab
        self.out = os.path.join(lab.dir, f"crowd-{net}-{prefix}.json")
        self.err = open(os.path.join(lab.dir, f"crowd-{net}-{prefix}.stderr"), "w")
        argv = [sys.executable, os.path.join(HERE, "chatload.py"),
                "--url", f"ws://{HAPROXY_IP}:{LB_PORT}/", "--clients", str(clients),
                "--rooms", str(rooms), "--first", str(first), "--prefix", prefix,
                "--interval", str(interval), "--max-seconds", str(max_seconds), "--out", self.out]
        if watchers:
            argv.append("--watchers")
        self.proc = lab.spawn(net, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=self.err, text=True)
        self.lines = Lines(self.proc, f"chatload in {net}")
        self.record = None

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def wait_ready(self, timeout=60):
        return self.lines.expect(lambda l: json.loads(l).get("ready") and json.loads(l), timeout)

    def sending(self, on):
        self.send({"cmd": "send", "on": on})
        return self.lines.expect(lambda l: "sending" in json.loads(l) and json.loads(l), 10)["t"]

    def stats(self):
        self.send({"cmd": "stats"})
        return self.lines.expect(lambda l: json.loads(l).get("stats"), 10)

    def finish(self, settle=2.0, timeout=60):
        """Stop, collect the record (a dict); the process has exited when this returns."""
        self.send({"cmd": "finish", "settle": settle})
        done = self.lines.expect(lambda l: json.loads(l).get("done"), timeout + settle)
        self.proc.wait(10)
        self.err.close()
        with open(self.out) as f:
            self.record = json.load(f)
        return done


class RedisTap:
    """Every payload Redis publishes on roomd's room channels, in Redis's order.
    With a Sentinel set, one redistap.py per node (a replica carries its
    master's PUBLISHes, so the taps of the nodes that live through a failover
    see what the ones that die missed) and stop() merges them (merge_taps)."""

    def __init__(self, lab, prefix="roomd:"):
        self.path = os.path.join(lab.dir, "tap.jsonl")
        nodes = lab.sentinels.nodes if lab.sentinels is not None else [lab.redis]
        self.paths = [self.path] if len(nodes) == 1 else \
            [os.path.join(lab.dir, f"tap-{n.port}.jsonl") for n in nodes]
        self.procs = []
        for n, path in zip(nodes, self.paths):
            p = lab.spawn("redis", [sys.executable, os.path.join(HERE, "redistap.py"),
                                    str(n.port), prefix + "{*}:c", path],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            Lines(p, f"redistap on {n.port}").expect(lambda l: l.strip() == "ready", 10)
            self.procs.append(p)

    def stop(self):
        for p in self.procs:
            p.stdin.close()
        for p in self.procs:
            p.wait(10)
        if len(self.paths) > 1:
            merge_taps(self.paths, self.path)
        return self.path


def merge_taps(paths, out):
    """One tap file from several that each saw part of one order: every line
    once (the k-th copy of a (channel, payload) in a tap is the k-th
    everywhere), each where its own tap put it (after what came before it
    there), at the time it was first seen."""
    seqs = []
    for path in paths:
        seen = collections.Counter()
        seq = []
        with open(path) as f:
            for line in f:
                t, channel, payload = json.loads(line)
                seen[(channel, payload)] += 1
                seq.append(((channel, payload, seen[(channel, payload)]), t))
        seqs.append(seq)
    seqs.sort(key=len, reverse=True)
    merged = [k for k, _ in seqs[0]]
    first = dict((k, t) for k, t in seqs[0])
    where = {k: i for i, k in enumerate(merged)}
    for seq in seqs[1:]:
        at = -1
        for k, t in seq:
            if k in where:
                at = where[k]
                first[k] = min(first[k], t)
                continue
            at += 1
            merged.insert(at, k)
            first[k] = t
            where = {k2: i for i, k2 in enumerate(merged)}
    with open(out, "w") as f:
        for k in merged:
            f.write(json.dumps([first[k], k[0], k[1]]) + "\n")
    return out
