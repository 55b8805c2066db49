"""Chat rooms shared through Redis: delivery across workers and instances
(exactly once, one order per room, right counts), a thousand members in one
room, every kind of bad input answered with its error while the connection
and the room keep working, the JSON heartbeat, the broadcast route and the
private redis-server."""
import asyncio
import glob
import os
import time

import pytest

from roomd import http_get, raise_nofile, wait_for
from roomclient import (Chat, enter_all, mask_frame, raw_connect, run,
                        spread_clients, who, workers_of)


def check_delivery(clients, senders, per_sender, roomid):
    """Every client got every sender's messages exactly once, in send order,
    and all clients saw the same sequence."""
    want = {(s, f"{s}#{k}") for s in senders for k in range(per_sender)}
    first = None
    for c in clients:
        got = [(e["name"], e["message"]) for e in c.messages(roomid)
               if e["name"] in senders and "#" in e["message"]]
        assert len(got) == len(set(got)), f"duplicates: {len(got) - len(set(got))}"
        assert set(got) == want, (
            f"missing {len(want - set(got))}, extra {len(set(got) - want)}; "
            f"e.g. {sorted(want - set(got))[:6]}; not messages: "
            f"{[e for e in c.events if e.get('event') not in ('message', 'enter')][-6:]}")
        for s in senders:
            seq = [int(m.rsplit("#", 1)[1]) for n, m in got if n == s]
            assert seq == list(range(per_sender)), f"{s}'s messages out of order"
        if first is None:
            first = got
        assert got == first, "members saw the room's messages in different orders"


def test_two_instances_four_workers_one_room(roomd, redis):
    """Two instances x two workers share one Redis: one room spans all four
    workers; delivery is exactly once, in one order; num, who and out are right;
    another room sees none of it."""
    a = roomd({"redis": redis.url}, workers=2)
    b = roomd({"redis": redis.url}, workers=2)

    async def main():
        by_worker = {}
        for r in (a, b):
            by_worker.update(await spread_clients(r, 2))
        assert len(by_worker) == 4
        clients = [c for cs in by_worker.values() for c in cs]
        names = [f"u{i}" for i in range(len(clients))]
        name_of = dict(zip(map(id, clients), names))
        await enter_all(clients, names, "hall")

        # A second room with a member on each instance.
        x, y = await Chat.connect(a.port), await Chat.connect(b.port)
        await enter_all([x, y], ["x", "y"], "side")

        w = await who(clients[0])
        assert sorted(w["members"]) == sorted(names) and w["num"] == len(names)
        assert w["roomid"] == "hall"
        w = await who(y)
        assert sorted(w["members"]) == ["x", "y"] and w["num"] == 2

        # One sender per worker, 50 messages each, all at once.
        senders = [cs[0] for cs in by_worker.values()]
        sender_names = {name_of[id(c)] for c in senders}

        async def blast(c):
            for k in range(50):
                await c.say(f"{name_of[id(c)]}#{k}")
        await asyncio.gather(*(blast(c) for c in senders), x.say("side-1"), y.say("side-2"))
        # Each worker publishes its own sender's messages, so "end" may pass
        # another worker's last ones: wait for all 200, then for "end", after
        # which anything duplicated would have shown up too.
        for c in clients:
            await c.until(lambda c=c: len({(e["name"], e["message"]) for e in c.messages("hall")
                                           if e["name"] in sender_names}) >= 200, 15,
                          "all 200 hall messages")
        await senders[0].say("end")
        for c in clients:
            await c.expect({"event": "message", "message": "end"}, 15)
        for c in (x, y):
            await c.until(lambda c=c: len(c.messages("side")) == 2, 5, "side messages")
        check_delivery(clients, sender_names, 50, "hall")
        for c in clients:
            assert all(e["num"] == len(clients) for e in c.messages("hall"))
            assert all(e["roomid"] == "hall" for e in c.events if "roomid" in e), \
                "hall member saw another room's traffic"
            ids = [e["id"] for e in c.messages()]
            assert len(ids) == len(set(ids))
            assert all(isinstance(e["ts"], int) and abs(e["ts"] / 1000 - time.time()) < 60
                       for e in c.messages())
        for c in (x, y):
            assert [e["message"] for e in c.messages()] in (["side-1", "side-2"], ["side-2", "side-1"])
            assert all(e.get("roomid") == "side" for e in c.events), "side member saw hall traffic"
        assert [e["message"] for e in x.messages()] == [e["message"] for e in y.messages()]

        # An explicit out: answered to the leaver, announced to the others.
        leaver, gone = clients[3], clients[6]
        await leaver.send({"event": "out"})
        ev = await leaver.expect({"event": "out"})
        assert ev["name"] == names[3] and ev["num"] == len(clients) - 1
        for c in clients:
            if c is not leaver:
                ev = await c.expect({"event": "out", "name": names[3]})
                assert ev["num"] == len(clients) - 1
        # A disconnect: announced to the rest.
        await gone.close()
        rest = [c for c in clients if c not in (leaver, gone)]
        for c in rest:
            ev = await c.expect({"event": "out", "name": names[6]})
            assert ev["num"] == len(clients) - 2
        w = await who(rest[0])
        assert sorted(w["members"]) == sorted(n for i, n in enumerate(names) if i not in (3, 6))
        # The leaver is in no room now.
        await leaver.say("still here?")
        await leaver.expect_error("not_in_room")
        # The room still works for the rest.
        await rest[-1].say("after")
        for c in rest:
            ev = await c.expect({"event": "message", "message": "after"})
            assert ev["num"] == len(rest)
        for c in rest + [leaver, x, y]:
            await c.close()
    run(main(), 50)


def now():
    return asyncio.get_running_loop().time()


async def connect_crowd(port, n):
    """n raw clients, connected 100 at a time."""
    clients = []
    for i in range(0, n, 100):
        clients += await asyncio.gather(*(raw_connect(port) for _ in range(min(100, n - i))))
    return clients


async def enter_crowd(clients, roomid):
    """Every client enters roomid as m<i>; returns once all have seen num n."""
    n = len(clients)
    for i, c in enumerate(clients):
        c.send_text(f'{{"event":"enter","message":"m{i}","roomid":"{roomid}"}}')
    # The last enter carries num n and reaches everyone who entered before it.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 40
    while not all(c.enter_max_num == n for c in clients):
        assert loop.time() < deadline, \
            f"{sum(c.enter_max_num == n for c in clients)} of {n} saw num {n}"
        await asyncio.sleep(0.05)


def test_thousand_members_one_room(roomd):
    """1,000 clients over both workers in one room: every message reaches every
    member exactly once, in one order."""
    n = 1000
    assert raise_nofile(2 * n + 500) >= 2 * n + 200, "RLIMIT_NOFILE too low for this test"
    r = roomd({"heartbeat_interval": "0", "max_connections": "5000"}, workers=2)

    async def main():
        clients = await connect_crowd(r.port, n)
        ports = [c.transport.get_extra_info("sockname")[1] for c in clients]
        owner = workers_of(r, ports)
        per = {p: sum(1 for v in owner.values() if v == p) for p in r.worker_pids()}
        assert len(owner) == n and all(v > 0 for v in per.values()), f"spread: {per}"
        await enter_crowd(clients, "crowd")
        loop = asyncio.get_running_loop()
        assert not any(c.other for c in clients), [c.other for c in clients if c.other][:3]
        senders = [clients[0], clients[n // 3], clients[2 * n // 3], clients[-1]]
        for k in range(5):
            for s in senders:
                s.send_text(f'{{"event":"message","message":"{clients.index(s)}#{k}"}}')
        total = 5 * len(senders)
        deadline = loop.time() + 20
        while not all(len(c.messages) >= total for c in clients):
            assert loop.time() < deadline, \
                f"{sum(len(c.messages) >= total for c in clients)} of {n} got all {total} messages"
            await asyncio.sleep(0.05)
        # Give a duplicate the chance to show up, then compare exactly.
        await asyncio.sleep(0.3)
        want = sorted((f"m{clients.index(s)}", f"{clients.index(s)}#{k}") for s in senders
                      for k in range(5))
        first = clients[0].messages
        for c in clients:
            assert sorted(c.messages) == want
            assert c.messages == first
            assert c.close_code is None and not c.lost
        for c in clients:
            c.transport.close()
    run(main(), 60)


def counters(port):
    """The /metrics counters as {name: int}."""
    st, _, body = http_get(port, "/metrics")
    assert st == 200
    out = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and " " in line and "{" not in line:
            name, value = line.split(" ", 1)
            out[name] = int(float(value))
    return out


@pytest.mark.parametrize("coalesce", ["10ms", "0"])
def test_busy_worker_coalesces_broadcasts(roomd, coalesce):
    """A worker writing to 1,000 members takes over a millisecond per flush, so
    under a stream of messages it holds the next ones back (broadcast_coalesce)
    and counts each pause; with 0 it never does. Either way every member gets
    every message once, in one order. (How much a pause saves depends on what
    arrives during it; roomd-bench measures that, not this test.)"""
    n, total = 1000, 200
    assert raise_nofile(2 * n + 500) >= 2 * n + 200, "RLIMIT_NOFILE too low for this test"
    r = roomd({"heartbeat_interval": "0", "max_connections": "5000", "rate_limit": "0",
               "broadcast_coalesce": coalesce}, workers=1)

    async def main():
        clients = await connect_crowd(r.port, n)
        await enter_crowd(clients, "busy")
        loop = asyncio.get_running_loop()
        before = counters(r.port)
        # A steady stream from two senders, a millisecond or so apart: each
        # message tends to arrive while the previous one's flush is recent.
        senders = [clients[0], clients[-1]]
        for k in range(total):
            senders[k % 2].send_text(f'{{"event":"message","message":"{k}"}}')
            await asyncio.sleep(0.001)
        deadline = loop.time() + 30
        while not all(len(c.messages) >= total for c in clients):
            assert loop.time() < deadline, \
                f"{sum(len(c.messages) >= total for c in clients)} of {n} got all {total} messages"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)    # room for a duplicate to show up
        want = [(f"m{0 if k % 2 == 0 else n - 1}", str(k)) for k in range(total)]
        for c in clients:
            # One order per room: the two senders' messages interleave in
            # Redis's order, which is not necessarily send order.
            assert sorted(c.messages) == sorted(want)
            assert c.messages == clients[0].messages
            assert [m for m in c.messages if m[0] == "m0"] == [w for w in want if w[0] == "m0"]
            assert c.close_code is None and not c.lost
        after = counters(r.port)
        delivered = after["roomd_broadcast_deliveries_total"] - before["roomd_broadcast_deliveries_total"]
        pauses = after["roomd_broadcast_pauses_total"] - before["roomd_broadcast_pauses_total"]
        writes = after["roomd_socket_writes_total"] - before["roomd_socket_writes_total"]
        assert delivered == n * total
        if coalesce == "0":
            assert pauses == 0
        else:
            assert pauses > 0, f"no pause in {total} broadcasts to {n} members ({writes} writes)"
        for c in clients:
            c.transport.close()
    run(main(), 90)


def test_burst_bigger_than_a_turn_of_reads_reaches_everyone_in_order(roomd):
    """A burst of ~2 MB of room messages reaches each worker's subscriber link
    far faster than one loop turn reads it (a Redis link reads at most 8 x 64
    KB a turn; libevent alone would read 4 KB): every member on both workers
    gets every message once, whole and in order, and stays connected."""
    r = roomd({"rate_limit": "0", "heartbeat_interval": "0"}, workers=2)
    total, pad = 120, "x" * 16000

    async def main():
        by_worker = await spread_clients(r, 2)
        clients = [c for cs in by_worker.values() for c in cs]
        await enter_all(clients, [f"b{i}" for i in range(len(clients))], "burst")
        sender = clients[0]
        for k in range(total):
            await sender.say(f"{pad}#{k}")
        for c in clients:
            await c.until(lambda c=c: len([e for e in c.messages("burst") if "#" in e["message"]]) >= total,
                          timeout=30, what=f"{total} messages")
        await asyncio.sleep(0.3)    # room for a duplicate to show up
        for c in clients:
            got = [e["message"] for e in c.messages("burst") if "#" in e["message"]]
            assert got == [f"{pad}#{k}" for k in range(total)], \
                f"{len(got)} messages, first wrong at {next((i for i, (a, b) in enumerate(zip(got, range(total))) if a != f'{pad}#{b}'), None)}"
            assert c.close_code is None
        for c in clients:
            await c.close()
    run(main(), 90)


# (payload, error code) for input rejected before any membership check.
BAD_INPUTS = [
    ("{", "bad_json"),
    ('{"event":"message","message":"x"', "bad_json"),
    ('{"event":"message",}', "bad_json"),
    ('{"event":"message","message":"x"} trailing', "bad_json"),
    ("", "bad_json"),
    ("[1,2]", "not_object"),
    ("42", "not_object"),
    ('"enter"', "not_object"),
    ("null", "not_object"),
    ('{"event":"dance"}', "unknown_event"),
    ('{"event":""}', "unknown_event"),
    ('{"event":"ENTER","message":"n"}', "unknown_event"),
    ("{}", "bad_field"),
    ('{"event":5}', "bad_field"),
    ('{"event":["enter"]}', "bad_field"),
    ('{"event":"enter"}', "bad_field"),
    ('{"event":"enter","message":5}', "bad_field"),
    ('{"event":"enter","message":""}', "bad_field"),
    ('{"event":"enter","message":"' + "n" * 65 + '"}', "bad_field"),
    ('{"event":"enter","message":"' + "\u20ac" * 22 + '"}', "bad_field"),  # 66 bytes
    ('{"event":"enter","message":"a\\u0001b"}', "bad_field"),
    ('{"event":"enter","message":"a\\nb"}', "bad_field"),
    ('{"event":"enter","message":"a\\u0085b"}', "bad_field"),
    ('{"event":"enter","message":"a\\u0000b"}', "bad_field"),
    ('{"event":"enter","message":"n","roomid":""}', "bad_field"),
    ('{"event":"enter","message":"n","roomid":7}', "bad_field"),
    ('{"event":"enter","message":"n","roomid":"' + "r" * 129 + '"}', "bad_field"),
    ('{"event":"enter","message":"n","roomid":"a\\tb"}', "bad_field"),
    ('{"event":"message"}', "bad_field"),
    ('{"event":"message","message":null}', "bad_field"),
    ('{"event":"message","message":["x"]}', "bad_field"),
    ('{"event":"message","message":{"a":1}}', "bad_field"),
    ('{"event":"who","roomid":false}', "bad_field"),
]


def test_bad_json_leaves_no_trace_for_the_next_message(roomd):
    """A message that breaks off inside a UTF-16 surrogate pair (bad_json)
    changes nothing in the next message the worker parses, another client's
    included: json-c kept the pending high surrogate across messages, and
    spliced U+FFFD, or the rest of the pair, into the next \\u escape."""
    r = roomd({}, workers=1)

    async def main():
        bad, a, b = [await Chat.connect(r.port) for _ in range(3)]
        await enter_all([a, b], ["a", "b"], "r")
        for k, poison in enumerate(['{"m":"\\ud83d\\u', '["\\udbff\\ud"]']):
            await bad.send(poison)
            await bad.expect_error("bad_json")
            await a.send('{"event":"message","message":"x\\u0041y%d"}' % k)
            for c in (a, b):
                ev = await c.expect({"event": "message", "name": "a"})
                assert ev["message"] == f"xAy{k}", f"after {poison!r}: {ev['message']!r}"
    run(main(), 30)


def test_bad_input_gets_errors_and_connection_keeps_working(roomd):
    """Each bad input gets its error code (with num when in exactly one room);
    after each, a valid message from the same connection is delivered, and a
    third client's messages sent meanwhile all arrive."""
    r = roomd({"max_rooms_per_connection": "3"}, workers=2)

    async def main():
        bad, obs, chatter = [await Chat.connect(r.port) for _ in range(3)]
        await enter_all([obs, chatter], ["obs", "chatter"], "r")
        stop = asyncio.Event()
        sent = []

        async def chatter_loop():
            k = 0
            while not stop.is_set():
                await chatter.say(f"c#{k}")
                sent.append(f"c#{k}")
                k += 1
                await asyncio.sleep(0.005)
        task = asyncio.create_task(chatter_loop())

        async def check(payload, code, num=None):
            await bad.send(payload)
            ev = await bad.expect({"event": "error"})
            assert ev["code"] == code, f"{payload!r}: got {ev}"
            assert isinstance(ev["message"], str) and ev["message"]
            if num is None:
                assert "num" not in ev, f"{payload!r}: num in {ev}"
            else:
                assert ev.get("num") == num, f"{payload!r}: want num {num} in {ev}"

        # Outside any room.
        for payload, code in BAD_INPUTS:
            await check(payload, code)
        for ev in ("message", "out", "who"):
            await check(f'{{"event":"{ev}","message":"x"}}', "not_in_room")
            await check(f'{{"event":"{ev}","message":"x","roomid":"r"}}', "not_in_room")
        await check(b"\x00\x01binary", "binary_not_supported")
        # A name of exactly max_name_length bytes (multi-byte) is fine.
        await bad.enter("\u20ac" * 21 + "b", "r")
        ev = await bad.expect({"event": "enter"})
        assert ev["name"] == "\u20ac" * 21 + "b" and ev["num"] == 3
        await obs.expect({"event": "enter", "name": ev["name"], "num": 3})
        me = ev["name"]

        # In one room: every error carries num and the connection still delivers.
        k = 0
        cases = BAD_INPUTS + [
            ('{"event":"message","message":"x","roomid":"elsewhere"}', "not_in_room"),
            ('{"event":"who","roomid":"elsewhere"}', "not_in_room"),
            ('{"event":"out","roomid":"elsewhere"}', "not_in_room"),
            ('{"event":"enter","message":"again","roomid":"r"}', "already_in_room"),
            (b"\xff\x00", "binary_not_supported"),
        ]
        for payload, code in cases:
            await check(payload, code, num=3)
            text = f"ok#{k}"
            k += 1
            # A client "name" field is ignored: the entered name is used.
            await bad.send({"event": "message", "message": text, "name": "impostor"})
            for c in (bad, obs):
                ev = await c.expect({"event": "message", "message": text})
                assert ev["name"] == me and ev["num"] == 3 and ev["roomid"] == "r"

        # Several rooms: roomid becomes required; the limit is 3.
        await bad.enter(me, "r2")
        await bad.expect({"event": "enter", "roomid": "r2", "num": 1})
        await bad.enter(me, "r3")
        await bad.expect({"event": "enter", "roomid": "r3", "num": 1})
        await check('{"event":"message","message":"which?"}', "roomid_required")
        await check('{"event":"who"}', "roomid_required")
        await check('{"event":"out"}', "roomid_required")
        await check('{"event":"enter","message":"n","roomid":"r4"}', "too_many_rooms")
        await check('{"event":"enter","message":"n","roomid":"r2"}', "already_in_room")
        await check("nope", "bad_json")
        await bad.say("to r", "r")
        for c in (bad, obs):
            await c.expect({"event": "message", "message": "to r", "roomid": "r", "num": 3})
        w = await who(bad, "r3")
        assert w["members"] == [me] and w["num"] == 1
        # Leaving one room makes room for another.
        await bad.send({"event": "out", "roomid": "r3"})
        await bad.expect({"event": "out", "roomid": "r3", "num": 0})
        await bad.enter(me, "r4")
        await bad.expect({"event": "enter", "roomid": "r4", "num": 1})

        stop.set()
        await task
        await chatter.say("c#end")
        await obs.expect({"event": "message", "message": "c#end"}, 10)
        got = [e["message"] for e in obs.messages() if e["name"] == "chatter"]
        assert got == sent + ["c#end"], "a message from another client was lost or duplicated"
        assert bad.close_code is None and not bad.closed
        for c in (bad, obs, chatter):
            await c.close()
    run(main(), 50)


def test_json_heartbeat_closes_silent_client(roomd):
    """A member that never answers the JSON heartbeat is closed with 4000 after
    heartbeat_misses intervals; one that answers stays and sees the other leave."""
    r = roomd({"heartbeat_interval": "1s", "heartbeat_misses": "2"}, workers=2)

    async def main():
        silent = await Chat.connect(r.port, auto_pong=False)
        polite = await Chat.connect(r.port, auto_pong=True)
        idle = await Chat.connect(r.port, auto_pong=False)  # in no room: no heartbeat
        await enter_all([polite, silent], ["polite", "silent"], "hb")
        hb = await silent.expect({"event": "heartbeat"}, 3)
        assert hb["message"] == "ping" and hb["num"] == 2
        t0 = asyncio.get_running_loop().time()
        code = await silent.wait_closed(8)
        assert code == 4000, f"closed with {code}"
        assert asyncio.get_running_loop().time() - t0 < 4
        ev = await polite.expect({"event": "out", "name": "silent"}, 3)
        assert ev["num"] == 1
        # The polite one keeps getting pings (with its room's num) and stays.
        n = len(polite.of("heartbeat"))
        await polite.until(lambda: len(polite.of("heartbeat")) >= n + 2, 4, "two more heartbeats")
        assert polite.of("heartbeat")[-1]["num"] == 1
        assert not polite.closed and not idle.closed
        assert idle.of("heartbeat") == []
        await polite.say("still here")
        await polite.expect({"event": "message", "message": "still here", "num": 1})
        await polite.close()
        await idle.close()
    run(main(), 30)


def test_every_event_to_a_one_room_member_carries_num(roomd):
    """roomd-protocol(7): every event to a client in exactly one room carries
    that room's num; the tutorial client copies num from whatever it
    receives. The pong to a client's JSON ping and the rate_limited error
    do too. A client in several rooms gets no num on events that belong to
    no room (its heartbeat and pong), rather than some room's count."""
    r = roomd({"heartbeat_interval": "500ms", "rate_limit": "4", "rate_burst": "4"}, workers=1)

    async def main():
        a = await Chat.connect(r.port)
        b = await Chat.connect(r.port)
        await enter_all([a, b], ["a", "b"], "one")
        await a.send({"event": "heartbeat", "message": "ping"})
        ev = await a.expect({"event": "heartbeat", "message": "pong"}, 3)
        assert ev["num"] == 2, ev
        for k in range(8):
            await a.say(f"burst {k}")
        ev = await a.expect_error("rate_limited", 3)
        assert ev["num"] == 2, ev
        # b enters a second room: no single num for it any more.
        await b.enter("b", "two")
        await b.expect({"event": "enter", "roomid": "two"})
        await asyncio.sleep(1.1)  # past the rate limit's refill, and a heartbeat or two
        n = len(b.of("heartbeat"))
        await b.until(lambda: len(b.of("heartbeat")) >= n + 1, 3, "a heartbeat")
        hb = b.of("heartbeat")[-1]
        assert hb["message"] == "ping" and "num" not in hb, hb
        await b.send({"event": "heartbeat", "message": "ping"})
        ev = await b.expect({"event": "heartbeat", "message": "pong"}, 3)
        assert "num" not in ev, ev
        hb = a.of("heartbeat")[-1]
        assert hb["num"] == 2, hb
        await a.close()
        await b.close()
    run(main(), 20)


def test_broadcast_route_relays_verbatim(roomd):
    """/broadcast relays text and binary as they came, to everyone in the same
    ?room= (the sender too), and nothing to other rooms."""
    r = roomd({}, workers=2)

    async def main():
        by = await spread_clients(r, 1, path="/broadcast?room=b1")
        a, b = [cs[0] for cs in by.values()]
        other = await Chat.connect(r.port, "/broadcast?room=b2")
        lobby = await Chat.connect(r.port, "/broadcast")
        # A member is in once its own message comes back.
        for c in (a, b, other, lobby):
            await c.send("probe")
            await c.expect({"text": "probe"}, 5)
        await a.send("hello from a")
        await b.send(b"\x00\x01\x02\xff")
        await b.send('{"not":"parsed"}')
        relayed = [{"text": "hello from a"}, {"binary": b"\x00\x01\x02\xff"}, {"not": "parsed"}]
        for c in (a, b):
            await c.until(lambda c=c: all(e in c.events for e in relayed), 5, "relayed messages")
        # b's two messages in its order; the same order for both.
        seen = [[e for e in c.events if e in relayed] for c in (a, b)]
        assert seen[0] == seen[1] and len(seen[0]) == 3
        assert seen[0].index(relayed[1]) < seen[0].index(relayed[2])
        await lobby.send("lobby only")
        await lobby.expect({"text": "lobby only"})
        await other.send("b2 only")
        await other.expect({"text": "b2 only"})
        assert [e for e in other.events if e != {"text": "probe"}] == [{"text": "b2 only"}]
        assert not any(e in ({"text": "b2 only"}, {"text": "lobby only"}) for e in a.events + b.events)
        for c in (a, b, other, lobby):
            await c.close()
    run(main(), 30)


def test_private_redis_server_lifecycle(roomd, tmp_path):
    """Without `redis`, the master runs redis-server as its child (roomd-redis)
    in a directory under run_dir; both are gone after a graceful stop."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    r = roomd({"run_dir": str(run_dir)}, workers=2)
    kids = [p for p in r.children() if open(f"/proc/{p}/comm").read().strip() == "roomd-redis"]
    assert len(kids) == 1, f"children: {r.children()}"
    dirs = glob.glob(str(run_dir / "roomd.*"))
    assert len(dirs) == 1 and os.path.exists(os.path.join(dirs[0], "redis.sock"))
    # The startup line says where the rooms are, all of it (socket or host:port, and db).
    assert f"rooms in redis unix:{dirs[0]}/redis.sock db 0 (private)" in r.read_log()

    async def main():
        c1, c2 = await Chat.connect(r.port), await Chat.connect(r.port)
        await enter_all([c1, c2], ["p1", "p2"], None)
        await c1.say("via the private redis")
        ev = await c2.expect({"event": "message"})
        assert ev["roomid"] == "lobby" and ev["message"] == "via the private redis"
        await c1.close()
        await c2.close()
    run(main(), 20)
    r.stop()
    assert r.proc.returncode == 0
    wait_for(lambda: not os.path.exists(f"/proc/{kids[0]}") or
             open(f"/proc/{kids[0]}/stat").read().rsplit(")", 1)[1].split()[0] == "Z",
             5, what="the private redis-server to exit")
    assert glob.glob(str(run_dir / "roomd.*")) == []


def test_text_and_names_round_trip(roomd):
    """Names, room ids and texts with quotes, backslashes, control characters
    (in text), non-ASCII and emoji come back exactly as sent."""
    r = roomd({}, workers=2)
    texts = ['say "hi"', "back\\slash", "line1\nline2\ttab", "nul\u0000byte\u001f",
             "\u4f60\u597d\uff0c\u4e16\u754c", "emoji \U0001f600\U0001f389", "</script><b>x</b>",
             "", " " * 3, "\u2028\u2029", "x" * 70000]
    name, room = 'Z\u00fc"\\ \U0001f600', "r\u00e4um \"1\"/#?&="

    async def main():
        by = await spread_clients(r, 1)
        a, b = [cs[0] for cs in by.values()]
        await enter_all([a, b], [name, "plain"], room)
        for t in texts:
            await a.say(t)
        for c in (a, b):
            for t in texts:
                ev = await c.expect({"event": "message", "message": t})
                assert ev["name"] == name and ev["roomid"] == room
        w = await who(b)
        assert sorted(w["members"]) == sorted([name, "plain"])
        for c in (a, b):
            await c.close()
    run(main(), 30)


def test_churn_counts_step_by_one(roomd):
    """Members entering, talking and leaving at once on both workers: an
    observer sees each one's enter, message and out exactly once and in that
    order (or nothing of a hasty one that left before it was in), and num
    moves by exactly one per enter and out (the count is atomic with the event)."""
    r = roomd({}, workers=2)

    async def main():
        obs = await Chat.connect(r.port)
        await enter_all([obs], ["obs"], "churn")
        churners = [await Chat.connect(r.port) for _ in range(24)]

        async def polite(i, c):
            await c.enter(f"p{i}", "churn")
            await c.expect({"event": "enter", "name": f"p{i}"})
            await c.say(f"from p{i}")
            await c.expect({"event": "message", "message": f"from p{i}"})
            await c.send({"event": "out"})
            ev = await c.expect({"event": "out", "name": f"p{i}"})
            assert ev["roomid"] == "churn" and ev["num"] >= 1

        async def hasty(i, c):
            # enter, message and out without waiting for anything.
            await c.enter(f"h{i}", "churn")
            await c.say(f"from h{i}")
            await c.send({"event": "out"})
            ev = await c.expect({"event": "out", "name": f"h{i}"})
            assert ev["roomid"] == "churn"
        await asyncio.gather(*(polite(i, c) if i % 2 == 0 else hasty(i, c)
                               for i, c in enumerate(churners)))
        names = [f"p{i}" if i % 2 == 0 else f"h{i}" for i in range(len(churners))]
        for n in names[::2]:
            await obs.find({"event": "out", "name": n}, 5)
        # Redis holds nobody else; a last message from obs comes after every out.
        deadline = now() + 5
        while (await who(obs))["members"] != ["obs"]:
            assert now() < deadline, "churners still registered"
            await asyncio.sleep(0.05)
        await obs.say("done")
        await obs.expect({"event": "message", "message": "done", "num": 1})
        seq = [e for e in obs.events if e.get("event") in ("enter", "out", "message")]
        num = 1
        for e in seq[1:]:
            if e["event"] == "enter":
                num += 1
            elif e["event"] == "out":
                num -= 1
            assert e["num"] == num or e["event"] == "message", f"num went astray at {e}"
        for n in names:
            got = [e["event"] for e in seq if e.get("name") == n]
            # A hasty member that left before its worker subscribed was never in the room.
            assert got == ["enter", "message", "out"] or (n[0] == "h" and got == []), (n, got)
        for c in churners + [obs]:
            await c.close()
    run(main(), 30)


def test_enter_and_out_at_once_counts(roomd):
    """An enter and an out sent back to back: the leaver's own out carries the
    room's count without it, and whoever saw the enter sees the out."""
    r = roomd({}, workers=1)

    async def main():
        obs = await Chat.connect(r.port)
        await enter_all([obs], ["obs"], "quick")
        c = await raw_connect(r.port)
        # Both frames in one write: the server reads them in one go, before
        # the enter comes back from Redis.
        c.transport.write(mask_frame(1, b'{"event":"enter","message":"q","roomid":"quick"}') +
                          mask_frame(1, b'{"event":"out"}'))
        await obs.expect({"event": "enter", "name": "q", "num": 2})
        await obs.expect({"event": "out", "name": "q", "num": 1})
        await obs.send({"event": "who"})
        await obs.expect({"event": "who", "members": ["obs"], "num": 1})
        assert c.other == [{"event": "out", "name": "q", "roomid": "quick", "num": 1}]
        c.transport.close()
        await obs.close()
    run(main(), 20)


def test_leaving_before_subscribed_sends_nothing(roomd):
    """enter, message and out in one write, on a worker where the room is not
    subscribed yet: the others either see nothing of that member or its enter,
    message and out in that order -- never a message from a non-member."""
    r = roomd({}, workers=2)

    async def main():
        by = await spread_clients(r, 1)
        obs_pid, other_pid = list(by)
        obs = by[obs_pid][0]
        await enter_all([obs], ["obs"], "fresh")
        raws = await asyncio.gather(*(raw_connect(r.port) for _ in range(16)))
        where = workers_of(r, [x.transport.get_extra_info("sockname")[1] for x in raws])
        c = next((x for x in raws if where.get(x.transport.get_extra_info("sockname")[1]) == other_pid),
                 None)
        assert c is not None, "no connection reached the second worker"
        c.transport.write(mask_frame(1, b'{"event":"enter","message":"ghost","roomid":"fresh"}') +
                          mask_frame(1, b'{"event":"message","message":"boo"}') +
                          mask_frame(1, b'{"event":"out"}'))
        # A marker from the same worker, published after anything the ghost left behind.
        more = await spread_clients(r, 1)
        marker = more[other_pid][0]
        await more[obs_pid][0].close()
        await marker.enter("marker", "fresh")
        await marker.expect({"event": "enter", "name": "marker"})
        await marker.say("after")
        await obs.expect({"event": "message", "message": "after"})
        ghost = [e["event"] for e in obs.events if e.get("name") == "ghost"]
        assert ghost in ([], ["enter", "message", "out"]), ghost
        w = await who(obs)
        assert sorted(w["members"]) == ["marker", "obs"] and w["num"] == 2
        for x in raws:
            x.transport.close()
        for x in [marker] + by[obs_pid] + by[other_pid]:
            await x.close()
    run(main(), 20)


def test_heartbeat_count_restarts_on_reentry(roomd):
    """Pings are for members: a client that left its rooms with a ping
    unanswered and enters again later is pinged afresh, not closed at once."""
    r = roomd({"heartbeat_interval": "1s", "heartbeat_misses": "1"}, workers=1)

    async def main():
        c = await Chat.connect(r.port, auto_pong=False)
        await enter_all([c], ["back"], "hb2")
        await c.expect({"event": "heartbeat"}, 3)
        await c.send({"event": "out"})
        await c.expect({"event": "out"})
        await asyncio.sleep(1.3)  # longer than an interval, out of every room
        c.auto_pong = True
        await c.enter("back", "hb2")
        await c.expect({"event": "enter", "name": "back"})
        await c.expect({"event": "heartbeat"}, 3)
        await asyncio.sleep(1.2)
        assert not c.closed, f"closed with {c.close_code}"
        await c.close()
    run(main(), 20)
