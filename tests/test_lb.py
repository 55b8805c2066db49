"""roomd behind a load balancer: a real HAProxy (Debian's haproxy) in front of
two roomd instances sharing one external redis-server, PROXY protocol v1/v2
by raw socket, X-Forwarded-For / Forwarded from trusted and untrusted peers,
/readyz, the drain over drain_time, and the access log in text and JSON.

Real client addresses on loopback: Linux routes all of 127.0.0.0/8 to lo, so
each client binds its own source address 127.0.0.N (N >= 2) while HAProxy
reaches roomd from 127.0.0.1. The access line must show the client's
127.0.0.N, never the proxy's 127.0.0.1, and (at log_level debug) the
session's log prefix must show the client's own source port, which only the
PROXY header carried. Everything listens on 127.0.0.1."""
import asyncio
import json
import re
import socket
import subprocess
import time

import pytest
import websockets

from readouts import UUID, access_lines, scrape, wait_access
from roomclient import Chat, enter_all, mask_frame, run
from roomd import ROOMD_BIN, HAProxy, free_ports, http_get, wait_for
from wsraw import (client_addr, close_frame, connect, dropped_without_answer, proxy_v1, proxy_v2,
                   raw_request, read_frame, read_head, tlv, ws_echo_and_close, ws_open, ws_request)


@pytest.fixture
def haproxy(tmp_path):
    """Factory: haproxy(tcp_servers, http_servers) -> a started HAProxy; stopped at teardown."""
    made = []

    def make(tcp_servers, http_servers):
        h = HAProxy(tmp_path / f"haproxy{len(made)}", tcp_servers, http_servers)
        made.append(h)
        return h.start()
    yield make
    for h in made:
        h.stop()


def two_ports():
    return free_ports(2)


def lb_instance(roomd, redis=None, workers=2, **settings):
    """A roomd with a plain listener (r.port: health checks, direct tests) and a
    proxy_protocol listener (r.proxy_port), trusting 127.0.0.1 as a proxy."""
    plain, pp = two_ports()
    s = {"listen": [f"127.0.0.1:{plain}", f"127.0.0.1:{pp} proxy_protocol"],
         "trusted_proxies": "127.0.0.1/32", "log_level": "debug"}
    if redis is not None:
        s["redis"] = redis.url
    s.update(settings)
    r = roomd(s, workers=workers, port=plain)
    r.proxy_port = pp
    return r


def readyz(r):
    st, hdrs, body = http_get(r.port, "/readyz")
    return st, body


def wait_draining(r):
    """/readyz says draining within moments of the SIGTERM (the master relays it)."""
    wait_for(lambda: readyz(r) == (503, b"not ready: draining\n"), 1.0, interval=0.01,
             what="/readyz 503 draining")


async def chat_from(port, src, path="/"):
    """A chat client whose socket is bound to source address src."""
    return await Chat.connect(port, path, open_timeout=5, local_addr=(src, 0))


async def blocking(fn, *args):
    """Run a blocking helper (HTTP, log polling) without stalling the clients' loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


# ---- HAProxy ----

def test_haproxy_proxy_protocol_gives_real_address(roomd, redis, haproxy):
    """Through HAProxy (mode tcp, send-proxy-v2) each session's access line
    names the client's own source address, and its log prefix the client's
    own source port; both instances take clients (roundrobin) and HAProxy's
    /readyz checks pass through the PROXY listener."""
    a = lb_instance(roomd, redis)
    b = lb_instance(roomd, redis)
    h = haproxy([("a", a.proxy_port), ("b", b.proxy_port)], [("a", a.port), ("b", b.port)])
    h.wait_status("be_tcp", {"a": "UP", "b": "UP"})
    for r in (a, b):
        r.log_mark()
    clients = []
    for i in range(6):
        s, rest = ws_open(h.tcp_port, src=client_addr(10 + i))
        src, lport = s.getsockname()
        assert ws_echo_and_close(s, rest, b"via haproxy %d" % i) == 1000
        clients.append((src, lport))
    want = {src for src, _ in clients}

    def all_logged():
        lines = access_lines(a.new_log()) + access_lines(b.new_log())
        return lines if {x["addr"] for x in lines} >= want else None
    lines = wait_for(all_logged, 10, what="access lines for every client")
    assert "127.0.0.1" not in {x["addr"] for x in lines}, lines
    assert access_lines(a.new_log()) and access_lines(b.new_log()), "roundrobin used one backend only"
    logs = a.new_log() + b.new_log()
    by_uuid = {x["uuid"]: x for x in lines}
    for src, lport in clients:
        m = re.search(rf"conn \d+ (\S+) {re.escape(src)}:{lport} /echo: upgraded", logs)
        assert m, f"no session logged for {src}:{lport}"
        assert by_uuid[m.group(1)]["addr"] == src
        assert by_uuid[m.group(1)]["closed_by"] == "client"


def test_haproxy_forwardfor_gives_real_address(roomd, redis, haproxy):
    """Through HAProxy in mode http with option forwardfor to the plain
    listener (trusted_proxies 127.0.0.1/32): the access line names the
    client's address as HAProxy appended it, even when the client sent an
    X-Forwarded-For of its own to forge one (HAProxy adds its own header line
    after the client's, so the right-most entry over all lines counts)."""
    a = lb_instance(roomd, redis)
    b = lb_instance(roomd, redis)
    h = haproxy([("a", a.proxy_port), ("b", b.proxy_port)], [("a", a.port), ("b", b.port)])
    h.wait_status("be_http", {"a": "UP", "b": "UP"})
    for r in (a, b):
        r.log_mark()
    want = set()
    for i in range(4):
        src = client_addr(30 + i)
        extra = [f"X-Forwarded-For: 203.0.113.{i + 1}"] if i % 2 else []
        s, rest = ws_open(h.http_port, src=src, extra=extra)
        assert ws_echo_and_close(s, rest) == 1000
        want.add(src)
    def logged():
        lines = access_lines(a.new_log()) + access_lines(b.new_log())
        return lines if len(lines) >= 4 else None
    lines = wait_for(logged, 10, what="4 access lines")
    assert {x["addr"] for x in lines} == want, \
        f"forged X-Forwarded-For used instead of HAProxy's: {[x['addr'] for x in lines]}"


def test_haproxy_follows_readyz_when_redis_stops(roomd, redis, haproxy):
    """Redis stopped: /readyz says 503 "not ready: redis unreachable" on both
    instances (/healthz stays 200) and HAProxy marks both servers DOWN in
    both backends; Redis back on the same port: 200, UP, and chat through
    HAProxy works across the two instances again."""
    a = lb_instance(roomd, redis, log_level="info")
    b = lb_instance(roomd, redis, log_level="info")
    h = haproxy([("a", a.proxy_port), ("b", b.proxy_port)], [("a", a.port), ("b", b.port)])
    up = {"a": "UP", "b": "UP"}
    for be in ("be_tcp", "be_http"):
        h.wait_status(be, up)
    assert readyz(a) == (200, b"ready\n")

    redis.stop()
    for r in (a, b):
        wait_for(lambda r=r: readyz(r) == (503, b"not ready: redis unreachable\n"), 5,
                 what="/readyz 503 with redis down")
        assert http_get(r.port, "/healthz")[0] == 200
    down = {"a": "DOWN", "b": "DOWN"}
    for be in ("be_tcp", "be_http"):
        h.wait_status(be, down, 5)

    redis.start()

    def all_ready(r):
        return all(readyz(r)[0] == 200 for _ in range(8))  # every worker, not just one
    for r in (a, b):
        wait_for(lambda r=r: all_ready(r), 15, interval=0.1, what="/readyz 200 with redis back")
    for be in ("be_tcp", "be_http"):
        h.wait_status(be, up, 5)

    async def main():
        x = await chat_from(h.tcp_port, client_addr(40))
        y = await chat_from(h.tcp_port, client_addr(41))   # roundrobin: the other instance
        await enter_all([x, y], ["x", "y"], "back")
        await y.say("redis is back")
        ev = await x.expect({"event": "message", "message": "redis is back"})
        assert ev["name"] == "y" and ev["num"] == 2
        for c in (x, y):
            await c.close()
    run(main(), 20)
    assert scrape(a.port).value("roomd_websocket_sessions_total") >= 1
    assert scrape(b.port).value("roomd_websocket_sessions_total") >= 1


def test_haproxy_drain_moves_clients(roomd, redis, haproxy):
    """SIGTERM to instance A (drain_time 2s): A's /readyz says 503 at once,
    HAProxy marks it DOWN, A's clients get 1001 spread over the drain,
    reconnect through HAProxy and land on B, and chat in the same room keeps
    working across the move; A refuses new upgrades with 503 + Retry-After
    while it drains, then exits 0."""
    a = lb_instance(roomd, redis, workers=1, drain_time="2s", shutdown_timeout="6s")
    b = lb_instance(roomd, redis, workers=2)
    h = haproxy([("a", a.proxy_port), ("b", b.proxy_port)], [("a", a.port), ("b", b.port)])
    h.wait_status("be_tcp", {"a": "UP", "b": "UP"})
    n = 6
    srcs = [client_addr(50 + i) for i in range(n)]
    names = [f"u{i}" for i in range(n)]

    async def main():
        loop = asyncio.get_running_loop()
        clients = [await chat_from(h.tcp_port, s) for s in srcs]
        on_a = int(scrape(a.port).value("roomd_websocket_sessions_open"))
        on_b = int(scrape(b.port).value("roomd_websocket_sessions_open"))
        assert on_a + on_b == n and on_a >= 2 and on_b >= 1, (on_a, on_b)
        await enter_all(clients, names, "lb")
        a.log_mark()
        t0 = loop.time()
        a.sigterm()
        closed_at, refused = {}, []

        async def move(i):
            await clients[i].ws.wait_closed()
            closed_at[i] = loop.time() - t0
            assert clients[i].close_code == 1001, clients[i].close_code
            while True:
                assert loop.time() - t0 < 10, f"client {i} found no server to reconnect to"
                try:
                    c = await chat_from(h.tcp_port, srcs[i])
                    break
                except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                    refused.append(repr(e))
                    await asyncio.sleep(0.1)
            await c.enter(names[i], "lb")
            await c.expect({"event": "enter", "name": names[i]})
            clients[i] = c
        movers = [asyncio.create_task(move(i)) for i in range(n)]

        # At once: not ready, still alive and listening, refusing upgrades.
        await blocking(wait_draining, a)
        assert (await blocking(http_get, a.port, "/healthz"))[0] == 200
        st, hdrs, _ = await blocking(raw_request, a.port, ws_request("/"))
        assert st == 503 and hdrs.get("retry-after") == "1", (st, hdrs)
        m = await blocking(scrape, a.port)
        assert m.value("roomd_workers_draining") == 1
        assert m.value("roomd_upgrades_refused_total", reason="draining") >= 1
        await blocking(h.wait_status, "be_tcp", {"a": "DOWN", "b": "UP"}, 3)

        while sum(t.done() for t in movers) < on_a:
            assert loop.time() - t0 < 12, f"only {len(closed_at)} of {on_a} clients moved"
            for t in movers:
                if t.done() and t.exception():
                    raise t.exception()
            await asyncio.sleep(0.05)
        pending = [t for t in movers if not t.done()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in movers:
            if not t.cancelled():
                t.result()
        times = sorted(closed_at.values())
        assert len(times) == on_a
        # Spread over drain_time, not all at once (even steps of 2s/on_a).
        assert times[0] >= 0.2, times
        assert times[-1] - times[0] >= 2.0 * (on_a - 1) / on_a - 0.5, times
        assert times[-1] <= 3.0, times
        assert await blocking(a.wait_exit, 8) == 0

        # Everyone is on B now, in one room, and chat flows both ways.
        assert (await blocking(scrape, b.port)).value("roomd_websocket_sessions_open") == n
        moved = sorted(closed_at)
        stayed = [i for i in range(n) if i not in closed_at]
        for speaker in (stayed[0], moved[0]):
            text = f"said by {names[speaker]} after the drain"
            await clients[speaker].say(text, "lb")
            for c in clients:
                ev = await c.expect({"event": "message", "message": text}, 5)
                assert ev["name"] == names[speaker] and ev["num"] == n
        for c in clients:
            await c.close()
        return moved, refused
    moved, refused = run(main(), 40)
    lines = access_lines(a.new_log())
    assert sorted(x["addr"] for x in lines) == sorted(srcs[i] for i in moved)
    assert all(x["close"] == "1001" and x["closed_by"] == "server" for x in lines), lines
    if refused:
        print(f"reconnects refused before HAProxy marked A down: {refused}")


# ---- drain without a balancer ----

def test_drain_refuses_and_spreads_closes(roomd):
    """SIGTERM with drain_time 2s and 8 open sessions on one worker: /readyz
    503 at once, /healthz 200, new upgrades 503 with Retry-After: 1 during the
    whole drain (the listener stays up), the 8 sessions closed with 1001 in
    even steps over the 2 s, then exit 0. Connections that arrive during the
    drain (a load balancer's checks, idle sockets) neither take the sessions'
    turns nor are cut off before the drain ends."""
    r = roomd({"drain_time": "2s", "shutdown_timeout": "5s"}, workers=1)
    n = 8

    async def main():
        loop = asyncio.get_running_loop()
        clients = [await websockets.connect(f"ws://127.0.0.1:{r.port}/echo", ping_interval=None,
                                            close_timeout=2) for _ in range(n)]
        r.log_mark()
        t0 = loop.time()
        r.sigterm()

        async def closed(ws):
            await ws.wait_closed()
            return loop.time() - t0, ws.close_code
        watch = [asyncio.create_task(closed(ws)) for ws in clients]
        await blocking(wait_draining, r)
        assert (await blocking(http_get, r.port, "/healthz"))[0] == 200
        idle = [await blocking(connect, r.port) for _ in range(4)]
        refusals = 0
        while loop.time() - t0 < 1.7:
            st, hdrs, body = await blocking(raw_request, r.port, ws_request("/echo"))
            assert st == 503 and hdrs.get("retry-after") == "1", (st, hdrs, body)
            refusals += 1
            await asyncio.sleep(0.2)
        m = await blocking(scrape, r.port)
        assert m.value("roomd_upgrades_refused_total", reason="draining") == refusals
        assert m.value("roomd_workers_draining") == 1
        got = sorted(await asyncio.gather(*watch))
        for s in idle:      # closed at the end of the drain, without an answer
            s.settimeout(2)
            try:
                assert s.recv(1) == b"", "an idle connection got data"
            except ConnectionResetError:
                pass
            except socket.timeout:
                raise AssertionError("idle connections still open 2s after the drain") from None
            finally:
                s.close()
        return got
    got = run(main(), 20)
    times = [t for t, _ in got]
    assert [c for _, c in got] == [1001] * n
    for k, t in enumerate(times, 1):
        assert abs(t - 2.0 * k / n) <= 0.45, f"close {k} at {t:.2f}s, want about {2.0 * k / n:.2f}s: {times}"
    assert r.wait_exit(5) == 0
    lines = access_lines(r.new_log())
    assert len(lines) == n and all(x["close"] == "1001" and x["closed_by"] == "server" for x in lines)


def test_readyz_is_a_round_trip(roomd, redis):
    """Redis that takes connections and PINGs but holds writes (CLIENT PAUSE
    WRITE) cannot carry chat: each worker's canary does not come back, so
    /readyz turns 503 within about two seconds and names the failed check,
    and turns 200 again once the pause ends. The canary's round trip is a
    histogram in /metrics."""
    r = roomd({"redis": redis.url, "ready_timeout": "1s"}, workers=2)
    wait_for(lambda: readyz(r) == (200, b"ready\n"), 5, what="/readyz 200")
    wait_for(lambda: scrape(r.port).value("roomd_redis_canary_rtt_seconds_count") >= 4, 5,
             what="canary round trips counted in /metrics")
    t0 = time.monotonic()
    redis.command("CLIENT", "PAUSE", "5000", "WRITE")
    st, body = wait_for(lambda: (lambda x: x if x[0] == 503 else None)(readyz(r)), 3.5, interval=0.05,
                        what="/readyz 503 while Redis holds writes")
    assert time.monotonic() - t0 < 3.0
    assert b"canary" in body and b"1000ms" in body, body
    # Every check during the pause says so (both workers).
    for _ in range(10):
        assert readyz(r)[0] == 503
        time.sleep(0.1)
    wait_for(lambda: readyz(r) == (200, b"ready\n"), 8, what="/readyz 200 after the pause")
    assert time.monotonic() - t0 > 4.5


def test_drain_answers_every_connection(roomd):
    """workers 2, drain_time 4s, one client connected (so one worker has
    nothing to do): every /readyz check and every new upgrade made during
    the drain gets its 503 at once. A worker with no clients used to exit at
    the drain's start while the master kept its SO_REUSEPORT socket open, so
    the kernel queued about half the new connections where nobody answered.
    After the drain nothing is left listening: a connection is refused."""
    r = roomd({"drain_time": "4s", "shutdown_timeout": "8s"}, workers=2)

    async def main():
        loop = asyncio.get_running_loop()
        ws = await websockets.connect(f"ws://127.0.0.1:{r.port}/echo", ping_interval=None,
                                      close_timeout=2)
        t0 = loop.time()
        r.sigterm()
        await blocking(wait_draining, r)
        ready = upgrades = 0
        while loop.time() - t0 < 3.5:
            st, _, body = await blocking(lambda: raw_request(
                r.port, b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout=1.0))
            assert (st, body) == (503, b"not ready: draining\n"), (ready, st, body)
            ready += 1
            st, hdrs, _ = await blocking(lambda: raw_request(r.port, ws_request("/echo"), timeout=1.0))
            assert st == 503 and hdrs.get("retry-after") == "1", (upgrades, st, hdrs)
            upgrades += 1
        await ws.wait_closed()
        assert ws.close_code == 1001
        return ready, upgrades
    ready, upgrades = run(main(), 20)
    assert ready >= 10 and upgrades >= 10, (ready, upgrades)
    assert r.wait_exit(8) == 0
    with pytest.raises(OSError):
        connect(r.port, timeout=1.0)


# ---- PROXY protocol by raw socket ----

def test_proxy_protocol_sets_client_address(roomd):
    """PROXY v1 (TCP4, TCP6, TCP6 with v4-mapped addresses), v2 (IPv4 with
    TLVs, IPv6), headers split over several writes, and a header with the
    request in the same packet: each session's access line carries the address
    from the header; v1 UNKNOWN and v2 LOCAL (HAProxy's health checks) keep the
    socket's own address."""
    r = lb_instance(roomd, workers=2, log_level="info")
    pp = r.proxy_port
    r.log_mark()
    cases = [
        ("203.0.113.7", proxy_v1("203.0.113.7", 40001, dport=pp), [1]),
        ("2001:db8::7", proxy_v1("2001:db8::7", 40002, dst="::1", dport=pp), [1]),
        ("198.51.100.9", proxy_v2("198.51.100.9", 40003, dport=pp,
                                  tlvs=tlv(0x02, b"chat.example") + tlv(0x04, b"\0" * 5)), [1]),
        ("2001:db8::9", proxy_v2("2001:db8::9", 40004, dst="::1", dport=pp), [1]),
        ("192.0.2.33", proxy_v2("192.0.2.33", 40005, dport=pp), [3, 14, 5]),   # split v2
        ("192.0.2.44", proxy_v1("192.0.2.44", 40006, dport=pp), [6, 10]),      # split v1
        # HAProxy on a dual-stack listener writes IPv4 clients v4-mapped (issue 16)
        ("203.0.113.11", proxy_v1("::ffff:203.0.113.11", 40007, dst="::ffff:127.0.0.1", dport=pp), [1]),
        ("127.0.0.1", b"PROXY UNKNOWN\r\n", [1]),
    ]
    for addr, header, cuts in cases:
        s = connect(pp)
        pos = 0
        for c in cuts[:-1]:
            s.sendall(header[pos:pos + c])
            pos += c
            time.sleep(0.05)
        s.sendall(header[pos:] + ws_request("/echo"))
        st, hdrs, rest = read_head(s)
        assert st == 101, (addr, st)
        assert ws_echo_and_close(s, rest, addr.encode()) == 1000
    lines = wait_access(r, len(cases))
    assert sorted(x["addr"] for x in lines) == sorted(a for a, _, _ in cases)
    # A v2 LOCAL header is what HAProxy's checks send: /readyz answers.
    st, _, body = raw_request(pp, proxy_v2(local=True) + b"GET /readyz HTTP/1.0\r\n\r\n")
    assert (st, body) == (200, b"ready\n")
    st, _, body = raw_request(pp, proxy_v1("192.0.2.1", 1234, dport=pp) +
                              b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (st, body) == (200, b"ok\n")


def test_proxy_header_handshake_and_frames_in_one_write(roomd):
    """A client that sends the PROXY header, the upgrade request and 20
    messages in one write gets 20 echoes, in order. (Only 12 came back: the
    bytes after the handshake were handed on only as far as the first
    PROXY-sized chunk reached, and the rest of the read was dropped.)"""
    r = lb_instance(roomd, workers=1, log_level="info")
    pp = r.proxy_port
    msgs = [f"message {i:02d} ".encode() + b"x" * 60 for i in range(20)]
    frames = b"".join(mask_frame(1, m) for m in msgs)
    for header in (proxy_v1("203.0.113.5", 40000, dport=pp), proxy_v2("2001:db8::5", 40001, dst="::1", dport=pp)):
        s = connect(pp)
        s.sendall(header + ws_request("/echo") + frames)
        st, _, rest = read_head(s)
        assert st == 101
        got = []
        s.settimeout(2)
        try:
            while len(got) < len(msgs):
                op, payload, rest = read_frame(s, rest)
                got.append(payload)
        except (socket.timeout, ConnectionError):
            pass
        assert got == msgs, f"{len(got)} of {len(msgs)} echoes after a {header[:5]!r} header"
        s.sendall(close_frame(1000))
        assert read_frame(s, rest)[0] == 8
        s.close()


def test_proxy_protocol_required(roomd):
    """On a proxy_protocol listener a connection without a valid header is
    dropped without an HTTP answer (plain HTTP, a WebSocket handshake, a bad
    v1 line, a v1 line over 107 bytes, a v2 header of version 3, a v2 unix
    address); roomd_upgrades_refused_total{reason="proxy_protocol"} counts
    them. The plain listener needs no header, and a PROXY line sent to it is
    not believed (400)."""
    r = lb_instance(roomd, workers=2, log_level="info")
    pp = r.proxy_port
    bad = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        ws_request("/echo"),
        b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 1.2.3.4 127.0.0.1 1\r\n",
        b"PROXY TCP4 " + b"1" * 120 + b"\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x31, 0x11, 0, 12]) + b"\0" * 12,
        b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x31, 0, 216]) + b"\0" * 216,
    ]
    for data in bad:
        assert dropped_without_answer(pp, data), f"answered without a valid PROXY header: {data!r}"
    m = scrape(r.port)
    assert m.value("roomd_upgrades_refused_total", reason="proxy_protocol") == len(bad)
    assert http_get(r.port, "/healthz")[0] == 200
    st, _, _ = raw_request(r.port, proxy_v1("203.0.113.99", 1, dport=r.port) + ws_request("/echo"))
    assert st == 400
    r.log_mark()
    s, rest = ws_open(r.port)
    assert ws_echo_and_close(s, rest) == 1000
    assert wait_access(r, 1)[0]["addr"] == "127.0.0.1"


# ---- IPv6 clients per prefix ----

def test_ipv6_clients_count_per_prefix(roomd):
    """One IPv6 host holds a whole /64: counted per address, five sessions
    from one /64 all got in under max_sessions_per_ip 2. IPv6 clients now
    count by their first ipv6_prefix_length bits (64 by default): through
    PROXY v2 headers (and X-Forwarded-For from a trusted proxy) naming five
    addresses of one /64, two sessions get in and three get 429, while the
    next /64 is another client. With ipv6_prefix_length 128 each address
    counts on its own again."""
    def attempt(r, src, held, xff=False):
        if xff:
            s = connect(r.port)
            s.sendall(ws_request("/echo", extra=[f"X-Forwarded-For: {src}"]))
        else:
            s = connect(r.proxy_port)
            s.sendall(proxy_v2(src, 40000 + len(held), dst="::1", dport=r.proxy_port) + ws_request("/echo"))
        st, _, _ = read_head(s)
        held.append(s)
        return st

    srcs = ["2001:db8:1:2::1", "2001:db8:1:2:8000::1", "2001:db8:1:2:dead:beef:0:7",
            "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:1234::99"]
    held = []
    try:
        r = lb_instance(roomd, workers=2, max_sessions_per_ip="2")
        got = [attempt(r, a, held) for a in srcs]
        assert got == [101, 101, 429, 429, 429], got
        assert attempt(r, "2001:db8:1:3::1", held) == 101, "the next /64 was refused"
        got = [attempt(r, f"2001:db8:2:2::{i}", held, xff=True) for i in range(1, 6)]
        assert got == [101, 101, 429, 429, 429], f"through X-Forwarded-For: {got}"
        for s in held:
            s.close()
        held.clear()
        r.stop()
        r = lb_instance(roomd, workers=2, max_sessions_per_ip="2", ipv6_prefix_length="128")
        got = [attempt(r, a, held) for a in srcs]
        assert got == [101] * 5, f"ipv6_prefix_length 128: {got}"
    finally:
        for s in held:
            s.close()


# ---- X-Forwarded-For and Forwarded ----

def forwarded_cases(r):
    """(expected addr, source address, PROXY header or b"", extra header lines, port)."""
    pp = r.proxy_port
    return [
        # an untrusted peer's headers are ignored
        ("127.0.0.2", "127.0.0.2", b"", ["X-Forwarded-For: 203.0.113.50"], r.port),
        ("127.0.0.3", "127.0.0.3", b"", ["Forwarded: for=203.0.113.49"], r.port),
        # from a trusted peer: the right-most address that is not itself trusted
        ("203.0.113.51", "127.0.0.1", b"",
         ["X-Forwarded-For: 198.51.100.1, 203.0.113.51, 10.1.2.3"], r.port),
        ("2001:db8::52", "127.0.0.1", b"",
         ['Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::52]:4711"'], r.port),
        ("192.0.2.54", "127.0.0.1", b"", ["x-forwarded-for:192.0.2.54:5555"], r.port),
        ("198.51.100.9", "127.0.0.1", b"", ["X-Forwarded-For: ::ffff:198.51.100.9"], r.port),
        # garbage keeps the peer's address
        ("127.0.0.1", "127.0.0.1", b"", ["X-Forwarded-For: unknown"], r.port),
        # through a PROXY header: an untrusted client's header is ignored...
        ("198.51.100.60", "127.0.0.1", proxy_v1("198.51.100.60", 7, dport=pp),
         ["X-Forwarded-For: 6.6.6.6"], pp),
        # ...a trusted inner proxy's is honoured
        ("203.0.113.61", "127.0.0.1", proxy_v1("10.9.9.9", 7, dport=pp),
         ["X-Forwarded-For: 203.0.113.61"], pp),
    ]


def test_forwarded_headers_trust(roomd):
    """trusted_proxies (repeatable: 127.0.0.1/32 ::1, 10.0.0.0/8): X-Forwarded-For
    and Forwarded for= are ignored from other peers, and from a trusted one
    the right-most untrusted address is used."""
    r = lb_instance(roomd, workers=2, log_level="info",
                    trusted_proxies=["127.0.0.1/32 ::1", "10.0.0.0/8"])
    cases = forwarded_cases(r)
    r.log_mark()
    for addr, src, prefix, extra, port in cases:
        s, rest = ws_open(port, src=src, prefix=prefix, extra=extra)
        assert ws_echo_and_close(s, rest) == 1000
    lines = wait_access(r, len(cases))
    assert sorted(x["addr"] for x in lines) == sorted(c[0] for c in cases)


def test_forwarded_for_over_several_header_lines(roomd):
    """X-Forwarded-For split over several header lines is one list (RFC 9110
    5.3): the right-most entry is in the last line. HAProxy's option
    forwardfor and nginx's proxy_add_x_forwarded_for behind another proxy
    both produce this, so using the first line lets a client forge its
    address."""
    r = lb_instance(roomd, workers=1, log_level="info", trusted_proxies="127.0.0.1/32")
    r.log_mark()
    for extra in (["X-Forwarded-For: 6.6.6.6", "X-Forwarded-For: 203.0.113.70"],
                  ["X-Forwarded-For: 6.6.6.7", "X-Forwarded-For: 203.0.113.71, 127.0.0.1"],
                  ["Forwarded: for=6.6.6.8", "Forwarded: for=203.0.113.72"]):
        s, rest = ws_open(r.port, extra=extra)
        assert ws_echo_and_close(s, rest) == 1000
    lines = wait_access(r, 3)
    assert sorted(x["addr"] for x in lines) == ["203.0.113.70", "203.0.113.71", "203.0.113.72"]


# ---- access log ----

def test_access_log_lines(roomd):
    """One access line per session end: closed by the client (its code),
    by the server (1007 for bad UTF-8), dropped (1006); a chat session lists
    its rooms, its duration and its message counts; plain HTTP requests and
    refused upgrades write none."""
    r = roomd({}, workers=2)
    r.log_mark()
    s, rest = ws_open(r.port)
    assert ws_echo_and_close(s, rest, b"x", code=4321) == 4321
    s, rest = ws_open(r.port)
    s.sendall(mask_frame(1, b"\xff\xfe"))
    op, payload, rest = read_frame(s, rest)
    assert op == 8 and payload[:2] == (1007).to_bytes(2, "big")
    s.sendall(close_frame(1007))
    s.close()
    s, rest = ws_open(r.port)
    s.close()
    http_get(r.port, "/healthz")
    raw_request(r.port, ws_request("/no-such-route"))

    async def chat():
        c = await Chat.connect(r.port)
        await c.enter("ann", "r1")
        await c.expect({"event": "enter", "roomid": "r1"})
        await c.enter("ann", "r2")
        await c.expect({"event": "enter", "roomid": "r2"})
        await asyncio.sleep(0.3)
        await c.close()
    run(chat(), 10)
    lines = wait_access(r, 4)
    time.sleep(0.2)
    lines = access_lines(r.new_log())
    assert len(lines) == 4, lines
    by = {}
    for x in lines:
        assert UUID.match(x["uuid"]), x
        assert x["addr"] == "127.0.0.1"
        by.setdefault(x["route"], []).append(x)
    echo = sorted(by["/echo"], key=lambda x: x["close"])
    assert [(x["close"], x["closed_by"]) for x in echo] == \
        [("1006", "dropped"), ("1007", "server"), ("4321", "client")]
    assert (echo[2]["in"], echo[2]["out"], echo[2]["rooms"]) == ("1", "1", "-")
    ch = by["/"][0]
    assert sorted(ch["rooms"].split(",")) == ["r1", "r2"], ch
    assert int(ch["duration_ms"]) >= 250 and ch["in"] == "2" and int(ch["out"]) >= 2, ch
    assert (ch["close"], ch["closed_by"]) == ("1000", "client")
    assert len({x["uuid"] for x in lines}) == 4


def test_access_log_rooms_when_the_server_ends_the_session(roomd):
    """A session the server ended (a graceful stop's 1001, a heartbeat
    timeout's 4000) lists the rooms it was in, not "-": its rooms let go of
    it the moment the server decided, and the access line says what they
    were."""
    r = roomd({"heartbeat_interval": "300ms", "heartbeat_misses": "1", "drain_time": "0"}, workers=1)
    r.log_mark()

    async def main():
        quiet = await Chat.connect(r.port, auto_pong=False)
        await quiet.enter("mute", "den")
        await quiet.expect({"event": "enter", "roomid": "den"})
        assert await quiet.wait_closed() == 4000
        c = await Chat.connect(r.port)
        await c.enter("bob", "attic")
        await c.expect({"event": "enter", "roomid": "attic"})
        r.sigterm()
        assert await c.wait_closed() == 1001
    run(main(), 15)
    assert r.wait_exit(5) == 0
    lines = access_lines(r.new_log())
    assert sorted((x["rooms"], x["close"], x["closed_by"]) for x in lines) == \
        [("attic", "1001", "server"), ("den", "4000", "server")], lines


def test_access_log_room_names_cannot_forge_fields(roomd):
    """A room name is the client's choice: in the text access line it must
    not be able to add fields (a space and key=value) that a log parser would
    take for the real ones."""
    r = roomd({}, workers=1)
    r.log_mark()

    async def chat():
        c = await Chat.connect(r.port)
        await c.enter("eve", "x addr=6.6.6.6 closed_by=server")
        await c.expect({"event": "enter"})
        await c.close()
    run(chat(), 10)
    line = r.wait_log(r"\[info\] access .*").group(0)
    fields = re.findall(r" ([a-z_]+)=", line)
    assert fields == ["uuid", "addr", "route", "rooms", "duration_ms", "in", "out", "close",
                      "closed_by"], line


def test_log_format_json(roomd):
    """log_format json: every line the master and the workers write parses as
    one JSON object with time, pid, role, level and msg or event; access
    lines carry event "access" and the fields as strings; untrusted bytes in
    messages stay inside their strings."""
    r = roomd({"log_format": "json", "log_level": "debug"}, workers=2)
    s, rest = ws_open(r.port)
    assert ws_echo_and_close(s, rest, b"json", code=1000) == 1000
    raw_request(r.port, ws_request('/no"such\\route'))
    raw_request(r.port, b"GET /\x01 HTTP/1.1\r\n\r\n")

    async def chat():
        c = await Chat.connect(r.port)
        await c.enter('q"uote', 'r"1')
        await c.expect({"event": "enter"})
        await c.close()
    run(chat(), 10)
    wait_for(lambda: r.read_log().count('"event":"access"') >= 2, 5, what="two access lines")
    r.stop()
    text = r.read_log()
    assert text.endswith("\n")
    objs = []
    for line in text.splitlines():
        try:
            o = json.loads(line)
        except ValueError as e:
            raise AssertionError(f"not JSON ({e}): {line!r}") from None
        assert isinstance(o, dict)
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$", o["time"]), o
        assert isinstance(o["pid"], int) and o["pid"] > 0
        assert o["role"] == "master" or re.match(r"^worker \d+$", o["role"]), o
        assert o["level"] in ("debug", "info", "notice", "warning", "error", "alert"), o
        assert ("msg" in o) != ("event" in o), o
        objs.append(o)
    assert {o["role"] for o in objs} >= {"master", "worker 0", "worker 1"}
    assert any(o["pid"] == r.pid and o["role"] == "master" for o in objs)
    assert any('no"such\\x5croute' in o.get("msg", "") for o in objs), "refused path not logged"
    acc = [o for o in objs if o.get("event") == "access"]
    assert len(acc) == 2, acc
    keys = ["uuid", "addr", "route", "rooms", "duration_ms", "in", "out", "close", "closed_by"]
    for o in acc:
        assert o["level"] == "info"
        assert all(isinstance(o[k], str) for k in keys), o
        assert UUID.match(o["uuid"]) and o["addr"] == "127.0.0.1" and o["duration_ms"].isdigit()
    echo = next(o for o in acc if o["route"] == "/echo")
    assert (echo["rooms"], echo["in"], echo["out"], echo["close"], echo["closed_by"]) == \
        ("-", "1", "1", "1000", "client")
    ch = next(o for o in acc if o["route"] == "/")
    assert ch["rooms"] == 'r"1' and ch["closed_by"] == "client", ch


# ---- the settings ----

@pytest.mark.parametrize("conf,err", [
    ("drain_time 5s\nshutdown_timeout 5s\n",
     "drain_time (5000ms) must be shorter than shutdown_timeout (5000ms)"),
    ("trusted_proxies 127.0.0.1/33\n", "trusted_proxies wants addresses or CIDR blocks"),
    ("trusted_proxies 127.0.0.1:80\n", "trusted_proxies wants addresses or CIDR blocks"),
    ("listen 127.0.0.1:8080 proxy\n", "unknown listen option 'proxy'"),
    ("ready_path readyz\n", "ready_path must start with '/'"),
])
def test_lb_settings_checked(tmp_path, conf, err):
    """roomd -t rejects load-balancer settings that cannot work, naming them."""
    path = tmp_path / "roomd.conf"
    path.write_text(conf)
    p = subprocess.run([ROOMD_BIN, "-t", "-c", str(path)], capture_output=True, text=True)
    assert p.returncode == 1 and err in p.stderr, p.stderr


def test_lb_settings_dump(tmp_path):
    """roomd -T shows proxy_protocol listeners and every trusted_proxies block
    (repeated keys and lists on one line add up) with its prefix length."""
    path = tmp_path / "roomd.conf"
    path.write_text("listen 127.0.0.1:8080\nlisten 127.0.0.1:8081 proxy_protocol\n"
                    "trusted_proxies 10.0.0.0/8 ::1\ntrusted_proxies 192.168.1.7\n"
                    "drain_time 2s\nmetrics_path off\n")
    p = subprocess.run([ROOMD_BIN, "-T", "-c", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    for want in ("listen 127.0.0.1:8080", "listen 127.0.0.1:8081 proxy_protocol",
                 "trusted_proxies 10.0.0.0/8", "trusted_proxies ::1/128",
                 "trusted_proxies 192.168.1.7/32", "drain_time 2s", "metrics_path off",
                 "health_path /healthz", "ready_path /readyz"):
        assert want in lines, f"{want!r} not in roomd -T output:\n{p.stdout}"
