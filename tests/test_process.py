"""The process model: a master that binds, writes the pidfile and supervises
roomd-wN workers; daemonizing; respawn after a crash with backoff for crash
loops; the kernel's spread of connections over the SO_REUSEPORT workers; and
a clear failure when the address is taken."""
import os
import re
import resource
import signal
import socket
import subprocess
import time
from datetime import datetime

import pytest

from roomd import ROOMD_BIN, children, comm, http_get, pid_alive, read_pid, wait_for
from roomclient import holders


def slot_pid(r, slot):
    """The pid of worker `slot` (process name roomd-wSLOT), or None."""
    for p in r.worker_pids():
        if comm(p) == f"roomd-w{slot}":
            return p
    return None


def accepted_by(port, pids, client_ports):
    """{pid: n}: how many of the connections from client_ports (our local ports)
    to 127.0.0.1:port each pid holds, established ones only."""
    counts = {pid: 0 for pid in pids}
    for pid in holders(port, pids, client_ports, established=True).values():
        counts[pid] += 1
    return counts


def log_time(line):
    """The timestamp a log line starts with, in seconds."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def test_start_serves_and_forks_workers(roomd):
    r = roomd(workers=3)
    status, _, body = http_get(r.port, "/healthz")
    assert status == 200
    assert body.strip() == b"ok"
    workers = r.worker_pids()
    assert len(workers) == 3
    assert sorted(comm(p) for p in workers) == ["roomd-w0", "roomd-w1", "roomd-w2"]
    assert comm(r.pid) == "roomd"
    log = r.read_log()
    assert re.search(rf"{r.pid} master \[notice\] listening on 127\.0\.0\.1:{r.port} "
                     r"\(3 SO_REUSEPORT sockets\)", log), log
    for p in workers:
        assert re.search(rf"master \[info\] worker [0-2] started \(pid {p}\)", log), log
    with open(r.pidfile) as f:
        assert f.read() == f"{r.pid}\n"

    r.sigterm()
    assert r.wait_exit(10) == 0
    assert not os.path.exists(r.pidfile), "pidfile left behind after a graceful stop"
    assert not any(pid_alive(p) for p in workers)
    assert "master [notice] all workers stopped; exiting" in r.read_log()


def test_pidfile_of_a_live_process_is_not_clobbered(roomd):
    r = roomd(workers=1)
    other = roomd(workers=1, start=False, settings={"pidfile": r.pidfile})
    other.start(wait=False)
    assert other.wait_exit(10) == 1
    assert re.search(rf"pidfile {re.escape(r.pidfile)} names a running process \(pid {r.pid}\)",
                     other.read_log())
    with open(r.pidfile) as f:
        assert f.read() == f"{r.pid}\n"


@pytest.mark.parametrize("how", ["flag", "config"])
def test_daemonize(roomd, how):
    """-d or `daemonize yes`: the launcher exits 0, the daemon named by the
    pidfile serves, and SIGTERM stops it and removes the pidfile."""
    if how == "flag":
        r = roomd(start=False, args=["-d"])
    else:
        r = roomd(start=False, settings={"daemonize": "yes"})
    r.start(wait=False)
    assert r.wait_exit(5) == 0, "the launching process must exit 0"
    daemon = None
    try:
        daemon = wait_for(lambda: read_pid(r.pidfile), 5, what="pidfile")
        assert daemon != r.pid
        assert pid_alive(daemon)
        assert os.getsid(daemon) != os.getsid(0), "the daemon must leave our session"
        wait_for(r.healthy, 5, what="/healthz of the daemon")
        wait_for(lambda: sorted(c for c in map(comm, children(daemon)) if c and c.startswith("roomd-w")) ==
                 ["roomd-w0", "roomd-w1"], 5,
                 what="the daemon's two workers")
        assert re.search(rf"master \[notice\] listening on 127\.0\.0\.1:{r.port}", r.read_log())

        os.kill(daemon, signal.SIGTERM)
        wait_for(lambda: not pid_alive(daemon), 10, what="the daemon to exit")
        wait_for(lambda: not os.path.exists(r.pidfile), 2, what="pidfile removal")
        assert "all workers stopped; exiting" in r.read_log()
    finally:
        if daemon is not None and pid_alive(daemon):
            os.kill(daemon, signal.SIGKILL)


def test_kill9_worker_is_replaced(roomd):
    """A worker that ran for a while and dies is replaced at once in its slot."""
    r = roomd(workers=2)
    victim, other = slot_pid(r, 1), slot_pid(r, 0)
    # Only a worker older than 2 s counts as a plain crash, not a crash loop
    # (counted from when roomd was up: a loaded machine may start it late).
    time.sleep(2.2)
    r.log_mark()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    new = wait_for(lambda: (lambda p: p if p not in (None, victim) else None)(slot_pid(r, 1)),
                   1.0, interval=0.01, what="a new roomd-w1")
    # It serves: the new worker logs that it started, and takes connections.
    r.wait_log(rf"{new} worker 1 \[info\] started \(generation 0", timeout=1.0)
    assert time.monotonic() - killed_at < 1.0
    assert r.worker_pids() == sorted([new, other])
    assert re.search(rf"master \[error\] worker 1 \(pid {victim}\) killed by signal 9 \(Killed\); respawning",
                     r.new_log()), r.new_log()
    assert "crash loop" not in r.new_log()
    for _ in range(5):
        assert http_get(r.port, "/healthz", timeout=2)[0] == 200
    socks = [socket.create_connection(("127.0.0.1", r.port)) for _ in range(40)]
    try:
        ports = {s.getsockname()[1] for s in socks}
        counts = wait_for(lambda: (lambda c: c if sum(c.values()) == 40 else None)(
            accepted_by(r.port, [new, other], ports)), 5, what="40 connections accepted")
        assert counts[new] > 0, f"the new worker accepted nothing: {counts}"
    finally:
        for s in socks:
            s.close()


def test_healthz_answers_while_a_worker_respawns(roomd):
    r = roomd(workers=2)
    victim = slot_pid(r, 0)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    statuses = []
    while time.monotonic() < deadline:
        statuses.append(http_get(r.port, "/healthz", timeout=2)[0])
    assert statuses and set(statuses) == {200}
    wait_for(lambda: slot_pid(r, 0) not in (None, victim), 1.0, what="roomd-w0 back")


def test_crash_loop_backoff(roomd):
    """Killing a worker right after each start gives 'crash loop' with delays
    of 100, 200, 400, 800ms, and exactly one fork per death."""
    r = roomd(workers=2)
    steady = slot_pid(r, 1)
    killed, gaps, killed_at = [], [], None
    for _ in range(4):
        pid = wait_for(lambda: (lambda p: p if p is not None and p not in killed else None)(slot_pid(r, 0)),
                       5, interval=0.005, what="roomd-w0 to be back")
        if killed:
            gaps.append(time.monotonic() - killed_at)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        killed.append(pid)
    wait_for(lambda: slot_pid(r, 0) not in (None, *killed), 5, interval=0.005, what="the last respawn")
    gaps.append(time.monotonic() - killed_at)
    r.wait_ready(5)
    log = r.read_log()

    crashes = re.findall(r"worker 0 \(pid (\d+)\) killed by signal 9 \(Killed\) after (\d+)ms; "
                         r"respawning in (\d+)ms \(crash loop\)", log)
    assert [int(c[0]) for c in crashes] == killed, log
    delays = [int(c[2]) for c in crashes]
    print(f"\nbackoff delays from the log: {delays} ms; measured gaps: "
          f"{[round(g * 1000) for g in gaps]} ms")
    assert delays == [100, 200, 400, 800]
    assert all(int(c[1]) < 2000 for c in crashes)
    for delay, gap in zip(delays, gaps):
        assert gap >= delay / 1000 * 0.9, f"respawned after {gap:.3f}s, before the {delay}ms backoff"

    # One fork per death, each after its delay: no tight loop.
    lines = log.splitlines()
    starts = [l for l in lines if re.search(r"master \[info\] worker 0 started \(pid \d+\)", l)]
    assert len(starts) == len(killed) + 1, "\n".join(starts)
    deaths = [l for l in lines if "respawning in" in l and "worker 0 " in l]
    for death, start, delay in zip(deaths, starts[1:], delays):
        waited = log_time(start) - log_time(death)
        assert waited >= delay / 1000 - 0.005, f"forked {waited:.3f}s after a {delay}ms backoff"
    # The other slot was never touched and the service is whole again.
    assert slot_pid(r, 1) == steady
    assert http_get(r.port, "/healthz")[0] == 200


def test_connections_spread_over_workers(roomd):
    """1000 connections over 2 SO_REUSEPORT workers: neither gets more than
    1.5x the other's share."""
    n = 1000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    r = roomd(workers=2, settings={"handshake_timeout": "60s"})
    workers = r.worker_pids()
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", r.port), timeout=5))
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == n
        counts = wait_for(lambda: (lambda c: c if sum(c.values()) == n else None)(
            accepted_by(r.port, workers, ports)), 8, what=f"{n} connections accepted")
        split = {comm(p): c for p, c in counts.items()}
        print(f"\nconnection split over {len(workers)} workers: {split}")
        assert max(counts.values()) <= 1.5 * min(counts.values()), split
    finally:
        for s in socks:
            s.close()
    # The workers drop the closed connections and keep serving.
    assert http_get(r.port, "/healthz")[0] == 200


@pytest.mark.parametrize("holder", ["roomd", "plain-socket", "reuseport-socket"])
def test_bind_conflict(roomd, tmp_path, holder):
    """Starting on a taken address fails with the bind error and exit 1; a
    running roomd and its pidfile are left alone."""
    first, hold = None, None
    if holder == "roomd":
        first = roomd(workers=2)
        port = first.port
        before = first.worker_pids()
    else:
        hold = socket.socket()
        if holder == "reuseport-socket":
            hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        hold.bind(("127.0.0.1", 0))
        hold.listen(8)
        port = hold.getsockname()[1]
    try:
        pidfile = first.pidfile if first else str(tmp_path / "second.pid")
        conf = tmp_path / "second.conf"
        conf.write_text(f"listen 127.0.0.1:{port}\nworkers 2\npidfile {pidfile}\n")
        p = subprocess.run([ROOMD_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=10,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 1
        assert re.search(rf"\[error\] bind\(127\.0\.0\.1:{port}\) failed \(98: Address already in use\)",
                         p.stderr), p.stderr
        assert "cannot listen; exiting" in p.stderr
        if first:
            assert first.healthy()
            assert first.worker_pids() == before
            with open(first.pidfile) as f:
                assert f.read() == f"{first.pid}\n", "the failed start touched the pidfile"
        else:
            assert not os.path.exists(pidfile)
    finally:
        if hold:
            hold.close()


def test_daemonize_reports_bind_failure(roomd, tmp_path):
    """With -d, a start that cannot bind must still fail with exit 1 in the
    launching process (as nginx does: bind, then daemonize), so init scripts
    and `systemd Type=forking` see the failure."""
    first = roomd(workers=1)
    second = roomd(workers=1, start=False, port=first.port, args=["-d"],
                   settings={"pidfile": str(tmp_path / "second.pid")})
    second.start(wait=False)
    rc = second.wait_exit(5)
    assert wait_for(lambda: re.search(r"bind\(127\.0\.0\.1:\d+\) failed \(98: Address already in use\)",
                                      second.read_log()), 5, what="the bind error in the log")
    assert rc == 1, "roomd -d exited 0 although it could not bind"


def test_default_worker_count_is_one_per_cpu(roomd):
    ncpu = os.sysconf("SC_NPROCESSORS_ONLN")
    r = roomd(workers=min(ncpu, 256), settings={"workers": "0"})
    assert len(r.worker_pids()) == min(ncpu, 256)
