"""Chat clients for the deployment lab: one asyncio process (python3-websockets)
that runs inside a client namespace and drives many chat clients through
HAProxy, keeping the record the lab's accounting reads.

Each client has a name and one room. It connects, enters, and while sending is
on says "NAME:SEQ" every --interval seconds; whatever ends its connection, it
connects again (backoff 0.1 s doubling to 2 s) under the same name, and enters
the same room again. When the server's message events carry an "offset"
(message history, issue 17), it re-enters with "since" (the offset of the last
message it holds and the room's epoch); until then it simply enters and the
accounting counts what it missed. One watcher client per room sends nothing
but asks "who" every --census seconds, so counts can be followed over time.

Control: JSON lines on stdin, answers on stdout.
  {"cmd": "send", "on": true|false}   start or stop saying things
  {"cmd": "finish", "settle": 2}     stop sending, wait settle seconds for what
                                     is in flight, close every client, write the
                                     record to --out, answer {"done": {...}}, exit
  {"cmd": "stats"}                   {"stats": {...}} counts so far
stdin closing or --max-seconds passing finishes as well, so the process always
ends by itself.

The record (JSON): every client with its sends [seq, time, session] and its
sessions: when it tried, opened, entered and closed (code, reason), failed
attempts, and every event it received as a compact list:
  ["m", t, id, name, text, num, offset]   a chat message
  ["e", t, name, num] / ["o", t, name, num]   somebody entered / left
  ["err", t, code]                        an error event
  ["rec", t, recovered, offset, epoch, count]  the answer to an enter with since
  ["who", t, members, num]                the answer to who
Times are time.time(): the lab's processes share the machine's clock."""
import argparse
import asyncio
import json
import random
import sys
import time

import websockets

BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0


class Session:
    def __init__(self, idx, t_try):
        self.idx = idx
        self.t_try = t_try
        self.t_open = None
        self.t_enter = None
        self.t_close = None
        self.code = None
        self.reason = None
        self.failed = []        # [t, why] of attempts before this one opened
        self.events = []
        self.enter_sent_since = None
        self.by_us = False      # closed by the driver at the end, not by the server or network
        self.local = None       # [address, port]: HAProxy's `show sess` names its server

    def dump(self):
        return {"idx": self.idx, "t_try": self.t_try, "t_open": self.t_open, "t_enter": self.t_enter,
                "t_close": self.t_close, "code": self.code, "reason": self.reason, "by_us": self.by_us,
                "local": self.local,
                "failed": self.failed, "since": self.enter_sent_since, "events": self.events}


class Client:
    def __init__(self, load, name, room, watcher=False):
        self.load = load
        self.name = name
        self.room = room
        self.watcher = watcher
        self.sessions = []
        self.sends = []
        self.seq = 0
        self.ws = None
        self.session = None
        self.entered = False
        self.last_offset = None     # of the last message held (history servers only)
        self.epoch = None
        self.next_send = 0.0

    async def life(self):
        backoff = BACKOFF_MIN
        failed = []
        while not self.load.stopping:
            t_try = time.time()
            try:
                ws = await websockets.connect(self.load.url, open_timeout=self.load.open_timeout,
                                              ping_interval=None, close_timeout=1, max_queue=None,
                                              max_size=None, compression=None)
            except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake,
                    websockets.InvalidURI, websockets.InvalidMessage, EOFError) as e:
                failed.append([t_try, f"{type(e).__name__}: {e}"[:120]])
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            s = Session(len(self.sessions), t_try)
            s.t_open = time.time()
            s.local = list(ws.local_address[:2])
            s.failed, failed = failed, []
            self.sessions.append(s)
            self.session, self.ws, self.entered = s, ws, False
            try:
                await self.enter()
                async for raw in ws:
                    await self.on_event(s, json.loads(raw))
            except websockets.ConnectionClosed:
                pass
            finally:
                s.t_close = time.time()
                s.code, s.reason = ws.close_code, ws.close_reason
                s.by_us = self.load.stopping
                self.ws, self.entered = None, False
            if self.load.stopping:
                break
            backoff = BACKOFF_MIN
            await asyncio.sleep(backoff * (0.5 + random.random()))

    async def enter(self):
        msg = {"event": "enter", "message": self.name, "roomid": self.room}
        if self.last_offset is not None and self.epoch:
            msg["since"] = {"offset": self.last_offset, "epoch": self.epoch}
            self.session.enter_sent_since = msg["since"]
        await self.ws.send(json.dumps(msg))

    async def enter_again(self, ws):
        await asyncio.sleep(0.5)
        if self.ws is ws and not self.entered:
            try:
                await self.enter()
            except websockets.ConnectionClosed:
                pass

    async def on_event(self, s, ev):
        t = time.time()
        kind = ev.get("event")
        if kind == "message":
            s.events.append(["m", t, ev.get("id"), ev.get("name"), ev.get("message"), ev.get("num"),
                             ev.get("offset")])
            if ev.get("offset") is not None:
                self.last_offset = ev["offset"]
                if self.epoch is None and ev.get("epoch") is None:
                    # Ask the room's position once, to learn its epoch (issue 17's history event).
                    self.epoch = ""
                    await self.ws.send(json.dumps({"event": "history", "roomid": self.room,
                                                   "limit": 1}))
                elif ev.get("epoch") is not None:
                    self.epoch = ev["epoch"]
        elif kind in ("enter", "out"):
            s.events.append([kind[0], t, ev.get("name"), ev.get("num")])
            if kind == "enter" and ev.get("name") == self.name and not self.entered:
                self.entered = True
                s.t_enter = t
        elif kind == "heartbeat":
            if ev.get("message") == "ping":
                await self.ws.send('{"event":"heartbeat","message":"pong"}')
        elif kind == "who":
            s.events.append(["who", t, ev.get("members"), ev.get("num")])
        elif kind == "recovered":
            s.events.append(["rec", t, ev.get("recovered"), ev.get("offset"), ev.get("epoch"),
                             ev.get("count")])
            if ev.get("epoch"):
                self.epoch = ev["epoch"]
        elif kind == "history":
            if ev.get("epoch"):
                self.epoch = ev["epoch"]
        elif kind == "error":
            s.events.append(["err", t, ev.get("code")])
            if not self.entered and ev.get("code") == "unavailable":
                # The enter itself was refused: try again shortly on this connection.
                asyncio.ensure_future(self.enter_again(self.ws))
        else:
            s.events.append(["?", t, kind])

    async def say(self):
        self.seq += 1
        self.sends.append([self.seq, time.time(), self.session.idx])
        await self.ws.send(json.dumps({"event": "message", "message": f"{self.name}:{self.seq}",
                                       "roomid": self.room}))

    def dump(self):
        return {"name": self.name, "room": self.room, "watcher": self.watcher, "sends": self.sends,
                "sessions": [s.dump() for s in self.sessions]}


class Load:
    def __init__(self, args):
        self.args = args
        self.url = args.url
        self.open_timeout = args.open_timeout
        self.stopping = False
        self.sending = False
        self.clients = []
        for i in range(args.clients):
            self.clients.append(Client(self, f"{args.prefix}{args.first + i}",
                                       f"room{(args.first + i) % args.rooms}"))
        if args.watchers:
            for r in range(args.rooms):
                self.clients.append(Client(self, f"{args.prefix}w{r}", f"room{r}", watcher=True))
        self.tasks = []
        self.done = asyncio.Event()

    def out(self, obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def stats(self):
        sessions = [s for c in self.clients for s in c.sessions]
        return {"clients": len(self.clients), "entered": sum(c.entered for c in self.clients),
                "sessions": len(sessions), "sent": sum(len(c.sends) for c in self.clients),
                "received": sum(1 for s in sessions for e in s.events if e[0] == "m")}

    async def sender(self):
        """Every client with something to say says it on time; watchers ask who."""
        interval = self.args.interval
        next_census = 0.0
        while not self.stopping:
            now = time.time()
            for c in self.clients:
                if c.ws is None or not c.entered:
                    continue
                if c.watcher:
                    if now >= next_census:
                        try:
                            await c.ws.send(json.dumps({"event": "who", "roomid": c.room}))
                        except websockets.ConnectionClosed:
                            pass
                elif self.sending and now >= c.next_send:
                    c.next_send = now + interval * (0.8 + 0.4 * random.random())
                    try:
                        await c.say()
                    except websockets.ConnectionClosed:
                        pass
            if now >= next_census:
                next_census = now + self.args.census
            await asyncio.sleep(0.02)

    async def control(self):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                return 2.0
            cmd = json.loads(line)
            if cmd["cmd"] == "send":
                self.sending = bool(cmd["on"])
                now = time.time()
                for c in self.clients:     # spread the first messages over one interval
                    c.next_send = now + self.args.interval * random.random()
                self.out({"sending": self.sending, "t": now})
            elif cmd["cmd"] == "stats":
                self.out({"stats": self.stats()})
            elif cmd["cmd"] == "finish":
                return float(cmd.get("settle", 2.0))

    async def ready_when_entered(self):
        while not all(c.entered for c in self.clients):
            await asyncio.sleep(0.05)
        self.out({"ready": True, "t": time.time()})

    async def run(self):
        for c in self.clients:
            self.tasks.append(asyncio.ensure_future(c.life()))
            await asyncio.sleep(self.args.stagger)
        aux = [asyncio.ensure_future(self.sender()), asyncio.ensure_future(self.ready_when_entered())]
        ctl = asyncio.ensure_future(self.control())
        done, _ = await asyncio.wait([ctl], timeout=self.args.max_seconds)
        settle = ctl.result() if done else 0.0
        if not done:
            ctl.cancel()
        self.sending = False
        await asyncio.sleep(settle)
        self.stopping = True
        for a in aux:
            a.cancel()
        await asyncio.gather(*(c.ws.close() for c in self.clients if c.ws is not None),
                             return_exceptions=True)
        _, pending = await asyncio.wait(self.tasks, timeout=5)
        for t in pending:
            t.cancel()
        with open(self.args.out, "w") as f:
            json.dump({"clients": [c.dump() for c in self.clients], "url": self.url,
                       "interval": self.args.interval, "timed_out": not done}, f)
        self.out({"done": self.stats()})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--first", type=int, default=0, help="number of the first client")
    ap.add_argument("--prefix", default="c")
    ap.add_argument("--watchers", action="store_true", help="one who-asking watcher per room")
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between a client's messages")
    ap.add_argument("--census", type=float, default=0.5, help="seconds between a watcher's who")
    ap.add_argument("--stagger", type=float, default=0.005, help="seconds between first connects")
    ap.add_argument("--open-timeout", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--out", required=True)
    asyncio.run(Load(ap.parse_args()).run())


if __name__ == "__main__":
    main()
