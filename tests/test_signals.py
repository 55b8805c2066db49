"""The signal contract: TERM drains (WebSocket clients get 1001, idle
connections are closed) and a second TERM stops at once; HUP reloads into a
new worker generation, keeping the old config when the new one is bad and
keeping restart-only keys; USR1 reopens the log file."""
import asyncio
import base64
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
import websockets

from roomd import ROOMD_BIN, http_get, pid_alive, read_pid, stop_pid, wait_for
from roomclient import holder_of


def edit_config(r, **changes):
    """Rewrite r's config file with keys replaced (value None drops the key);
    new keys are appended. Returns the line number of each changed key."""
    with open(r.conf) as f:
        lines = f.read().splitlines()
    out, where = [], {}
    for line in lines:
        key = line.split(" ", 1)[0]
        if key in changes:
            if changes[key] is not None:
                out.append(f"{key} {changes[key]}")
                where[key] = len(out)
            changes = {k: v for k, v in changes.items() if k != key}
            continue
        out.append(line)
    for key, value in changes.items():
        if value is not None:
            out.append(f"{key} {value}")
            where[key] = len(out)
    with open(r.conf, "w") as f:
        f.write("\n".join(out) + "\n")
    return where


def ws_handshake(port, path="/echo"):
    """A raw socket that has completed the WebSocket opening handshake."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, f"connection closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert head.endswith(b"\r\n\r\n"), "no frame expected yet"
    return s


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def read_frame(s):
    """(opcode, payload) of one unmasked server frame."""
    b0, b1 = recv_exact(s, 2)
    assert not b1 & 0x80, "server frames are never masked"
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    return b0 & 0x0F, recv_exact(s, n)


def wait_eof(s, timeout=5.0):
    """True when the peer closes (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if s.recv(4096) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_sigterm_drains_websocket_and_idle_connections(roomd):
    r = roomd(workers=2, settings={"shutdown_timeout": "5s"})
    workers = r.worker_pids()
    # An idle connection mid-handshake: half a request head.
    idle = socket.create_connection(("127.0.0.1", r.port), timeout=5)
    idle.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    wait_for(lambda: holder_of(r.port, workers, idle.getsockname()[1]), 5, what="the idle connection accepted")

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{r.port}/echo", open_timeout=5,
                                      close_timeout=5) as ws:
            await ws.send("hello")
            assert await asyncio.wait_for(ws.recv(), 5) == "hello"
            started = time.monotonic()
            r.sigterm()
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None, "no close frame from the server"
            assert closed.value.rcvd.code == 1001
            assert closed.value.rcvd.reason == "server shutting down"
            await asyncio.wait_for(ws.wait_closed(), 5)
            assert ws.close_code == 1001
            return started

    started = asyncio.run(scenario())
    try:
        assert wait_eof(idle), "the idle connection was not closed"
    finally:
        idle.close()
    assert r.wait_exit(5) == 0
    assert time.monotonic() - started < 5.0, "the stop took longer than shutdown_timeout"
    assert not os.path.exists(r.pidfile)
    assert not any(pid_alive(p) for p in workers)
    log = r.read_log()
    assert "master [notice] graceful stop: draining 2 worker(s), up to 5000ms" in log
    assert "master [notice] all workers stopped; exiting" in log
    assert "shutdown_timeout passed" not in log and "killing them" not in log, log


def test_second_sigterm_stops_at_once(roomd):
    """A peer that never answers our close frame holds a graceful stop for up
    to close_timeout; a second TERM ends it at once."""
    r = roomd(workers=2, settings={"shutdown_timeout": "30s", "close_timeout": "3600s"})
    workers = r.worker_pids()
    s = ws_handshake(r.port)
    try:
        holder = wait_for(lambda: holder_of(r.port, workers, s.getsockname()[1]), 5, what="the holder")
        r.sigterm()
        opcode, payload = read_frame(s)
        assert opcode == 0x8
        assert payload == struct.pack("!H", 1001) + b"server shutting down"
        # The idle worker leaves; the master waits for the one holding our client.
        wait_for(lambda: r.worker_pids() == [holder], 5, what="only the holder left")
        with pytest.raises(subprocess.TimeoutExpired):
            r.proc.wait(1.0)
        assert pid_alive(holder)

        started = time.monotonic()
        r.sigterm()
        assert r.wait_exit(3) == 0
        assert time.monotonic() - started < 3.0
        assert wait_eof(s, 2), "the client was not disconnected"
    finally:
        s.close()
    assert not pid_alive(holder)
    assert not os.path.exists(r.pidfile)
    log = r.read_log()
    assert "master [notice] stopping at once" in log
    assert re.search(r"worker \d \[notice\] immediate stop: closing 1 connection\(s\) and exiting", log), log


def test_sighup_with_a_bad_config_keeps_running(roomd):
    r = roomd(workers=2)
    before = r.worker_pids()
    line = edit_config(r, workers="abc")["workers"]
    r.log_mark()
    r.sighup()
    r.wait_log(re.escape(f"master [error] reload failed: {r.conf}:{line}: workers wants a whole number, "
                         "got 'abc'; keeping the current configuration"))
    assert "starting worker generation" not in r.new_log()
    assert r.worker_pids() == before
    assert http_get(r.port, "/healthz")[0] == 200
    # The master still reloads once the file is fixed.
    edit_config(r, workers="2")
    r.log_mark()
    r.sighup()
    r.wait_log(r"reload: configuration re-read; starting worker generation 1")
    wait_for(lambda: len(r.worker_pids()) == 2 and not set(r.worker_pids()) & set(before), 5,
             what="a new generation")


def test_sighup_log_level_starts_a_new_generation(roomd):
    r = roomd(workers=2, settings={"log_level": "info"})
    before = r.worker_pids()
    assert http_get(r.port, "/healthz")[0] == 200
    assert "[debug]" not in r.read_log()

    edit_config(r, log_level="debug")
    r.log_mark()
    r.sighup()
    r.wait_log(r"master \[notice\] reload: configuration re-read; starting worker generation 1")
    after = wait_for(lambda: (lambda p: p if len(p) == 2 and not set(p) & set(before) else None)(
        r.worker_pids()), 5, what="two workers of the new generation")
    for p in before:
        r.wait_log(rf"master \[info\] old worker \(pid {p}\) exited with status 0")
        assert not pid_alive(p)
    for p in after:
        r.wait_log(rf"{p} worker \d \[info\] started \(generation 1,")
    r.log_mark()
    assert http_get(r.port, "/healthz")[0] == 200
    r.wait_log(r"worker \d \[debug\] conn \d+ .*accepted")
    assert r.healthy()


def test_sighup_keeps_restart_only_keys(roomd):
    r = roomd(workers=2)
    before = r.worker_pids()
    new_port = r.port
    while new_port == r.port:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            new_port = probe.getsockname()[1]
    edit_config(r, workers="3", listen=f"127.0.0.1:{new_port}", shutdown_timeout="7s")
    r.log_mark()
    r.sighup()
    r.wait_log(r"reload: configuration re-read; starting worker generation 1")
    log = r.new_log()
    assert ("master [warning] reload: workers changed from '2' to '3'; it takes effect after a restart, "
            "keeping '2'") in log
    assert ("master [warning] reload: listen changed; it takes effect after a restart, "
            "keeping the old addresses") in log
    assert "shutdown_timeout" not in log, "a reloadable key needs no warning"
    wait_for(lambda: len(r.worker_pids()) == 2 and not set(r.worker_pids()) & set(before), 5,
             what="two workers of the new generation")
    wait_for(lambda: not any(pid_alive(p) for p in before), 5, what="the old generation to exit")
    assert len(r.worker_pids()) == 2
    assert http_get(r.port, "/healthz")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", new_port), timeout=2).close()
    # The reloadable key did take effect: the next stop announces 7000ms.
    r.sigterm()
    assert r.wait_exit(10) == 0
    assert "graceful stop: draining 2 worker(s), up to 7000ms" in r.new_log()


def open_files(pid):
    """Paths of the files pid has open."""
    paths = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return paths
    for fd in fds:
        try:
            paths.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return paths


def test_sigusr1_reopens_the_log(roomd):
    r = roomd(workers=2, settings={"log_level": "debug"})
    rotated = r.log + ".1"
    os.rename(r.log, rotated)
    r.signal(signal.SIGUSR1)
    wait_for(lambda: "master [notice] log file reopened" in r.read_log(), 5, what="a fresh log file")
    # Master and workers each hold the new file and let go of the rotated one.
    procs = [r.pid] + r.worker_pids()
    wait_for(lambda: all(r.log in open_files(p) and rotated not in open_files(p) for p in procs), 5,
             what="every process to reopen the log")
    size = os.path.getsize(rotated)

    # Requests make the workers log (at debug, every connection logs).
    n = 0

    def both_workers_in_new_log():
        nonlocal n
        n += 1
        assert http_get(r.port, f"/no-such-path-{n}")[0] == 404
        return set(re.findall(r"worker (\d) \[\w+\] conn \d+ ", r.read_log())) == {"0", "1"}
    wait_for(both_workers_in_new_log, 5, interval=0.01, what="both workers logging to the new file")

    with open(rotated) as f:
        old = f.read()
    assert "listening on" in old and "log file reopened" not in old
    lines = len(re.findall(r"worker \d \[\w+\] conn ", r.read_log()))
    for i in range(10):
        assert http_get(r.port, f"/after-{i}")[0] == 404
    wait_for(lambda: len(re.findall(r"worker \d \[\w+\] conn ", r.read_log())) >= lines + 10, 5,
             what="ten more lines in the new log")
    assert os.path.getsize(rotated) == size, "a process still writes to the rotated file"


def test_sighup_reloads_a_daemon_started_with_a_relative_config(roomd):
    """`roomd -d -c roomd.conf` from the config's directory: the daemon
    changes to / but must still find its config on SIGHUP."""
    r = roomd(workers=1, start=False, settings={"daemonize": "yes"})
    launcher = subprocess.run([ROOMD_BIN, "-c", "roomd.conf"], cwd=r.dir, timeout=10,
                              stdin=subprocess.DEVNULL, capture_output=True)
    assert launcher.returncode == 0, launcher.stderr
    daemon = None
    try:
        daemon = wait_for(lambda: read_pid(r.pidfile), 5, what="the pidfile")
        wait_for(r.healthy, 5, what="the daemon serving")
        edit_config(r, log_level="debug")
        r.log_mark()
        os.kill(daemon, signal.SIGHUP)
        r.wait_log(r"reload failed|starting worker generation 1")
        assert "reload failed" not in r.new_log(), r.new_log()
    finally:
        if daemon:
            assert stop_pid(daemon, 10), "the daemon did not exit on SIGTERM"


def context_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        return sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)


def test_master_sleeps_while_draining_with_a_respawn_pending(roomd):
    """A stop that begins while a crashed worker waits out its backoff must
    not leave the master waking up every millisecond until the drain ends."""
    r = roomd(workers=2, settings={"shutdown_timeout": "30s", "close_timeout": "3600s"})
    s = ws_handshake(r.port)
    try:
        holder = wait_for(lambda: holder_of(r.port, r.worker_pids(), s.getsockname()[1]), 5, what="the holder")
        with open(f"/proc/{holder}/comm") as f:
            crasher = "roomd-w1" if f.read().strip() == "roomd-w0" else "roomd-w0"

        def crasher_pid(killed):
            for p in r.worker_pids():
                try:
                    with open(f"/proc/{p}/comm") as f:
                        if f.read().strip() == crasher and p not in killed:
                            return p
                except OSError:
                    pass
            return None
        killed = []
        for _ in range(3):      # backoff 100ms, 200ms, then 400ms pending
            p = wait_for(lambda: crasher_pid(killed), 5, interval=0.005, what="the crashing slot")
            os.kill(p, signal.SIGKILL)
            killed.append(p)
        wait_for(lambda: "respawning in 400ms" in r.read_log(), 2, interval=0.005, what="the 400ms backoff")
        r.log_mark()
        r.sigterm()
        r.wait_log("graceful stop")
        time.sleep(0.5)         # past the pending respawn's deadline
        before = context_switches(r.pid)
        time.sleep(0.5)
        woke = context_switches(r.pid) - before
        assert crasher_pid(killed) is None, "a worker was respawned during the stop"
        assert woke < 50, f"the master woke {woke} times in 0.5s while draining"
    finally:
        s.close()
    r.sigterm()
    assert r.wait_exit(5) == 0
