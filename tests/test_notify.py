"""systemd's notify protocol as the real binary speaks it. CI has no systemd as
PID 1, so a unix datagram socket named by NOTIFY_SOCKET stands in for it and
records every message with its sender's pid (SCM_CREDENTIALS, which systemd
checks for NotifyAccess=main): READY=1 only once every worker runs and reached
Redis; RELOADING=1 with MONOTONIC_USEC on SIGHUP, then READY=1 when the new
workers stand; STOPPING=1 when a stop begins; WATCHDOG=1 only while the
workers tick; and on a binary upgrade MAINPID= naming the new master, sent by
the old one, after which the new master pings the watchdog."""
import collections
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from readouts import scrape
from roomd import ROOMD_BIN, RedisServer, children_of, pid_alive, read_pid, stop_pid, wait_for
from wsraw import ws_open

Msg = collections.namedtuple("Msg", "t pid fields raw")
UCRED = struct.Struct("iII")    # struct ucred: pid, uid, gid


def built_with_systemd():
    out = subprocess.run([ROOMD_BIN, "-v"], capture_output=True, text=True, timeout=10).stdout
    return re.search(r"\blibsystemd \d+", out) is not None


class NotifySocket:
    """The service manager's end: every datagram, in order of arrival, as
    Msg(monotonic time, sender pid, {NAME: value}, raw text)."""

    def __init__(self):
        # A short directory of our own: a unix socket path has at most 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="roomd-sd.")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.msgs = []
        self.cursor = 0

    def env(self, **extra):
        return dict(NOTIFY_SOCKET=self.path, **extra)

    def _pump(self, timeout):
        """Wait up to timeout for a datagram, then take every one queued."""
        if not select.select([self.sock], [], [], max(timeout, 0))[0]:
            return
        while True:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
            except BlockingIOError:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = UCRED.unpack(payload[:UCRED.size])[0]
            text = data.decode()
            fields = dict(line.partition("=")[::2] for line in text.split("\n") if line)
            self.msgs.append(Msg(time.monotonic(), pid, fields, text))

    def next(self, pred, timeout, what):
        """The first message after the cursor that pred accepts; moves the cursor past it."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.cursor, len(self.msgs)):
                if pred(self.msgs[i]):
                    self.cursor = i + 1
                    return self.msgs[i]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout}s; got {[m.raw for m in self.msgs]}")
            self._pump(left)

    def collect(self, seconds):
        """Every message from the cursor to `seconds` from now; moves the cursor to the end."""
        deadline = time.monotonic() + seconds
        self._pump(0)
        while time.monotonic() < deadline:
            self._pump(deadline - time.monotonic())
        got, self.cursor = self.msgs[self.cursor:], len(self.msgs)
        return got

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def is_ready(m):
    return m.fields.get("READY") == "1"


def is_ping(m):
    return m.fields.get("WATCHDOG") == "1"


@pytest.fixture
def notify():
    assert built_with_systemd(), (f"{ROOMD_BIN} -v names no libsystemd: it was built without systemd "
                                  "support (install libsystemd-dev, as tests/install-deps.sh does, "
                                  "and run configure again)")
    n = NotifySocket()
    yield n
    n.close()


def redis_links_up(port):
    return scrape(port).value("roomd_redis_links_up")


def test_ready_once_every_worker_reached_redis(roomd, notify, tmp_path):
    """With Redis not yet running, both workers run and /healthz answers, yet
    no READY=1 comes, only a status saying how many are ready; READY=1 comes
    once Redis is up, from the master, naming it as MAINPID, when both
    workers' Redis links are up."""
    redis = RedisServer(tmp_path / "redis")      # its port is chosen; nothing listens there yet
    r = roomd({"redis": redis.url}, workers=2, env=notify.env())
    try:
        first = notify.next(lambda m: "STATUS" in m.fields, 5, "a first STATUS=")
        assert first.pid == r.pid, f"sent by pid {first.pid}, the master is {r.pid}"
        waiting = [first] + notify.collect(1.5)
        assert not any(is_ready(m) for m in waiting), [m.raw for m in waiting]
        assert any(m.fields.get("STATUS") == "starting: 0 of 2 worker(s) ready" for m in waiting), \
            [m.raw for m in waiting]
        assert len(r.worker_pids()) == 2
        redis.start()
        ready = notify.next(is_ready, 20, "READY=1 after Redis came up")
        assert redis_links_up(r.port) == 2
        assert ready.pid == r.pid and ready.fields.get("MAINPID") == str(r.pid), ready
        assert re.fullmatch(r"2 worker\(s\), \d+ connection\(s\)", ready.fields.get("STATUS", "")), ready
        assert not any(is_ping(m) for m in notify.msgs), "WATCHDOG=1 without WATCHDOG_USEC"
        r.stop()
    finally:
        redis.stop()


def test_reload_sends_reloading_then_ready_when_new_workers_stand(roomd, notify):
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC in us, taken
    after the signal), then READY=1 once the new generation's two workers run
    and each logged its Redis link up."""
    r = roomd({}, workers=2, env=notify.env())
    notify.next(is_ready, 10, "READY=1 at startup")
    old = r.worker_pids()
    r.log_mark()
    before = time.monotonic_ns() // 1000
    r.sighup()
    reloading = notify.next(lambda m: m.fields.get("RELOADING") == "1", 10, "RELOADING=1")
    after = time.monotonic_ns() // 1000
    assert reloading.pid == r.pid
    assert before <= int(reloading.fields["MONOTONIC_USEC"]) <= after, (before, reloading.raw, after)
    ready = notify.next(is_ready, 10, "READY=1 after the reload")
    assert ready.pid == r.pid
    log = r.new_log()
    new = [p for p in children_of(r.pid, "roomd-w") if p not in old]
    assert len(new) == 2, (old, new)
    for p in new:
        assert re.search(rf" {p} worker \d \[notice\] redis link up", log), f"worker {p} not up at READY=1:\n{log}"
    assert not any(is_ping(m) for m in notify.msgs), "WATCHDOG=1 without WATCHDOG_USEC"


def test_failed_reload_ends_at_once(roomd, notify):
    """A SIGHUP with a broken config still ends its reload (RELOADING=1, then
    READY=1 at once), and the status says why; the workers stay."""
    r = roomd({}, workers=1, env=notify.env())
    notify.next(is_ready, 10, "READY=1 at startup")
    workers = r.worker_pids()
    with open(r.conf, "a") as f:
        f.write("workers many\n")
    r.sighup()
    notify.next(lambda m: m.fields.get("RELOADING") == "1", 10, "RELOADING=1")
    ready = notify.next(is_ready, 5, "READY=1 after the failed reload")
    assert ready.fields["STATUS"].startswith(f"reload failed: {r.conf}:"), ready.raw
    assert "running with the previous configuration" in ready.fields["STATUS"]
    assert r.worker_pids() == workers


def test_stopping_when_the_drain_begins(roomd, notify):
    """SIGTERM: STOPPING=1 comes from the master as the drain begins (a
    client that never answers the close keeps it going), nothing after it
    claims readiness or liveness, and the master exits 0."""
    r = roomd({"close_timeout": "5s"}, workers=1,
              env=notify.env(WATCHDOG_USEC="2000000"))
    notify.next(is_ready, 10, "READY=1 at startup")
    s, _ = ws_open(r.port)      # never reads: its close handshake waits for close_timeout
    try:
        r.sigterm()
        stopping = notify.next(lambda m: m.fields.get("STOPPING") == "1", 5, "STOPPING=1")
        assert r.proc.poll() is None, "STOPPING=1 came after the master exited"
        assert stopping.pid == r.pid
        assert stopping.fields.get("STATUS", "").startswith("stopping:"), stopping.raw
    finally:
        s.close()
    assert r.wait_exit(15) == 0
    after = notify.collect(0.2)
    assert not any(is_ready(m) or is_ping(m) for m in after), [m.raw for m in after]


def test_watchdog_pings_only_while_workers_tick(roomd, notify):
    """With WATCHDOG_USEC=1s the master pings well within the timeout; when a
    worker stops (SIGSTOP: alive, but its loop no longer turns) the pings
    stop and the master says why; they resume once it runs again."""
    r = roomd({}, workers=2, env=notify.env(WATCHDOG_USEC="1000000"))
    notify.next(is_ready, 10, "READY=1 at startup")
    pings = [m for m in notify.collect(2.0) if is_ping(m)]
    assert len(pings) >= 4, f"{len(pings)} pings in 2s"
    assert all(m.pid == r.pid for m in pings)
    gaps = [b.t - a.t for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.5, f"pings {gaps} apart; the timeout is 1s"
    stuck = r.worker_pids()[0]
    r.log_mark()
    os.kill(stuck, signal.SIGSTOP)
    try:
        r.wait_log(rf"worker \d \(pid {stuck}\) has not ticked for over \d+ms: no watchdog pings", 10)
        notify.collect(0)       # what was sent before that line
        quiet = notify.collect(2.0)
        assert not any(is_ping(m) for m in quiet), "WATCHDOG=1 while a worker was stopped"
    finally:
        os.kill(stuck, signal.SIGCONT)
    notify.next(is_ping, 5, "WATCHDOG=1 once the worker runs again")
    r.wait_log(r"every worker ticks again: watchdog pings resume")


def test_upgrade_hands_the_main_pid_to_the_new_master(roomd, notify):
    """SIGUSR2 under a watchdog meant for the master (WATCHDOG_PID, as systemd
    sets it): once the new master's workers stand, the old master, still the
    main process, sends MAINPID= naming the new one and never STOPPING=1; the
    old master exits 0; the new master then pings the watchdog itself, and
    sends STOPPING=1 when it is stopped."""
    wrap = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"', "sh"]
    r = roomd({}, workers=1, env=notify.env(WATCHDOG_USEC="2000000"), wrap=wrap)
    old = r.pid
    notify.next(is_ready, 10, "READY=1 at startup")
    notify.next(lambda m: is_ping(m) and m.pid == old, 5, "WATCHDOG=1 from the master")
    new = None
    lingering = []
    try:
        r.signal(signal.SIGUSR2)
        handover = notify.next(lambda m: m.fields.get("MAINPID") not in (None, str(old)), 15,
                               "MAINPID= naming a new master")
        new = int(handover.fields["MAINPID"])
        assert handover.pid == old, f"MAINPID= came from pid {handover.pid}, the main process is {old}"
        assert wait_for(lambda: read_pid(r.pidfile) == new, 10, what="the pidfile naming the new master")
        assert r.wait_exit(15) == 0
        notify.next(lambda m: is_ping(m) and m.pid == new, 5, "WATCHDOG=1 from the new master")
        from_old = [m.raw for m in notify.msgs if m.pid == old]
        assert not any("STOPPING=1" in raw for raw in from_old), from_old
        os.kill(new, signal.SIGTERM)
        stopping = notify.next(lambda m: m.fields.get("STOPPING") == "1", 10, "STOPPING=1")
        assert stopping.pid == new
        wait_for(lambda: not pid_alive(new), 15, what="the new master to exit")
    finally:
        # The new master is not our child: stop it by pid even when no MAINPID= named it.
        for pid in {new, read_pid(r.pidfile)} - {None, 0, old}:
            if not stop_pid(pid):
                lingering.append(pid)
    assert not lingering, f"new master(s) {lingering} needed SIGKILL"
