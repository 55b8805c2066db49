"""/metrics: Prometheus text format 0.0.4 read back with the real parser
(Debian's python3-prometheus-client), summed over every worker, with
counters that match what the test sent, refusals by reason, gauges that
return to their baseline, and totals that survive a worker killed with
SIGKILL and a reload."""
import asyncio
import os
import signal
import time

import websockets

from readouts import scrape
from roomclient import mask_frame, run, workers_of
from roomd import http_get, wait_for
from wsraw import connect, raw_request, read_frame, ws_open, ws_request

COUNTERS = [
    "roomd_connections", "roomd_websocket_sessions", "roomd_messages_received",
    "roomd_messages_sent", "roomd_received_bytes", "roomd_sent_bytes",
    "roomd_broadcasts_published", "roomd_broadcast_deliveries", "roomd_redis_reconnects",
    "roomd_slow_clients_dropped", "roomd_upgrades_refused", "roomd_close_codes_sent",
    "roomd_worker_restarts",
]
GAUGES = ["roomd_connections_open", "roomd_websocket_sessions_open", "roomd_rooms",
          "roomd_redis_links_up", "roomd_workers_draining"]


def counter_samples(m):
    """Every sample of every counter and histogram: the values that must never go down."""
    out = {k: v for k, v in m.samples.items()
           if m.types.get(k[0][:-6] if k[0].endswith("_total") else k[0]) == "counter"
           or k[0].startswith("roomd_redis_rtt_seconds")}
    assert len(out) > 40, sorted(out)
    return out


async def echo_sessions(port, n, m, size):
    """n sessions with python3-websockets, m echoed messages of size bytes each,
    closed by the client with 1000. Returns the close codes the server echoed."""
    payload = "x" * size
    codes = []
    for _ in range(n):
        async with websockets.connect(f"ws://127.0.0.1:{port}/echo", ping_interval=None,
                                      compression=None, close_timeout=2) as ws:
            for k in range(m):
                await ws.send(payload)
                assert await ws.recv() == payload
        codes.append(ws.close_code)
    return codes


def test_metrics_format(roomd):
    """Every family is there with its HELP, TYPE and the right kind; labelled
    series are complete; the histogram is cumulative with +Inf == _count;
    HEAD answers with no body; metrics_path moves it and "off" turns it off."""
    r = roomd({}, workers=2)
    m = scrape(r.port)
    for name in COUNTERS:
        assert m.types.get(name) == "counter", (name, m.types.get(name))
        assert f"# HELP {name}_total " in m.text and f"# TYPE {name}_total counter" in m.text
    for name in GAUGES:
        assert m.types.get(name) == "gauge", (name, m.types.get(name))
    assert m.types["roomd_redis_rtt_seconds"] == "histogram"
    reasons = {dict(k)["reason"] for k in m.labelled("roomd_upgrades_refused_total")}
    assert reasons >= {"bad_request", "method", "not_found", "version", "too_large", "timeout",
                       "draining", "capacity", "proxy_protocol"}, reasons
    codes = {dict(k)["code"] for k in m.labelled("roomd_close_codes_sent_total")}
    assert codes >= {"1000", "1001", "1002", "1003", "1007", "1008", "1009", "1011", "other"}
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in
                      m.labelled("roomd_redis_rtt_seconds_bucket").items()))
    assert buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets
    assert buckets[-1][1] == m.value("roomd_redis_rtt_seconds_count")
    assert m.value("roomd_redis_rtt_seconds_sum") >= 0
    assert m.value("roomd_worker_restarts_total") == 0
    assert m.value("roomd_workers_draining") == 0

    st, hdrs, body = raw_request(r.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert st == 200 and body == b"" and int(hdrs["content-length"]) > 1000
    assert "version=0.0.4" in hdrs["content-type"]
    st, _, _ = raw_request(r.port, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert st == 405

    s = roomd({"metrics_path": "/internal/stats"}, workers=1)
    assert scrape(s.port, "/internal/stats").types["roomd_connections"] == "counter"
    assert http_get(s.port, "/metrics")[0] == 404
    off = roomd({"metrics_path": "off"}, workers=1)
    assert http_get(off.port, "/metrics")[0] == 404


def test_metrics_count_echo_sessions(roomd):
    """On a fresh instance: N echo sessions of M messages each give exactly N
    sessions, N*M messages each way, N close frames with code 1000 (our
    echoes of the clients' closes), at least the frames' bytes each way; the
    open gauges count the clients while they are there and return to their
    baseline after."""
    r = roomd({}, workers=2)
    n, m, size = 5, 4, 100
    base = scrape(r.port)
    assert base.value("roomd_websocket_sessions_total") == 0
    assert base.value("roomd_websocket_sessions_open") == 0
    baseline_open = base.value("roomd_connections_open")   # the scrape's own connection

    async def main():
        held = [await websockets.connect(f"ws://127.0.0.1:{r.port}/echo", ping_interval=None,
                                         compression=None) for _ in range(3)]
        during = await asyncio.get_running_loop().run_in_executor(None, scrape, r.port)
        for ws in held:
            await ws.close()
        return during, await echo_sessions(r.port, n, m, size)
    during, codes = run(main(), 30)
    assert during.value("roomd_websocket_sessions_open") == 3
    assert during.value("roomd_connections_open") == baseline_open + 3
    assert codes == [1000] * n

    def settled():
        x = scrape(r.port)
        return x if (x.value("roomd_connections_open") == baseline_open and
                     x.value("roomd_websocket_sessions_open") == 0) else None
    after = wait_for(settled, 5, what="open gauges back to their baseline")
    total = n + 3
    assert after.value("roomd_websocket_sessions_total") == total
    assert after.value("roomd_messages_received_total") == n * m
    assert after.value("roomd_messages_sent_total") == n * m
    assert after.value("roomd_close_codes_sent_total", code="1000") == total
    assert after.value("roomd_close_codes_sent_total", code="1001") == 0
    assert after.value("roomd_received_bytes_total") >= n * m * (6 + size) + total * 150
    assert after.value("roomd_sent_bytes_total") >= n * m * (2 + size) + total * 129
    assert after.value("roomd_connections_total") >= total + 2
    assert after.value("roomd_worker_restarts_total") == 0
    assert sum(after.labelled("roomd_upgrades_refused_total").values()) == 0


def test_metrics_refusal_reasons(roomd):
    """roomd_upgrades_refused_total counts each refused handshake once under
    its reason; plain requests for unknown files are not upgrades and count
    nothing."""
    r = roomd({"handshake_timeout": "500ms", "max_connections": "6"}, workers=2)
    sends = [
        ("not_found", ws_request("/no-such-route"), 404),
        ("not_found", ws_request("/no-such-route"), 404),
        ("not_found", ws_request("/also/missing?x=1"), 404),
        ("method", ws_request("/echo", method="POST"), 405),
        ("version", ws_request("/echo", version="8"), 426),
        ("bad_request", ws_request("/echo", key=False), 400),
        ("too_large", ws_request("/echo", extra=[f"X-Big: {'y' * 9000}"]), 431),
    ]
    for reason, data, status in sends:
        st, _, _ = raw_request(r.port, data)
        assert st == status, (reason, st)
    assert http_get(r.port, "/no-such-file.html")[0] == 404
    # A head that never completes: closed after handshake_timeout, counted once.
    s = connect(r.port)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(3)
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.4 <= time.monotonic() - t0 <= 2.0
    s.close()
    # Over max_connections (6, server-wide): a 503 at accept.
    held = [ws_open(r.port)[0] for _ in range(6)]
    st, hdrs, body = raw_request(r.port, ws_request("/echo"))
    assert st == 503 and b"capacity" in body
    for h in held:
        h.sendall(mask_frame(8, (1000).to_bytes(2, "big")))
        read_frame(h)
        h.close()

    want = {"not_found": 3, "method": 1, "version": 1, "bad_request": 1, "too_large": 1,
            "timeout": 1, "capacity": 1}

    def counted():
        m = scrape(r.port)
        got = {dict(k)["reason"]: v for k, v in m.labelled("roomd_upgrades_refused_total").items()}
        return got if all(got.get(k, 0) == v for k, v in want.items()) else None
    try:
        got = wait_for(counted, 5, what="refusal counts")
    except AssertionError:
        got = {dict(k)["reason"]: v for k, v in
               scrape(r.port).labelled("roomd_upgrades_refused_total").items()}
        raise AssertionError(f"refusals {got}, want {want}") from None
    assert all(v == 0 for k, v in got.items() if k not in want), got


def test_metrics_survive_worker_kill(roomd):
    """SIGKILL one worker holding sessions: no counter or histogram series
    goes down, roomd_worker_restarts_total becomes 1, the dead worker's
    sessions leave the open gauges, and the replacement counts on top."""
    r = roomd({}, workers=2)

    async def main():
        await echo_sessions(r.port, 4, 3, 10)
        held, pid_of = [], {}
        while len(set(pid_of.values())) < 2 or len(held) < 4:
            assert len(held) < 60, "SO_REUSEPORT never used both workers"
            ws = await websockets.connect(f"ws://127.0.0.1:{r.port}/echo", ping_interval=None,
                                          compression=None)
            held.append(ws)
            port = ws.local_address[1]
            pid_of[port] = (await asyncio.get_running_loop().run_in_executor(
                None, workers_of, r, [port]))[port]
        return held, pid_of
    loop = asyncio.new_event_loop()
    try:
        held, pid_of = loop.run_until_complete(asyncio.wait_for(main(), 30))
        before = scrape(r.port)
        victim = sorted(set(pid_of.values()))[0]
        survivors = sum(1 for p in pid_of.values() if p != victim)
        assert before.value("roomd_websocket_sessions_open") == len(held)
        old_pids = r.worker_pids()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in r.worker_pids() and len(r.worker_pids()) == 2, 10,
                 what="the killed worker replaced")
        after = wait_for(lambda: (lambda m: m if m.value("roomd_worker_restarts_total") == 1
                                  else None)(scrape(r.port)), 5, what="worker_restarts 1")
        lower = {k: (v, after.samples.get(k)) for k, v in counter_samples(before).items()
                 if after.samples.get(k) is None or after.samples[k] < v}
        assert not lower, f"counters went down after the kill: {lower}"
        assert after.value("roomd_websocket_sessions_open") == survivors
        assert after.value("roomd_messages_received_total") == 12

        async def more():
            await echo_sessions(r.port, 2, 5, 10)
            for ws in held:
                if pid_of[ws.local_address[1]] != victim:
                    await ws.close()
                else:
                    ws.transport.abort()
        loop.run_until_complete(asyncio.wait_for(more(), 20))
    finally:
        loop.close()
    final = wait_for(lambda: (lambda m: m if m.value("roomd_websocket_sessions_open") == 0
                              else None)(scrape(r.port)), 5, what="sessions_open 0")
    assert final.value("roomd_messages_received_total") == 12 + 10
    assert final.value("roomd_websocket_sessions_total") == 4 + len(held) + 2
    assert final.value("roomd_worker_restarts_total") == 1
    assert set(r.worker_pids()).isdisjoint({victim}) and len(old_pids) == 2


def test_metrics_survive_reload(roomd):
    """SIGHUP replaces every worker: totals carry over, a reload is not a
    restart, and no worker is left counted as draining."""
    r = roomd({}, workers=2)
    run(echo_sessions(r.port, 3, 2, 10), 20)
    before = scrape(r.port)
    old = r.worker_pids()
    r.log_mark()
    r.sighup()
    r.wait_log(r"reload: configuration re-read")
    wait_for(lambda: len(r.worker_pids()) == 2 and not set(r.worker_pids()) & set(old), 10,
             what="a new worker generation")

    def settled():
        m = scrape(r.port)
        return m if m.value("roomd_workers_draining") == 0 else None
    after = wait_for(settled, 10, what="old workers gone")
    lower = {k: (v, after.samples.get(k)) for k, v in counter_samples(before).items()
             if after.samples.get(k) is None or after.samples[k] < v}
    assert not lower, f"counters went down over a reload: {lower}"
    assert after.value("roomd_messages_received_total") == 6
    assert after.value("roomd_worker_restarts_total") == 0
