"""The HTTP API for backends (roomd-api(7)), with real HTTP clients (curl,
Python's http.client and urllib), a real redis-server and two roomd
instances sharing it: a publish on A's API reaches the members on every
worker of A and B once, in order, with the offset it answered; a disconnect
closes a user's sessions on both; rooms and info agree with the clients
that are really there; and every bad request gets its status and error JSON
while the connection stays usable where HTTP allows it."""
import asyncio
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

from readouts import scrape
from roomclient import Chat, enter_all, jwt, run, spread_clients, workers_of
from roomd import ROOMD_BIN, RedisCluster, free_ports, make_cert, wait_for
from wsraw import HOST, raw_request, read_head, read_to_close, ws_request

KEY = "test-key-0123456789abcdef"
KEY2 = "second-key-abcdef0123456789"


def api_settings(port, **extra):
    """Settings for an instance with its API alone on 127.0.0.1:port."""
    s = {"api_listen": f"{HOST}:{port}", "api_key": KEY, "rate_limit": "0"}
    s.update(extra)
    return s


class Api:
    """One keep-alive HTTP/1.1 connection to an API (http.client), JSON in and out."""

    def __init__(self, port, key=KEY, context=None):
        self.port = port
        self.key = key
        self.conn = (http.client.HTTPSConnection(HOST, port, timeout=10, context=context) if context
                     else http.client.HTTPConnection(HOST, port, timeout=10))

    def call(self, method, path, body=None, key="default", headers=None, raw=None):
        """(status, headers dict with lower-case names, decoded JSON or None)."""
        h = dict(headers or {})
        key = self.key if key == "default" else key
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        text = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        if method == "HEAD":
            return r.status, hdrs, None
        assert hdrs.get("content-type") == "application/json", (r.status, hdrs, text)
        return r.status, hdrs, json.loads(text)

    def sock(self):
        return self.conn.sock

    def close(self):
        self.conn.close()


def curl(port, path, body=None, key=KEY, method=None, extra=(), scheme="http"):
    """The real curl: (status, decoded JSON body or None)."""
    exe = shutil.which("curl")
    assert exe, "curl is not installed (tests/install-deps.sh installs it)"
    cmd = [exe, "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
    if key is not None:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary",
                body if isinstance(body, str) else json.dumps(body)]
    if method is not None:
        cmd += ["-X", method]
    cmd += list(extra) + [f"{scheme}://{HOST}:{port}{path}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, f"curl failed: {p.stderr}"
    text, _, status = p.stdout.rpartition("\n")
    return int(status), (json.loads(text) if text.strip() else None)


def is_error(doc, code):
    """Whether doc is {"error":{"code":code,"message":"..."}} and nothing else."""
    return (isinstance(doc, dict) and set(doc) == {"error"} and doc["error"].get("code") == code
            and isinstance(doc["error"].get("message"), str) and doc["error"]["message"] != "")


def urllib_status(port, path):
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def started(roomd, settings, **kw):
    """A roomd whose workers all reach Redis (/readyz 200 on several connections in a row, which
    SO_REUSEPORT spreads over the workers): /healthz alone says nothing of Redis."""
    r = roomd(settings, **kw)
    wait_for(lambda: all(urllib_status(r.port, "/readyz") == 200 for _ in range(8)), 15,
             what="every worker of roomd ready (Redis reached)")
    return r


def two_hosts(roomd, redis, **extra):
    """Instances A and B (2 workers each) sharing redis (a server or a cluster), each with its API;
    (A, B, A's API port, B's)."""
    pa, pb = free_ports(2)
    common = {"redis": redis.url, "presence_ttl": "3s", **extra}
    a = started(roomd, api_settings(pa, **common))
    b = started(roomd, api_settings(pb, **common))
    return a, b, pa, pb


# ---- publish ----

def test_publish_reaches_every_worker_of_both_hosts_once_in_order(roomd, redis):
    a, b, pa, pb = two_hosts(roomd, redis)
    n = 30

    async def main():
        by_a = await spread_clients(a, 1)
        by_b = await spread_clients(b, 1)
        members = [c for cs in list(by_a.values()) + list(by_b.values()) for c in cs]
        assert len(members) == 4
        await enter_all(members, [f"m{i}" for i in range(4)], "news")
        # A member's own message, to compare the API's event with.
        await members[0].say("from a member", "news")
        mine = await members[1].expect({"event": "message", "name": "m0"})
        api = Api(pa)
        answers = []
        for i in range(n):
            st, hdrs, doc = api.call("POST", "/api/publish", {"room": "news", "message": f"note {i}"})
            assert st == 200 and hdrs["connection"] == "keep-alive", (st, doc)
            answers.append(doc["result"])
        api.close()
        offsets = [r["offset"] for r in answers]
        assert offsets == list(range(mine["offset"] + 1, mine["offset"] + 1 + n)), offsets
        assert all(r["num"] == 4 and r["epoch"] == answers[0]["epoch"] for r in answers)
        for c in members:
            await c.until(lambda c=c: len([e for e in c.messages("news") if e["name"] == "system"]) >= n, 10,
                          what="every API message")
        await asyncio.sleep(0.3)    # a duplicate would have come by now
        for c in members:
            got = [e for e in c.messages("news") if e["name"] == "system"]
            assert [(e["offset"], e["id"], e["message"]) for e in got] == \
                [(r["offset"], r["id"], f"note {i}") for i, r in enumerate(answers)], "not once and in order"
            assert all(set(e) == set(mine) and e["num"] == 4 and e["roomid"] == "news" for e in got), \
                f"the API's event differs from a member's: {got[0]} vs {mine}"
        for c in members:
            await c.close()
        return answers

    answers = run(main())
    # The same messages are the room's history, readable through B's API too.
    st, doc = curl(pb, "/api/rooms/news/history?limit=5")
    assert st == 200
    assert [m["offset"] for m in doc["result"]["messages"]] == [r["offset"] for r in answers[-5:]]
    assert doc["result"]["offset"] == answers[-1]["offset"] and doc["result"]["epoch"] == answers[0]["epoch"]


def test_publish_with_curl_a_name_and_a_room_from_urllib(roomd):
    pa = free_ports(1)[0]
    r = started(roomd, api_settings(pa, api_name="newsdesk"))

    async def main():
        c = await Chat.connect(r.port)
        await c.enter("reader", "desk/1 ü")
        await c.expect({"event": "enter", "name": "reader"})
        st, doc = curl(pa, "/api/publish", {"room": "desk/1 ü", "message": "default name"})
        assert st == 200, doc
        ev = await c.expect({"event": "message", "message": "default name"})
        assert ev["name"] == "newsdesk" and ev["offset"] == doc["result"]["offset"]
        st, doc = curl(pa, "/api/publish", {"room": "desk/1 ü", "message": "named", "name": "Editor"})
        assert st == 200
        assert (await c.expect({"event": "message", "message": "named"}))["name"] == "Editor"
        # urllib, and the room's %-encoded name in the path.
        req = urllib.request.Request(f"http://{HOST}:{pa}/api/rooms/desk%2F1%20%C3%BC",
                                     headers={"Authorization": f"Bearer {KEY}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            room = json.loads(resp.read())["result"]
        assert room["room"] == "desk/1 ü" and room["num"] == 1 and room["members"] == ["reader"]
        assert room["offset"] == doc["result"]["offset"]
        await c.close()

    run(main())


def test_broadcast_one_answer_per_room(roomd):
    pa = free_ports(1)[0]
    r = started(roomd, api_settings(pa))

    async def main():
        cs = [await Chat.connect(r.port) for _ in range(3)]
        for i, c in enumerate(cs):
            await c.enter(f"u{i}", f"room{i}")
            await c.expect({"event": "enter", "name": f"u{i}"})
        api = Api(pa)
        st, _, doc = api.call("POST", "/api/broadcast",
                              {"rooms": ["room0", "room1", "room2", "room1"], "message": "all hands"})
        assert st == 200, doc
        res = doc["result"]["rooms"]
        assert [x["room"] for x in res] == ["room0", "room1", "room2", "room1"]
        assert [x["num"] for x in res] == [1, 1, 1, 1] and res[3]["offset"] == res[1]["offset"] + 1
        for i, c in enumerate(cs):
            got = [await c.expect({"event": "message", "message": "all hands"})]
            if i == 1:
                got.append(await c.expect({"event": "message", "message": "all hands"}))
            assert [e["offset"] for e in got] == [x["offset"] for x in res if x["room"] == f"room{i}"]
        api.close()
        for c in cs:
            await c.close()

    run(main())


# ---- disconnect ----

def test_disconnect_by_user_closes_its_sessions_on_both_hosts(roomd, redis):
    a, b, pa, pb = two_hosts(roomd, redis)

    async def main():
        bobs = [c for cs in list((await spread_clients(a, 1)).values()) +
                list((await spread_clients(b, 1)).values()) for c in cs]
        alice = await Chat.connect(a.port)
        carol = await Chat.connect(b.port)
        await enter_all([alice, carol] + bobs, ["alice", "carol", "bob", "bob", "bob", "bob"], "team")
        # Asked on B: the sessions on A's workers go too.
        st, doc = curl(pb, "/api/disconnect", {"user": "bob", "code": 4003, "reason": "banned"})
        assert st == 200, doc
        assert doc["result"] == {"disconnected": 4, "workers": 4, "answered": 4}, doc
        for c in bobs:
            assert await c.wait_closed(5) == 4003
            assert c.ws.close_reason == "banned"
        # The others stay, and hear bob leave.
        for c in (alice, carol):
            await c.until(lambda c=c: len(c.of("out", name="bob")) == 4, 5, what="four outs")
        await alice.say("still here", "team")
        assert (await carol.expect({"event": "message", "message": "still here"}))["num"] == 2
        st, doc = curl(pa, "/api/disconnect", {"user": "bob"})
        assert st == 200 and doc["result"]["disconnected"] == 0 and doc["result"]["workers"] == 4
        await alice.close()
        await carol.close()

    run(main())


def test_disconnect_by_token_user_and_by_session_uuid(roomd):
    """A user with a token is found by its sub wherever it is (even in no room);
    a session by the uuid its log lines carry, closed with 1008 by default."""
    pa = free_ports(1)[0]
    secret = "s" * 32
    r = started(roomd, api_settings(pa, auth="optional", auth_secret=secret, log_level="debug"))

    async def main():
        dana = await Chat.connect(r.port, f"/?token={jwt({'sub': 'dana', 'exp': int(time.time()) + 600}, secret)}")
        other = await Chat.connect(r.port)
        await other.enter("eve", "x")
        await other.expect({"event": "enter", "name": "eve"})
        api = Api(pa)
        st, _, doc = api.call("POST", "/api/disconnect", {"user": "dana"})
        assert st == 200 and doc["result"]["disconnected"] == 1, doc
        assert await dana.wait_closed(5) == 1008
        # The uuid of eve's session, as its log lines give it.
        port = other.local_port
        m = wait_for(lambda: re.search(r"conn \d+ ([0-9a-f-]{36}) 127\.0\.0\.1:%d " % port, r.read_log()), 5,
                     what="eve's session in the log")
        st, _, doc = api.call("POST", "/api/disconnect", {"conn": m.group(1).upper(), "reason": "bye"})
        assert st == 200 and doc["result"]["disconnected"] == 1, doc
        assert await other.wait_closed(5) == 1008 and other.ws.close_reason == "bye"
        st, _, doc = api.call("POST", "/api/disconnect", {"conn": m.group(1)})
        assert st == 200 and doc["result"]["disconnected"] == 0
        api.close()

    run(main())


# ---- rooms and info ----

def test_rooms_and_info_agree_with_the_clients_there(roomd, redis):
    a, b, pa, pb = two_hosts(roomd, redis)
    sizes = {f"r{i}": 1 + i % 3 for i in range(12)}

    async def main():
        clients = []
        for room, size in sizes.items():
            for k in range(size):
                host = a if (len(clients) % 2 == 0) else b
                c = await Chat.connect(host.port)
                await c.enter(f"{room}-n{k}", room)
                await c.expect({"event": "enter", "name": f"{room}-n{k}"})
                clients.append((host, room, c))
        api = Api(pb)
        # Every room with its count, a few per page, following the cursor.
        seen, cursor, pages = {}, "0", 0
        while True:
            st, _, doc = api.call("GET", f"/api/rooms?limit=3&cursor={cursor}")
            assert st == 200, doc
            for x in doc["result"]["rooms"]:
                seen[x["room"]] = x["num"]
            cursor = doc["result"]["cursor"]
            pages += 1
            assert pages < 200, "the cursor never came back to 0"
            if cursor == "0":
                break
        assert seen == sizes
        for room, size in sizes.items():
            st, _, doc = api.call("GET", f"/api/rooms/{room}")
            assert st == 200 and doc["result"]["num"] == size
            assert sorted(doc["result"]["members"]) == sorted(f"{room}-n{k}" for k in range(size))
        st, _, doc = api.call("GET", "/api/rooms/nobody-here")
        assert st == 404 and is_error(doc, "unknown_room")
        # info: both hosts, their workers, connections and rooms as their workers hold them.
        where = {}
        for host in (a, b):
            where.update(workers_of(host, [c.local_port for h, _, c in clients if h is host]))
        want = {}
        for host in (a, b):
            pairs = {(where[c.local_port], room) for h, room, c in clients if h is host}
            conns = sum(1 for h, _, _ in clients if h is host)
            want[host.pid] = (conns, len(pairs))

        def agree():
            st, _, doc = api.call("GET", "/api/info")
            assert st == 200
            hosts = doc["result"]["hosts"]
            if len(hosts) != 2 or doc["result"]["workers"] != 4:
                return None
            got = sorted((h["connections"], h["rooms"]) for h in hosts)
            # B's count includes this API connection.
            exp = sorted([want[a.pid], (want[b.pid][0] + 1, want[b.pid][1])])
            return hosts if got == exp else None
        hosts = wait_for(agree, 10, what="/api/info agreeing with the clients")
        version = subprocess.run([ROOMD_BIN, "-v"], capture_output=True, text=True).stdout.split()[1]
        assert all(h["workers"] == 2 and h["version"] == version and h["uptime"] >= 0 for h in hosts)
        assert len({h["instance"] for h in hosts}) == 2
        api.close()
        for _, _, c in clients:
            await c.close()

    run(main())


def test_publish_rooms_and_disconnect_on_a_redis_cluster(roomd, tmp_path):
    """On a Redis Cluster the rooms spread over three masters: /api/rooms pages
    through every master, a publish reaches its room's members and the control
    channel of disconnects (sharded pub/sub) reaches every worker of both hosts."""
    cluster = RedisCluster(tmp_path / "cluster").start()
    try:
        a, b, pa, pb = two_hosts(roomd, cluster)

        async def main():
            rooms = {f"c{i}": [] for i in range(9)}
            for i, room in enumerate(rooms):
                for host in (a, b):
                    c = await Chat.connect(host.port)
                    await c.enter(f"{room}-{host.port}", room)
                    await c.expect({"event": "enter"})
                    rooms[room].append(c)
            masters = cluster.masters()
            owners = {cluster.owner(int(masters[0].command("CLUSTER", "KEYSLOT", r))).port for r in rooms}
            assert len(owners) == 3, "the rooms did not spread over the masters"
            api = Api(pa)
            for room, members in rooms.items():
                st, _, doc = api.call("POST", "/api/publish", {"room": room, "message": f"to {room}"})
                assert st == 200 and doc["result"]["num"] == 2, doc
                for c in members:
                    got = await c.expect({"event": "message", "message": f"to {room}"})
                    assert got["offset"] == doc["result"]["offset"] and got["roomid"] == room
            seen, cursor, pages = {}, "0", 0
            while True:
                st, _, doc = api.call("GET", f"/api/rooms?limit=4&cursor={cursor}")
                assert st == 200, doc
                seen.update({x["room"]: x["num"] for x in doc["result"]["rooms"]})
                cursor, pages = doc["result"]["cursor"], pages + 1
                assert pages < 300, "the cursor never came back to 0"
                if cursor == "0":
                    break
            assert seen == {r: 2 for r in rooms}, seen
            # Disconnect on B's API: A's member of that name goes too.
            victim = f"c4-{a.port}"
            st, doc = curl(pb, "/api/disconnect", {"user": victim})
            assert st == 200 and doc["result"] == {"disconnected": 1, "workers": 4, "answered": 4}, doc
            assert await rooms["c4"][0].wait_closed(5) == 1008
            api.close()
            for members in rooms.values():
                for c in members:
                    await c.close()

        run(main(), 90)
    finally:
        cluster.stop()


# ---- bad input ----

def test_bad_requests_get_their_status_and_the_connection_stays(roomd):
    pa = free_ports(1)[0]
    r = started(roomd, api_settings(pa, api_key=[KEY, KEY2], max_roomid_length="16"))
    api = Api(pa)
    st, _, doc = api.call("POST", "/api/publish", {"room": "r", "message": "first"})
    assert st == 200
    first = api.sock()
    cases = [
        # (method, path, body or raw bytes, key, status, code)
        ("POST", "/api/publish", {"room": "r", "message": "m"}, None, 401, "unauthorized"),
        ("POST", "/api/publish", {"room": "r", "message": "m"}, "wrong-key-0123456789", 401, "unauthorized"),
        ("POST", "/api/publish", {"room": "r", "message": "m"}, KEY[:-1], 401, "unauthorized"),
        ("POST", "/api/publish", {"room": "r", "message": "m"}, KEY + "x", 401, "unauthorized"),
        ("POST", "/api/publish", {"room": "r", "message": "m"}, KEY.upper(), 401, "unauthorized"),
        ("POST", "/api/publish", b'{"room":"r",', KEY, 400, "bad_json"),
        ("POST", "/api/publish", b'{"room":"r","message":"m"}}', KEY, 400, "bad_json"),
        ("POST", "/api/publish", b'\xff\xfe', KEY, 400, "bad_json"),
        ("POST", "/api/publish", b'', KEY, 400, "bad_json"),
        ("POST", "/api/publish", [1, 2], KEY, 400, "not_object"),
        ("POST", "/api/publish", {"message": "m"}, KEY, 400, "missing_field"),
        ("POST", "/api/publish", {"room": "r"}, KEY, 400, "missing_field"),
        ("POST", "/api/publish", {"room": 5, "message": "m"}, KEY, 400, "bad_field"),
        ("POST", "/api/publish", {"room": "r", "message": ["m"]}, KEY, 400, "bad_field"),
        ("POST", "/api/publish", {"room": "r", "message": "m", "name": {}}, KEY, 400, "bad_field"),
        ("POST", "/api/publish", {"room": "x" * 17, "message": "m"}, KEY, 400, "bad_room"),
        ("POST", "/api/publish", {"room": "a\tb", "message": "m"}, KEY, 400, "bad_room"),
        ("POST", "/api/publish", {"room": "", "message": "m"}, KEY, 400, "bad_room"),
        ("POST", "/api/broadcast", {"rooms": "r", "message": "m"}, KEY, 400, "bad_field"),
        ("POST", "/api/broadcast", {"rooms": [f"r{i}" for i in range(101)], "message": "m"}, KEY, 400, "bad_field"),
        ("POST", "/api/disconnect", {}, KEY, 400, "missing_field"),
        ("POST", "/api/disconnect", {"user": "u", "code": 1005}, KEY, 400, "bad_field"),
        ("POST", "/api/disconnect", {"conn": "not-a-uuid"}, KEY, 400, "bad_field"),
        ("GET", "/api/rooms/a%00b", None, KEY, 400, "bad_room"),
        ("GET", "/api/rooms/%zz", None, KEY, 400, "bad_room"),
        ("GET", "/api/rooms?limit=0", None, KEY, 400, "bad_query"),
        ("GET", "/api/rooms/r/history?limit=101", None, KEY, 400, "bad_query"),
        ("GET", "/api/nothing", None, KEY, 404, "not_found"),
        ("GET", "/api", None, KEY, 404, "not_found"),
        ("GET", "/api/rooms/r/members", None, KEY, 404, "not_found"),
        ("GET", "/api/publish", None, KEY, 405, "method_not_allowed"),
        ("PUT", "/api/info", None, KEY, 405, "method_not_allowed"),
        ("DELETE", "/api/rooms/r", None, KEY, 405, "method_not_allowed"),
    ]
    for method, path, body, key, status, code in cases:
        raw = body if isinstance(body, bytes) else None
        st, hdrs, doc = api.call(method, path, None if raw is not None else body, key=key, raw=raw)
        assert st == status and is_error(doc, code), f"{method} {path} {body!r}: {st} {doc}"
        assert hdrs["connection"] == "keep-alive" and api.sock() is first, \
            f"{method} {path}: the connection did not stay"
        if status == 401:
            assert hdrs["www-authenticate"] == "Bearer"
        if status == 405:
            assert hdrs["allow"] == ("POST" if method in ("GET",) else "GET, HEAD"), hdrs
    # Still the same connection, still serving; the second key is a key too.
    st, _, doc = api.call("POST", "/api/publish", {"room": "r", "message": "last"}, key=KEY2)
    assert st == 200 and api.sock() is first
    api.close()
    # curl sees the same statuses.
    assert curl(pa, "/api/info", key=None)[0] == 401
    assert curl(pa, "/api/info", key=KEY[:8])[0] == 401
    st, doc = curl(pa, "/api/publish", body='{"room":"r","message":1}')
    assert st == 400 and is_error(doc, "bad_field")
    st, doc = curl(pa, "/api/info", method="POST", body="{}")
    assert st == 405 and is_error(doc, "method_not_allowed")
    m = scrape(r.port)
    assert m.value("roomd_api_requests_total", method="publish") >= 20
    assert m.value("roomd_api_errors_total", method="publish") >= 18
    assert m.value("roomd_api_errors_total", method="other") >= 3
    assert m.value("roomd_api_requests_total", method="info") >= 4    # 401s and 405s count as info


def head_of(body, ln, key=KEY, path="/api/publish", extra=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Length: {ln}\r\n").encode() + extra + b"\r\n" + body


def test_body_over_the_limit_gets_413_and_is_not_read(roomd):
    pa = free_ports(1)[0]
    started(roomd, api_settings(pa, api_max_body="1k"))
    ok = json.dumps({"room": "r", "message": "x" * (1024 - 28)}).encode()
    assert len(ok) == 1024
    api = Api(pa)
    st, _, doc = api.call("POST", "/api/publish", raw=ok)
    assert st == 200, "a body of exactly api_max_body is read"
    api.close()
    st, hdrs, body = raw_request(pa, head_of(b"x" * 100, 1025))
    assert st == 413 and is_error(json.loads(body), "too_large") and hdrs["connection"] == "close"
    # Even unauthenticated: the size is judged before anything is read.
    st, _, body = raw_request(pa, head_of(b"", 10 ** 9, key="nope"))
    assert st == 413
    st, _, body = raw_request(pa, b"POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                          b"Authorization: Bearer " + KEY.encode() + b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    assert st == 501 and is_error(json.loads(body), "bad_request")


def test_slow_body_gets_408_and_others_are_served_meanwhile(roomd):
    pa = free_ports(1)[0]
    started(roomd, api_settings(pa, handshake_timeout="1s"), workers=1)
    s = socket.create_connection((HOST, pa), timeout=10)
    body = json.dumps({"room": "r", "message": "slow"}).encode()
    s.sendall(head_of(body[:5], len(body)))
    t0 = time.monotonic()
    # Meanwhile the one worker answers others.
    for _ in range(3):
        assert curl(pa, "/api/info")[0] == 200
    status, hdrs, rest = read_head(s)
    rest += read_to_close(s)
    waited = time.monotonic() - t0
    s.close()
    assert status == 408 and is_error(json.loads(rest), "timeout") and hdrs["connection"] == "close"
    assert waited >= 0.5, "the body was given handshake_timeout (1s)"


def test_a_thousand_requests_on_one_connection_and_pipelined_ones_in_order(roomd):
    pa = free_ports(1)[0]
    r = started(roomd, api_settings(pa, api_rate_limit="0"))
    api = Api(pa)
    first = None
    for i in range(1000):
        if i % 10 == 9:
            st, _, doc = api.call("GET", "/api/rooms/k/history?limit=1")
        else:
            st, _, doc = api.call("POST", "/api/publish", {"room": "k", "message": str(i)})
        assert st == 200, (i, doc)
        first = first or api.sock()
        assert api.sock() is first, f"request {i} came on a new connection"
    st, _, doc = api.call("GET", "/api/rooms/k")
    assert st == 200 and doc["result"]["offset"] == 900
    api.close()
    # Fifty requests in one write: fifty answers, in order, though each waits for Redis.
    reqs = b""
    for i in range(50):
        body = json.dumps({"room": "p", "message": f"p{i}"}).encode()
        reqs += head_of(body, len(body))
    reqs += b"GET /api/rooms/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + \
        KEY.encode() + b"\r\n\r\n"
    s = socket.create_connection((HOST, pa), timeout=10)
    s.sendall(reqs)
    data = read_to_close(s)
    s.close()
    answers = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        ln = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        answers.append((int(head.split()[1]), json.loads(data[:ln])))
        data = data[ln:]
    assert len(answers) == 51 and all(st == 200 for st, _ in answers)
    assert [d["result"]["offset"] for _, d in answers[:50]] == list(range(1, 51))
    assert answers[50][1]["result"]["offset"] == 50
    assert scrape(r.port).value("roomd_api_requests_total", method="publish") == 950


def test_rate_limit_per_address_gets_429(roomd):
    pa = free_ports(1)[0]
    started(roomd, api_settings(pa, api_rate_limit="2"))
    api = Api(pa)
    got = []
    for _ in range(40):
        st, hdrs, doc = api.call("GET", "/api/info")
        got.append(st)
        if st == 429:
            assert is_error(doc, "rate_limited") and hdrs["retry-after"] == "1"
    assert got[0] == 200 and 429 in got, got
    api.close()


def test_redis_down_gets_503_and_back_200(roomd, redis):
    pa = free_ports(1)[0]
    r = started(roomd, api_settings(pa, redis=redis.url), workers=1)
    api = Api(pa)
    assert api.call("POST", "/api/publish", {"room": "r", "message": "up"})[0] == 200
    redis.stop()
    wait_for(lambda: urllib_status(r.port, "/readyz") == 503, 10, what="roomd to see Redis gone")
    for method, path, body in (("POST", "/api/publish", {"room": "r", "message": "down"}),
                               ("GET", "/api/rooms", None), ("GET", "/api/info", None),
                               ("POST", "/api/disconnect", {"user": "x"})):
        st, hdrs, doc = api.call(method, path, body)
        assert st == 503 and is_error(doc, "unavailable") and hdrs["retry-after"] == "1", (path, st, doc)
    redis.start()
    wait_for(lambda: urllib_status(r.port, "/readyz") == 200, 15, what="roomd to see Redis back")
    st, _, doc = api.call("POST", "/api/publish", {"room": "r", "message": "back"})
    assert st == 200
    api.close()


# ---- where it listens, who may call ----

def test_roomd_t_refuses_an_api_without_a_key(tmp_path):
    def check(text):
        conf = tmp_path / "t.conf"
        conf.write_text(text)
        return subprocess.run([ROOMD_BIN, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=10)

    p = check("api_listen 127.0.0.1:9\n")
    assert p.returncode == 1 and "needs api_key or api_key_file" in p.stderr
    p = check("listen 127.0.0.1:9 api\n")
    assert p.returncode == 1 and "needs api_key or api_key_file" in p.stderr
    assert check("api_listen 127.0.0.1:9\napi_insecure yes\n").returncode == 0
    assert check(f"api_listen 127.0.0.1:9\napi_key {KEY}\n").returncode == 0
    p = check("api_key short\n")
    assert p.returncode == 1 and "16 to 256 bytes" in p.stderr
    p = check(f"api_listen 127.0.0.1:9\napi_key_file {tmp_path}/missing\n")
    assert p.returncode == 1 and "api_key_file" in p.stderr
    dump = subprocess.run([ROOMD_BIN, "-T", "-c", str(tmp_path / "t.conf")], capture_output=True, text=True)
    (tmp_path / "t.conf").write_text(f"api_listen 127.0.0.1:9\napi_key {KEY}\n")
    dump = subprocess.run([ROOMD_BIN, "-T", "-c", str(tmp_path / "t.conf")], capture_output=True, text=True)
    assert "api_key ********" in dump.stdout and KEY not in dump.stdout


def test_keys_rotate_on_reload_with_api_key_file(roomd, tmp_path):
    pa = free_ports(1)[0]
    keys = tmp_path / "keys"
    keys.write_text(f"# the backend's key\n{KEY}\n")
    r = started(roomd, {"api_listen": f"{HOST}:{pa}", "api_key_file": str(keys)})
    assert curl(pa, "/api/info")[0] == 200 and curl(pa, "/api/info", key=KEY2)[0] == 401
    keys.write_text(f"{KEY2}\n\n")
    old = r.worker_pids()
    r.sighup()
    wait_for(lambda: len(r.worker_pids()) == 2 and not set(r.worker_pids()) & set(old), 15,
             what="new workers after the reload")
    assert curl(pa, "/api/info", key=KEY2)[0] == 200
    assert curl(pa, "/api/info", key=KEY)[0] == 401


def test_api_only_address_serves_nothing_else_and_no_key_with_api_insecure(roomd):
    pa = free_ports(1)[0]
    r = started(roomd, {"api_listen": f"{HOST}:{pa}", "api_insecure": "yes"})
    assert curl(pa, "/api/info", key=None)[0] == 200
    st, doc = curl(pa, "/index.html", key=None)
    assert st == 404 and is_error(doc, "not_found")
    s = socket.create_connection((HOST, pa), timeout=5)
    s.sendall(ws_request("/", port=pa))
    status, _, _ = read_head(s)
    s.close()
    assert status == 404, "no WebSocket on the API's address"
    assert urllib_status(pa, "/healthz") == 200 and urllib_status(pa, "/metrics") == 200
    # The public address has no API.
    assert urllib_status(r.port, "/api/info") == 404
    st, _, doc = Api(pa, key=None).call("HEAD", "/api/info", key=None)
    assert st == 200


def test_api_on_the_public_listener_and_over_tls(roomd, tmp_path):
    cert, key = make_cert(tmp_path / "pki", "server", "roomd-api.test", 7)
    lport, pt = free_ports(2)
    # listen ... api: chat and the API on one address; the API alone over TLS on another.
    started(roomd, {"listen": f"{HOST}:{lport} api", "api_listen": f"{HOST}:{pt} ssl", "api_key": KEY,
                    "ssl_certificate": cert, "ssl_certificate_key": key}, port=lport)

    async def main():
        c = await Chat.connect(lport)
        await c.enter("viewer", "stage")
        await c.expect({"event": "enter"})
        st, doc = curl(lport, "/api/publish", {"room": "stage", "message": "on air"})
        assert st == 200
        assert (await c.expect({"event": "message", "message": "on air"}))["offset"] == doc["result"]["offset"]
        # Over TLS, checked against the certificate.
        st, doc = curl(pt, "/api/rooms/stage", scheme="https", extra=["--cacert", cert])
        assert st == 200 and doc["result"]["members"] == ["viewer"]
        ctx = ssl.create_default_context(cafile=cert)
        api = Api(pt, context=ctx)
        st, _, doc = api.call("POST", "/api/publish", {"room": "stage", "message": "secure"})
        assert st == 200 and api.call("GET", "/api/rooms/stage/history")[2]["result"]["offset"] == 2
        api.close()
        await c.close()

    run(main())
    # Plain HTTP to the TLS address gets no answer.
    s = socket.create_connection((HOST, pt), timeout=5)
    s.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
    got = read_to_close(s)
    s.close()
    assert not got.startswith(b"HTTP/1.1 200")
