"""Zero-downtime restart: SIGUSR2 makes the master exec the binary again with
the listening sockets inherited; the new master's workers accept on the very
same sockets, then it retires the old master. Under a steady load of new
WebSocket handshakes not one is refused. If the binary cannot be exec'd the
old master keeps serving and its pidfile comes back.

The new master is a child of the old one (reparented when that exits), not
of the test's Popen: it is tracked through the pidfile and stopped by pid at
teardown."""
import os
import shutil
import signal
import threading
import time

import pytest

import roomd as roomd_mod
from roomd import children_of, http_get, pid_alive, read_pid, stop_pid, wait_for
from wsraw import (close_code, close_frame, connect, frame, read_frame, read_head, ws_echo_and_close,
                   ws_open, ws_request)


@pytest.fixture
def masters(roomd):
    """Stops, at teardown, every master named by a watched instance's pidfile
    (or its .oldbin) that the roomd fixture did not start itself."""
    watched = []

    class Watch:
        def watch(self, r):
            watched.append(r)
    yield Watch()
    lingering = []
    for r in watched:
        for path in (r.pidfile, r.pidfile + ".oldbin"):
            pid = read_pid(path)
            if pid and pid != r.pid and pid_alive(pid) and not stop_pid(pid):
                lingering.append(pid)
    assert not lingering, f"masters {lingering} needed SIGKILL"


def one_session(port):
    """Handshake on /echo, one message, close. Returns "ok", or "moved" when the
    old binary's worker closed it with 1001 after the 101; raises on a refusal."""
    s = connect(port)
    try:
        s.sendall(ws_request("/echo"))
        st, hdrs, rest = read_head(s)
        if st != 101:
            raise AssertionError(f"handshake answered {st or 'EOF'} {hdrs}")
        s.sendall(frame(1, b"load"))
        op, payload, rest = read_frame(s, rest)
        if op == 8:
            code = close_code(payload)
            if code != 1001:
                raise AssertionError(f"closed with {code} after the 101")
            return "moved"
        assert (op, payload) == (1, b"load"), (op, payload)
        s.sendall(close_frame(1000))
        op, payload, rest = read_frame(s, rest)
        assert op == 8
        return "ok"
    finally:
        s.close()


class Load:
    """Threads opening sessions in a loop until stopped; counts outcomes."""

    def __init__(self, port, threads=4):
        self.port = port
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "moved": 0}
        self.failures = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop_ev.is_set():
            try:
                what = one_session(self.port)
                with self.lock:
                    self.counts[what] += 1
            except Exception as e:      # every failure is a refusal to report
                with self.lock:
                    self.failures.append(f"{time.monotonic():.3f} {e!r}")

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(10)

    def check(self, min_ok=100):
        """Not one session failed, and at least min_ok went through."""
        assert not self.failures, (f"{len(self.failures)} failed of "
                                   f"{sum(self.counts.values()) + len(self.failures)}: "
                                   f"{self.failures[:5]}")
        assert self.counts["ok"] >= min_ok, self.counts


@pytest.mark.parametrize("drain_time", ["0s", "1s"])
def test_upgrade_under_load(roomd, masters, drain_time):
    """SIGUSR2 under ~3 s of new handshakes from 4 threads: zero refused or
    failed; then the pidfile names a new master whose 2 workers serve, the
    old master has exited 0 and PIDFILE.oldbin is gone."""
    r = roomd({"drain_time": drain_time, "shutdown_timeout": "5s"}, workers=2)
    masters.watch(r)
    old = r.pid
    old_workers = r.worker_pids()
    assert read_pid(r.pidfile) == old
    r.log_mark()
    load = Load(r.port).start()
    t0 = time.monotonic()
    try:
        wait_for(lambda: load.counts["ok"] >= 50 or load.failures, 5, what="load running")
        r.signal(signal.SIGUSR2)
        new = wait_for(lambda: (lambda p: p if p not in (0, old) else None)(read_pid(r.pidfile)),
                       10, what="the new master's pid in the pidfile")
        r.wait_log(r"binary upgrade: our workers are up; the old master \(pid %d\)" % old)
        assert r.wait_exit(10) == 0
        t_exit = time.monotonic()
        while time.monotonic() < max(t0 + 3.0, t_exit + 0.5):
            time.sleep(0.05)
    finally:
        load.stop()
    load.check(100)

    assert pid_alive(new) and not pid_alive(old)
    assert not os.path.exists(r.pidfile + ".oldbin")
    assert read_pid(r.pidfile) == new
    workers = children_of(new, "roomd-w")
    assert len(workers) == 2 and not set(workers) & set(old_workers), workers
    assert http_get(r.port, "/healthz")[0] == 200
    assert http_get(r.port, "/readyz")[0] == 200
    s, rest = ws_open(r.port)
    assert ws_echo_and_close(s, rest) == 1000
    log = r.new_log()
    assert "inherited from the previous binary" in log
    assert stop_pid(new), "the new master did not stop on SIGTERM"
    assert not os.path.exists(r.pidfile) and not os.path.exists(r.pidfile + ".oldbin")
    assert not any(pid_alive(p) for p in workers)


@pytest.mark.parametrize("drain_time", ["0s", "1s"])
def test_reload_under_load(roomd, drain_time):
    """SIGHUP under ~2 s of new handshakes: the new generation takes over the
    slots' sockets and not one handshake is refused, with or without a
    drain_time (the old generation must stop accepting at once: its
    replacements listen on the very same sockets)."""
    r = roomd({"drain_time": drain_time, "shutdown_timeout": "5s"}, workers=2)
    old = r.worker_pids()
    r.log_mark()
    load = Load(r.port).start()
    t0 = time.monotonic()
    try:
        wait_for(lambda: load.counts["ok"] >= 50 or load.failures, 5, what="load running")
        r.sighup()
        r.wait_log(r"reload: configuration re-read")
        wait_for(lambda: not set(r.worker_pids()) & set(old) and len(r.worker_pids()) == 2, 10,
                 what="the old generation gone")
        while time.monotonic() < t0 + 2.0:
            time.sleep(0.05)
    finally:
        load.stop()
    load.check(100)


def test_upgrade_exec_failure_keeps_serving(roomd, masters, tmp_path, monkeypatch):
    """The binary was deleted: SIGUSR2 fails to exec, the old master logs it,
    keeps its workers and its pidfile (renamed back from .oldbin) and keeps
    serving; with the binary back, the next SIGUSR2 succeeds."""
    orig = roomd_mod.ROOMD_BIN
    copy = tmp_path / "bin" / "roomd"
    copy.parent.mkdir()
    shutil.copy2(orig, copy)
    monkeypatch.setattr(roomd_mod, "ROOMD_BIN", str(copy))
    r = roomd({}, workers=2)
    masters.watch(r)
    workers = r.worker_pids()
    os.unlink(copy)
    r.log_mark()
    r.signal(signal.SIGUSR2)
    r.wait_log(r"binary upgrade failed: the new master exited with status 127; this master keeps serving")
    assert read_pid(r.pidfile) == r.pid
    assert not os.path.exists(r.pidfile + ".oldbin")
    assert r.proc.poll() is None and r.worker_pids() == workers
    assert http_get(r.port, "/healthz")[0] == 200
    s, rest = ws_open(r.port)
    assert ws_echo_and_close(s, rest) == 1000

    shutil.copy2(orig, copy)
    r.log_mark()
    r.signal(signal.SIGUSR2)
    new = wait_for(lambda: (lambda p: p if p not in (0, r.pid) else None)(read_pid(r.pidfile)),
                   10, what="the new master's pid in the pidfile")
    assert r.wait_exit(10) == 0
    assert not os.path.exists(r.pidfile + ".oldbin")
    wait_for(lambda: len(children_of(new, "roomd-w")) == 2, 5, what="the new master's workers")
    s, rest = ws_open(r.port)
    assert ws_echo_and_close(s, rest) == 1000
