#!/usr/bin/python3
"""guard.py: roomd's performance guard, which a noisy machine cannot fool.

It counts the instructions (Ir, `valgrind --tool=callgrind`) that roomd's
worker spends on fixed scenarios and compares each figure with
tests/perf/baseline.txt. A scenario that costs more than 5 % over its
baseline fails.

Each scenario runs a fresh 1-worker roomd under callgrind twice: once with
N operations and once with 3N. Start-up, the scenario's set-up and the
shutdown are the same in both runs. So the difference in the worker's Ir,
divided by 2N, is the cost of one operation.

Counting gives the same figure every run only if roomd does the same work
every run, and that includes its loop turns: two readable sockets handled
in one turn cost less than the same two handled in two. The driver below
therefore runs in lock-step, and it decides what roomd finds ready at each
turn:
- It sends one thing and reads every frame that this causes. Before it
  sends the next, it waits until the worker sleeps in epoll_wait again
  (/proc/PID/stat and /proc/PID/syscall), so that no tail of one operation
  shares a turn with the next. Frames have fixed contents and sizes, and
  every client frame is masked with one fixed key.
- A new connection is accepted in one turn and its request read in the next:
  the request goes out only once the worker has accepted and gone back to
  sleep.
- A chat operation (enter, message) makes roomd send Redis one command that
  is answered on two links: the reply on one, the channel message on the
  other. If the worker woke on the first and ran before the second arrived,
  the operation would cost one loop turn more. So the guard holds the
  command in Redis (CLIENT PAUSE WRITE), stops the worker (SIGSTOP), lets
  Redis answer (CLIENT UNPAUSE, then a PING of its own that comes back after
  both answers were written) and only then lets the worker go on (SIGCONT).
  A worker stopped in epoll_wait gets EINTR from it when it goes on: one
  empty loop turn, the same in every chat operation.
- Chat members stay in their room to the end. roomd's graceful stop closes
  them all in one turn, with no "out" to anyone, and drops them at
  close_timeout in a tick. Closing them one by one would send each one's out
  to all that remain: as long again as the whole set-up, in a room of 1,000.
- Redis is the guard's own (the integration tests' RedisServer), started
  before roomd: a private Redis started by roomd's master is sometimes not
  ready for the worker's first attempt to connect, and a failed attempt
  costs instructions.
- json-c seeds its string hashes with getrandom(), so which keys of a chat
  event collide changes from process to process. fixed_random.c, preloaded,
  gives every run the same seed (and the same random bytes everywhere).
- The worker's pid is part of its Redis keys, member ids and log lines: the
  two runs of a scenario must have pids with as many digits.
- `rate_limit 0`, `heartbeat_interval 0`, `broadcast_coalesce 0`, day-long
  ping intervals and an hour-long presence_ttl keep roomd's timers out of the
  work. What is left is the worker's once-a-second tick; its instructions
  (each call of tick_cb with everything it calls, from the call graph) are
  taken out of the totals, so that a slow machine does not count more.
What still varies is a few thousand instructions a run (a log timestamp
formatted once a second, the digits of a duration, an idle tick's turn).
Measured three times on a loaded machine, the figures agreed within 0.5 %.

  tests/perf/guard.py                  check every scenario against the baseline
  tests/perf/guard.py --update         measure again and rewrite the baseline
  tests/perf/guard.py --runs 3         repeat each measurement; print the spread
  tests/perf/guard.py -s echo -s connect    only these scenarios

The binary is $ROOMD_BIN, else build/normal/src/roomd. Use the normal build
(configure --enable-werror, with LTO), never a sanitizer build. The figures
hold only for the compiler and libraries they were made with (Debian 12).
Every line of output begins "perf <scenario>:" and says "ok" or "FAIL".
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests"))
from roomclient import RedisServer  # noqa: E402  (the integration tests' Redis)
from roomd import free_port, wait_for  # noqa: E402
BASELINE = os.path.join(HERE, "baseline.txt")
LIMIT = 0.05                    # fail above baseline * (1 + LIMIT)
TIMEOUT = 120.0                 # any single wait on roomd under callgrind
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"      # one masking key for every frame: the same bytes every run
TEXT = b"perf-guard-message-0123456789ab!"      # the 32-byte chat and echo text
# The numbers of epoll_wait and epoll_pwait, as /proc/PID/syscall shows them.
EPOLL_WAIT = {"x86_64": ("232", "281"), "aarch64": ("22",)}.get(platform.machine(), ())


class Lockstep:
    """What roomd's worker finds ready at each loop turn (see the top of this file)."""

    def __init__(self, worker, redis):
        self.worker = worker
        self.redis = redis

    def _state(self):
        """(process state, the system call it sleeps in: a number, or "running")."""
        try:
            with open(f"/proc/{self.worker}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{self.worker}/syscall") as f:
                call = f.read().split()[0]
        except (OSError, IndexError):
            raise RuntimeError("roomd's worker is gone")
        return state, call

    def quiet(self):
        """Wait until the worker sleeps in epoll_wait: it has done everything it
        was given. Twice in a row, a moment apart, in case a wake-up has not
        shown yet."""
        seen = [0]

        def idle():
            state, call = self._state()
            seen[0] = seen[0] + 1 if state == "S" and call in EPOLL_WAIT else 0
            return seen[0] >= 2
        wait_for(idle, TIMEOUT, interval=0.0003, what="roomd's worker to go idle")

    def held(self):
        """Whether CLIENT PAUSE holds a command of roomd's."""
        info = self.redis.command("INFO", "clients")
        return int(re.search(r"blocked_clients:(\d+)", info).group(1)) > 0

    def stop(self):
        """SIGSTOP the worker and wait until it has stopped."""
        os.kill(self.worker, signal.SIGSTOP)
        wait_for(lambda: self._state()[0] == "T", TIMEOUT, interval=0.0002,
                 what="roomd's worker to stop")

    def through_redis(self, action):
        """action makes the worker send Redis one write command (a PUBLISH or a
        script): hold it, wait for the worker to finish what it was given,
        stop it, let Redis answer on both links, let the worker go on."""
        self.quiet()
        self.redis.command("CLIENT", "PAUSE", str(int(TIMEOUT * 1000)), "WRITE")
        try:
            action()
            wait_for(self.held, TIMEOUT, interval=0.0003, what="roomd's command for a chat operation")
            self.quiet()
            self.stop()
        finally:
            self.redis.command("CLIENT", "UNPAUSE")
        try:
            self.redis.command("PING")  # answered after both of roomd's answers were written
        finally:
            os.kill(self.worker, signal.SIGCONT)


# ---- a blocking WebSocket client that does exactly what it is told ----

class WS:
    """One client connection with blocking reads."""

    def __init__(self, port, path, ls):
        # The worker accepts in one turn, and reads the request in another.
        ls.quiet()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ls.quiet()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          .encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end])
        del self.buf[:end]
        if not head.startswith(b"HTTP/1.1 101 "):
            raise RuntimeError(f"upgrade refused: {head[:80]!r}")

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise RuntimeError("roomd closed the connection")
        self.buf += chunk

    def send(self, payload, opcode=0x1):
        n = len(payload)
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else \
            struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        masked = bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(head + MASK + masked)

    def frame(self):
        """(opcode, payload) of the next server frame."""
        while len(self.buf) < 2:
            self._fill()
        n = self.buf[1] & 0x7f
        h = 2 + (2 if n == 126 else 8 if n == 127 else 0)
        while len(self.buf) < h:
            self._fill()
        if n == 126:
            n = struct.unpack("!H", self.buf[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", self.buf[2:10])[0]
        while len(self.buf) < h + n:
            self._fill()
        op, data = self.buf[0] & 0x0f, bytes(self.buf[h:h + n])
        del self.buf[:h + n]
        return op, data

    def expect(self, what):
        """Read one text frame and check that it contains what."""
        op, data = self.frame()
        if op != 0x1 or what not in data:
            raise RuntimeError(f"expected a text frame with {what!r}, got opcode {op}: {data[:120]!r}")
        return data

    def close(self):
        """Close handshake, then wait for roomd to end the TCP connection."""
        self.send(struct.pack("!H", 1000), opcode=0x8)
        op, _ = self.frame()
        if op != 0x8:
            raise RuntimeError(f"expected a close frame, got opcode {op}")
        self.sock.shutdown(socket.SHUT_WR)
        while self.sock.recv(65536):
            pass
        self.sock.close()


# ---- scenarios: the set-up does not depend on n; the work is n operations ----
#
# A scenario returns the connections that stay open until roomd has stopped:
# chat members stay in their room (see the top of this file).

def enter(ls, ws, name, room):
    ls.through_redis(lambda: ws.send(b'{"event":"enter","message":"%s","roomid":"%s"}' % (name, room)))


def say(ls, ws):
    ls.through_redis(lambda: ws.send(b'{"event":"message","message":"%s"}' % TEXT))


def fanout(port, ls, n, members):
    """members join one room, member 0 says n things; every member gets each (itself too)."""
    conns = []
    for i in range(members):
        conns.append(WS(port, "/", ls))
        enter(ls, conns[i], b"u%d" % i, b"perf")
        for c in conns:
            c.expect(b'"enter"')
    for _ in range(n):
        say(ls, conns[0])
        for c in conns:
            c.expect(TEXT)
    return conns


def echo(port, ls, n):
    """n round trips of 32 bytes on /echo."""
    ws = WS(port, "/echo", ls)
    for _ in range(n):
        ws.send(TEXT)
        op, data = ws.frame()
        if (op, data) != (0x1, TEXT):
            raise RuntimeError(f"bad echo: opcode {op}, {data[:80]!r}")
    ws.close()
    return []


def connect(port, ls, n):
    """n chat connections, one after the other: upgrade, close handshake, TCP close."""
    for _ in range(n):
        WS(port, "/", ls).close()
    return []


def message(port, ls, n):
    """n chat messages in a room of one: parse, build, PUBLISH, and the one delivery back."""
    ws = WS(port, "/", ls)
    enter(ls, ws, b"solo", b"perf")
    ws.expect(b'"enter"')
    for _ in range(n):
        say(ls, ws)
        ws.expect(TEXT)
    return [ws]


# name: (driver, keyword arguments, n, unit, what one operation is)
SCENARIOS = {
    "delivery_room100": (fanout, {"members": 100}, 100, "delivery",
                         "one delivery into a room of 100 (its share of the message included)"),
    "delivery_room1000": (fanout, {"members": 1000}, 30, "delivery",
                          "one delivery into a room of 1,000 (its share of the message included)"),
    "echo": (echo, {}, 2000, "round trip", "one echo round trip of 32 bytes"),
    "connect": (connect, {}, 150, "connection",
                "one chat connection from accept to close, with its access line"),
    "message": (message, {}, 200, "message",
                "one chat message at its worker: parse, build, PUBLISH, delivery to a room of one"),
}


# ---- roomd under callgrind ----

def roomd_bin():
    path = os.environ.get("ROOMD_BIN") or os.path.join(TOP, "build", "normal", "src", "roomd")
    if not os.access(path, os.X_OK):
        sys.exit(f"guard: no roomd binary at {path}: build it (see README.md) or set ROOMD_BIN")
    return os.path.abspath(path)


class Server:
    """A 1-worker roomd on the guard's Redis, run under callgrind in its own directory."""

    def __init__(self, binary, workdir, redis, preload):
        self.dir = workdir
        self.port = free_port()
        self.log = os.path.join(workdir, "roomd.log")
        conf = os.path.join(workdir, "roomd.conf")
        settings = {
            "listen": f"127.0.0.1:{self.port}", "workers": "1", "log_file": self.log,
            "log_level": "info", "pidfile": os.path.join(workdir, "roomd.pid"),
            "redis": redis.url, "rate_limit": "0", "heartbeat_interval": "0",
            "broadcast_coalesce": "0", "ping_interval": "12h", "ping_timeout": "24h",
            "presence_ttl": "1h", "deflate": "off", "shutdown_timeout": "60s",
        }
        with open(conf, "w") as f:
            f.writelines(f"{k} {v}\n" for k, v in settings.items())
        self.stderr = open(os.path.join(workdir, "stderr.txt"), "wb")
        env = dict(os.environ, LD_PRELOAD=preload)
        self.proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "-q",
             f"--callgrind-out-file={workdir}/callgrind.out.%p", binary, "-c", conf],
            stdout=subprocess.DEVNULL, stderr=self.stderr, cwd=workdir, env=env)
        # Ready when the worker's Redis link is up (polling /healthz would add a
        # varying number of requests to the count), and once Redis has answered
        # what the worker sends when the link comes up.
        self.worker = int(self.wait_log(r"worker 0 started \(pid (\d+)\)").group(1))
        self.wait_log(r"worker 0 \[notice\] redis link up")
        time.sleep(0.5)

    def wait_log(self, pattern):
        rx = re.compile(pattern)

        def found():
            if self.proc.poll() is not None:
                raise RuntimeError(f"roomd exited with {self.proc.returncode}: {self.tail()}")
            try:
                with open(self.log, errors="replace") as f:
                    return rx.search(f.read())
            except FileNotFoundError:
                return None
        return wait_for(found, TIMEOUT, what=f"log line /{pattern}/")

    def tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-20:])
        except OSError:
            return "(no log)"

    def stop(self):
        """Graceful stop; returns the worker's callgrind output file."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("roomd did not stop within its timeout")
        self.stderr.close()
        out = os.path.join(self.dir, f"callgrind.out.{self.worker}")
        if not os.path.exists(out):
            raise RuntimeError(f"no callgrind output of the worker ({out}): {self.tail()}")
        with open(self.log, errors="replace") as f:
            if re.search(r"\[(alert|error)\]", f.read()):
                raise RuntimeError(f"roomd logged an error: {self.tail()}")
        return out

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.worker, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def total_ir(path):
    """Ir of the whole process from a callgrind output file."""
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError(f"{path}: no summary line")


def tick_ir(path):
    """Ir of the worker's periodic tick (the only clock-driven work): the
    inclusive cost on every call into tick_cb from outside it."""
    names, caller, into, take, total = {}, "", False, False, 0
    with open(path) as f:
        for line in f:
            if take:                    # the line after calls=: position, then inclusive cost
                total += int(line.split()[1])
                take = False
                continue
            m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(3):
                    names[m.group(2)] = m.group(3).strip()
                name = names.get(m.group(2), "").split(".")[0]    # tick_cb.lto_priv.0 too
                if m.group(1) == "fn":
                    caller = name
                else:
                    into = name == "tick_cb" and caller != "tick_cb"
            elif line.startswith("calls="):
                take, into = into, False
    return total


def build_preload(workdir):
    """Compile fixed_random.c into workdir; the path of the shared object."""
    so = os.path.join(workdir, "fixed_random.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o", so,
                    os.path.join(HERE, "fixed_random.c")], check=True)
    return so


def run_once(binary, name, n, keep, preload):
    """(Worker Ir less its ticks, worker pid) of one run of scenario name with n operations."""
    driver, kw, _, _, _ = SCENARIOS[name]
    workdir = tempfile.mkdtemp(prefix=f"roomd-perf-{name}-")
    redis = srv = None
    try:
        redis = RedisServer(os.path.join(workdir, "redis")).start()
        srv = Server(binary, workdir, redis, preload)
        ls = Lockstep(srv.worker, redis)
        left_open = driver(srv.port, ls, n, **kw)
        ls.quiet()
        out = srv.stop()
        for ws in left_open:
            ws.sock.close()
        return total_ir(out) - tick_ir(out), srv.worker
    finally:
        if srv is not None:
            srv.kill()
        if redis is not None:
            redis.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def measure(binary, name, preload, keep=False):
    """Ir per operation of scenario name: (Ir(3n) - Ir(n)) / (2n * units per operation)."""
    _, kw, n, _, _ = SCENARIOS[name]
    per = kw.get("members", 1)      # a fan-out message is `members` deliveries
    a, pid_a = run_once(binary, name, n, keep, preload)
    b, pid_b = run_once(binary, name, 3 * n, keep, preload)
    # The worker's pid is in its Redis keys, member ids and log lines: a pid
    # with one more digit costs more in the set-up, which would not cancel.
    for _ in range(3):
        if len(str(pid_a)) == len(str(pid_b)):
            break
        a, pid_a = run_once(binary, name, n, keep, preload)
    else:
        raise RuntimeError(f"no two runs whose worker pids have as many digits ({pid_a}, {pid_b})")
    return (b - a) / (2 * n * per)


def read_baseline():
    base = {}
    try:
        with open(BASELINE) as f:
            for line in f:
                line = line.split("#", 1)[0].split()
                if line:
                    base[line[0]] = float(line[1])
    except FileNotFoundError:
        pass
    return base


def describe_build():
    """(commit, compiler, valgrind) for the baseline's header."""
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    git = ["git", "-C", TOP, "log", "-1", "--format=%h"]
    head = subprocess.run(git, capture_output=True, text=True).stdout.strip() or "unknown"
    src = subprocess.run(git + ["--", "src", ":!src/bench"], capture_output=True,
                         text=True).stdout.strip() or "unknown"
    return f"{head} (roomd's sources last changed in {src})", (cc[0] if cc else "cc"), vg


def write_baseline(figures, runs):
    rev, cc, vg = describe_build()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# tests/perf/baseline.txt: what tests/perf/guard.py compares with.",
        "# Instructions (callgrind Ir) of roomd's worker per operation; a scenario",
        "# more than 5 % over its figure fails the guard. Made by",
        f"# `tests/perf/guard.py --update --runs {runs}` (see that file for the",
        f"# method; the median of {runs}) on {now},",
        f"# at commit {rev}:",
        "# normal build (configure --enable-werror, so with LTO),",
        f"# {cc}, {vg}, Debian 12's libraries.",
        "# Update it on purpose only, in the commit that changes the cost, and say why.",
        "#",
        "# scenario          Ir per op   unit: what",
    ]
    for name, (_, _, _, unit, what) in SCENARIOS.items():
        if name in figures:
            lines.append(f"{name:<19} {figures[name]:>9.1f}   {unit}: {what}")
    with open(BASELINE, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description="roomd's callgrind performance guard")
    ap.add_argument("--update", action="store_true", help="rewrite baseline.txt with new figures")
    ap.add_argument("--runs", type=int, default=1, help="measure each scenario this many times")
    ap.add_argument("-s", "--scenario", action="append", choices=list(SCENARIOS),
                    help="only this scenario (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories (callgrind files)")
    args = ap.parse_args()
    for tool in ("valgrind", "redis-server", "cc"):
        if shutil.which(tool) is None:
            sys.exit(f"guard: {tool} is not installed (run tests/install-deps.sh)")
    if not EPOLL_WAIT:
        sys.exit(f"guard: the system call numbers of epoll_wait on {platform.machine()} are not known")
    binary = roomd_bin()
    scratch = tempfile.mkdtemp(prefix="roomd-perf-")
    try:
        return check(args, binary, build_preload(scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check(args, binary, preload):
    """Measure the scenarios asked for; compare or write the baseline. The exit status."""
    names = args.scenario or list(SCENARIOS)
    base = read_baseline()
    figures, failed = {}, 0
    for name in names:
        unit = SCENARIOS[name][3]
        t0 = time.monotonic()
        try:
            runs = [measure(binary, name, preload, args.keep) for _ in range(max(1, args.runs))]
        except (RuntimeError, AssertionError, OSError, subprocess.CalledProcessError) as e:
            print(f"perf {name}: FAIL: the scenario did not run: {e}", flush=True)
            failed += 1
            continue
        took = time.monotonic() - t0
        fig = sorted(runs)[len(runs) // 2]
        figures[name] = fig
        spread = ""
        if len(runs) > 1:
            spread = (f"; runs {', '.join(f'{r:.1f}' for r in runs)}, spread "
                      f"{(max(runs) - min(runs)) / fig * 100:.3f} %")
        head = f"perf {name}: {fig:.1f} Ir per {unit}{spread} ({took:.0f} s)"
        if args.update:
            print(f"{head}: measured", flush=True)
            continue
        if name not in base:
            print(f"{head}: FAIL: no baseline for {name} in {BASELINE}; "
                  f"make one with `tests/perf/guard.py --update -s {name}`", flush=True)
            failed += 1
            continue
        change = fig / base[name] - 1
        if change > LIMIT:
            print(f"{head}: FAIL: {change * 100:+.1f} % against the baseline {base[name]:.1f}, "
                  f"more than {LIMIT * 100:.0f} % over. If the extra cost is intended, run "
                  f"`tests/perf/guard.py --update --runs 3` and commit tests/perf/baseline.txt "
                  f"saying why", flush=True)
            failed += 1
        elif change < -LIMIT:
            print(f"{head}: ok, {change * 100:+.1f} % against the baseline {base[name]:.1f}: "
                  f"lock the gain in with `tests/perf/guard.py --update`", flush=True)
        else:
            print(f"{head}: ok, {change * 100:+.1f} % against the baseline {base[name]:.1f}",
                  flush=True)
    if args.update and not failed:
        write_baseline(dict(base, **figures), max(1, args.runs))
        print(f"wrote {BASELINE}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
