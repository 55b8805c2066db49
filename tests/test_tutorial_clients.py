"""The tutorials' own Node `ws` clients keep working against roomd unchanged:
the chat tutorial's client (enter, messages, out, JSON heartbeat, num) and
the simplest tutorial's send-and-print client on the broadcast route."""
import asyncio
import os

import pytest

from roomclient import run
from roomd import node_for, node_modules

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")


@pytest.fixture
def node():
    """The node binary; fail (never skip) with what to do when node or ws is missing."""
    return node_for("ws")


class NodeClient:
    """A node script as a subprocess; its stdout lines are collected as they come."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self._changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, exe, script, *args):
        proc = await asyncio.create_subprocess_exec(
            exe, os.path.join(NODE_DIR, script), *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=NODE_DIR,
            env=dict(os.environ, NODE_PATH=node_modules()))
        return cls(proc)

    async def _read(self):
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.decode().rstrip("\n"))
            self._changed.set()
            self._changed = asyncio.Event()
        self._changed.set()

    async def wait_line(self, line, timeout=5.0, count=1):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.lines.count(line) < count:
            left = deadline - loop.time()
            if left <= 0 or self.task.done():
                raise AssertionError(f"no line {line!r} (x{count}) within {timeout}s; "
                                     f"output: {self.lines}")
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def tell(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def finish(self, timeout=10.0):
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        await self.task
        return rc

    def kill(self):
        if self.proc.returncode is None:
            self.proc.kill()


def test_tutorial_chat_clients_in_one_room(roomd, node):
    """Two copies of the chat tutorial's client in one room with a 1s JSON
    heartbeat: each sees both welcomes and the other's message, answers the
    heartbeats and is never closed for missing them; num follows the room."""
    r = roomd({"heartbeat_interval": "1s", "heartbeat_misses": "2"}, workers=2)
    url = f"ws://127.0.0.1:{r.port}/"

    async def main():
        alice = await NodeClient.start(node, "tutorial_chat_client.js", url, "alice", "room1",
                                       "--say", "hi from alice", "--wait-num", "2", "--for", "3200")
        bob = None
        try:
            await alice.wait_line("欢迎alice加入聊天室", 10)
            bob = await NodeClient.start(node, "tutorial_chat_client.js", url, "bob", "room1",
                                         "--say", "hi from bob", "--wait-num", "2", "--for", "4500")
            assert await alice.finish(15) == 0
            assert await bob.finish(15) == 0
        finally:
            for c in (alice, bob):
                if c is not None:
                    c.kill()
        a, b = alice.lines, bob.lines
        for who_, out in (("alice", a), ("bob", b)):
            assert not any(l.startswith("closed by server") for l in out), f"{who_}: {out}"
            assert not any(l.startswith("error") or l.startswith("undefined") for l in out), out
        assert a[:4] == ["欢迎alice加入聊天室", "欢迎bob加入聊天室", "alice:hi from alice",
                         "bob:hi from bob"], a
        assert a[-1] == "num 2", a
        assert b[0] == "欢迎bob加入聊天室", b
        assert {"bob:hi from bob", "alice:hi from alice"} <= set(b[1:3]), b
        assert "alice离开了聊天室" in b and b[-1] == "num 1", b
        # A heartbeat a second for about three (alice) and four (bob) seconds.
        hb = {n: int(next(l for l in out if l.startswith("heartbeats ")).split()[1])
              for n, out in (("alice", a), ("bob", b))}
        assert hb["alice"] >= 2 and hb["bob"] >= 3, hb
    run(main(), 40)


def test_tutorial_broadcast_clients(roomd, node):
    """The simplest tutorial's client on /broadcast: two of them see each
    other's text, and a binary message passes through byte for byte."""
    r = roomd({}, workers=2)
    url = f"ws://127.0.0.1:{r.port}/broadcast?room=t1"

    async def main():
        a = await NodeClient.start(node, "tutorial_broadcast_client.js", url, "Hello from A")
        b = None
        try:
            # The sender hears itself once it is in the room.
            await a.wait_line("[CLIENT] Received: Hello from A", 10)
            b = await NodeClient.start(node, "tutorial_broadcast_client.js", url, "Hello from B")
            for c in (a, b):
                await c.wait_line("[CLIENT] Received: Hello from B", 10)
            await a.tell("send A again")
            await b.tell("bin 000102fffe")
            await b.tell("bin " + "00" * 10)  # seed 002 sends Buffer.alloc(10)
            for c in (a, b):
                await c.wait_line("[CLIENT] Received: A again")
                await c.wait_line("[CLIENT] Received binary: 000102fffe")
                await c.wait_line("[CLIENT] Received binary: " + "00" * 10)
            for c in (a, b):
                await c.tell("close")
                assert await c.finish() == 0
        finally:
            for c in (a, b):
                if c is not None:
                    c.kill()
        assert "[CLIENT] Received: Hello from A" not in b.lines  # sent before b was there
        for c in (a, b):
            assert c.lines[0] == "[CLIENT] open()"
            assert c.lines[-1] == "[CLIENT] close 1005", c.lines  # close() without a code
    run(main(), 40)
