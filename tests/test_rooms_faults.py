"""Rooms when things break: a worker SIGKILLed (the master removes its
members at once), a whole instance SIGKILLed (survivors' janitors remove its
members within presence_ttl), Redis stopped and restarted under traffic
(clients stay, errors say "unavailable", state comes back), and a graceful
SIGTERM (others hear "out" and its clients get 1001)."""
import asyncio
import os
import signal

from roomclient import Chat, enter_all, run, spread_clients, who


def now():
    return asyncio.get_running_loop().time()


async def expect_outs(clients, names, num_after, timeout):
    """Every client hears an out for each of names; the last out carries num_after."""
    for c in clients:
        last = None
        for name in names:
            ev = await c.find({"event": "out", "name": name}, timeout)
            if last is None or ev["num"] < last:
                last = ev["num"]
        assert last == num_after, f"num after the outs is {last}, want {num_after}"


def test_sigkill_worker_members_leave(roomd):
    """SIGKILL one worker: within 2 s the members elsewhere get an out for
    each of its members, num drops, and who no longer lists them."""
    r = roomd({}, workers=2)

    async def main():
        by = await spread_clients(r, 3)
        victim, survivor = list(by)
        clients = by[victim] + by[survivor]
        names = [f"k{i}" for i in range(len(clients))]
        await enter_all(clients, names, "k")
        dead_names, live = names[:3], by[survivor]
        r.log_mark()
        t0 = now()
        os.kill(victim, signal.SIGKILL)
        await expect_outs(live, dead_names, len(live), 2.0)
        assert now() - t0 < 2.0
        for c in by[victim]:
            await c.wait_closed(2)
        w = await who(live[0])
        assert sorted(w["members"]) == sorted(names[3:]) and w["num"] == len(live)
        r.wait_log(r"removed 3 member\(s\) of worker pid %d" % victim, 5)
        # The respawned worker serves the room again with the right count.
        r.wait_ready()
        late = await Chat.connect(r.port)
        await late.enter("late", "k")
        ev = await late.expect({"event": "enter", "name": "late"})
        assert ev["num"] == len(live) + 1
        for c in live + [late]:
            await c.close()
    run(main(), 30)


def test_sigkill_whole_instance(roomd, redis):
    """A whole instance SIGKILLed (no cleanup from its master): the surviving
    instance's janitor removes its members within presence_ttl and the
    survivors hear an out for each."""
    settings = {"redis": redis.url, "presence_ttl": "2s"}
    a = roomd(settings, workers=2)
    b = roomd(settings, workers=2)

    async def main():
        on_a = [c for cs in (await spread_clients(a, 2)).values() for c in cs]
        on_b = [c for cs in (await spread_clients(b, 2)).values() for c in cs]
        names_a = [f"a{i}" for i in range(len(on_a))]
        names_b = [f"b{i}" for i in range(len(on_b))]
        await enter_all(on_a + on_b, names_a + names_b, "z")
        # Freeze first so neither the master nor a worker can clean up, then kill each.
        pids = a.worker_pids() + [a.pid]
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        for p in pids:
            os.kill(p, signal.SIGKILL)
        t0 = now()
        await expect_outs(on_b, names_a, len(on_b), 2.0 + 2.0)
        assert now() - t0 < 4.0
        w = await who(on_b[0])
        assert sorted(w["members"]) == sorted(names_b) and w["num"] == len(on_b)
        for c in on_a:
            await c.wait_closed(2)
        await on_b[0].say("still on")
        for c in on_b:
            await c.expect({"event": "message", "message": "still on", "num": len(on_b)})
        # Nothing of the dead instance is left in Redis.
        assert redis.command("HLEN", "roomd:{z}:m") == len(on_b)
        assert len(redis.command("SMEMBERS", "roomd:workers")) == 2
        assert len(redis.command("KEYS", "roomd:{w:*}:a")) == 2
        for c in on_b:
            await c.close()
    run(main(), 30)
    a.proc.wait(5)
    assert a.proc.returncode == -signal.SIGKILL


def test_redis_restart_mid_traffic(roomd, redis):
    """Redis stopped and restarted on the same port under traffic: clients stay
    connected, a message (or an enter, or who) during the outage gets
    "unavailable", and within 5 s of Redis being back messages flow and num
    and who are right (without a member who left meanwhile)."""
    a = roomd({"redis": redis.url}, workers=2)
    b = roomd({"redis": redis.url}, workers=2)

    async def main():
        clients = []
        for r in (a, b):
            clients += [c for cs in (await spread_clients(r, 2)).values() for c in cs]
        names = [f"q{i}" for i in range(len(clients))]
        await enter_all(clients, names, "q")
        caster = await Chat.connect(b.port, "/broadcast?room=q")
        await caster.send("before")
        await caster.expect({"text": "before"})
        stop = asyncio.Event()

        async def traffic():
            k = 0
            while not stop.is_set():
                await clients[k % len(clients)].say(f"t#{k}")
                k += 1
                await asyncio.sleep(0.01)
        task = asyncio.create_task(traffic())
        await clients[0].expect({"event": "message", "message": "t#20"}, 5)
        for r in (a, b):
            r.log_mark()
        redis.stop()
        for r in (a, b):
            await asyncio.get_running_loop().run_in_executor(
                None, lambda r=r: r.wait_log(r"(?s)redis link lost.*redis link lost", 5))
        stop.set()
        await task
        await clients[1].say("into the void")
        ev = await clients[1].expect_error("unavailable")
        assert ev["num"] == len(clients)
        await clients[2].send({"event": "who"})
        await clients[2].expect_error("unavailable")
        newcomer = await Chat.connect(a.port)
        await newcomer.enter("new", "q")
        await newcomer.expect_error("unavailable")
        await caster.send("lost")
        await caster.expect_error("unavailable")
        late_caster = await Chat.connect(a.port, "/broadcast?room=q")
        await late_caster.expect_error("unavailable")
        assert await late_caster.wait_closed() == 1013
        # A member leaves during the outage.
        gone = clients.pop()
        names.pop()
        await gone.close()
        assert not any(c.closed for c in clients + [newcomer, caster])

        redis.start()
        t0 = now()
        # Messages flow again: keep saying until the first one gets through to everyone.
        k = 0
        while True:
            assert now() - t0 < 5, "no message got through within 5s of redis restarting"
            text = f"back#{k}"
            k += 1
            await clients[0].say(text)
            try:
                for c in clients:
                    await c.expect({"event": "message", "message": text}, 0.25)
                break
            except AssertionError:
                continue
        # Counts and membership are right again (resync may lag the first message a little).
        while True:
            w = await who(clients[-1])
            if sorted(w["members"]) == sorted(names) or now() - t0 > 5:
                break
            await asyncio.sleep(0.1)
        assert sorted(w["members"]) == sorted(names) and w["num"] == len(clients)
        await clients[-1].say("recount")
        for c in clients:
            ev = await c.expect({"event": "message", "message": "recount"}, 3)
            assert ev["num"] == len(clients)
        assert now() - t0 < 5.5
        await newcomer.enter("new", "q")
        ev = await newcomer.expect({"event": "enter", "name": "new"})
        assert ev["num"] == len(clients) + 1
        for c in clients:
            await c.expect({"event": "enter", "name": "new", "num": len(clients) + 1})
        await caster.send("after")
        await caster.expect({"text": "after"}, 3)
        for c in clients + [newcomer, caster]:
            await c.close()
    run(main(), 40)


def test_sigterm_instance(roomd, redis):
    """SIGTERM one of two instances: the other's members hear an out for each
    of its members, and its own clients are closed with 1001."""
    a = roomd({"redis": redis.url}, workers=2)
    b = roomd({"redis": redis.url}, workers=2)

    async def main():
        on_a = [c for cs in (await spread_clients(a, 2)).values() for c in cs]
        on_b = [c for cs in (await spread_clients(b, 1)).values() for c in cs]
        names_a = [f"a{i}" for i in range(len(on_a))]
        names_b = [f"b{i}" for i in range(len(on_b))]
        await enter_all(on_a + on_b, names_a + names_b, "t")
        a.sigterm()
        await expect_outs(on_b, names_a, len(on_b), 5)
        for c in on_a:
            assert await c.wait_closed(5) == 1001
        w = await who(on_b[0])
        assert sorted(w["members"]) == sorted(names_b) and w["num"] == len(on_b)
        assert a.wait_exit(10) == 0
        # The stopped instance left nothing behind in Redis.
        assert redis.command("HLEN", "roomd:{t}:m") == len(on_b)
        assert len(redis.command("SMEMBERS", "roomd:workers")) == 2
        for c in on_b:
            await c.close()
    run(main(), 30)


def test_out_answered_when_redis_dies_before_replying(roomd, redis):
    """A member's explicit out waits for its own out event from Redis; when the
    link dies first (Redis frozen, then killed), the leaver is answered anyway."""
    r = roomd({"redis": redis.url}, workers=1)

    async def main():
        x, y = await Chat.connect(r.port), await Chat.connect(r.port)
        await enter_all([x, y], ["x", "y"], "frozen")
        r.log_mark()
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            await x.send({"event": "out"})
            await asyncio.sleep(0.2)
            assert x.of("out") == []  # nothing could answer yet
        finally:
            os.kill(redis.proc.pid, signal.SIGKILL)
        ev = await x.expect({"event": "out", "name": "x"}, 5)
        assert ev["roomid"] == "frozen" and ev["num"] == 1
        await asyncio.get_running_loop().run_in_executor(None, lambda: r.wait_log("redis link lost", 5))
        # x is out of the room; y is still in it.
        await x.say("gone")
        await x.expect_error("not_in_room")
        assert not x.closed and not y.closed
        await x.close()
        await y.close()
    run(main(), 20)


def test_script_flush_reloads_scripts(roomd, redis):
    """roomd sends its Lua scripts by SHA-1 (EVALSHA). When Redis forgets them
    (SCRIPT FLUSH), the next script call gets NOSCRIPT: the worker rebuilds its
    link, loads them again, and members keep chatting; an enter made right
    after the flush still completes."""
    a = roomd({"redis": redis.url}, workers=1)

    async def main():
        x = await Chat.connect(a.port)
        await x.enter("x", "s")
        await x.expect({"event": "enter", "name": "x"})
        a.log_mark()
        assert redis.command("SCRIPT", "FLUSH") == "OK"
        y = await Chat.connect(a.port)
        await y.enter("y", "s")
        # The enter's EVALSHA met NOSCRIPT: the link is rebuilt and the enter made again.
        await asyncio.get_running_loop().run_in_executor(None, lambda: a.wait_log("NOSCRIPT", 5))
        await y.expect({"event": "enter", "name": "y", "num": 2}, 5)
        t0 = now()
        while True:
            assert now() - t0 < 5, "no message got through within 5s of the flush"
            await x.say("after flush")
            try:
                await y.expect({"event": "message", "message": "after flush"}, 0.5)
                break
            except AssertionError:
                await asyncio.sleep(0.1)
        w = await who(y)
        assert sorted(w["members"]) == ["x", "y"] and w["num"] == 2
        await x.close()
        await y.close()
    run(main(), 30)


def test_startup_line_names_the_whole_redis_address(roomd, redis):
    """The master's startup line names host, port and database of an external
    Redis (it used to give only the host), and never its password."""
    r = roomd({"redis": f"redis://:pw-not-logged@127.0.0.1:{redis.port}/3"}, workers=1)
    log = r.read_log()
    assert f"rooms in redis 127.0.0.1:{redis.port} db 3" in log, log
    assert "pw-not-logged" not in log


def test_redis_restart_does_not_replay_joins(roomd, redis):
    """Redis restarted empty (no persistence) under two instances: the workers
    register their members again, silently. Nobody gets an enter for a member
    who never left (pages would show people "joining"); num and who are right
    afterwards, and a real newcomer is still announced."""
    a = roomd({"redis": redis.url}, workers=2)
    b = roomd({"redis": redis.url}, workers=2)

    async def main():
        clients = []
        for r in (a, b):
            clients += [c for cs in (await spread_clients(r, 2)).values() for c in cs]
        names = [f"j{i}" for i in range(len(clients))]
        await enter_all(clients, names, "j")
        for c in clients:
            await c.find({"event": "enter", "num": len(clients)}, 5)
        marks = [len(c.events) for c in clients]
        for r in (a, b):
            r.log_mark()
        redis.stop()
        for r in (a, b):
            await asyncio.get_running_loop().run_in_executor(
                None, lambda r=r: r.wait_log(r"(?s)redis link lost.*redis link lost", 5))
        redis.start()
        for r in (a, b):
            await asyncio.get_running_loop().run_in_executor(
                None, lambda r=r: r.wait_log(r"(?s)redis link up.*redis link up", 10))
        t0 = now()
        while True:
            w = await who(clients[0])
            if sorted(w["members"]) == sorted(names) or now() - t0 > 5:
                break
            await asyncio.sleep(0.1)
        assert sorted(w["members"]) == sorted(names) and w["num"] == len(clients)
        await clients[1].say("still here")
        for c in clients:
            ev = await c.expect({"event": "message", "message": "still here"}, 3)
            assert ev["num"] == len(clients)
        for c, m in zip(clients, marks):
            replayed = [e for e in c.events[m:] if e.get("event") in ("enter", "out")]
            assert replayed == [], f"presence events replayed after a Redis restart: {replayed}"
        newcomer = await Chat.connect(a.port)
        await newcomer.enter("fresh", "j")
        for c in clients:
            await c.expect({"event": "enter", "name": "fresh", "num": len(clients) + 1}, 5)
        for c in clients + [newcomer]:
            await c.close()
    run(main(), 40)
