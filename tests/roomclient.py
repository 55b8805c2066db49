"""The chat client of the tests, in one place: an asyncio client on
python3-websockets that records every event (Chat), a lean raw WebSocket
client for thousands of connections (RawWS), the tokens clients present
(jwt), run() for a test's coroutine, and finding which worker holds a
connection."""
import asyncio
import base64
import hashlib
import hmac
import json
import os
import time

import websockets

from wsraw import HOST, parse_frames, ws_request
from wsraw import frame as mask_frame  # noqa: F401 (the chat tests' name for it)


def b64u(b):
    """base64url without padding, as JWTs write it."""
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(claims, secret, header=None, sig=None):
    """An HS256 JWT (or whatever header says) of claims signed with secret; sig overrides the signature."""
    head = b64u(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64u(json.dumps(claims).encode())
    signing = f"{head}.{body}"
    if sig is None:
        sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64u(sig)}"


def run(coro, timeout=60):
    """Run one coroutine to completion on a fresh event loop, bounded by timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def short(x, n=160):
    """repr of x with long strings cut, for assertion messages."""
    if isinstance(x, str):
        return x if len(x) <= n else f"{x[:n]}...({len(x)} chars)"
    if isinstance(x, bytes):
        return repr(x[:n]) + (f"...({len(x)} bytes)" if len(x) > n else "")
    if isinstance(x, dict):
        return {k: short(v, n) for k, v in x.items()}
    if isinstance(x, list):
        return [short(v, n) for v in x]
    return x


def matches(ev, want):
    """want is a dict (a subset ev must contain) or a predicate."""
    if callable(want):
        return want(ev)
    return all(ev.get(k) == v for k, v in want.items())


class Event(dict):
    """One event a client received: the JSON object ({"text": ...} for text
    that is not one, {"binary": ...} for binary), and in .t the time.monotonic()
    it arrived. It compares as the plain dict."""
    __slots__ = ("t",)


class Chat:
    """One chat (or broadcast) client. A reader task keeps every event in
    self.events; expect() waits for the next matching one after a cursor, so
    a test can step through what arrived while keeping the full record."""

    def __init__(self, ws, port, auto_pong=True):
        self.ws = ws
        self.port = port
        self.auto_pong = auto_pong
        self.events = []
        self.cursor = 0
        self.closed = False
        self._changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._reader())

    @classmethod
    async def connect(cls, port, path="/", auto_pong=True, **kw):
        """Connect to 127.0.0.1:port; kw goes to websockets.connect (origin,
        extra_headers, local_addr, other timeouts)."""
        kw = {"ping_interval": None, "max_size": None, "max_queue": None, "open_timeout": 10,
              "close_timeout": 2, **kw}
        ws = await websockets.connect(f"ws://{HOST}:{port}{path}", **kw)
        return cls(ws, port, auto_pong)

    @property
    def local_port(self):
        return self.ws.local_address[1]

    @property
    def close_code(self):
        return self.ws.close_code

    def _notify(self):
        self._changed.set()
        self._changed = asyncio.Event()

    async def _reader(self):
        try:
            async for m in self.ws:
                if isinstance(m, bytes):
                    ev = Event(binary=m)
                else:
                    try:
                        ev = json.loads(m)
                    except ValueError:
                        ev = None
                    ev = Event(ev) if isinstance(ev, dict) else Event(text=m)
                    if self.auto_pong and ev.get("event") == "heartbeat" and ev.get("message") == "ping":
                        await self.ws.send('{"event":"heartbeat","message":"pong"}')
                ev.t = time.monotonic()
                self.events.append(ev)
                self._notify()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._notify()

    async def send(self, obj):
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def enter(self, name, roomid=None):
        msg = {"event": "enter", "message": name}
        if roomid is not None:
            msg["roomid"] = roomid
        await self.send(msg)

    async def say(self, text, roomid=None):
        msg = {"event": "message", "message": text}
        if roomid is not None:
            msg["roomid"] = roomid
        await self.send(msg)

    async def until(self, cond, timeout=5.0, what="condition"):
        """Wait until cond() is true (checked whenever an event arrives)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            left = deadline - loop.time()
            if left <= 0 or (self.closed and not cond()):
                raise AssertionError(f"{what}: not met within {timeout}s "
                                     f"(closed={self.closed} code={self.close_code}); "
                                     f"last events: {short(self.events[-8:])}")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def expect(self, want, timeout=5.0):
        """The next event after the cursor matching want; moves the cursor past it."""
        found = []

        def cond():
            for i in range(self.cursor, len(self.events)):
                if matches(self.events[i], want):
                    found.append(i)
                    return True
            return False
        await self.until(cond, timeout, what=f"event {want}")
        self.cursor = found[0] + 1
        return self.events[found[0]]

    async def find(self, want, timeout=5.0):
        """The first event matching want anywhere in the record (for events that
        may come in any order); the cursor does not move."""
        found = []

        def cond():
            for e in self.events:
                if matches(e, want):
                    found.append(e)
                    return True
            return False
        await self.until(cond, timeout, what=f"event {want}")
        return found[0]

    async def expect_error(self, code, timeout=5.0):
        return await self.expect({"event": "error", "code": code}, timeout)

    async def wait_closed(self, timeout=5.0):
        await self.until(lambda: self.closed, timeout, what="close")
        return self.close_code

    def of(self, event, **kw):
        """Every event of that kind (with those fields) so far."""
        return [e for e in self.events if e.get("event") == event and
                all(e.get(k) == v for k, v in kw.items())]

    def messages(self, roomid=None):
        return [e for e in self.events if e.get("event") == "message" and
                (roomid is None or e.get("roomid") == roomid)]

    async def close(self):
        await self.ws.close()
        self.task.cancel()


async def who(c, roomid=None, timeout=5.0):
    """Ask for the member list; return the who event."""
    msg = {"event": "who"}
    if roomid is not None:
        msg["roomid"] = roomid
    await c.send(msg)
    return await c.expect({"event": "who"} if roomid is None else {"event": "who", "roomid": roomid},
                          timeout)


async def enter_all(clients, names, roomid, timeout=10.0):
    """Enter clients one by one; each enter must reach every member present with the right num."""
    inside = []
    room = roomid if roomid is not None else "lobby"
    for c, name in zip(clients, names):
        await c.enter(name, roomid)
        inside.append(c)
        n = len(inside)
        for m in inside:
            ev = await m.expect({"event": "enter", "name": name, "roomid": room}, timeout)
            assert ev["num"] == n, f"enter of {name} seen with num {ev['num']}, want {n}"
            assert ev["message"] == name


# ---- which worker holds a connection ----

def socket_owners(pids):
    """Map socket inode -> pid for every socket fd of pids."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = pid
    return owner


def holders(port, pids, client_ports, established=False):
    """{client port: pid} for the connections from client_ports to port held by
    one of pids (only those in state ESTABLISHED if established)."""
    owner = socket_owners(pids)
    want = set(client_ports)
    # The table can hold tens of thousands of lines when other tests run: match
    # the server's port as text before splitting a line.
    local = f":{port:04X} "
    found = {}
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            if local not in line[:64]:
                continue
            fields = line.split()
            if established and fields[3] != "01":
                continue
            lport = int(fields[1].rsplit(":", 1)[1], 16)
            rport = int(fields[2].rsplit(":", 1)[1], 16)
            if lport == port and rport in want and fields[9] in owner:
                found[rport] = owner[fields[9]]
    return found


def holder_of(port, pids, client_port):
    """The pid among pids holding the server side of our connection from client_port, or None."""
    return holders(port, pids, [client_port]).get(client_port)


def workers_of(r, client_ports):
    """{client port: worker pid} for connections from 127.0.0.1 client ports to r."""
    return holders(r.port, r.worker_pids(), client_ports)


async def spread_clients(r, per_worker, path="/", limit=400):
    """Open chat clients to r until each worker holds per_worker of them; extra
    connections are closed. Returns {worker pid: [Chat]}."""
    pids = r.worker_pids()
    by = {p: [] for p in pids}
    spare = []
    opened = 0
    while opened < limit and not all(len(v) >= per_worker for v in by.values()):
        # Connect a batch at once and look them all up in one pass.
        missing = sum(max(0, per_worker - len(v)) for v in by.values())
        batch = await asyncio.gather(*(Chat.connect(r.port, path) for _ in range(2 * missing)))
        opened += len(batch)
        where = workers_of(r, [c.local_port for c in batch])
        for c in batch:
            pid = where.get(c.local_port)
            assert pid in by, f"connection from port {c.local_port} not found in workers {pids}"
            (by[pid] if len(by[pid]) < per_worker else spare).append(c)
    assert all(len(v) >= per_worker for v in by.values()), \
        f"SO_REUSEPORT never spread {limit} connections over workers: {[len(v) for v in by.values()]}"
    for c in spare:
        await c.close()
    return by


# ---- a lean client for many connections ----

class RawWS(asyncio.Protocol):
    """A minimal WebSocket client protocol: handshake, server frames (parsed by
    wsraw.parse_frames), answers pings. Text events are JSON-decoded and counted."""

    def __init__(self, host, port, path):
        self.req = ws_request(path, host=f"{host}:{port}")
        self.buf = bytearray()
        self.opened = asyncio.get_running_loop().create_future()
        self.upgraded = False
        self.transport = None
        self.close_code = None
        self.lost = False
        self.enter_max_num = 0
        self.nenter = 0
        self.messages = []
        self.other = []

    def connection_made(self, transport):
        self.transport = transport
        transport.write(self.req)

    def connection_lost(self, exc):
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError("closed during handshake"))

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(ConnectionError(bytes(self.buf[:80])))
                self.transport.close()
                return
            del self.buf[:end + 4]
            self.upgraded = True
            self.opened.set_result(True)
        frames, self.buf = parse_frames(self.buf)
        for op, payload in frames:
            self.frame(op, payload)

    def frame(self, op, payload):
        if op == 1:
            ev = json.loads(payload)
            kind = ev.get("event")
            if kind == "enter":
                self.nenter += 1
                self.enter_max_num = max(self.enter_max_num, ev["num"])
            elif kind == "message":
                self.messages.append((ev["name"], ev["message"]))
            elif kind == "heartbeat":
                self.send_text('{"event":"heartbeat","message":"pong"}')
            else:
                self.other.append(ev)
        elif op == 9:
            self.transport.write(mask_frame(10, payload))
        elif op == 8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.transport.close()

    def send_text(self, text):
        self.transport.write(mask_frame(1, text.encode() if isinstance(text, str) else text))


async def raw_connect(port, path="/"):
    loop = asyncio.get_running_loop()
    _, p = await loop.create_connection(lambda: RawWS(HOST, port, path), HOST, port)
    await asyncio.wait_for(p.opened, 10)
    return p
