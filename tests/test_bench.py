"""roomd-bench against the real roomd and against a deliberately faulty server.

Short runs of every mode assert exact accounting on a healthy roomd (nothing
lost or duplicated, expected == received), that the JSON line has its fields,
that echo verifies what comes back and that connect counts right. A small
asyncio WebSocket server written here drops every 10th delivery, fragments
others with pings between the fragments, sends JSON heartbeats and corrupts
every 7th echo: roomd-bench must report exactly what it did.

The binary comes from $ROOMD_BENCH_BIN, else src/bench/roomd-bench in the
build directory of $ROOMD_BIN.
"""
import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import threading
import time
import zlib

import pytest

from roomd import ROOMD_BIN, free_port, http_get, raise_nofile

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH_BIN = os.environ.get("ROOMD_BENCH_BIN") or os.path.join(
    os.path.dirname(os.path.abspath(ROOMD_BIN)), "bench", "roomd-bench")
MAN1 = os.path.join(HERE, "..", "man", "roomd-bench.1")



@pytest.fixture(autouse=True)
def bench_built():
    """make builds roomd-bench beside roomd: a missing binary is a failure, never a skip."""
    assert os.access(BENCH_BIN, os.X_OK), f"roomd-bench not built at {BENCH_BIN}: run make"

COMMON_FIELDS = {"tool", "version", "mode", "label", "url", "conns", "threads", "opened", "failed",
                 "connect_s", "handshakes_per_s", "handshake", "closed_by_peer", "close_frames",
                 "pings", "proto_errors", "masked_server_frames", "fragmented_msgs", "bytes_in",
                 "bytes_out", "timed_out", "interrupted", "ok", "cpu_bench_pct",
                 "cpu_machine_pct", "cpu_other_pct"}
HIST_FIELDS = {"n", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"}
# Benchmarks measure capacity: roomd's per-connection rate limit stays out of the way.
FAST = {"heartbeat_interval": "0", "rate_limit": "0"}


def bench(*args, timeout=60):
    """Run roomd-bench; returns (exit status, parsed JSON line, whole stdout)."""
    r = subprocess.run([BENCH_BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    lines = [l for l in r.stdout.splitlines() if l.startswith("JSON ")]
    assert len(lines) == 1, f"want one JSON line:\n{r.stdout}\n{r.stderr}"
    assert lines[0] == r.stdout.splitlines()[-1], "the JSON line is not the last line"
    assert "\r" not in r.stdout, "progress line printed although stdout is not a terminal"
    return r.returncode, json.loads(lines[0][5:]), r.stdout


def assert_hist(h):
    assert set(h) == HIST_FIELDS
    if h["n"]:
        assert 0 < h["p50_us"] <= h["p90_us"] <= h["p99_us"] <= h["p999_us"] <= h["max_us"]


# ---- against roomd ----

def test_echo_exact_and_verified(roomd):
    r = roomd(FAST)
    rc, j, out = bench("echo", "-p", r.port, "-c", 20, "-s", 200, "-d", 1, "--pid", r.pid)
    assert rc == 0, out
    assert COMMON_FIELDS | {"msgs", "msgs_per_s", "bad_echo", "rtt", "cpu_server_pct"} <= set(j)
    assert (j["mode"], j["opened"], j["failed"], j["verify"], j["bad_echo"]) == ("echo", 20, 0, 1, 0)
    assert j["msgs"] > 100 and j["rtt"]["n"] == j["msgs"] and j["msgs_total"] >= j["msgs"]
    assert_hist(j["rtt"])
    assert j["proto_errors"] == 0 and j["closed_by_peer"] == 0 and j["ok"] == 1
    assert "round trips in" in out and "p99.9" in out


def test_echo_64bit_lengths_pipelined_two_threads(roomd):
    r = roomd(FAST)
    rc, j, out = bench("echo", "-p", r.port, "-c", 6, "-s", 70000, "--pipeline", 3, "-t", 2, "-d", 1)
    assert rc == 0, out
    assert j["bad_echo"] == 0 and j["msgs"] > 10 and j["threads"] == 2


def test_fanout_closed_loop_exact(roomd):
    r = roomd(FAST)
    rc, j, out = bench("fanout", "-p", r.port, "-c", 60, "-r", 3, "-k", 6, "-w", 4, "-d", 1.5,
                       "-s", 150, "--pid", r.pid)
    assert rc == 0, out
    assert (j["rooms"], j["room_size_min"], j["room_size_max"], j["joined"]) == (3, 20, 20, 60)
    assert j["server_num_max"] == 20
    assert j["sent"] > 50 and j["stalled"] == 0
    assert j["expected_others"] == j["sent"] * 19 == j["received_others"]
    assert (j["lost_others"], j["dup_deliveries"], j["msgs_short"]) == (0, 0, 0)
    assert (j["seq_gaps"], j["seq_backwards"], j["bad_marker"], j["wrong_room"]) == (0, 0, 0, 0)
    assert j["self_delivery"] == 1 and j["received_self"] == j["sent"] and j["lost_self"] == 0
    assert j["deliveries_total"] == j["received_others"] + j["received_self"]
    assert j["latency"]["n"] == j["received_others"]
    assert_hist(j["latency"])
    assert j["deliveries_per_s_run"] > 0 and j["ok"] == 1


def test_fanout_open_loop_exact_threads(roomd):
    r = roomd(FAST)
    rc, j, out = bench("fanout", "-p", r.port, "-c", 40, "-r", 2, "-k", 4, "-T", 400, "-d", 1,
                       "-t", 2)
    assert rc == 0, out
    # 400 msg/s for 1 s on a fixed schedule (a slot or two may fall past the end).
    assert 390 <= j["sent"] <= 400 and j["skipped_backpressure"] == 0
    assert j["expected_others"] == j["sent"] * 19 == j["received_others"]
    assert j["lost_others"] == 0 and j["dup_deliveries"] == 0 and j["seq_gaps"] == 0
    assert j["rejected"] == 0
    assert_hist(j["send_lag"])


def test_fanout_counts_rate_limited_messages_as_rejected(roomd):
    """roomd refuses messages over rate_limit with an error event: those are
    rejected, not lost, and their number is exactly roomd's own count."""
    r = roomd({"heartbeat_interval": "0", "rate_limit": "50", "rate_burst": "10"})
    rc, j, out = bench("fanout", "-p", r.port, "-c", 10, "-r", 1, "-k", 2, "-T", 300, "-d", 1,
                       "--drain", 1)
    assert rc == 2, out                     # refused messages are a problem worth an exit status
    st, _, body = http_get(r.port, "/metrics")
    limited = int(re.search(rb"^roomd_messages_rate_limited_total (\d+)", body, re.M).group(1))
    assert limited > 100 and j["rejected"] == limited == j["error_events"]
    assert j["lost_others"] == 0 and j["dup_deliveries"] == 0 and j["lost_self"] == 0
    assert j["expected_others"] == (j["sent"] - j["rejected"]) * 9 == j["received_others"]
    assert j["received_self"] == j["sent"] - j["rejected"]


def test_fanout_answers_heartbeats(roomd):
    r = roomd({"heartbeat_interval": "300ms", "heartbeat_misses": "1", "rate_limit": "0"})
    rc, j, out = bench("fanout", "-p", r.port, "-c", 10, "-r", 1, "-k", 2, "-T", 20, "-d", 1.5)
    assert rc == 0, out
    assert j["heartbeats"] >= 10 and j["heartbeat_pongs"] == j["heartbeats"]
    assert j["closed_by_peer"] == 0 and j["lost_others"] == 0


def test_connect_counts(roomd):
    r = roomd()
    rc, j, out = bench("connect", "-p", r.port, "-c", 500, "--hold", 1.2, "--conc", 64,
                       "--pid", r.pid)
    assert rc == 0, out
    assert (j["opened"], j["failed"], j["held"], j["handshake"]["n"]) == (500, 0, 500, 500)
    assert j["handshakes_per_s"] > 0 and j["server_procs"] >= 3    # master, 2 workers, redis
    assert j["server_rss_end"] > 0 and "server_rss_per_conn" in j
    assert_hist(j["handshake"])


# Worker RSS growth per idle WebSocket (1 worker, connect 10,000, hold): measured
# 288-301 B (760 B before the conns left libevent's per-fd state and the
# sessions their decoder and request facts); a bound with room for allocator
# noise, far below what an idle connection used to cost.
IDLE_BYTES_PER_CONN = 400


def test_connect_idle_memory_per_connection(roomd, capsys):
    """What a worker holds per idle WebSocket: connect 10,000 (fewer if the
    open-files limit is lower), hold them, and read the worker's RSS growth
    per connection from roomd-bench (--pid). Not asserted under sanitizers,
    whose allocators say nothing about roomd's own memory."""
    n = min(10000, raise_nofile(10600) - 600)
    r = roomd(FAST, workers=1)
    pid = r.worker_pids()[0]
    rc, j, out = bench("connect", "-p", r.port, "-c", n, "--hold", 1.5, "--conc", 256, "--pid", pid,
                       timeout=120)
    assert rc == 0, out
    assert (j["opened"], j["failed"], j["held"]) == (n, 0, n)
    per = j["server_rss_per_conn"]
    sanitized = bool(os.environ.get("ROOMD_SANITIZED"))
    with capsys.disabled():
        print(f"\n  [bench] {n} idle WebSockets: worker RSS +{per:.0f} B per connection "
              f"(bound {IDLE_BYTES_PER_CONN} B)" + ("; not asserted under sanitizers" if sanitized else ""))
    if not sanitized:
        assert 0 < per <= IDLE_BYTES_PER_CONN, f"{per:.0f} B of worker RSS per idle connection"


def test_connect_join(roomd):
    r = roomd()
    rc, j, out = bench("connect", "-p", r.port, "-c", 30, "--hold", 0.2, "--join", "-r", 3)
    assert rc == 0, out
    assert j["joined"] == 30 and j["join_incomplete"] == 0


def test_failed_connections_are_counted():
    port = free_port()      # nothing listens there
    rc, j, out = bench("connect", "-p", port, "-c", 5, "--hold", 0)
    assert rc == 2 and j["opened"] == 0 and j["failed"] == 5 and j["ok"] == 0
    assert "Connection refused" in out


def test_usage():
    r = subprocess.run([BENCH_BIN, "-h"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("usage: roomd-bench") and not r.stderr
    for bad in (["fanout"], ["nosuch", "-p", "1"], ["echo", "-p", "1", "--bogus"],
                ["fanout", "-p", "1", "-w", "2", "-T", "5"], ["echo", "-p", "1", "-c", "0"],
                ["echo", "-p", "1", "--pin", "0"], ["echo", "-p", "1", "--pid", "1", "--pin", "-1"]):
        r = subprocess.run([BENCH_BIN, *bad], capture_output=True, text=True)
        assert r.returncode == 1 and "usage: roomd-bench" in r.stderr and not r.stdout, bad


def test_man_page_matches_usage():
    assert shutil.which("mandoc"), "mandoc is not installed (Debian: apt-get install mandoc)"
    usage = subprocess.run([BENCH_BIN, "-h"], capture_output=True, text=True).stdout
    usage = usage.split("\n\n")[0].replace("usage: ", "", 1)
    r = subprocess.run(["mandoc", "-Tascii", "-O", "width=400", MAN1], capture_output=True, text=True)
    text = re.sub(r".\x08", "", r.stdout)
    m = re.search(r"^SYNOPSIS\n(.*?)\n(?=\S)", text, re.M | re.S)
    assert m and " ".join(m.group(1).split()) == " ".join(usage.split())
    flags = set(re.findall(r"(?<![\w-])(-{1,2}[\w-]+)", usage))
    documented = set(re.findall(r"^\.It Fl (\\?-?[\w-]+)", open(MAN1).read(), re.M))
    documented = {"-" + f.replace("\\-", "-") for f in documented}
    assert flags == documented, (flags ^ documented)


def test_echo_deflate_compresses_both_ways(roomd):
    r = roomd(FAST)
    rc, j, out = bench("echo", "-p", r.port, "-c", 10, "-s", 1000, "-d", 1, "--deflate")
    assert rc == 0, out
    assert (j["deflate"], j["deflate_conns"], j["opened"], j["bad_echo"]) == (1, 10, 10, 0)
    assert j["msgs"] > 50 and j["proto_errors"] == 0
    # 1000 letters each way as plain frames would be over 1000 bytes a message.
    assert j["bytes_out"] < 200 * j["msgs_total"] and j["bytes_in"] < 200 * j["msgs_total"]
    assert "permessage-deflate agreed on 10 of 10 connections" in out


def test_fanout_deflate_exact(roomd):
    r = roomd(FAST)
    rc, j, out = bench("fanout", "-p", r.port, "-c", 60, "-r", 3, "-k", 6, "-w", 4, "-d", 1.5,
                       "-s", 400, "--deflate")
    assert rc == 0, out
    assert j["deflate_conns"] == 60 and j["joined"] == 60 and j["sent"] > 50
    assert j["expected_others"] == j["sent"] * 19 == j["received_others"]
    assert (j["lost_others"], j["dup_deliveries"], j["msgs_short"], j["seq_gaps"]) == (0, 0, 0, 0)
    assert j["received_self"] == j["sent"] and j["bad_marker"] == 0 and j["proto_errors"] == 0
    # Each delivery carries 400 bytes of text: compressed, far fewer arrive.
    assert j["bytes_in"] < 250 * j["deliveries_total"]


def test_deflate_declined_is_reported(roomd):
    r = roomd({"deflate": "off", **FAST})
    rc, j, out = bench("echo", "-p", r.port, "-c", 4, "-s", 100, "-d", 0.5, "--deflate")
    assert rc == 2 and j["ok"] == 0, out
    assert (j["deflate"], j["deflate_conns"], j["opened"], j["bad_echo"]) == (1, 0, 4, 0)
    assert "permessage-deflate agreed on 0 of 4 connections" in out


def tree_threads(pid):
    """{tid: CPUs it may run on} of every thread of pid and its descendants."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(p)], capture_output=True, text=True)
        todo += [int(x) for x in out.stdout.split()]
    return {int(t): os.sched_getaffinity(int(t))
            for p in pids for t in os.listdir(f"/proc/{p}/task")}


def test_fanout_pinned(roomd):
    r = roomd(FAST, workers=1)
    others = os.sched_getaffinity(0) - {0}
    assert others, "the pinned split needs a second CPU"
    rc, j, out = bench("fanout", "-p", r.port, "-c", 40, "-r", 2, "-k", 4, "-w", 4, "-d", 1,
                       "--pid", r.pid, "--pin", 0)
    assert rc == 0, out
    assert j["expected_others"] == j["sent"] * 19 == j["received_others"] and j["lost_others"] == 0
    threads = tree_threads(r.pid)       # master, worker and the private redis-server
    assert (j["pin_cpu"], j["pinned_procs"], j["bench_cpus"]) == (0, 3, len(others))
    assert j["pinned_threads"] == len(threads) and all(cpus == {0} for cpus in threads.values())
    assert 0 <= j["cpu_server_core_pct"] <= 100
    assert "on CPU 0; roomd-bench on" in out


def test_pin_refusals(roomd):
    r = roomd(FAST, workers=1)
    for args, why in ((["--pid", 1073741822, "--pin", 0], "no server process found"),
                      (["--pid", r.pid, "--pin", 1023], "is not one roomd-bench may use")):
        p = subprocess.run([BENCH_BIN, "echo", "-p", str(r.port), "-d", "0.2", *map(str, args)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1 and why in p.stderr and not p.stdout, p.stderr


# ---- against a faulty server ----

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


PMD_ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def frame(op, payload, fin=True, rsv1=False):
    """An unmasked server frame with the shortest length encoding."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | op])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def deflate_msg(data):
    """One message compressed on its own, as RFC 7692 sends it (no 00 00 ff ff)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_msg(data):
    return zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")


class FaultyServer:
    """Chat and echo over raw asyncio streams, with counted faults:
    every 10th delivery to another member is dropped; every 5th delivery
    is sent in 3 fragments with a ping between the first two; every member
    gets one JSON heartbeat after its enter; every 7th echo is corrupted;
    every write of a delivery is split in two at an odd offset.
    With deflate, permessage-deflate is agreed when offered and every message
    both ways is compressed (a fragmented one has RSV1 on its first frame
    only); pmd_answer is a Sec-WebSocket-Extensions answer sent whatever the
    client offered."""

    def __init__(self, deflate=False, pmd_answer=None):
        self.deflate = deflate
        self.pmd_answer = pmd_answer
        self.pmd_conns = 0
        self.plain_client_msgs = 0  # data messages from a client that agreed to compress
        self.port = free_port()
        self.rooms = {}             # room -> [conn]
        self.dropped = 0
        self.short_msgs = set()     # (sender, text) of messages with a dropped delivery
        self.delivered = 0
        self.others = 0
        self.fragmented = 0
        self.pings = 0
        self.pongs = 0              # protocol pongs received
        self.heartbeats = 0
        self.hb_pongs = 0           # JSON heartbeat pongs received
        self.corrupted = 0
        self.echoes = 0
        self.bad_client_frames = 0
        self.open = 0
        self.ready = threading.Event()
        self.loop = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        # Let the handlers read what the client sent before it went away.
        deadline = time.monotonic() + 5
        while self.open and time.monotonic() < deadline:
            time.sleep(0.02)
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)

    def _run(self):
        asyncio.run(self._main())

    async def _main(self):
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.ready.set()
        await self.stop.wait()
        server.close()

    async def _read_frame(self, reader):
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack("!H", await reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await reader.readexactly(8))[0]
        if not b1 & 0x80 or not b0 & 0x80 or b0 & 0x30 or (b0 & 0x40 and not self.deflate):
            self.bad_client_frames += 1     # clients must mask; roomd-bench never fragments
        mask = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytearray(await reader.readexactly(n))
        for i in range(n):
            data[i] ^= mask[i & 3]
        return b0 & 0x0f, bytes(data), bool(b0 & 0x40)

    def _data(self, conn, data):
        """(payload, rsv1) of a message to conn: compressed if agreed."""
        return (deflate_msg(data), True) if conn["pmd"] else (data, False)

    async def _client(self, reader, writer):
        conn = {"q": asyncio.Queue(), "room": None, "name": None, "pmd": False}
        self.open += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            key = re.search(rb"(?i)sec-websocket-key: *(\S+)", head).group(1)
            accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
            answer = self.pmd_answer
            if self.deflate and re.search(rb"(?i)sec-websocket-extensions: *permessage-deflate", head):
                answer = PMD_ANSWER
                conn["pmd"] = True
                self.pmd_conns += 1
            ext = f"Sec-WebSocket-Extensions: {answer}\r\n".encode() if answer else b""
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n" + ext +
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            conn["sender"] = asyncio.create_task(self._writer(conn, writer))  # held: a task needs a reference
            while True:
                op, data, rsv1 = await self._read_frame(reader)
                if op in (0x1, 0x2) and conn["pmd"]:
                    if rsv1:
                        data = inflate_msg(data)
                    else:
                        self.plain_client_msgs += 1
                if op == 0x8:
                    conn["q"].put_nowait([frame(0x8, data[:2])])
                    break
                if op == 0xa:
                    self.pongs += 1
                elif op == 0x1 and path == "/echo":
                    self.echoes += 1
                    if self.echoes % 7 == 0:
                        self.corrupted += 1
                        data = b"X" + data[1:] if data[:1] != b"X" else b"Y" + data[1:]
                    payload, rsv1 = self._data(conn, data)
                    conn["q"].put_nowait([frame(0x1, payload, rsv1=rsv1)])
                elif op == 0x1:
                    self._chat(conn, json.loads(data))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if conn["room"] is not None:
                self.rooms[conn["room"]].remove(conn)
            conn["q"].put_nowait(None)
            writer.close()
            self.open -= 1

    async def _writer(self, conn, writer):
        """One writer per connection, so that split writes never interleave."""
        try:
            while (pieces := await conn["q"].get()) is not None:
                for p in pieces:
                    writer.write(p)
                    await writer.drain()
        except ConnectionError:
            pass    # the client left; its reader ends the connection

    def _send(self, conn, ev, delivery=False):
        data, rsv1 = self._data(conn, json.dumps(ev).encode())
        if not delivery:
            conn["q"].put_nowait([frame(0x1, data, rsv1=rsv1)])
            return
        self.delivered += 1
        if self.delivered % 5 == 0:
            self.fragmented += 1
            self.pings += 1
            a, b = len(data) // 3, 2 * len(data) // 3
            wire = (frame(0x1, data[:a], fin=False, rsv1=rsv1) + frame(0x9, b"p%d" % self.pings)
                    + frame(0x0, data[a:b], fin=False) + frame(0x0, data[b:]))
        else:
            wire = frame(0x1, data, rsv1=rsv1)
        cut = 1 + self.delivered % (len(wire) - 1)
        conn["q"].put_nowait([wire[:cut], wire[cut:]])

    def _chat(self, conn, ev):
        if ev.get("event") == "enter":
            conn["room"], conn["name"] = ev["roomid"], ev["message"]
            members = self.rooms.setdefault(conn["room"], [])
            members.append(conn)
            for m in members:
                self._send(m, {"event": "enter", "message": conn["name"], "name": conn["name"],
                               "roomid": conn["room"], "num": len(members)})
            self.heartbeats += 1
            self._send(conn, {"event": "heartbeat", "message": "ping"})
        elif ev.get("event") == "heartbeat":
            self.hb_pongs += ev.get("message") == "pong"
        elif ev.get("event") == "message":
            members = self.rooms[conn["room"]]
            out = {"event": "message", "name": conn["name"], "message": ev["message"],
                   "roomid": conn["room"], "num": len(members)}
            for m in members:
                if m is not conn:
                    self.others += 1
                    if self.others % 10 == 0:
                        self.dropped += 1
                        self.short_msgs.add(tuple(ev["message"].split("|")[1:3]))
                        continue
                self._send(m, out, delivery=True)


@pytest.mark.parametrize("deflate", [False, True])
def test_fanout_reports_exactly_what_a_faulty_server_dropped(deflate):
    with FaultyServer(deflate=deflate) as srv:
        rc, j, out = bench("fanout", "-p", srv.port, "-c", 20, "-r", 2, "-k", 4, "-T", 200, "-d", 1,
                           "-s", 200, "--drain", 1, *(["--deflate"] if deflate else []), timeout=30)
    assert rc == 2 and j["ok"] == 0, out     # loss is a problem: exit status 2
    assert srv.dropped > 10
    assert j["expected_others"] == srv.others and j["sent"] * 9 == srv.others
    assert j["lost_others"] == srv.dropped
    assert j["received_others"] == srv.others - srv.dropped
    assert j["msgs_short"] == len(srv.short_msgs)
    assert 0 < j["seq_gaps"] <= srv.dropped and j["dup_deliveries"] == 0
    assert j["received_self"] == j["sent"] and j["lost_self"] == 0
    # Fragments with pings between them were reassembled and every ping answered.
    assert j["fragmented_msgs"] == srv.fragmented > 0
    assert j["pings"] == srv.pings and srv.pongs == srv.pings
    assert j["proto_errors"] == 0 and srv.bad_client_frames == 0
    assert j["heartbeats"] == srv.heartbeats == 20 and srv.hb_pongs == 20
    # Compressed both ways when agreed: every message, fragmented ones too.
    assert j["deflate_conns"] == srv.pmd_conns == (20 if deflate else 0)
    assert srv.plain_client_msgs == 0


@pytest.mark.parametrize("deflate", [False, True])
def test_echo_reports_corrupted_echoes(deflate):
    with FaultyServer(deflate=deflate) as srv:
        rc, j, out = bench("echo", "-p", srv.port, "-c", 4, "-s", 300, "-d", 1,
                           *(["--deflate"] if deflate else []), timeout=30)
    assert rc == 2, out
    assert j["bad_echo"] == srv.corrupted > 0
    assert j["msgs_total"] == srv.echoes
    assert j["deflate_conns"] == srv.pmd_conns == (4 if deflate else 0)
    assert srv.plain_client_msgs == 0 and srv.bad_client_frames == 0


def test_extension_answers_not_offered_fail_the_handshake():
    """An answer must match the offer: no extension unless offered, and no
    permessage-deflate parameter that was not offered (client_max_window_bits)."""
    for answer, offer, why in (
            (PMD_ANSWER, [], "extension accepted that was not offered"),
            ("permessage-deflate; server_no_context_takeover; client_max_window_bits=10", ["--deflate"],
             "permessage-deflate accepted with parameters not offered"),
            ("permessage-deflate", ["--deflate"], "permessage-deflate accepted with parameters not offered"),
            ("x-webkit-deflate-frame", ["--deflate"], "permessage-deflate accepted with parameters not offered")):
        with FaultyServer(pmd_answer=answer) as srv:
            rc, j, out = bench("connect", "-p", srv.port, "-c", 3, "--hold", 0, *offer, timeout=30)
        assert rc == 2 and (j["opened"], j["failed"]) == (0, 3), out
        assert why in out, (answer, out)
