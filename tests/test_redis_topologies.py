"""roomd on the Redis topologies it can outgrow one Redis with: a master
watched by Sentinel (failover on command, then the new master SIGKILLed), a
Redis Cluster with sharded pub/sub (rooms spread over the shards, a busy
room's slot migrated under traffic, a master SIGKILLed and its replica
promoted), Redis over TLS, and an ACL user.

Every test keeps a ledger of what the clients sent: each message is either
delivered to every member of its room, once and in order, or answered
"unavailable" to its sender; no client is disconnected; counts are right
afterwards."""
import asyncio
import os
import socket
import subprocess
import time

import pytest

from roomclient import Chat, enter_all, run, spread_clients, who
from roomd import RedisCluster, RedisSentinels, RedisServer, wait_for


def now():
    return asyncio.get_running_loop().time()


@pytest.fixture
def sentinels(tmp_path):
    s = RedisSentinels(tmp_path / "sentinel").start()
    yield s
    s.stop()


@pytest.fixture
def cluster(tmp_path):
    c = RedisCluster(tmp_path / "cluster").start()
    yield c
    c.stop()


async def room_of(instances, room, per_worker=1):
    """Members of room on every worker of every instance; returns them entered."""
    members = []
    for r in instances:
        members += [c for cs in (await spread_clients(r, per_worker)).values() for c in cs]
    await enter_all(members, [f"{room}-{i}" for i in range(len(members))], room)
    return members


def ranges(nums):
    """[1, 2, 3, 7] -> "1-3 7"."""
    out = []
    for k in nums:
        if out and out[-1][1] == k - 1:
            out[-1][1] = k
        else:
            out.append([k, k])
    return " ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in out)


class Ledger:
    """Senders in rooms say numbered messages; the ledger checks the promise."""

    def __init__(self, rooms):
        self.rooms = rooms              # {room: [members]}
        self.sent = {}                  # (room, sender index) -> count sent
        self.stop = asyncio.Event()
        self.tasks = []

    def start(self, senders_per_room=2, gap=0.02):
        for room, members in self.rooms.items():
            for i in range(min(senders_per_room, len(members))):
                self.tasks.append(asyncio.create_task(self._send(room, i, members[i], gap)))

    async def _send(self, room, i, c, gap):
        k = 0
        while not self.stop.is_set():
            await c.say(f"{room}/{i}#{k}", room)
            k += 1
            self.sent[(room, i)] = k
            await asyncio.sleep(gap)

    async def finish(self, settle=3.0):
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await asyncio.sleep(settle)     # answers and deliveries in flight arrive

    def delivered(self, c, room, i):
        pre = f"{room}/{i}#"
        return [int(e["message"][len(pre):]) for e in c.messages(room)
                if isinstance(e.get("message"), str) and e["message"].startswith(pre)]

    def check(self, since=0):
        """The promise, per sender: every member saw the same messages, in the
        order sent, each once; each message sent was delivered or answered
        unavailable. Returns {room: (sent, delivered, answered)}."""
        out = {}
        for room, members in self.rooms.items():
            assert not any(c.closed for c in members), \
                f"{room}: a member was disconnected ({[c.close_code for c in members]})"
            totals = [0, 0, 0]
            for i in range(min(2, len(members))):
                n = self.sent.get((room, i), 0)
                seen = [self.delivered(c, room, i) for c in members]
                for s in seen:
                    assert s == sorted(set(s)), f"{room}/{i}: out of order or twice: {s}"
                    assert s == seen[0], f"{room}/{i}: members disagree: {sorted(set(seen[0]) ^ set(s))}"
                got = set(seen[0])
                answered = len([e for e in members[i].events[since:] if e.get("event") == "error" and
                                e.get("code") == "unavailable"])
                missing = n - len(got)
                # A message Redis took in the instant its link was lost is both
                # delivered and answered (the protocol says so): a few at most.
                assert answered >= missing, \
                    f"{room}/{i}: {missing} of {n} messages neither delivered nor answered ({answered} answered); " \
                    f"not delivered: {ranges(sorted(set(range(n)) - got))}"
                assert answered - missing <= 4, f"{room}/{i}: {answered} answered but only {missing} missing"
                totals[0] += n
                totals[1] += len(got)
                totals[2] += answered
            out[room] = tuple(totals)
        return out


async def counts_right(rooms, timeout=5.0):
    """who and num agree with the members present, for every room."""
    t0 = now()
    for room, members in rooms.items():
        while True:
            w = await who(members[-1], room)
            if w["num"] == len(members) or now() - t0 > timeout:
                break
            await asyncio.sleep(0.2)
        assert w["num"] == len(members) and len(w["members"]) == len(members), (room, w)


async def flows(rooms, timeout=5.0):
    """A message said now reaches every member of every room within timeout."""
    for room, members in rooms.items():
        t0 = now()
        k = 0
        while True:
            assert now() - t0 < timeout, f"{room}: no message got through within {timeout}s"
            text = f"{room}/flow#{k}"
            k += 1
            await members[-1].say(text, room)
            try:
                for c in members:
                    await c.expect({"event": "message", "message": text}, 0.5)
                break
            except AssertionError:
                continue


def readyz(r):
    try:
        with socket.create_connection(("127.0.0.1", r.port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return int(s.recv(64).split()[1])
    except (OSError, IndexError, ValueError):
        return 0


# ---- Sentinel ----

def test_sentinel_failover_then_new_master_killed(roomd, sentinels):
    """SENTINEL FAILOVER under traffic, then SIGKILL of the new master: clients
    of two instances stay connected, every message is delivered everywhere
    or answered unavailable, readiness says 503 while there is no master to
    write to, and messages flow within 5 s of each new master."""
    a = roomd({"redis": sentinels.url}, workers=2)
    b = roomd({"redis": sentinels.url}, workers=2)

    async def main():
        rooms = {"lobby": await room_of([a, b], "lobby")}
        ledger = Ledger(rooms)
        ledger.start()
        await asyncio.sleep(1)
        first = sentinels.master()
        sentinels.sentinel(0, "SENTINEL", "FAILOVER", sentinels.name)
        loop = asyncio.get_running_loop()
        second = await loop.run_in_executor(None, sentinels.wait_master, first.port)
        await flows(rooms, 5)
        await asyncio.sleep(1)
        # Now the new master dies without a word; readiness must notice.
        states = []
        second.kill()
        t0 = now()

        def watch():
            while time.monotonic() < deadline:
                states.append(readyz(a))
                time.sleep(0.1)
        deadline = time.monotonic() + 3
        await loop.run_in_executor(None, watch)
        third = await loop.run_in_executor(None, sentinels.wait_master, second.port, 30)
        assert third.port not in (second.port,)
        await flows(rooms, 8)
        await ledger.finish()
        totals = ledger.check()
        assert 503 in states, f"/readyz never said 503 while the master was dead: {states}"
        wait_for(lambda: readyz(a) == 200 and readyz(b) == 200, 5, what="ready again")
        await counts_right(rooms)
        sent, got, answered = totals["lobby"]
        print(f"\n  [sentinel] failover + SIGKILL of the new master: {sent} sent, {got} delivered to all "
              f"{len(rooms['lobby'])} members, {answered} answered unavailable; "
              f"back {now() - t0:.1f}s after the kill")
        for c in rooms["lobby"]:
            await c.close()
    run(main(), 120)
    for r in (a, b):
        log = r.read_log()
        assert "redis link up" in log


# ---- Cluster ----

def test_cluster_rooms_spread_over_shards(roomd, cluster):
    """Rooms live on every master of a Redis Cluster, each room's messages
    on sharded pub/sub (SPUBLISH/SSUBSCRIBE), and every member of two
    instances gets its room's messages and no other room's."""
    a = roomd({"redis": cluster.url}, workers=2)
    b = roomd({"redis": cluster.url}, workers=1)

    async def main():
        rooms = {}
        for i in range(24):
            room = f"room{i}"
            members = [await Chat.connect(r.port) for r in (a, b)]
            await enter_all(members, [f"u{i}a", f"u{i}b"], room)
            rooms[room] = members
        for room, members in rooms.items():
            await members[0].say(f"hello {room}", room)
        for room, members in rooms.items():
            for c in members:
                await c.expect({"event": "message", "message": f"hello {room}", "roomid": room})
        await asyncio.sleep(0.5)
        for room, members in rooms.items():
            for c in members:
                got = [e["message"] for e in c.messages()]
                assert got == [f"hello {room}"], (room, got)
        masters = cluster.masters()
        assert len(masters) == 3
        for m in masters:
            assert m.command("DBSIZE") > 0, f"master {m.port} holds no room"
            channels = m.command("PUBSUB", "SHARDCHANNELS")
            assert channels, f"master {m.port} has no sharded subscriptions"
        per = {}
        for r in rooms:
            per.setdefault(cluster.owner(int(masters[0].command("CLUSTER", "KEYSLOT", r))).port, []).append(r)
        assert len(per) == 3
        print("\n  [cluster] rooms per master: " +
              ", ".join(f"{p}: {len(v)} rooms, {cluster.node(p).command('DBSIZE')} keys" for p, v in per.items()))
        await counts_right(rooms)
        for members in rooms.values():
            for c in members:
                await c.close()
    run(main(), 90)


def migrate_slot(cluster, slot, src, dst):
    """Move slot from src to dst the way redis-cli --cluster reshard does:
    IMPORTING/MIGRATING, MIGRATE of its keys, then SETSLOT NODE everywhere."""
    src_id, dst_id = cluster.node_id(src), cluster.node_id(dst)
    dst.command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    moved = 0
    while True:
        keys = src.command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
        if not keys:
            break
        src.command("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", *keys)
        moved += len(keys)
    dst.command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    src.command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    for m in cluster.masters():
        if m not in (src, dst):
            m.command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
    return moved


def test_cluster_busy_room_slot_migrates(roomd, cluster):
    """The slot of a busy room moves to another master under traffic: roomd
    follows ASK and MOVED, subscribes again where the slot went, and catches
    up on what was said meanwhile: every message reaches every member once,
    in order, or is answered unavailable; a quiet room on another shard sees
    no error at all."""
    a = roomd({"redis": cluster.url}, workers=2)
    b = roomd({"redis": cluster.url}, workers=2)

    async def main():
        rooms = {"busy": await room_of([a, b], "busy")}
        masters = cluster.masters()
        slot = int(masters[0].command("CLUSTER", "KEYSLOT", "busy"))
        src = cluster.owner(slot)
        other = next(r for r in (f"calm{i}" for i in range(100))
                     if cluster.owner(int(masters[0].command("CLUSTER", "KEYSLOT", r))) != src)
        rooms[other] = await room_of([a, b], other)
        dst = next(m for m in masters if m.port != src.port)
        ledger = Ledger(rooms)
        ledger.start()
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        moved = await loop.run_in_executor(None, migrate_slot, cluster, slot, src, dst)
        assert moved >= 2
        await asyncio.sleep(2)
        await ledger.finish()
        totals = ledger.check()
        assert cluster.owner(slot).port == dst.port
        assert dst.command("EXISTS", *dst.command("CLUSTER", "GETKEYSINSLOT", slot, 10)) >= 1
        assert totals[other][2] == 0, f"a room on another shard got errors: {totals[other]}"
        await flows(rooms, 5)
        await counts_right(rooms)
        print(f"\n  [cluster] slot {slot} of a busy room moved {src.port} -> {dst.port} ({moved} keys) "
              f"under traffic: sent/delivered/answered {totals}")
        for members in rooms.values():
            for c in members:
                await c.close()
    run(main(), 90)


def test_cluster_master_killed_replica_promoted(roomd, cluster):
    """SIGKILL of the master that serves a room, under traffic: its replica
    takes over after the cluster's node timeout; the messages of its room and
    of a room on another shard are delivered or answered unavailable
    meanwhile, and flow again within 5 s of the promotion. roomd keeps the
    other shards' rooms going (only Redis's own CLUSTERDOWN, while the slot
    has no master, stops them), so the room on another shard gets far fewer
    unavailable answers than the room on the dead master."""
    a = roomd({"redis": cluster.url, "log_level": os.environ.get("TOPO_LOG", "info")}, workers=2)
    b = roomd({"redis": cluster.url}, workers=1)

    async def main():
        masters = cluster.masters()
        keyslot = lambda r: int(masters[0].command("CLUSTER", "KEYSLOT", r))
        doomed_slot = keyslot("doomed")     # asked now: masters[0] may be the one that dies
        victim = cluster.owner(doomed_slot)
        calm = next(r for r in (f"calm{i}" for i in range(100)) if cluster.owner(keyslot(r)) != victim)
        rooms = {"doomed": await room_of([a, b], "doomed"), calm: await room_of([a, b], calm)}
        ledger = Ledger(rooms)
        ledger.start()
        await asyncio.sleep(1)
        victim.kill()
        loop = asyncio.get_running_loop()
        survivor = next(n for n in cluster.nodes if n.proc.poll() is None)

        def promoted():
            try:
                return cluster.owner(doomed_slot).port != victim.port and \
                    survivor.cluster_info().get("cluster_state") == "ok"
            except (OSError, RuntimeError, AssertionError):
                return False
        await loop.run_in_executor(None, lambda: wait_for(promoted, 40, interval=0.1,
                                                          what="a replica promoted"))
        t0 = now()
        await flows(rooms, 5)
        took = now() - t0
        await asyncio.sleep(1)
        await ledger.finish()
        totals = ledger.check()
        assert totals[calm][2] < totals["doomed"][2] / 2, \
            f"the room on another shard was held up like the dead master's: {totals}"
        await counts_right(rooms)
        print(f"\n  [cluster] master {victim.port} SIGKILLed: sent/delivered/answered {totals}; "
              f"messages flowed {took:.1f}s after the promotion")
        for members in rooms.values():
            for c in members:
                await c.close()
    run(main(), 120)


# ---- TLS and ACL ----

def make_certs(d):
    """A CA and a server certificate for 127.0.0.1, signed by it (openssl)."""
    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=roomd test CA",
        "-keyout", f"{d}/ca.key", "-out", f"{d}/ca.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", f"{d}/redis.key",
        "-out", f"{d}/redis.csr")
    with open(f"{d}/ext.cnf", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ssl("x509", "-req", "-in", f"{d}/redis.csr", "-CA", f"{d}/ca.crt", "-CAkey", f"{d}/ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", f"{d}/ext.cnf", "-out", f"{d}/redis.crt")


def test_redis_over_tls_with_acl_user(roomd, tmp_path):
    """rediss:// to a redis-server that speaks TLS only and knows roomd as an
    ACL user: rooms work across two instances, the password never shows in
    the log, and a wrong CA or a wrong password keeps roomd not ready with a
    log line that says why."""
    d = str(tmp_path)
    make_certs(d)
    port = RedisServer(tmp_path / "x").port
    srv = RedisServer(tmp_path / "tls", args=[
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", f"{d}/redis.crt",
        "--tls-key-file", f"{d}/redis.key", "--tls-ca-cert-file", f"{d}/ca.crt",
        "--tls-auth-clients", "no",
        "--user", "default", "off",
        "--user", "chat", "on", ">s3@cr%t", "~*", "&*", "+@all"])
    srv.port = port
    srv.ping = lambda: srv.proc.poll() is None and \
        subprocess.run(["redis-cli", "--tls", "--cacert", f"{d}/ca.crt", "-p", str(port), "--user", "chat",
                        "--pass", "s3@cr%t", "--no-auth-warning", "PING"],
                       capture_output=True, text=True).stdout.strip() == "PONG"
    srv.start()
    try:
        url = f"rediss://chat:s3%40cr%25t@127.0.0.1:{port}"
        a = roomd({"redis": url, "redis_tls_ca": f"{d}/ca.crt"}, workers=2)
        b = roomd({"redis": url, "redis_tls_ca": f"{d}/ca.crt"}, workers=1)

        async def main():
            rooms = {"secure": await room_of([a, b], "secure")}
            ledger = Ledger(rooms)
            ledger.start()
            await asyncio.sleep(1)
            await ledger.finish(1)
            sent, got, answered = ledger.check()["secure"]
            assert got == sent and answered == 0
            await counts_right(rooms)
            for c in rooms["secure"]:
                await c.close()
        run(main(), 60)
        for r in (a, b):
            assert "s3@cr" not in r.read_log() and "s3%40cr" not in r.read_log()
        # The CA that did not sign the server's certificate: refused, said why.
        os.makedirs(f"{d}/other", exist_ok=True)
        make_certs(f"{d}/other")
        bad = roomd({"redis": url, "redis_tls_ca": f"{d}/other/ca.crt"}, workers=1, start=False)
        bad.start(wait=False)
        bad.wait_log(r"(?i)certificate", 10)
        assert readyz(bad) == 503
        bad.stop(check=False)
        wrong = roomd({"redis": f"rediss://chat:nope@127.0.0.1:{port}", "redis_tls_ca": f"{d}/ca.crt"},
                      workers=1, start=False)
        wrong.start(wait=False)
        wrong.wait_log(r"(?i)WRONGPASS|invalid username-password", 10)
        assert readyz(wrong) == 503
        assert "nope" not in wrong.read_log()
        wrong.stop(check=False)
    finally:
        srv.kill()
