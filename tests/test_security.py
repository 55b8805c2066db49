"""Hostile clients against the real roomd: cross-origin browsers, forged and
stale tokens, floods over the message rate, ten thousand connections from one
address, a member that never reads, oversized fields, and memory under load.
Every test ends by checking that an ordinary client is still served.

Stated bounds (the measured figures are printed even with -q; under ASan,
ROOMD_SANITIZED set, the RSS assertions are skipped and say so, everything
else still runs):
  SLOW_RSS_DELTA_MB   worker RSS growth while a non-reader is cut off
  SLOW_P99_MS         the other members' delivery latency meanwhile
  LOAD_RSS_MB         sum of worker RSS with 2,000 sessions at the rate limit
"""
import asyncio
import json
import os
import re
import signal
import socket
import struct
import time

import pytest
import websockets

from readouts import scrape
from roomclient import Chat, run
from roomclient import jwt as make_jwt
from roomd import http_get, raise_nofile, wait_for
from wsraw import HOST, close_code, handshake, parse_frames, parse_head, read_head, read_to_close, ws_request
from wsraw import frame as mask_frame

SECRET = "s3cret-for-tests-0123456789"
# RSS means nothing under ASan or valgrind: those runs skip only the RSS assertions.
SANITIZED = bool(os.environ.get("ROOMD_SANITIZED") or os.environ.get("ROOMD_VALGRIND"))

SLOW_RSS_DELTA_MB = 16      # measured about +1.5 MB (max_outbuf 256k)
SLOW_P99_MS = 200           # measured p99 under 10 ms
LOAD_RSS_MB = 64            # measured about 13 MB for 2,000 sessions over 2 workers


def rss_kb(pids):
    """Sum of VmRSS (kB) over pids."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def report(capsys, text):
    """Print past pytest's capture, so the measured figures show with -q."""
    with capsys.disabled():
        print(f"\n  [security] {text}")


# ---- tokens ----

def jwt(claims, secret=SECRET, header=None, sig=None):
    """An HS256 JWT signed with this file's secret unless another is given."""
    return make_jwt(claims, secret, header, sig)


def good_claims(**kw):
    now = int(time.time())
    c = {"sub": "alice", "iat": now, "exp": now + 300}
    c.update(kw)
    return {k: v for k, v in c.items() if v is not None}


def bad_tokens():
    now = int(time.time())
    c = good_claims()
    return {
        "forged": jwt(c, secret="not-the-right-secret-at-all"),
        "expired": jwt(good_claims(exp=now - 60)),
        "not_yet_valid": jwt(good_claims(nbf=now + 60)),
        "alg_none": jwt(c, header={"alg": "none", "typ": "JWT"}, sig=b""),
        "alg_none_signed": jwt(c, header={"alg": "none", "typ": "JWT"}),
        "rs256_header": jwt(c, header={"alg": "RS256", "typ": "JWT"}),
        "hs512_header": jwt(c, header={"alg": "HS512", "typ": "JWT"}),
        "no_sub": jwt(good_claims(sub=None)),
        "empty_sub": jwt(good_claims(sub="")),
        "sub_not_string": jwt(good_claims(sub=42)),
        "rooms_not_array": jwt(good_claims(rooms="tea")),
        "garbage": "not.a.jwt",
        "truncated_sig": jwt(c)[:-4],
        "too_long": jwt(good_claims(pad="x" * 5000)),
    }


async def still_serves(port):
    """An ordinary client is served: an echo round trip and a chat message to itself."""
    async with websockets.connect(f"ws://{HOST}:{port}/echo", open_timeout=10) as ws:
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 5) == "still here"
    c = await Chat.connect(port)
    room = f"after-{os.urandom(3).hex()}"
    await c.enter("normal", room)
    await c.expect({"event": "enter", "name": "normal", "roomid": room})
    await c.send({"event": "message", "message": "hello", "roomid": room})
    ev = await c.expect({"event": "message", "roomid": room})
    assert ev["name"] == "normal" and ev["message"] == "hello"
    await c.close()


# ==== 1. Origin ====

def test_cross_origin_browsers_get_403(roomd):
    r = roomd()
    same = f"http://{HOST}:{r.port}"
    cases = [
        ("Origin: https://evil.example", 403),
        ("Origin: null", 403),
        (f"Origin: http://{HOST}:{r.port + 1}", 403),              # another port is another origin
        (f"Origin: http://{HOST}", 403),                            # the port is part of it
        (f"Origin: http://evil.example/{HOST}:{r.port}", 403),     # path tricks
        (f"Origin: http://{HOST}:{r.port}.evil.example", 403),
        (f"Origin: {same}", 101),
        (f"Origin: https://{HOST}:{r.port}", 403),                  # a plain listener's pages are http
        (f"Origin: ws://{HOST}:{r.port}", 403),
        (f"Origin: HTTP://{HOST.upper()}:{r.port}", 101),
        (None, 101),                                                # non-browser clients
    ]
    for origin, want in cases:
        for path in ("/", "/echo", "/broadcast"):
            st, hdrs = handshake(r.port, path, [origin] if origin else [])
            assert st == want, f"{origin!r} on {path}: HTTP {st}, want {want}"
    # The Host the client asked for is what counts.
    st, _ = handshake(r.port, "/", ["Origin: http://chat.example.org"], host="chat.example.org")
    assert st == 101
    st, _ = handshake(r.port, "/", ["Origin: http://chat.example.org"], host="other.example.org")
    assert st == 403
    # A real client library with a foreign origin is refused before the upgrade.
    async def lib():
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(f"ws://{HOST}:{r.port}/echo", origin="https://evil.example")
        assert e.value.status_code == 403
        async with websockets.connect(f"ws://{HOST}:{r.port}/echo", origin=same) as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
    run(lib())
    # The log and the 403 say which origin was refused and which setting allows it.
    assert "refused: Origin https://evil.example not allowed (allowed_origins unset: same origin only)" \
        in r.read_log()
    st, _, s, body = handshake(r.port, "/echo", ["Origin: null"], keep=True)
    while not body.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        body += d
    s.close()
    assert st == 403 and b"Origin null" in body and b"allowed_origins" in body, body
    run(still_serves(r.port))


def test_same_origin_behind_a_tls_proxy(roomd):
    """Behind a trusted proxy that terminates TLS (X-Forwarded-Proto: https),
    the page's origin is https; an http origin is then another origin. From
    an untrusted peer the header means nothing."""
    r = roomd({"trusted_proxies": "127.0.0.1/32"})
    fwd = "X-Forwarded-Proto: https"
    assert handshake(r.port, "/echo", [f"Origin: https://{HOST}:{r.port}", fwd])[0] == 101
    assert handshake(r.port, "/echo", [f"Origin: http://{HOST}:{r.port}", fwd])[0] == 403
    assert handshake(r.port, "/echo", [f"Origin: http://{HOST}:{r.port}"])[0] == 101
    u = roomd({})
    assert handshake(u.port, "/echo", [f"Origin: https://{HOST}:{u.port}", fwd])[0] == 403


def test_allowed_origins_null_for_pages_opened_from_disk(roomd):
    """The seed tutorial's client.html is opened from disk: its Origin is
    "null". allowed_origins null lets it in (and only it, with the list)."""
    r = roomd({"allowed_origins": "null"})
    assert handshake(r.port, "/", ["Origin: null"])[0] == 101
    assert handshake(r.port, "/", ["Origin: https://evil.example"])[0] == 403


def test_allowed_origins_list_and_star(roomd):
    r = roomd({"allowed_origins": '"https://chat.example.org, https://other.example:8443 http://a.example"'})
    for origin, want in [("https://chat.example.org", 101), ("https://other.example:8443", 101),
                         ("http://a.example", 101), ("https://evil.example", 403),
                         ("https://chat.example.org.evil.example", 403), ("http://chat.example.org", 403),
                         ("https://other.example", 403), ("https://chat.example.or", 403),
                         (f"http://{HOST}:{r.port}", 403)]:    # a list replaces same-origin
        st, _ = handshake(r.port, "/echo", [f"Origin: {origin}"])
        assert st == want, f"{origin}: HTTP {st}, want {want}"
    assert handshake(r.port, "/echo")[0] == 101

    star = roomd({"allowed_origins": "*"})
    for origin in ("https://evil.example", "null", f"http://{HOST}:{star.port}"):
        assert handshake(star.port, "/echo", [f"Origin: {origin}"])[0] == 101, origin
    run(still_serves(star.port))


def test_missing_origin_refused_when_configured(roomd):
    r = roomd({"allow_missing_origin": "no"})
    assert handshake(r.port, "/echo")[0] == 403
    assert handshake(r.port, "/")[0] == 403
    assert handshake(r.port, "/echo", [f"Origin: http://{HOST}:{r.port}"])[0] == 101
    assert handshake(r.port, "/echo", ["Origin: https://evil.example"])[0] == 403
    # Plain HTTP (the page, health) is not a WebSocket and needs no Origin.
    s = socket.create_connection((HOST, r.port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_head(s)[0] == 200
    s.close()
    async def ok():
        async with websockets.connect(f"ws://{HOST}:{r.port}/echo", origin=f"http://{HOST}:{r.port}") as ws:
            await ws.send("y")
            assert await ws.recv() == "y"
    run(ok())


# ==== 2. Tokens ====

def auth_settings(mode="required", failure="event", **kw):
    s = {"auth": mode, "auth_secret": SECRET, "auth_failure": failure}
    s.update(kw)
    return s


async def refused_by_event(port, path="/", headers=(), query=""):
    """The upgrade completes, the server says noAuth and closes with 4001."""
    sep = "&" if "?" in path else "?"
    ws = await websockets.connect(f"ws://{HOST}:{port}{path}{sep + query if query else ''}",
                                  extra_headers=list(headers), open_timeout=10, close_timeout=2,
                                  ping_interval=None)
    first = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert first.get("event") == "noAuth", first
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4001, ws.close_code
    # Nothing it sends in between reaches anyone: it is closed.
    return first


def test_bad_tokens_refused_with_event(roomd):
    r = roomd(auth_settings("required", "event"))
    toks = bad_tokens()

    async def main():
        for name, tok in toks.items():
            for carrier in ("query", "bearer", "cookie"):
                if name == "too_long" and carrier != "bearer":
                    continue      # too long for a request line or cookie within max_request_size
                q, h = "", []
                if carrier == "query":
                    q = f"token={tok}"
                elif carrier == "bearer":
                    h = [("Authorization", f"Bearer {tok}")]
                else:
                    h = [("Cookie", f"token={tok}")]
                try:
                    await refused_by_event(r.port, "/", h, q)
                except AssertionError as e:
                    raise AssertionError(f"{name} via {carrier}: {e}") from None
        await refused_by_event(r.port, "/")                       # no token at all
        await refused_by_event(r.port, "/broadcast?room=tea")
        await refused_by_event(r.port, "/echo")
    run(main(), 90)
    log = r.read_log()
    assert not [t for t in toks.values() if len(t) > 20 and t in log], "a token was logged"
    for why in ("bad token signature", "token expired", "token not valid yet", "token algorithm is not HS256",
                "token has no sub", "bad token header", "token too long", "no token"):
        assert f"refused: {why}" in log, why
    run(still_serves_with_token(r.port))


def test_bad_tokens_refused_with_http_401(roomd):
    r = roomd(auth_settings("required", "http", max_request_size="16k"))
    for name, tok in bad_tokens().items():
        for hdr in ([f"Authorization: Bearer {tok}"], [f"Cookie: token={tok}"]):
            st, h = handshake(r.port, "/", hdr)
            assert st == 401, f"{name}: HTTP {st}"
            assert h.get("www-authenticate", "").startswith("Bearer"), h
        st, _ = handshake(r.port, f"/echo?token={tok}")
        assert st == 401, f"{name} in query: HTTP {st}"
    st, h = handshake(r.port, "/")
    assert st == 401 and h["www-authenticate"].startswith("Bearer")
    # The query token is preferred: a bad one there is not rescued by a good header.
    good = jwt(good_claims())
    st, _ = handshake(r.port, f"/echo?token={bad_tokens()['forged']}", [f"Authorization: Bearer {good}"])
    assert st == 401
    st, _ = handshake(r.port, f"/echo?token={good}", [f"Authorization: Bearer {bad_tokens()['forged']}"])
    assert st == 101
    # The page and health checks are not WebSockets: no token needed.
    s = socket.create_connection((HOST, r.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_head(s)[0] == 200
    s.close()
    run(still_serves_with_token(r.port))


def test_optional_auth_refuses_bad_tokens_only(roomd):
    r = roomd(auth_settings("optional", "http"))
    assert handshake(r.port, "/echo")[0] == 101                                  # no token: fine
    for name, tok in bad_tokens().items():
        assert handshake(r.port, "/echo", [f"Authorization: Bearer {tok}"])[0] == 401, name
    assert handshake(r.port, "/echo", [f"Authorization: Bearer {jwt(good_claims())}"])[0] == 101
    assert handshake(r.port, "/echo?token=")[0] == 401                           # empty is bad
    run(still_serves(r.port))


def test_clock_skew_leeway(roomd):
    r = roomd(auth_settings("required", "http"))
    now = int(time.time())
    for claims, want in [({"exp": now - 2}, 101), ({"exp": now - 30}, 401),
                         ({"nbf": now + 2}, 101), ({"nbf": now + 30}, 401)]:
        tok = jwt(good_claims(**claims))
        assert handshake(r.port, "/echo", [f"Authorization: Bearer {tok}"])[0] == want, claims


async def still_serves_with_token(port, sub="carol"):
    tok = jwt(good_claims(sub=sub))
    async with websockets.connect(f"ws://{HOST}:{port}/echo?token={tok}", open_timeout=10) as ws:
        await ws.send("ok")
        assert await asyncio.wait_for(ws.recv(), 5) == "ok"


def test_valid_token_via_each_carrier(roomd):
    r = roomd(auth_settings("required", "event"))
    tok = jwt(good_claims(sub="alice"))
    custom = roomd(auth_settings("required", "http", auth_cookie="sess"))

    async def main():
        for kind, path, kw in [
            ("query", f"/echo?token={tok}", {}),
            ("bearer", "/echo", {"extra_headers": [("Authorization", f"Bearer {tok}")]}),
            ("bearer-lowercase", "/echo", {"extra_headers": [("Authorization", f"bearer {tok}")]}),
            ("cookie", "/echo", {"extra_headers": [("Cookie", f"theme=dark; token={tok}; x=1")]}),
        ]:
            async with websockets.connect(f"ws://{HOST}:{r.port}{path}", open_timeout=10, **kw) as ws:
                await ws.send(kind)
                assert await asyncio.wait_for(ws.recv(), 5) == kind, kind
        # auth_cookie names the cookie: "token" is then just another cookie.
        async with websockets.connect(f"ws://{HOST}:{custom.port}/echo", open_timeout=10,
                                      extra_headers=[("Cookie", f"sess={tok}")]) as ws:
            await ws.send("c")
            assert await ws.recv() == "c"
        with pytest.raises(websockets.InvalidStatusCode) as e:
            await websockets.connect(f"ws://{HOST}:{custom.port}/echo", open_timeout=10,
                                     extra_headers=[("Cookie", f"token={tok}; xsess={tok}")])
        assert e.value.status_code == 401
        # Chat with a token works end to end.
        c = await Chat.connect(r.port, f"/?token={tok}")
        await c.enter("alice", "tea")
        await c.expect({"event": "enter", "roomid": "tea"})
        await c.send({"event": "message", "message": "hi", "roomid": "tea"})
        await c.expect({"event": "message", "message": "hi"})
        await c.close()
    run(main())
    # Credentials stay out of the log, whichever way they came.
    for log in (r.read_log(), custom.read_log()):
        assert tok.rsplit(".", 1)[1] not in log and SECRET not in log


def test_token_sub_is_the_chat_name(roomd):
    r = roomd(auth_settings("optional", "event"))

    async def main():
        a = await Chat.connect(r.port, f"/?token={jwt(good_claims(sub='alice'))}")
        b = await Chat.connect(r.port, "/")
        await b.enter("bob", "tea")
        await b.expect({"event": "enter", "name": "bob"})
        await a.enter("mallory", "tea")            # the claimed name is ignored
        ev = await b.expect({"event": "enter", "roomid": "tea"})
        assert ev["name"] == "alice", ev
        await a.send({"event": "message", "message": "it is me", "roomid": "tea", "name": "bob"})
        ev = await b.expect({"event": "message", "message": "it is me"})
        assert ev["name"] == "alice", ev
        await b.send({"event": "who", "roomid": "tea"})
        who = await b.expect({"event": "who"})
        assert sorted(who["members"]) == ["alice", "bob"], who
        # A signed name is still a name: too long or with control characters, it is refused.
        for sub in ("s" * 65, "eve\u0007", "eve\nbob"):
            c = await Chat.connect(r.port, f"/?token={jwt(good_claims(sub=sub))}")
            await c.enter("fine", "tea")
            assert (await c.expect({"event": "error"}))["code"] == "bad_field", sub
            await c.close()
        assert [e["name"] for e in b.of("enter")] == ["bob", "alice"]
        await a.close()
        await b.close()
    run(main())


def test_token_rooms_claim_limits_chat_rooms(roomd):
    r = roomd(auth_settings("required", "event"))
    tok = jwt(good_claims(sub="alice", rooms=["tea", "coffee"]))
    other = jwt(good_claims(sub="eve"))

    async def main():
        spy = await Chat.connect(r.port, f"/?token={other}")
        await spy.enter("eve", "secret")
        await spy.expect({"event": "enter", "roomid": "secret"})
        a = await Chat.connect(r.port, f"/?token={tok}")
        await a.enter("alice", "secret")
        err = await a.expect({"event": "error"}, 2)
        assert err["code"] == "forbidden", err
        await a.enter("alice", "tea")                  # an allowed room still works
        await a.expect({"event": "enter", "roomid": "tea"})
        await a.send({"event": "message", "message": "x", "roomid": "secret"})
        await a.expect({"event": "error", "code": "not_in_room"})
        await asyncio.sleep(0.3)
        assert not spy.of("enter", name="alice") and not spy.of("message", message="x"), spy.events
        assert not a.closed
        await a.close()
        await spy.close()
    run(main())


@pytest.mark.parametrize("failure", ["event", "http"])
def test_token_for_another_broadcast_room_is_refused(roomd, failure):
    """A token whose rooms claim does not hold the broadcast ?room= gets no
    session in it (refused as auth_failure says: http before the upgrade,
    event after it) and nothing it sends arrives."""
    r = roomd(auth_settings("required", failure))
    tok = jwt(good_claims(sub="alice", rooms=["tea"]))
    member = jwt(good_claims(sub="bob"))

    async def main():
        spy = await Chat.connect(r.port, f"/broadcast?room=secret&token={member}")
        if failure == "http":
            st, h = handshake(r.port, f"/broadcast?room=secret&token={tok}")
            assert st in (401, 403), st
        else:
            ws = await websockets.connect(f"ws://{HOST}:{r.port}/broadcast?room=secret&token={tok}",
                                          ping_interval=None, close_timeout=2)
            got = []
            try:
                await ws.send("from alice")
            except websockets.ConnectionClosed:
                pass
            try:
                while True:       # what came before the close is still queued
                    got.append(await asyncio.wait_for(ws.recv(), 2))
            except (websockets.ConnectionClosed, asyncio.TimeoutError):
                pass
            assert ws.closed, f"still open in room secret; got {got}"
            assert ws.close_code in (4001, 1008), ws.close_code
            assert any('"noAuth"' in m or '"forbidden"' in m for m in got if isinstance(m, str)), got
        await asyncio.sleep(0.3)
        assert not spy.closed
        assert not [e for e in spy.events if "binary" in e or "text" in e], spy.events
        assert handshake(r.port, f"/broadcast?room=tea&token={tok}")[0] == 101
        await spy.close()
    run(main())


def test_token_expiry_holds_for_the_session(roomd):
    """A token's exp holds for the whole session, not only the handshake:
    at expiry (plus the same 5 s of leeway) the session is closed with 4001
    and its room hears "out", unless it sent a fresh token first
    ({"event":"refresh","token":...}, answered with the new exp). A refresh
    is checked like a handshake: a forged token, another user's, one that
    does not allow a room the session is in, and a refresh from a session
    without a token are refused with an error, and the session stays."""
    r = roomd(auth_settings("optional"), workers=1)
    now = int(time.time())

    async def main():
        loop = asyncio.get_running_loop()
        short = jwt(good_claims(sub="ann", exp=now + 2))
        stays = jwt(good_claims(sub="bob", exp=now + 2))
        a = await Chat.connect(r.port, f"/?token={short}")
        b = await Chat.connect(r.port, f"/?token={stays}")
        anon = await Chat.connect(r.port)
        for c, n in ((a, "ann"), (b, "bob"), (anon, "guest")):
            await c.enter(n, "exp")
            await c.expect({"event": "enter", "name": n})
        await b.send({"event": "refresh", "token": jwt(good_claims(sub="bob", exp=now + 60), secret="x" * 20)})
        assert (await b.expect({"event": "error"}))["code"] == "bad_token"
        await b.send({"event": "refresh", "token": jwt(good_claims(sub="eve", exp=now + 60))})
        assert (await b.expect({"event": "error"}))["code"] == "bad_token"
        await b.send({"event": "refresh", "token": jwt(good_claims(sub="bob", exp=now + 60, rooms=["other"]))})
        assert (await b.expect({"event": "error"}))["code"] == "forbidden"
        await anon.send({"event": "refresh", "token": jwt(good_claims(sub="guest", exp=now + 60))})
        assert (await anon.expect({"event": "error"}))["code"] == "bad_token"
        await b.send({"event": "refresh", "token": jwt(good_claims(sub="bob", exp=now + 60))})
        ev = await b.expect({"event": "refresh"})
        assert ev["exp"] == now + 60 and ev["num"] == 3, ev
        await a.until(lambda: a.closed, 12, "ann closed at expiry")
        assert a.close_code == 4001 and a.ws.close_reason == "token expired"
        assert time.time() >= now + 2 + 5 - 0.1
        ev = await b.expect({"event": "out", "name": "ann"}, 3)
        assert ev["num"] == 2
        await asyncio.sleep(max(0.0, now + 9 - time.time()))
        assert not b.closed and not anon.closed
        await b.send({"event": "message", "roomid": "exp", "message": "after"})
        await anon.expect({"event": "message", "message": "after"})
        for c in (b, anon):
            await c.ws.close()
        return loop
    run(main(), 40)


# ==== 3. Message floods ====

def test_flood_over_rate_is_limited_then_closed(roomd):
    burst, rate = 10, 20
    r = roomd({"rate_limit": str(rate), "rate_burst": str(burst)})

    async def main():
        a = await Chat.connect(r.port)
        b = await Chat.connect(r.port)
        f = await Chat.connect(r.port)
        for c, n in ((a, "ann"), (b, "bob"), (f, "flood")):
            await c.enter(n, "hall")
            await c.expect({"event": "enter", "name": n})
        await asyncio.sleep(0.6)                     # the bucket is full again

        # The normal member keeps talking at half the rate throughout.
        async def talk():
            for i in range(15):
                await a.send({"event": "message", "message": f"a#{i}", "roomid": "hall"})
                await asyncio.sleep(1.0 / (rate / 2))
        talker = asyncio.create_task(talk())
        sent = 0
        try:
            for i in range(200):
                await f.send({"event": "message", "message": f"f#{i}", "roomid": "hall"})
                sent += 1
        except websockets.ConnectionClosed:
            pass
        assert await f.wait_closed(5) == 1008
        await talker
        await b.until(lambda: len([e for e in b.of("message") if e["name"] == "ann"]) == 15, 5,
                      "all of ann's messages")
        flood_seen = [e for e in b.of("message") if e["name"] == "flood"]
        limited = f.of("error", code="rate_limited")
        # The burst gets through, the next rate_burst are refused, one more and it is closed.
        assert burst <= len(flood_seen) <= burst + 2, len(flood_seen)
        assert burst - 1 <= len(limited) <= burst + 1, len(limited)
        assert [int(e["message"][2:]) for e in flood_seen] == list(range(len(flood_seen)))
        assert [e["message"] for e in b.of("message") if e["name"] == "ann"] == [f"a#{i}" for i in range(15)]
        await b.expect({"event": "out", "name": "flood"})
        assert not a.closed and not b.closed
        await a.close()
        await b.close()
    run(main())
    assert "closing with 1008: rate limit exceeded" in r.read_log()
    run(still_serves(r.port))


def test_flood_that_backs_off_recovers(roomd):
    r = roomd({"rate_limit": "20", "rate_burst": "10"})

    async def main():
        f = await Chat.connect(r.port)
        await f.enter("f", "hall")
        await f.expect({"event": "enter"})
        await asyncio.sleep(0.6)
        for i in range(15):
            await f.send({"event": "message", "message": f"m{i}"})
        await f.until(lambda: len(f.of("error", code="rate_limited")) >= 4, 5, "rate_limited errors")
        await asyncio.sleep(0.6)                      # back off: the bucket refills
        await f.send({"event": "message", "message": "later"})
        await f.expect({"event": "message", "message": "later"})
        assert not f.closed
        await f.close()
    run(main())


def test_broadcast_binary_flood_is_limited(roomd):
    r = roomd({"rate_limit": "20", "rate_burst": "10"})

    async def main():
        b = await Chat.connect(r.port, "/broadcast?room=x")
        f = await Chat.connect(r.port, "/broadcast?room=x")
        # The room is connected end to end before the flood; then the bucket refills.
        await f.send(b"hi")
        await b.until(lambda: any(e.get("binary") == b"hi" for e in b.events), 5, "a first relay")
        b.events.clear()
        await asyncio.sleep(0.6)
        try:
            for i in range(100):
                await f.send(bytes([i]) * 10)
        except websockets.ConnectionClosed:
            pass
        assert await f.wait_closed(5) == 1008
        # Relays may reach b (through Redis, maybe on the other worker) after f's close.
        await b.until(lambda: len([e for e in b.events if "binary" in e]) >= 9, 5, "the burst's relays")
        await asyncio.sleep(0.3)
        got = [e["binary"] for e in b.events if "binary" in e]
        assert 9 <= len(got) <= 12, len(got)
        assert got == [bytes([i]) * 10 for i in range(len(got))]
        await b.send(b"still")
        await b.until(lambda: any(e.get("binary") == b"still" for e in b.events), 5, "own relay")
        await b.close()
    run(main())


# ==== 4. Many connections from one address ====

def reset_on_close(sock):
    """Close with RST instead of FIN: ten thousand TIME_WAITs would use up the port range."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def attempt(port, sem, path, keep, statuses):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)
        except (OSError, asyncio.TimeoutError) as e:
            statuses.append(f"connect: {e!r}")
            return
        try:
            writer.write(ws_request(path, port=port))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            st = int(head.split(b" ", 2)[1])
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
            statuses.append(f"read: {e!r}")
            writer.transport.abort()
            return
        statuses.append(st)
        if st == 101:
            keep.append((reader, writer, head))
        else:
            if st == 429:
                assert b"\r\nRetry-After: 1\r\n" in head, head
                assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), head[:40]
            reset_on_close(writer.get_extra_info("socket"))
            writer.transport.abort()


def drop_all(keep):
    for _, w, _ in keep:
        reset_on_close(w.get_extra_info("socket"))
        w.transport.abort()
    keep.clear()


def test_ten_thousand_connections_one_address(roomd, capsys):
    raise_nofile(12000)
    r = roomd({"max_sessions_per_ip": "100", "handshake_timeout": "20s"})
    total = 10000

    async def main():
        sem = asyncio.Semaphore(200)
        keep, statuses = [], []
        t0 = time.monotonic()
        await asyncio.gather(*(attempt(r.port, sem, "/echo", keep, statuses) for _ in range(total)))
        took = time.monotonic() - t0
        counts = {s: statuses.count(s) for s in set(statuses)}
        report(capsys, f"{total} connections from one address in {took:.1f}s: {counts}")
        assert counts.get(101) == 100, counts
        assert counts.get(429) == total - 100, counts
        # The sessions that got in work, and the limit still holds while they are open.
        for reader, writer, _ in keep[:5]:
            writer.write(mask_frame(1, b"ping"))
            frames, _ = parse_frames(await asyncio.wait_for(reader.readexactly(6), 5))
            assert frames == [(1, b"ping")]
        st, h = handshake(r.port, "/echo")
        assert st == 429 and h["retry-after"] == "1"
        drop_all(keep)
    run(main(), 120)
    # Once they are gone the address is served again.
    wait_for(lambda: handshake(r.port, "/echo")[0] == 101, 10, what="the limit to free up")
    run(still_serves(r.port))
    assert r.healthy()
    # Both workers refused: the count spans workers (neither held 100 alone).
    refusers = set(re.findall(r"worker (\d+) \[info\] conn \d+ .*refused: too many sessions", r.read_log()))
    assert len(refusers) == 2, refusers


def test_session_limit_holds_under_concurrent_handshakes(roomd):
    """Two workers admitting at the same instant must not both take the last
    place: with max_sessions_per_ip 1, rounds of 8 simultaneous handshakes
    never get more than one session. (A race there shows only now and then,
    more often on a loaded machine: this guards, it cannot prove.)"""
    r = roomd({"max_sessions_per_ip": "1"})

    async def one(gate, out):
        reader, writer = await asyncio.open_connection(HOST, r.port)
        await gate.wait()
        writer.write(ws_request("/echo", port=r.port))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        out.append((int(head.split(b" ", 2)[1]), writer))

    async def main():
        over, none = [], 0
        for rnd in range(150):
            gate, out = asyncio.Event(), []
            tasks = [asyncio.create_task(one(gate, out)) for _ in range(8)]
            await asyncio.sleep(0.004)
            gate.set()
            await asyncio.gather(*tasks)
            n = [st for st, _ in out].count(101)
            if n > 1:
                over.append((rnd, n))
            none += n == 0
            drop_all([(None, w, None) for _, w in out])
            await asyncio.sleep(0.008)      # the worker frees them before the next round
        assert not over, f"rounds that admitted more than one session: {over}"
        assert none < 30, f"{none} of 150 rounds admitted nobody"
    run(main(), 60)


def test_max_new_sessions_per_ip(roomd):
    r = roomd({"max_new_sessions_per_ip": "20"})
    # The limit counts per second: start the burst early in one.
    wait_for(lambda: 0.02 < time.clock_gettime(time.CLOCK_MONOTONIC) % 1 < 0.3, 2, 0.005)
    t0 = time.monotonic()
    socks, got = [], []
    for _ in range(40):
        st, h, s, _ = handshake(r.port, "/echo", keep=True)
        got.append(st)
        socks.append(s)
        if st == 429:
            assert h["retry-after"] == "1"
    assert time.monotonic() - t0 < 0.65, "too slow to stay within one second"
    assert got.count(101) == 20 and got.count(429) == 20, got
    assert got[:20] == [101] * 20
    time.sleep(1.1)
    st, _, s, _ = handshake(r.port, "/echo", keep=True)
    assert st == 101
    socks.append(s)
    for s in socks:
        s.close()
    run(still_serves(r.port))


def test_max_connections_503(roomd):
    raise_nofile(2000)
    r = roomd({"max_connections": "500", "handshake_timeout": "20s"})

    async def main():
        sem = asyncio.Semaphore(100)
        keep, st = [], []
        await asyncio.gather(*(attempt(r.port, sem, "/echo", keep, st) for _ in range(500)))
        assert st.count(101) == 500, {s: st.count(s) for s in set(st)}
        over = []
        await asyncio.gather(*(attempt(r.port, sem, "/echo", keep, over) for _ in range(100)))
        assert over.count(503) == 100, {s: over.count(s) for s in set(over)}
        # Plain HTTP is a connection too.
        s = socket.create_connection((HOST, r.port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, h, _ = read_head(s)
        s.close()
        assert status == 503 and h.get("retry-after") == "1"
        drop_all(keep)
    run(main())
    wait_for(lambda: r.healthy(), 10, what="room under max_connections again")
    run(still_serves(r.port))
    assert "connection limit reached" in r.read_log()


def test_max_connections_exact_across_workers(roomd):
    """Both workers find a full accept queue at once: together they admit exactly max_connections."""
    raise_nofile(2000)
    r = roomd({"max_connections": "40", "handshake_timeout": "20s"}, workers=2)
    pids = r.worker_pids()
    for rnd in range(5):
        # Stopped workers leave the connections in the kernel's accept queues;
        # continued together, both accept in a burst across the limit.
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        socks = []
        try:
            for _ in range(160):
                s = socket.create_connection((HOST, r.port), timeout=10)
                s.sendall(ws_request("/echo", port=r.port))
                socks.append(s)
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        statuses = []
        for s in socks:
            try:
                statuses.append(read_head(s)[0])
            except OSError as e:
                statuses.append(repr(e))
        for s in socks:
            reset_on_close(s)
            s.close()
        counts = {st: statuses.count(st) for st in set(statuses)}
        assert counts == {101: 40, 503: 120}, (rnd, counts)
        wait_for(lambda: r.healthy(), 10, what="room under max_connections again")


def test_worker_connections_503(roomd):
    r = roomd({"worker_connections": "20"}, workers=1)
    socks = []
    for i in range(20):
        st, _, s, _ = handshake(r.port, "/echo", keep=True)
        assert st == 101, i
        socks.append(s)
    for _ in range(5):
        st, h, s, _ = handshake(r.port, "/echo", keep=True)
        assert st == 503
        s.close()
    for s in socks[:5]:
        s.close()
    wait_for(lambda: handshake(r.port, "/echo")[0] == 101, 5, what="a free slot")
    for s in socks[5:]:
        s.close()
    run(still_serves(r.port))


# ==== 5. A member that never reads ====

def wmem_max():
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            return int(f.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def non_reader(port, room):
    """A member "sloth" of room with a tiny receive buffer, which joins and then
    never reads again (a blocking socket; the caller closes it)."""
    z = socket.socket()
    z.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    z.connect((HOST, port))
    z.sendall(ws_request("/", port=port))
    st, _, _ = read_head(z)
    assert st == 101
    z.sendall(mask_frame(1, json.dumps({"event": "enter", "message": "sloth", "roomid": room}).encode()))
    return z


def test_member_cut_off_as_too_slow_leaves_at_once(roomd):
    """The room learns "out" when the server cuts a slow member off (1008),
    not when its close handshake ends: with close_timeout 10s the others hear
    the out within 2 s of the cut, and num and who no longer count it, while
    its TCP connection is still lingering."""
    r = roomd({"max_outbuf": "64k", "close_timeout": "10s", "rate_limit_bytes": "0"}, workers=1)
    size = 16 * 1024

    async def main():
        a = await Chat.connect(r.port)
        sender = await Chat.connect(r.port)
        for i, c in enumerate([a, sender]):
            await c.enter(f"u{i}", "slow2")
            await c.expect({"event": "enter", "name": f"u{i}"})
        z = non_reader(r.port, "slow2")
        await a.expect({"event": "enter", "name": "sloth", "num": 3})
        r.log_mark()
        pad = "y" * size
        cut = None
        for k in range(2000):
            await sender.send({"event": "message", "roomid": "slow2", "message": f"{k}:{pad}"})
            await asyncio.sleep(0.005)
            if k % 8 == 0 and "closing with 1008: too slow" in r.new_log():
                cut = time.monotonic()
                break
        assert cut is not None, "the non-reader was never cut off"
        ev = await a.expect({"event": "out", "name": "sloth"}, 2)
        assert time.monotonic() - cut < 2.0
        assert ev["num"] == 2
        await a.send({"event": "who", "roomid": "slow2"})
        w = await a.expect({"event": "who"}, 2)
        assert sorted(w["members"]) == ["u0", "u1"] and w["num"] == 2
        z.close()
    run(main(), 30)


def test_member_that_never_reads_is_cut_off(roomd, capsys):
    """The kernel's send buffer for the non-reader autotunes up to tcp_wmem's
    maximum (4 MB by default) before roomd's own queue grows at all, so the
    room talks until the cut-off shows in the log: at most max_outbuf plus
    that plus one message, bounded at 24 MB or 8 s."""
    outbuf = 256 * 1024
    r = roomd({"max_outbuf": "256k", "close_timeout": "1s", "rate_limit_bytes": "0"})
    size, interval = 64 * 1024, 0.02
    limit = min(outbuf + wmem_max() + 2 * size + (2 << 20), 24 << 20) // size

    async def main():
        recv = [await Chat.connect(r.port) for _ in range(2)]
        sender = await Chat.connect(r.port)
        for i, c in enumerate(recv + [sender]):
            await c.enter(f"u{i}", "big")
            await c.expect({"event": "enter", "name": f"u{i}"})
        z = non_reader(r.port, "big")
        for c in recv:
            await c.expect({"event": "enter", "name": "sloth"})
        pids = r.worker_pids()
        base = rss_kb(pids)
        peak = [base]
        stop = asyncio.Event()

        async def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(pids))
                await asyncio.sleep(0.05)
        sampler = asyncio.create_task(sample())
        pad = "x" * size
        r.log_mark()
        count, cut_at, t0 = 0, None, time.monotonic()
        while count < limit and time.monotonic() - t0 < 8:
            await sender.send({"event": "message", "roomid": "big",
                               "message": f"{count}:{time.monotonic():.6f}:{pad}"})
            count += 1
            if cut_at is None and count % 4 == 0 and "closing with 1008: too slow" in r.new_log():
                cut_at = count
            if cut_at is not None and count >= cut_at + 10:   # and the room goes on after it
                break
            await asyncio.sleep(interval)
        assert cut_at is not None, f"not cut off after {count} messages of {size} bytes"
        for c in recv:
            await c.until(lambda c=c: len(c.of("message")) == count, 10, "every message")
        stop.set()
        await sampler
        lat = []
        for c in recv:
            msgs = c.of("message")
            assert [int(e["message"].split(":", 1)[0]) for e in msgs] == list(range(count))
            lat += [(e.t - float(e["message"].split(":", 2)[1])) * 1000 for e in msgs]
        lat.sort()
        p50, p99, worst = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1], lat[-1]
        delta = (peak[0] - base) / 1024
        # Once cut off it is gone within close_timeout, even though it never reads
        # what is still queued for it: the room says so and its memory is freed.
        for c in recv:
            try:
                await c.expect({"event": "out", "name": "sloth"}, 5)
            except AssertionError as e:
                raise AssertionError("the non-reader was sent 1008 but never disconnected: a finishing "
                                     f"connection whose peer does not read is kept forever ({e})") from None
            assert not c.closed
        # Its socket ends: the close frame 1008 if it got that far, else just EOF or a reset
        # (the frame sat behind the queue it never read).
        z.settimeout(5)
        buf, codes, end, nbytes = b"", [], "eof", 0
        try:
            while True:
                d = z.recv(1 << 16)
                if not d:
                    break
                nbytes += len(d)
                buf += d
                frames, buf = parse_frames(buf)
                codes += [close_code(p) for op, p in frames if op == 8]
        except ConnectionResetError:
            end = "reset"
        except socket.timeout:
            end = "still open"
        z.close()
        end = "close 1008" if codes else end
        report(capsys, f"non-reader cut off after {cut_at} x {size // 1024} KiB ({cut_at * size / 2**20:.1f} MiB; "
                       f"it got {nbytes / 2**20:.1f} MiB then {end}; kernel "
                       f"tcp_wmem max {wmem_max() / 2**20:.1f} MiB); worker RSS {base / 1024:.1f} MB -> peak "
                       f"{peak[0] / 1024:.1f} MB (+{delta:.1f} MB, bound {SLOW_RSS_DELTA_MB}); others' latency "
                       f"p50 {p50:.1f} ms p99 {p99:.1f} ms max {worst:.1f} ms over {len(lat)} deliveries "
                       f"(bound p99 < {SLOW_P99_MS})" + ("; RSS bound not asserted under ASan" if SANITIZED else ""))
        assert codes in ([], [1008]) and end != "still open", (codes, end)
        # What it was sent is bounded by roomd's queue plus the kernel's buffer.
        assert nbytes <= outbuf + wmem_max() + 2 * size + 65536, nbytes
        assert p99 < SLOW_P99_MS, lat[-10:]
        if not SANITIZED:
            assert delta < SLOW_RSS_DELTA_MB
        for c in recv + [sender]:
            await c.close()
    run(main(), 60)
    run(still_serves(r.port))


# ==== 6. Oversized fields ====

def test_oversize_names_rooms_and_messages(roomd):
    r = roomd({"max_message_size": "4k", "max_request_size": "8k"})

    async def main():
        c = await Chat.connect(r.port)
        for bad in ({"event": "enter", "message": "n" * 65, "roomid": "r"},
                    {"event": "enter", "message": "ok", "roomid": "r" * 129},
                    {"event": "enter", "message": "a\u0007b", "roomid": "r"},
                    {"event": "enter", "message": "", "roomid": "r"},
                    {"event": "enter", "message": "ok", "roomid": "x\ny"}):
            await c.send(bad)
            ev = await c.expect({"event": "error"})
            assert ev["code"] == "bad_field", (bad, ev)
        await c.enter("n" * 64, "r" * 128)               # exactly at the bounds is fine
        await c.expect({"event": "enter", "name": "n" * 64, "roomid": "r" * 128})
        await c.enter("é" * 32, "ü" * 64)                # bounds are bytes: 64 and 128
        await c.expect({"event": "enter", "roomid": "ü" * 64})
        await c.enter("é" * 33, "r2")
        assert (await c.expect({"event": "error"}))["code"] == "bad_field"
        assert not c.closed
        await c.send({"event": "message", "message": "m" * 5000, "roomid": "r2"})
        assert await c.wait_closed(5) == 1009
        # An oversized message in fragments is refused too, before it is all buffered.
        e = await Chat.connect(r.port, "/echo")
        await e.send(["a" * 3000, "b" * 3000])
        assert await e.wait_closed(5) == 1009
        # A broadcast room name over the bound.
        b = await Chat.connect(r.port, "/broadcast?room=" + "q" * 129)
        ev = await b.expect({"event": "error"})
        assert ev["code"] == "bad_field"
        assert await b.wait_closed(5) == 1008
    run(main())
    # A request head over max_request_size gets 431, not a session.
    st, _ = handshake(r.port, "/echo", ["X-Pad: " + "p" * 9000])
    assert st == 431
    st, _ = handshake(r.port, "/echo", [f"X-H{i}: v" for i in range(100)])
    assert st == 431
    run(still_serves(r.port))


def test_max_message_size_is_the_inflated_size(roomd):
    """The limit is on the message, not its compressed form: a deflating
    client (websockets, memLevel 5) sending incompressible bytes of exactly
    max_message_size is served; one byte more gets 1009."""
    r = roomd({"max_message_size": "64k"})

    async def main():
        async with websockets.connect(f"ws://{HOST}:{r.port}/echo", max_size=None) as ws:
            assert ws.extensions, "no permessage-deflate: the test means nothing"
            blob = os.urandom(64 * 1024)
            await ws.send(blob)
            assert await asyncio.wait_for(ws.recv(), 5) == blob
        async with websockets.connect(f"ws://{HOST}:{r.port}/echo", max_size=None) as ws:
            await ws.send(os.urandom(64 * 1024 + 1))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1009
    run(main())


# ==== 7. Memory under load ====

class Loader(asyncio.Protocol):
    """A lean WebSocket client for thousands of sessions: counts bytes in, answers nothing."""

    def __init__(self, req):
        self.req = req
        self.opened = asyncio.get_running_loop().create_future()
        self.up = False
        self.buf = b""
        self.nbytes = 0
        self.limited = 0
        self.lost = False

    def connection_made(self, t):
        self.t = t
        t.write(self.req)

    def data_received(self, d):
        if not self.up:
            self.buf += d
            if b"\r\n\r\n" in self.buf:
                self.up = True
                if not self.opened.done():
                    if self.buf.startswith(b"HTTP/1.1 101"):
                        self.opened.set_result(True)
                    else:
                        self.opened.set_exception(ConnectionError(self.buf[:40]))
            return
        self.nbytes += len(d)
        self.limited += d.count(b"rate_limited")

    def connection_lost(self, exc):
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("lost"))


PAYLOAD = b'{"load":"' + b"z" * 100 + b'"}'


def test_memory_many_sessions_at_the_rate_limit(roomd, capsys):
    n, rate, secs, room_size = 2000, 5, 4, 4
    raise_nofile(n + 500)
    r = roomd({"rate_limit": str(rate), "rate_burst": str(2 * rate), "max_outbuf": "1m"})
    pids = r.worker_pids()
    idle = rss_kb(pids)

    async def main():
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(200)
        conns = []

        async def one(i):
            async with sem:
                _, p = await loop.create_connection(
                    lambda: Loader(ws_request(f"/broadcast?room=load{i // room_size}", port=r.port)), HOST, r.port)
                await asyncio.wait_for(p.opened, 10)
                conns.append(p)
        await asyncio.gather(*(one(i) for i in range(n)))
        opened = rss_kb(pids)
        peak = opened
        msg = mask_frame(1, PAYLOAD)
        t0 = time.monotonic()
        ticks = secs * rate
        for k in range(ticks):
            # Every session sends one message per 1/rate s, spread over the interval.
            for j in range(0, n, n // 10):
                for p in conns[j:j + n // 10]:
                    p.t.write(msg)
                await asyncio.sleep(1.0 / rate / 10)
            peak = max(peak, rss_kb(pids))
            await asyncio.sleep(max(0, t0 + (k + 1) / rate - time.monotonic()))
        await asyncio.sleep(0.5)
        peak = max(peak, rss_kb(pids))
        got = sum(p.nbytes for p in conns)
        limited = sum(p.limited for p in conns)
        lost = sum(p.lost for p in conns)
        sent = n * ticks
        for p in conns:
            p.t.abort()
        return opened, peak, got, limited, lost, sent
    opened, peak, got, limited, lost, sent = run(main(), 60)
    per_msg = 2 + len(PAYLOAD)      # each relayed frame: header and payload
    report(capsys, f"{n} sessions x {rate} msg/s for {secs}s ({sent} messages in, {got // per_msg} frames out): "
                   f"worker RSS idle {idle / 1024:.1f} MB, connected {opened / 1024:.1f} MB, peak "
                   f"{peak / 1024:.1f} MB (bound {LOAD_RSS_MB} MB); rate_limited {limited}, lost {lost}"
                   + ("; RSS bound not asserted under ASan" if SANITIZED else ""))
    assert lost == 0
    assert limited <= sent // 100, "sending at the rate limit should almost never be refused"
    assert got >= 0.98 * sent * room_size * per_msg, "relayed less than was sent"
    if not SANITIZED:
        assert peak / 1024 < LOAD_RSS_MB
    # 2,000 sessions were just cut at once: the workers tear them down (slower
    # under ASan), then serve again.
    wait_for(r.healthy, 15, what="/healthz after the load")
    run(still_serves(r.port))


def test_slow_client_drop_keeps_the_reader_and_counts(roomd):
    """slow_client drop: a member that does not read loses its oldest room
    messages instead of its connection, and every drop is counted."""
    # No rate limit: on a slow machine the drop comes after more than rate_burst messages,
    # and the ones refused as rate_limited would never reach the reader.
    r = roomd({"max_outbuf": "64k", "slow_client": "drop", "close_timeout": "1s", "rate_limit_bytes": "0",
               "rate_limit": "0"})
    size = 16 * 1024

    async def main():
        recv = await Chat.connect(r.port)
        sender = await Chat.connect(r.port)
        for i, c in enumerate([recv, sender]):
            await c.enter(f"u{i}", "slow")
            await c.expect({"event": "enter", "name": f"u{i}"})
        z = non_reader(r.port, "slow")
        await recv.expect({"event": "enter", "name": "sloth"})
        r.log_mark()
        count = 0
        while count < 2000 and "room message(s) dropped" not in r.new_log():
            await sender.send({"event": "message", "roomid": "slow", "message": f"{count}:" + "x" * size})
            count += 1
            if count % 20 == 0:
                await asyncio.sleep(0.01)
        assert "room message(s) dropped" in r.new_log(), f"nothing dropped after {count} messages"
        await recv.until(lambda: len(recv.of("message")) == count, 15, "every message")
        assert "closing with 1008" not in r.new_log(), "the slow reader was cut off instead"
        z.close()
    run(main())
    metrics = http_get(r.port, "/metrics")[2].decode()
    dropped = [l for l in metrics.splitlines() if l.startswith("roomd_slow_client_messages_dropped_total ")]
    assert dropped and int(float(dropped[0].split()[1])) > 0, dropped


# ==== 8. Request framing: a body is never the next request ====

def all_responses(port, data, quiet=1.0):
    """Send data on one connection; read until the server closes or stays
    quiet for `quiet` s. Returns ([(status line, headers, body)], closed)."""
    s = socket.create_connection((HOST, port), timeout=5)
    buf, closed = b"", False
    try:
        s.sendall(data)
        s.settimeout(quiet)
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            buf += d
    finally:
        s.close()
    out = []
    while b"\r\n\r\n" in buf:
        head, _, buf = buf.partition(b"\r\n\r\n")
        hdrs = parse_head(head)[1]
        n = int(hdrs.get("content-length", "0"))
        out.append((head.split(b"\r\n", 1)[0].decode("latin-1"), hdrs, buf[:n]))
        buf = buf[n:]
    return out, closed


SMUGGLED = b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"


def body_cases():
    """(what, request bytes, the one status roomd must answer)."""
    cl = b"Content-Length: %d\r\n" % len(SMUGGLED)
    chunked = b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n"
    get = b"GET /app.js HTTP/1.1\r\nHost: x\r\n"
    return [
        ("Content-Length body", get + cl + b"\r\n" + SMUGGLED, 413),
        ("chunked body", get + b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 501),
        ("gzip, chunked", get + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + chunked, 501),
        ("chunked not last", get + b"Transfer-Encoding: chunked, gzip\r\n\r\n" + chunked, 400),
        ("both CL and TE", get + cl + b"Transfer-Encoding: chunked\r\n\r\n" + chunked, 400),
        ("TE in HTTP/1.0", b"GET /app.js HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, 400),
        ("two lengths", get + cl + b"Content-Length: 0\r\n\r\n" + SMUGGLED, 400),
        ("length list", get + b"Content-Length: 0, %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, 400),
        ("signed length", get + b"Content-Length: +%d\r\n\r\n" % len(SMUGGLED) + SMUGGLED, 400),
        ("huge length", get + b"Content-Length: 99999999999999999999999\r\n\r\n" + SMUGGLED, 400),
        ("admin path", b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + cl + b"\r\n" + SMUGGLED, 413),
        ("upgrade with a body", ws_request("/echo", port=1)[:-2] + cl + b"\r\n" + SMUGGLED, 413),
    ]


def test_request_body_is_never_parsed_as_a_request(roomd):
    """Request smuggling: a GET whose Content-Length or chunked body holds a
    second request got two responses (behind a keep-alive proxy the second
    is another user's). roomd reads no request bodies: any request with one,
    or with a framing it does not serve (Transfer-Encoding other than a
    lone chunked, both Content-Length and Transfer-Encoding, lengths that
    disagree or are not plain digits), gets exactly one error response,
    Connection: close, and the connection is closed."""
    r = roomd(workers=1)
    for what, data, want in body_cases():
        rs, closed = all_responses(r.port, data)
        assert [x[0] for x in rs] == [f"HTTP/1.1 {want} {REASONS[want]}"], (what, rs)
        assert rs[0][1]["connection"] == "close", what
        assert closed, f"{what}: the connection stayed open"
    # No body is still fine, and so is an empty one (some clients send
    # Content-Length: 0 on every GET): both keep the connection.
    plain = b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
    empty = b"GET /style.css HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    rs, closed = all_responses(r.port, plain + empty + plain, quiet=0.5)
    assert [x[0] for x in rs] == ["HTTP/1.1 200 OK"] * 3 and not closed, rs
    assert r.healthy()


REASONS = {400: "Bad Request", 413: "Content Too Large", 429: "Too Many Requests",
           501: "Not Implemented"}

# ==== 9. Per-address limits: chosen addresses ====

def fnv_bucket(ip):
    """The slot an address had in the old unkeyed per-address table."""
    h = 2166136261
    for b in socket.inet_aton(ip):
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h % 16384


def colliders(victim, n):
    """n addresses (in 10.0.0.0/8) that shared the victim's slot in the old table."""
    want, out, i = fnv_bucket(victim), [], 0
    while len(out) < n:
        i += 1
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        if fnv_bucket(ip) == want:
            out.append(ip)
    return out


def test_chosen_address_cannot_lock_out_another(roomd):
    """An attacker behind a trusted proxy picks its X-Forwarded-For address.
    The per-address table hashed addresses unkeyed into buckets and never
    compared them, so addresses chosen to land in the victim's bucket used
    up the victim's max_sessions_per_ip: the victim got 429 with no session
    at all. Now the hash is keyed with a secret chosen at start and entries
    compare the exact address: the attacker's own addresses are refused
    past the limit, the victim still gets in, and the 429 carries its
    reason phrase."""
    r = roomd({"max_sessions_per_ip": "2", "trusted_proxies": "127.0.0.1/32"})
    victim = "198.51.100.7"
    held = []

    def session(ip):
        st, _, s, _ = handshake(r.port, "/echo", (f"X-Forwarded-For: {ip}",), keep=True)
        held.append(s)
        return st

    def third(ip):
        s = socket.create_connection((HOST, r.port), timeout=5)
        s.sendall(ws_request("/echo", port=r.port, extra=(f"X-Forwarded-For: {ip}",)))
        head = read_to_close(s)
        s.close()
        return head

    try:
        first, *more = colliders(victim, 4)
        assert [session(first), session(first)] == [101, 101]
        # The attacker's own address is limited...
        head = third(first)
        assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), head
        # ...and the victim, with no session, is not.
        assert session(victim) == 101, f"the victim was refused for {first}'s sessions"
        for ip in more:
            assert [session(ip), session(ip)] == [101, 101], ip
        assert session(victim) == 101, "the victim's second session was refused"
        assert third(victim).startswith(b"HTTP/1.1 429 "), "the victim's third session got in"
    finally:
        for s in held:
            s.close()
    run(still_serves(r.port))


# ==== Users, guests, who, floods (issue 16/24) ====

def test_max_sessions_per_user_over_every_host(roomd, redis):
    """max_sessions_per_user 2 counts a token's user (sub) over every worker
    and host: two sessions of ann (one per instance) get in, a third is told
    too_many_sessions and closed with 1008; when one of hers ends, a new one
    gets in. Other users are not affected."""
    s = dict(auth_settings("required"), redis=redis.url, max_sessions_per_user="2")
    a = roomd(s, workers=2)
    b = roomd(s, workers=1)
    ann = jwt(good_claims(sub="ann"))

    async def main():
        one = await Chat.connect(a.port, f"/?token={ann}")
        two = await Chat.connect(b.port, f"/?token={ann}")
        for c in (one, two):
            await c.enter("x", "u")
            await c.expect({"event": "enter", "name": "ann"})
        three = await Chat.connect(a.port, f"/?token={ann}")
        await three.expect_error("too_many_sessions")
        assert await three.wait_closed() == 1008
        bob = await Chat.connect(a.port, f"/?token={jwt(good_claims(sub='bob'))}")
        await bob.enter("x", "u")
        await bob.expect({"event": "enter", "name": "bob"})
        await one.close()
        for _ in range(50):
            four = await Chat.connect(b.port, f"/?token={ann}")
            await four.enter("x", "u")
            try:
                await four.expect({"event": "enter", "name": "ann"}, 1)
                break
            except AssertionError:
                await four.close()
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("ann's third session never got in after one of hers ended")
        for c in (two, bob, four):
            await c.close()
    run(main(), 30)


def test_guests_cannot_speak_as_a_user_with_a_token(roomd):
    """auth optional: a client without a token may not enter under the name
    of a user online with a token (name_taken), and a guest's events say
    "guest": true (enter, message, out, and who's "guests"), so nobody
    mistakes it for a verified user."""
    r = roomd(auth_settings("optional"), workers=2)

    async def main():
        ann = await Chat.connect(r.port, f"/?token={jwt(good_claims(sub='ann'))}")
        await ann.enter("whatever", "club")
        ev = await ann.expect({"event": "enter", "name": "ann"})
        assert "guest" not in ev
        fake = await Chat.connect(r.port)
        await fake.enter("ann", "club")
        await fake.expect_error("name_taken")
        await fake.enter("ann", "elsewhere")
        await fake.expect_error("name_taken")
        await fake.enter("bob", "club")
        ev = await ann.expect({"event": "enter", "name": "bob"})
        assert ev["guest"] is True and ev["num"] == 2
        await fake.say("hello from bob", "club")
        ev = await ann.expect({"event": "message", "message": "hello from bob"})
        assert ev["name"] == "bob" and ev["guest"] is True
        await ann.say("hi", "club")
        ev = await fake.expect({"event": "message", "message": "hi"})
        assert "guest" not in ev
        await ann.send({"event": "who", "roomid": "club"})
        w = await ann.expect({"event": "who"})
        assert sorted(w["members"]) == ["ann", "bob"] and w["guests"] == ["bob"], w
        await fake.send({"event": "out", "roomid": "club"})
        ev = await ann.expect({"event": "out", "name": "bob"})
        assert ev["guest"] is True
        # Once ann is gone, her name is free again.
        await ann.close()
        for _ in range(50):
            await fake.enter("ann", "club")
            ev = await fake.expect(lambda e: e.get("event") in ("enter", "error"), 3)
            if ev["event"] == "enter":
                assert ev["name"] == "ann" and ev["guest"] is True
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("ann's name stayed taken after she left")
        await fake.close()
    run(main(), 30)


def test_who_is_bounded_cached_and_rate_limited(roomd):
    """who in a large room answers the first who_limit names and the total
    (num); many who requests cost one read of Redis a second per room and
    each session may ask about once a second (rate_limited beyond a burst of
    3): the answer bytes do not grow with the attacker's requests."""
    r = roomd({"who_limit": "5", "rate_limit": "0"}, workers=1)

    async def main():
        members = [await Chat.connect(r.port) for _ in range(12)]
        for i, c in enumerate(members):
            await c.enter(f"m{i:02d}", "big")
            await c.expect({"event": "enter", "name": f"m{i:02d}"})
        asker = members[0]
        for _ in range(150):
            await asker.send({"event": "who", "roomid": "big"})
        await asyncio.sleep(1.0)
        answers = asker.of("who")
        limited = [e for e in asker.events if e.get("event") == "error" and e.get("code") == "rate_limited"]
        assert 1 <= len(answers) <= 4, len(answers)
        assert len(answers) + len(limited) == 150
        for w in answers:
            assert len(w["members"]) == 5 and w["num"] == 12, w
        for c in members:
            await c.close()
    run(main(), 30)


def test_who_from_many_sessions_is_one_read_of_redis(roomd, redis):
    """Twelve members of a room ask who at once, three times: each gets the
    answer, and Redis is read once (one read serves every session that asks
    while it is in flight, and its answer is served again for a second), not
    36 times: many askers cost Redis no more than one."""
    r = roomd({"redis": redis.url, "rate_limit": "0"}, workers=1)

    def evalsha_calls():
        stats = redis.command("INFO", "commandstats")
        m = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
        return int(m.group(1)) if m else 0

    async def main():
        members = [await Chat.connect(r.port) for _ in range(12)]
        for i, c in enumerate(members):
            await c.enter(f"w{i:02d}", "asked")
            await c.expect({"event": "enter", "name": f"w{i:02d}"})
        await asyncio.sleep(0.3)
        before = evalsha_calls()
        for wave in range(3):       # at once (one read in flight), then twice from the cache
            await asyncio.gather(*(c.send({"event": "who", "roomid": "asked"}) for c in members))
            for c in members:
                w = await c.expect({"event": "who"})
                assert w["num"] == 12 and len(w["members"]) == 12, w
        reads = evalsha_calls() - before
        # One read for the 36 (three without the cache); the worker's own
        # liveness refresh may run meanwhile.
        assert reads <= 2, f"{reads} script calls for 36 who requests"
        for c in members:
            await c.close()
    run(main(), 30)


def test_compressed_flood_cannot_cost_other_rooms_their_messages(roomd, redis):
    """The attack: with permessage-deflate, 40 chat messages of 1 MiB of one
    letter cost the attacker a few dozen KB, and roomd used to publish all
    40 MiB, past what Redis lets a subscriber link queue (32 MB), so Redis
    closed the worker's link and other rooms lost messages. Now the byte
    budget (rate_limit_bytes, rate_burst_bytes) refuses most of it, the link
    stays, and every message of an unrelated room on the same worker
    arrives."""
    # Redis lets a subscriber link queue 8 MB here: the flood, unbounded, would pass that at once.
    redis.command("CONFIG", "SET", "client-output-buffer-limit", "pubsub 8mb 2mb 60")
    r = roomd({"redis": redis.url, "rate_limit": "0", "max_message_size": "2m"}, workers=1)

    async def main():
        calm = [await Chat.connect(r.port) for _ in range(3)]
        for i, c in enumerate(calm):
            await c.enter(f"c{i}", "calm")
            await c.expect({"event": "enter", "name": f"c{i}"})
        spam = await websockets.connect(f"ws://{HOST}:{r.port}/", max_size=None, ping_interval=None)
        assert spam.response_headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
        await spam.send(json.dumps({"event": "enter", "message": "spam", "roomid": "noise"}))
        big = json.dumps({"event": "message", "roomid": "noise", "message": "a" * (1 << 20)})
        stop = asyncio.Event()

        async def chatter():
            k = 0
            while not stop.is_set():
                await calm[k % 3].say(f"calm {k}", "calm")
                k += 1
                await asyncio.sleep(0.01)
            return k
        task = asyncio.create_task(chatter())
        for _ in range(40):
            await spam.send(big)
        await asyncio.sleep(1.5)
        stop.set()
        sent = await task
        for c in calm:
            await c.until(lambda c=c: len(c.of("message")) >= sent, 10, "every calm message")
            got = c.of("message")
            assert sorted(int(e["message"].split()[1]) for e in got) == list(range(sent))
            assert [e["offset"] for e in got] == list(range(1, sent + 1))
        # One order for everyone.
        assert len({tuple(e["message"] for e in c.of("message")) for c in calm}) == 1
        await spam.close()
        for c in calm:
            await c.close()
    run(main(), 40)
    m = scrape(r.port)
    assert m.value("roomd_redis_reconnects_total") == 0, "a worker lost its Redis link to the flood"
    assert m.value("roomd_messages_rate_limited_total") >= 30
