"""Message history and gap-free recovery (roomd-protocol(7) "History"):
offsets on every message, enter with "since" or "history", the history
event, and the faults recovery is for: a reconnect to another instance, a
worker SIGKILLed, Redis restarted empty, a position older than the stream,
and a subscriber link cut under traffic (gap repair). Real redis-server,
real clients, two roomd instances sharing one Redis."""
import asyncio
import os
import signal

import pytest

from readouts import scrape
from roomclient import Chat, run, spread_clients


def offsets(c, room):
    return [e["offset"] for e in c.events if e.get("event") == "message" and e.get("roomid") == room]


def texts(c, room):
    return [e["message"] for e in c.events if e.get("event") == "message" and e.get("roomid") == room]


async def enter(c, name, room, **extra):
    await c.send(dict({"event": "enter", "message": name, "roomid": room}, **extra))


async def recovered(c, room, timeout=5.0):
    return await c.expect({"event": "recovered", "roomid": room}, timeout)


def test_offsets_and_history_on_enter(roomd):
    """Every message event carries its offset (1, 2, 3... per room). A
    newcomer asking for history 3 gets its own enter, then the last three
    messages in offset order, then recovered (true, the room's position,
    count 3), and only then live messages. A tutorial client that asks for
    nothing sees no new event."""
    r = roomd({"rate_limit": "0"}, workers=2)

    async def main():
        ann = await Chat.connect(r.port)
        await enter(ann, "ann", "tea")
        await ann.expect({"event": "enter", "name": "ann"})
        for i in range(5):
            await ann.say(f"m{i}", "tea")
        await ann.until(lambda: len(offsets(ann, "tea")) == 5, 5, "five messages")
        assert offsets(ann, "tea") == [1, 2, 3, 4, 5]
        bob = await Chat.connect(r.port)
        await enter(bob, "bob", "tea", history=3)
        await bob.expect({"event": "enter", "name": "bob", "num": 2})
        rec = await recovered(bob, "tea")
        assert rec["recovered"] is True and rec["offset"] == 5 and rec["count"] == 3, rec
        assert isinstance(rec["epoch"], str) and 0 < len(rec["epoch"]) <= 24
        await ann.say("live", "tea")
        await bob.expect({"event": "message", "message": "live", "offset": 6})
        kinds = [(e["event"], e.get("message")) for e in bob.events]
        assert kinds == [("enter", "bob"), ("message", "m2"), ("message", "m3"), ("message", "m4"),
                         ("recovered", None), ("message", "live")], kinds
        assert not ann.of("recovered")
        await ann.close()
        await bob.close()
    run(main(), 20)


def test_history_event_pages_backwards(roomd):
    """{"event":"history","limit":K,"before":N} pages back through the
    room's stream: messages in offset order, with the room's position."""
    r = roomd({"rate_limit": "0"}, workers=1)

    async def main():
        a = await Chat.connect(r.port)
        await enter(a, "a", "pages")
        for i in range(1, 11):
            await a.say(f"p{i}", "pages")
        await a.until(lambda: len(offsets(a, "pages")) == 10, 5, "ten messages")
        pages = []
        before = None
        while True:
            req = {"event": "history", "roomid": "pages", "limit": 4}
            if before is not None:
                req["before"] = before
            await a.send(req)
            h = await a.expect({"event": "history"})
            assert h["roomid"] == "pages" and h["offset"] == 10 and h["num"] == 1, h
            got = [m["offset"] for m in h["messages"]]
            pages.append(got)
            assert [m["message"] for m in h["messages"]] == [f"p{o}" for o in got]
            if not got:
                break
            before = got[0]
        assert pages == [[7, 8, 9, 10], [3, 4, 5, 6], [1, 2], []], pages
        await a.close()
    run(main(), 20)


def test_reconnect_to_the_other_instance_loses_nothing(roomd, redis):
    """A reader hops between two instances 100 times, re-entering with the
    last position it saw, while a writer on the first instance keeps
    sending: it gets every message exactly once, in order, each time
    recovered true."""
    a = roomd({"redis": redis.url, "rate_limit": "0"}, workers=2)
    b = roomd({"redis": redis.url, "rate_limit": "0"}, workers=2)

    async def main():
        w = await Chat.connect(a.port)
        await enter(w, "writer", "hop")
        await w.expect({"event": "enter", "name": "writer"})
        stop = asyncio.Event()
        sent = []

        async def write():
            k = 0
            while not stop.is_set():
                await w.say(f"w{k}", "hop")
                sent.append(f"w{k}")
                k += 1
                await asyncio.sleep(0.004)
        task = asyncio.create_task(write())
        seen, pos = [], None
        for rnd in range(100):
            port = (a, b)[rnd % 2].port
            c = await Chat.connect(port)
            if pos is None:
                await enter(c, "reader", "hop")
            else:
                await enter(c, "reader", "hop", since=pos)
                rec = await recovered(c, "hop")
                assert rec["recovered"] is True, (rnd, rec)
            # At least one live message in each round, then leave abruptly.
            n0 = len(offsets(c, "hop"))
            await c.until(lambda: len(offsets(c, "hop")) > n0, 5, "a live message")
            msgs = [e for e in c.events if e.get("event") == "message"]
            seen += msgs
            pos = {"offset": msgs[-1]["offset"], "epoch": rec["epoch"] if pos is not None else None}
            if pos["epoch"] is None:
                h = None
                await c.send({"event": "history", "roomid": "hop", "limit": 1})
                h = await c.expect({"event": "history"})
                pos["epoch"] = h["epoch"]
            await c.ws.close()
        stop.set()
        await task
        offs = [m["offset"] for m in seen]
        assert offs == list(range(offs[0], offs[0] + len(offs))), "a gap or a duplicate across reconnects"
        assert [m["message"] for m in seen] == sent[offs[0] - 1:offs[0] - 1 + len(offs)]
        await w.close()
    run(main(), 120)


def test_worker_killed_clients_recover(roomd, redis):
    """A worker SIGKILLed under traffic: its clients see the connection drop,
    reconnect with "since", and end up with every message once, in order."""
    a = roomd({"redis": redis.url, "rate_limit": "0"}, workers=2)
    b = roomd({"redis": redis.url, "rate_limit": "0"}, workers=1)

    async def main():
        by = await spread_clients(a, 2)
        clients = [c for cs in by.values() for c in cs]
        for i, c in enumerate(clients):
            await enter(c, f"c{i}", "kill")
            await c.expect({"event": "enter", "name": f"c{i}"})
        w = await Chat.connect(b.port)
        await enter(w, "writer", "kill")
        await w.expect({"event": "enter", "name": "writer"})
        await w.send({"event": "history", "roomid": "kill", "limit": 1})
        epoch = (await w.expect({"event": "history"}))["epoch"]
        stop = asyncio.Event()

        async def write():
            k = 0
            while not stop.is_set():
                await w.say(f"k{k}", "kill")
                k += 1
                await asyncio.sleep(0.005)
            return k
        task = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        victim = sorted(by)[0]
        os.kill(victim, signal.SIGKILL)
        lost = by[victim]
        for c in lost:
            await c.wait_closed(5)
        await asyncio.sleep(0.3)
        again = []
        for i, c in enumerate(lost):
            got = offsets(c, "kill")
            n = await Chat.connect(a.port)
            await enter(n, f"again{i}", "kill", since={"offset": got[-1] if got else 0, "epoch": epoch})
            rec = await recovered(n, "kill")
            assert rec["recovered"] is True, rec
            again.append((c, n))
        await asyncio.sleep(0.3)
        stop.set()
        total = await task
        for c in clients:
            if c not in lost:
                await c.until(lambda c=c: len(offsets(c, "kill")) == total, 10, "every message")
                assert offsets(c, "kill") == list(range(1, total + 1))
        for old, n in again:
            await n.until(lambda: (offsets(n, "kill") or [0])[-1] == total, 10, "caught up")
            both = offsets(old, "kill") + offsets(n, "kill")
            assert both == list(range(1, total + 1)), "a gap or a duplicate after the worker died"
        for c in clients + [w] + [n for _, n in again]:
            if not c.closed:
                await c.close()
    run(main(), 60)


def test_redis_restarted_empty_starts_a_new_epoch(roomd, redis):
    """Redis restarted without persistence: the room starts a new epoch.
    A connected member hears recovered false once; a client that comes back
    with a position of the old epoch gets recovered false and nothing of the
    old epoch (with history as well: the new epoch's last messages)."""
    a = roomd({"redis": redis.url, "rate_limit": "0"}, workers=1)

    async def main():
        stay = await Chat.connect(a.port)
        await enter(stay, "stay", "ep")
        await stay.expect({"event": "enter", "name": "stay"})
        for i in range(3):
            await stay.say(f"old{i}", "ep")
        await stay.until(lambda: len(offsets(stay, "ep")) == 3, 5, "three messages")
        await stay.send({"event": "history", "roomid": "ep", "limit": 1})
        old_epoch = (await stay.expect({"event": "history"}))["epoch"]
        a.log_mark()
        redis.stop()
        await asyncio.get_running_loop().run_in_executor(None, lambda: a.wait_log("redis link lost", 5))
        redis.start()
        await asyncio.get_running_loop().run_in_executor(None, lambda: a.wait_log("redis link up", 10))
        lost = await stay.expect({"event": "recovered", "recovered": False}, 10)
        assert lost["epoch"] == old_epoch
        for k in range(20):       # until the room is back
            await stay.say(f"new{k}", "ep")
            try:
                await stay.expect({"event": "message", "message": f"new{k}"}, 0.5)
                break
            except AssertionError:
                continue
        await stay.say("new-last", "ep")
        ev = await stay.expect({"event": "message", "message": "new-last"})
        new_epoch_offset = ev["offset"]
        back = await Chat.connect(a.port)
        await enter(back, "back", "ep", since={"offset": 3, "epoch": old_epoch})
        rec = await recovered(back, "ep")
        assert rec["recovered"] is False and rec["count"] == 0 and rec["epoch"] != old_epoch, rec
        assert not offsets(back, "ep"), "replayed across epochs"
        both = await Chat.connect(a.port)
        await enter(both, "both", "ep", since={"offset": 3, "epoch": old_epoch}, history=2)
        rec = await recovered(both, "ep")
        assert rec["recovered"] is False and rec["count"] == 2, rec
        assert offsets(both, "ep") == [new_epoch_offset - 1, new_epoch_offset]
        assert all(t.startswith("new") for t in texts(both, "ep"))
        for c in (stay, back, both):
            await c.close()
    run(main(), 40)


def test_position_older_than_the_stream(roomd):
    """history_size 5: a client 15 messages behind gets recovered false and
    no partial replay; with history 5 as well, the last five and still
    false; one that is up to date gets recovered true and nothing."""
    r = roomd({"rate_limit": "0", "history_size": "5"}, workers=1)

    async def main():
        a = await Chat.connect(r.port)
        await enter(a, "a", "short")
        for i in range(1, 21):
            await a.say(f"s{i}", "short")
        await a.until(lambda: len(offsets(a, "short")) == 20, 5, "twenty messages")
        await a.send({"event": "history", "roomid": "short", "limit": 5})
        h = await a.expect({"event": "history"})
        assert [m["offset"] for m in h["messages"]] == [16, 17, 18, 19, 20]
        ep = h["epoch"]
        far = await Chat.connect(r.port)
        await enter(far, "far", "short", since={"offset": 5, "epoch": ep})
        rec = await recovered(far, "short")
        assert rec["recovered"] is False and rec["count"] == 0 and rec["offset"] == 20, rec
        assert not offsets(far, "short")
        far2 = await Chat.connect(r.port)
        await enter(far2, "far2", "short", since={"offset": 5, "epoch": ep}, history=5)
        rec = await recovered(far2, "short")
        assert rec["recovered"] is False and rec["count"] == 5, rec
        assert offsets(far2, "short") == [16, 17, 18, 19, 20]
        near = await Chat.connect(r.port)
        await enter(near, "near", "short", since={"offset": 20, "epoch": ep})
        rec = await recovered(near, "short")
        assert rec["recovered"] is True and rec["count"] == 0, rec
        edge = await Chat.connect(r.port)
        await enter(edge, "edge", "short", since={"offset": 15, "epoch": ep})
        rec = await recovered(edge, "short")
        assert rec["recovered"] is True and rec["count"] == 5, rec
        assert offsets(edge, "short") == [16, 17, 18, 19, 20]
        for c in (a, far, far2, near, edge):
            await c.close()
    run(main(), 30)


def test_subscriber_link_cut_is_repaired(roomd, redis):
    """Redis drops one instance's subscriber links (CLIENT KILL, found by the
    name roomd gives each link) three times while another instance keeps
    sending: each worker reads what it missed from the room's history, and
    every member gets every message in order; the repair counter moved and
    no gap was left unrecoverable."""
    a = roomd({"redis": redis.url, "rate_limit": "0"}, workers=2)
    b = roomd({"redis": redis.url, "rate_limit": "0"}, workers=1)

    async def main():
        by = await spread_clients(a, 2)
        members = [c for cs in by.values() for c in cs]
        for i, c in enumerate(members):
            await enter(c, f"m{i}", "cut")
            await c.expect({"event": "enter", "name": f"m{i}"})
        w = await Chat.connect(b.port)
        await enter(w, "writer", "cut")
        await w.expect({"event": "enter", "name": "writer"})
        stop = asyncio.Event()

        async def write():
            k = 0
            while not stop.is_set():
                await w.say(f"x{k}", "cut")
                k += 1
                await asyncio.sleep(0.003)
            return k
        task = asyncio.create_task(write())
        # Only instance a's subscriber links, so the writer on b keeps publishing meanwhile.
        subs = [f".{pid}:sub" for pid in a.worker_pids()]
        for _ in range(3):
            await asyncio.sleep(0.4)
            for line in redis.command("CLIENT", "LIST").splitlines():
                f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                if any(f.get("name", "").endswith(s) for s in subs):
                    redis.command("CLIENT", "KILL", "ID", f["id"])
        await asyncio.sleep(1.5)
        stop.set()
        sent = await task
        # The writer's instance lost its links too: what it could not publish was answered.
        await asyncio.sleep(0.5)
        refused = len([e for e in w.events if e.get("event") == "error" and e.get("code") == "unavailable"])
        total = sent - refused
        await w.until(lambda: len(offsets(w, "cut")) >= total, 15, "the writer's own messages")
        assert offsets(w, "cut") == list(range(1, total + 1))
        for c in members:
            await c.until(lambda c=c: len(offsets(c, "cut")) >= total, 15, "every message")
            assert offsets(c, "cut") == list(range(1, total + 1)), "a gap or a duplicate"
        m = scrape(a.port)
        assert m.value("roomd_gaps_repaired_total") > 0
        assert m.value("roomd_gaps_unrecoverable_total") == 0
        for c in members + [w]:
            await c.close()
    run(main(), 60)


@pytest.mark.parametrize("extra,code", [
    ({"since": "yesterday"}, "bad_field"),
    ({"since": [1, "e"]}, "bad_field"),
    ({"since": {"offset": -1, "epoch": "e"}}, "bad_field"),
    ({"since": {"offset": 2 ** 60, "epoch": "e"}}, "bad_field"),
    ({"since": {"offset": 1.5, "epoch": "e"}}, "bad_field"),
    ({"since": {"offset": 1}}, "bad_field"),
    ({"since": {"offset": 1, "epoch": 7}}, "bad_field"),
    ({"since": {"offset": 1, "epoch": "x" * 10240}}, "bad_field"),
    ({"history": 101}, "bad_field"),
    ({"history": -1}, "bad_field"),
    ({"history": "5"}, "bad_field"),
])
def test_bad_recovery_input(roomd, extra, code):
    """Malformed since/history on enter get an error event; the connection
    stays usable (a good enter right after works)."""
    r = roomd({}, workers=1)

    async def main():
        c = await Chat.connect(r.port)
        await enter(c, "x", "bad", **extra)
        await c.expect_error(code)
        await enter(c, "x", "bad")
        await c.expect({"event": "enter", "name": "x"})
        await c.close()
    run(main(), 10)


def test_bad_history_requests(roomd):
    """The history event: for a room not entered, a limit over history_size,
    a negative before: error events, and the connection stays usable."""
    r = roomd({}, workers=1)

    async def main():
        c = await Chat.connect(r.port)
        await c.send({"event": "history", "roomid": "nowhere", "limit": 5})
        await c.expect_error("not_in_room")
        await enter(c, "x", "h")
        await c.expect({"event": "enter", "name": "x"})
        for bad in ({"limit": 101}, {"limit": 0}, {"limit": "ten"}, {"before": -3}, {"before": "x"}):
            await c.send(dict({"event": "history", "roomid": "h"}, **bad))
            await c.expect_error("bad_field")
        await c.send({"event": "history", "roomid": "h"})
        h = await c.expect({"event": "history"})
        assert h["messages"] == [] and h["offset"] == 0
        await c.close()
    run(main(), 10)


def test_history_size_zero_keeps_none(roomd, redis):
    """history_size 0: messages still carry offsets, Redis keeps no stream,
    and asking for history (on enter, or a history event) is answered with
    an error that says the server keeps none; the connection stays usable."""
    r = roomd({"redis": redis.url, "rate_limit": "0", "history_size": "0"}, workers=1)

    async def main():
        ann = await Chat.connect(r.port)
        await enter(ann, "ann", "none")
        await ann.expect({"event": "enter", "name": "ann"})
        for i in range(3):
            await ann.say(f"m{i}", "none")
        await ann.until(lambda: len(offsets(ann, "none")) == 3, 5, "three messages")
        assert offsets(ann, "none") == [1, 2, 3]
        assert redis.command("EXISTS", "roomd:{none}:h") == 0, "a stream was kept"
        bob = await Chat.connect(r.port)
        await enter(bob, "bob", "none", history=3)
        await bob.expect_error("bad_field")
        await enter(bob, "bob", "none")
        await bob.expect({"event": "enter", "name": "bob", "num": 2})
        await bob.send({"event": "history", "roomid": "none"})
        err = await bob.expect_error("bad_field")
        assert "no history" in err["message"], err
        assert not bob.of("recovered") and not offsets(bob, "none")
        await ann.say("live", "none")
        await bob.expect({"event": "message", "message": "live", "offset": 4})
        await ann.close()
        await bob.close()
    run(main(), 20)


def test_history_ttl_ends_an_idle_rooms_history(roomd, redis):
    """history_ttl 1s: a room's history and position are gone from Redis a
    second after its last message, and its next message starts a new epoch
    at offset 1."""
    r = roomd({"redis": redis.url, "rate_limit": "0", "history_ttl": "1s"}, workers=1)

    async def main():
        ann = await Chat.connect(r.port)
        await enter(ann, "ann", "brief")
        await ann.expect({"event": "enter", "name": "ann"})
        await ann.say("first", "brief")
        await ann.expect({"event": "message", "message": "first", "offset": 1})
        await ann.say("second", "brief")
        await ann.expect({"event": "message", "message": "second", "offset": 2})
        await ann.send({"event": "history", "roomid": "brief", "limit": 1})
        epoch = (await ann.expect({"event": "history"}))["epoch"]
        assert 0 < redis.command("PTTL", "roomd:{brief}:h") <= 1000
        await asyncio.sleep(1.5)
        assert redis.command("EXISTS", "roomd:{brief}:h", "roomd:{brief}:p") == 0
        await ann.say("third", "brief")
        ev = await ann.expect({"event": "message", "message": "third"})
        assert ev["offset"] == 1, ev
        await ann.send({"event": "history", "roomid": "brief", "limit": 5})
        h = await ann.expect({"event": "history"})
        assert h["epoch"] != epoch and [m["message"] for m in h["messages"]] == ["third"], h
        await ann.close()
    run(main(), 20)
