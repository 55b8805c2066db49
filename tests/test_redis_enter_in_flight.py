"""An enter in flight when Redis dies is answered "unavailable" at once, as an
enter sent during the outage is (found by the roomd-client work, issue 22:
its enter after a Redis restart waited for its answer timeout).

1. roomd (one worker) on a redis-server; bob enters room "r".
2. redis-server frozen (SIGSTOP); ann sends {"event":"enter","message":"ann",
   "roomid":"r","history":5} (what roomd-client sends): nothing can answer.
3. redis-server killed (SIGKILL); roomd logs "redis link lost".
Then ann hears {"event":"error","code":"unavailable"} within 3 s and is in no
room; once Redis is back, her enter again gets enter with num 2 and
recovered, and bob hears ann enter once."""
import asyncio
import os
import signal
import time

from roomclient import Chat, run


def test_enter_answered_when_redis_dies_before_replying(roomd, redis):
    r = roomd({"redis": redis.url, "rate_limit": "0"}, workers=1)

    async def main():
        bob = await Chat.connect(r.port)
        await bob.send({"event": "enter", "message": "bob", "roomid": "r"})
        await bob.expect({"event": "enter", "name": "bob", "num": 1})
        ann = await Chat.connect(r.port)
        enter = {"event": "enter", "message": "ann", "roomid": "r", "history": 5}
        r.log_mark()
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            await ann.send(enter)
            await asyncio.sleep(0.2)
            assert ann.events == [], "nothing could answer yet"
        finally:
            os.kill(redis.proc.pid, signal.SIGKILL)
            redis.proc.wait()
        await asyncio.get_running_loop().run_in_executor(None, lambda: r.wait_log("redis link lost", 5))
        t0 = time.monotonic()
        try:
            await ann.until(lambda: ann.events, 3, "an answer to ann's enter")
        except AssertionError:
            pass
        heard = [(round(e.t - t0, 2), dict(e)) for e in ann.events]
        assert heard and heard[0][1].get("code") == "unavailable", \
            f"ann's enter, in flight when Redis died, got {heard or 'no answer'} in the 3 s Redis was down"
        redis.start()
        await asyncio.get_running_loop().run_in_executor(None, lambda: r.wait_log("redis link up", 10))
        for _ in range(20):     # until the room is back
            n = len(ann.events)
            await ann.send(enter)
            await ann.until(lambda: len(ann.events) > n, 5, "an answer to ann's enter")
            if ann.events[n].get("code") != "unavailable":
                break
            await asyncio.sleep(0.1)
        ev = await ann.expect({"event": "enter", "name": "ann"})
        assert ev["num"] == 2, ev
        await ann.expect({"event": "recovered", "roomid": "r"})
        await asyncio.sleep(0.3)
        enters = [e for e in bob.events if e.get("event") == "enter" and e.get("name") == "ann"]
        assert len(enters) == 1, f"bob heard ann enter {len(enters)} times: {bob.events}"
        await ann.close()
        await bob.close()
    run(main(), 30)
