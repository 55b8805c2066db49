"""Processes for the tests, in one place: the harness around the real roomd
binary (a temporary directory with a generated config, a free port, readiness
proven by GET /healthz, signal helpers, and a log check that fails on [alert]
lines and sanitizer reports), the real redis-server and HAProxy that tests
run beside it, node scripts, and watching processes that are not our
children. Byte-level helpers are in wsraw.py, the chat client in
roomclient.py."""
import csv
import io
import os
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOMD_BIN = os.environ.get("ROOMD_BIN") or os.path.join(HERE, "..", "src", "roomd")
BAD_LOG = re.compile(r"\[alert\]|AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer"
                     r"|==\d+== (Invalid|Conditional|Syscall param|Mismatched)|definitely lost: [1-9]")
# ROOMD_VALGRIND=1 runs every instance under valgrind (slow: for a leak-check job).
VALGRIND = (["valgrind", "-q", "--leak-check=full", "--errors-for-leak-kinds=definite",
             "--show-leak-kinds=definite"] if os.environ.get("ROOMD_VALGRIND") else [])


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(n):
    """n distinct free ports: the sockets are held together, so the kernel cannot
    hand the same port out twice (two free_port() calls in a row sometimes do)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_cluster_ports(n):
    """n ports P free on 127.0.0.1 together with P + 10000, a Cluster node's bus
    port (so below 55536; outside the kernel's range for ephemeral ports)."""
    import random
    out = []
    for p in random.Random().sample(range(20000, 30000), 400):
        if len(out) == n:
            break
        socks = []
        try:
            for q in (p, p + 10000):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", q))
            out.append(p)
        except OSError:
            pass
        finally:
            for t in socks:
                t.close()
    assert len(out) == n, "no free ports for a Redis Cluster"
    return out


def raise_nofile(n):
    """Raise our soft RLIMIT_NOFILE towards n (as far as the hard limit allows); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def worker_hwm_kb(pid):
    """The peak resident size (VmHWM) of pid, in kB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def node_modules():
    """Where the tests' npm packages (ws) are: ROOMD_NODE_MODULES, or tests/node/node_modules."""
    return os.environ.get("ROOMD_NODE_MODULES") or os.path.join(HERE, "node", "node_modules")


def browser_modules():
    """Where playwright-core is: ROOMD_BROWSER_MODULES, or tests/browser/node_modules."""
    return os.environ.get("ROOMD_BROWSER_MODULES") or os.path.join(HERE, "browser", "node_modules")


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a true value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def http_get(port, path, timeout=5.0, host="127.0.0.1"):
    """(status, headers dict, body bytes) of a plain GET."""
    req = urllib.request.Request(f"http://{host}:{port}{path}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def read_text(path):
    """The text of a file (a log), "" if there is none (yet)."""
    if path is None:
        return ""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def make_cert(d, name, cn, serial, kind="ec"):
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl
    CLI in directory d: (cert path, key path)."""
    os.makedirs(d, exist_ok=True)
    cert, key = os.path.join(d, f"{name}.crt"), os.path.join(d, f"{name}.key")
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509", *newkey, "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", f"/CN={cn}", "-set_serial", str(serial),
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


# ---- processes ----

def comm(pid):
    """The process name of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def children(pid):
    """PIDs of pid's direct children (zombies included)."""
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                             text=True).stdout
    except OSError:
        return []
    return [int(x) for x in out.split()]


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(pid, comm_prefix=None):
    """The live children of pid (whose name starts with comm_prefix), sorted."""
    return sorted(p for p in children(pid) if (comm_prefix is None or (comm(p) or "").startswith(comm_prefix))
                  and pid_alive(p))


def read_pid(path):
    """The pid in a pidfile, 0 if there is none."""
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def stop_pid(pid, timeout=15.0):
    """SIGTERM a master we did not start (polling, as it is not our child); SIGKILL it
    and its workers if it lingers. Returns True if it stopped by itself."""
    if not pid_alive(pid):
        return True
    kids = children_of(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    for p in [pid] + kids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return False


def stop_process(proc, timeout=10.0):
    """SIGTERM a child we started and reap it; SIGKILL it after timeout seconds."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- node scripts ----

def node_for(package, modules=None, npm_dir="tests/node"):
    """The node binary, after checking that it and package (in modules, by
    default node_modules()) are there: a missing one fails the test with what
    to do, never skips it."""
    modules = modules or node_modules()
    exe = shutil.which("node")
    assert exe, "node is not installed (tests/install-deps.sh installs it; Debian: apt-get install nodejs)"
    assert os.path.isfile(os.path.join(modules, package, "package.json")), \
        f"{modules} has no {package} package: run `npm ci --prefix {npm_dir}` first"
    return exe


def run_node(script, *args, timeout):
    """Run tests/node/<script> with args to completion under node with the ws
    package: (exit status, stdout and stderr stripped)."""
    node_dir = os.path.join(HERE, "node")
    p = subprocess.run([node_for("ws"), os.path.join(node_dir, script), *args], capture_output=True,
                       text=True, timeout=timeout, cwd=node_dir, env=dict(os.environ, NODE_PATH=node_modules()))
    return p.returncode, (p.stdout + p.stderr).strip()


class NodeScript:
    """A node script run as our child and talked to while it runs: its output
    lines are queued as they come (a thread reads them), lines go to its stdin.
    Every wait has a bound; a script that fails shows all it printed."""

    def __init__(self, argv, cwd, env, name):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
        self.lines, self.out = queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.out.append(line)
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def output(self):
        return "".join(self.out)

    def _expect(self, match, what, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            got = match(line) if line else None
            if got is not None:
                return got
            if line is None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} never printed {what}\n{self.output()}")

    def expect_line(self, word, timeout):
        """Wait for a line that is exactly word."""
        self._expect(lambda line: True if line == word else None, word, timeout)

    def expect_prefix(self, prefix, timeout):
        """Wait for a line that starts with prefix; the rest of it, stripped."""
        return self._expect(lambda line: line[len(prefix):].strip() if line.startswith(prefix) else None,
                            prefix, timeout)

    def say(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout):
        """Wait for the script to exit; it must exit 0."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} ran over {timeout}s\n{self.output()}") from None
        time.sleep(0.05)    # let the pump take the last lines
        assert rc == 0, f"{self.name} exited {rc}\n{self.output()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Roomd:
    """One roomd instance (master + workers) in its own directory."""

    def __init__(self, tmpdir, settings=None, workers=2, port=None, args=None, env=None, wrap=None):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.workers = workers
        self.conf = os.path.join(self.dir, "roomd.conf")
        self.log = os.path.join(self.dir, "roomd.log")
        self.pidfile = os.path.join(self.dir, "roomd.pid")
        self.args = list(args or [])
        self.env = dict(os.environ, **(env or {}))
        self.wrap = list(wrap or [])     # a command that execs the rest (e.g. sh -c '... exec "$@"')
        self.proc = None
        self.log_offset = 0
        base = {
            "listen": f"127.0.0.1:{self.port}",
            "workers": str(workers),
            "log_file": self.log,
            "log_level": "info",
            "pidfile": self.pidfile,
            "shutdown_timeout": "5s",
        }
        base.update(settings or {})
        self.redis_setting = base.get("redis")
        self.write_config(base)

    def write_config(self, settings):
        """Write settings (dict; list values repeat the key) to the config file."""
        lines = []
        for k, v in settings.items():
            if v is None:
                continue
            for item in (v if isinstance(v, list) else [v]):
                lines.append(f"{k} {item}")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, wait=True):
        cmd = self.wrap + VALGRIND + [ROOMD_BIN, "-c", self.conf] + self.args
        self.stderr_path = os.path.join(self.dir, "stderr.txt")
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                         env=self.env, cwd=self.dir)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def healthy(self):
        try:
            return http_get(self.port, "/healthz", timeout=1.0)[0] == 200
        except OSError:
            return False

    def wait_ready(self, timeout=10.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"roomd exited with {self.proc.returncode}:\n{self.read_log()}"
                                     f"\nstderr: {self.read_stderr()}")
            return self.healthy() and len(self.worker_pids()) == self.workers
        wait_for(ready, timeout, what="roomd /healthz and all workers")
        # Rooms answer "unavailable" until every worker reaches Redis: wait for that
        # as well when there is a Redis to reach (the private one, or one that
        # accepts connections now); a test that starts roomd without one goes on.
        deadline = time.monotonic() + (5 if self.redis_reachable() else 0)
        while time.monotonic() < deadline:
            try:
                if http_get(self.port, "/readyz", timeout=1.0)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)

    def redis_reachable(self):
        m = re.fullmatch(r"rediss?://(?:[^@/]*@)?([^:/,]+):(\d+)(?:/\d+)?", self.redis_setting or "")
        if self.redis_setting is None or m is None:
            return self.redis_setting is None      # the private one; others are not probed
        try:
            socket.create_connection((m.group(1), int(m.group(2))), timeout=0.5).close()
            return True
        except OSError:
            return False

    def children(self):
        """PIDs of the master's direct children."""
        return children(self.pid)

    def worker_pids(self):
        return sorted(p for p in self.children() if (comm(p) or "").startswith("roomd-w"))

    def signal(self, sig):
        os.kill(self.pid, sig)

    def sighup(self):
        self.signal(signal.SIGHUP)

    def sigterm(self):
        self.signal(signal.SIGTERM)

    def wait_exit(self, timeout=15.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"roomd did not exit within {timeout}s")

    def read_log(self):
        return read_text(self.log)

    def log_mark(self):
        """Remember the current end of the log; new_log() returns what came after."""
        self.log_offset = len(self.read_log())

    def new_log(self):
        return self.read_log()[self.log_offset:]

    def wait_log(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.new_log()), timeout, what=f"log line /{pattern}/")

    def stop(self, check=True):
        """Graceful stop; then check the log for alerts and sanitizer reports."""
        stop_process(self.proc, 20)
        if check:
            self.check_log()

    def read_stderr(self):
        return read_text(getattr(self, "stderr_path", None))

    def check_log(self):
        """Fail on [alert] lines, sanitizer reports or valgrind errors in the log or stderr."""
        for name, text in (("log", self.read_log()), ("stderr", self.read_stderr())):
            bad = [l for l in text.splitlines() if BAD_LOG.search(l)]
            assert not bad, f"roomd {name} has alerts or sanitizer reports:\n" + text[-20000:]


# ---- a real redis-server ----

class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (no persistence); restartable on
    the same port. args are more command-line settings; the server runs from a
    config file of its own, so Sentinel and Cluster can rewrite it."""

    def __init__(self, tmpdir, port=None, args=()):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.args = list(args)
        self.conf = os.path.join(self.dir, "redis.conf")
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        if not os.path.exists(self.conf):
            with open(self.conf, "w") as f:
                f.write("# written by the tests; redis may rewrite it\n")
        self.proc = subprocess.Popen(
            ["redis-server", self.conf, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, 10, what=f"redis-server on port {self.port}")
        return self

    def ping(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}")
        try:
            return self.command("PING") == "PONG"
        except (OSError, RuntimeError):
            return False

    def connect(self):
        """A socket connected to the server (the lab's Redis reaches it another way)."""
        return socket.create_connection(("127.0.0.1", self.port), timeout=2)

    def command(self, *args):
        """One command over RESP; returns str/int/list (errors raise)."""
        with self.connect() as s:
            return resp_command(s, *args)

    def info(self, section):
        """INFO section as a dict."""
        return dict(l.split(":", 1) for l in self.command("INFO", section).splitlines()
                    if ":" in l and not l.startswith("#"))

    def cluster_info(self):
        """CLUSTER INFO as a dict."""
        return dict(l.split(":", 1) for l in self.command("CLUSTER", "INFO").split() if ":" in l)

    def kill(self):
        """SIGKILL: the server vanishes without a word, as a crashed host would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        stop_process(self.proc)


def resp_command(s, *args):
    """Send one command over RESP on socket s; its reply as str/int/list (errors raise)."""
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += f"${len(a)}\r\n".encode() + a + b"\r\n"
    s.sendall(out)
    return resp_reply(s.makefile("rb"))


def resp_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_reply(f) for _ in range(n)]
    raise RuntimeError(f"bad RESP line {line!r}")


class RedisSentinels:
    """A master with replicas, watched by three redis-sentinel processes
    (quorum 2, down after 1 s): roomd's setting is .url."""

    def __init__(self, tmpdir, replicas=2, sentinels=3, name="roomdm"):
        self.dir = str(tmpdir)
        self.name = name
        fast = ["--repl-diskless-sync-delay", "0"]
        self.nodes = [RedisServer(os.path.join(self.dir, "n0"), args=fast)]
        for i in range(replicas):
            self.nodes.append(RedisServer(os.path.join(self.dir, f"n{i + 1}"),
                                          args=fast + ["--replicaof", "127.0.0.1", str(self.nodes[0].port)]))
        self.sentinels = []
        for i, port in enumerate(free_ports(sentinels)):
            d = os.path.join(self.dir, f"s{i}")
            os.makedirs(d, exist_ok=True)
            self.sentinels.append((port, d, None))

    @property
    def url(self):
        hosts = ",".join(f"127.0.0.1:{p}" for p, _, _ in self.sentinels)
        return f"sentinel://{hosts}/{self.name}"

    def start(self):
        for n in self.nodes:
            n.start()
        wait_for(lambda: all(n.info("replication").get("master_link_status") == "up" for n in self.nodes[1:]),
                 20, interval=0.1, what="replicas in sync with the master")
        started = []
        for port, d, _ in self.sentinels:
            conf = os.path.join(d, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"port {port}\nbind 127.0.0.1\ndir {d}\nlogfile {d}/sentinel.log\n"
                        f"sentinel monitor {self.name} 127.0.0.1 {self.nodes[0].port} 2\n"
                        f"sentinel down-after-milliseconds {self.name} 1000\n"
                        f"sentinel failover-timeout {self.name} 6000\n"
                        f"sentinel parallel-syncs {self.name} 2\n")
            proc = subprocess.Popen(["redis-sentinel", conf], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            started.append((port, d, proc))
        self.sentinels = started
        want = len(self.nodes) - 1, len(self.sentinels) - 1

        def settled():
            try:
                return all((len(self.sentinel(i, "SENTINEL", "REPLICAS", self.name)),
                            len(self.sentinel(i, "SENTINEL", "SENTINELS", self.name))) == want
                           for i in range(len(self.sentinels)))
            except (OSError, RuntimeError):
                return False
        wait_for(settled, 30, interval=0.2, what="sentinels that know the replicas and each other")
        return self

    def sentinel(self, i, *args):
        with socket.create_connection(("127.0.0.1", self.sentinels[i][0]), timeout=2) as s:
            return resp_command(s, *args)

    def master(self):
        """The node the sentinels name as master now."""
        host, port = self.sentinel(0, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return next(n for n in self.nodes if n.port == int(port))

    def wait_master(self, not_port, timeout=20):
        """Wait until every sentinel names a master other than not_port and it says so itself."""
        def moved():
            try:
                ports = {int(self.sentinel(i, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)[1])
                         for i, (_, _, p) in enumerate(self.sentinels) if p.poll() is None}
                if len(ports) != 1 or not_port in ports:
                    return False
                m = next(n for n in self.nodes if n.port in ports)
                return m.info("replication").get("role") == "master"
            except (OSError, RuntimeError, StopIteration):
                return False
        wait_for(moved, timeout, interval=0.1, what=f"a new master in place of port {not_port}")
        return self.master()

    def stop(self):
        for _, _, p in self.sentinels:
            if p is not None:
                stop_process(p)
        for n in self.nodes:
            n.kill()


class RedisCluster:
    """A Redis Cluster on 127.0.0.1: masters with one replica each, created by
    redis-cli --cluster create (node timeout 2 s): roomd's setting is .url."""

    def __init__(self, tmpdir, masters=3, replicas=1):
        self.dir = str(tmpdir)
        self.masters_n = masters
        self.replicas = replicas
        self.nodes = [RedisServer(os.path.join(self.dir, f"n{i}"), port=port,
                                  args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                        "--cluster-node-timeout", "2000", "--repl-diskless-sync-delay", "0"])
                      for i, port in enumerate(free_cluster_ports(masters * (1 + replicas)))]

    @property
    def url(self):
        return "cluster://" + ",".join(n.addr for n in self.nodes[:self.masters_n])

    def start(self):
        for n in self.nodes:
            n.start()
        out = subprocess.run(["redis-cli", "--cluster", "create", *(n.addr for n in self.nodes),
                              "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        self.wait_ok()
        return self

    def wait_ok(self, timeout=30):
        def ok():
            try:
                return all(n.proc.poll() is not None or
                           (n.cluster_info().get("cluster_state") == "ok" and
                            n.cluster_info().get("cluster_slots_ok") == "16384")
                           for n in self.nodes)
            except (OSError, RuntimeError):
                return False
        wait_for(ok, timeout, interval=0.2, what="cluster_state:ok on every node")

    def table(self, via=None):
        """CLUSTER NODES as [(id, port, flags, master_id, slots)]."""
        via = via or next(n for n in self.nodes if n.proc.poll() is None)
        rows = []
        for line in via.command("CLUSTER", "NODES").splitlines():
            f = line.split()
            rows.append((f[0], int(f[1].split("@")[0].rsplit(":", 1)[1]), f[2], f[3], f[8:]))
        return rows

    def node(self, port):
        return next(n for n in self.nodes if n.port == port)

    def masters(self):
        """The masters that serve slots now (a node just created or just
        failed over may call itself master with none)."""
        return [self.node(p) for _, p, flags, _, slots in self.table()
                if "master" in flags and "fail" not in flags and any(not r.startswith("[") for r in slots)]

    def owner(self, slot):
        """The master serving slot now."""
        for _, port, flags, _, slots in self.table():
            if "master" not in flags or "fail" in flags:
                continue
            for r in slots:
                if r.startswith("["):
                    continue
                a, _, b = r.partition("-")
                if int(a) <= slot <= int(b or a):
                    return self.node(port)
        raise AssertionError(f"no master serves slot {slot}")

    def node_id(self, node):
        return node.command("CLUSTER", "MYID")

    def stop(self):
        for n in self.nodes:
            n.kill()


# ---- HAProxy ----

class HAProxy:
    """A real haproxy in the foreground (-db) on 127.0.0.1 with two frontends:
    tcp_port (mode tcp, send-proxy-v2 to the tcp servers) and http_port (mode
    http, option forwardfor, to the http servers). Both backends check
    GET /readyz every 200 ms (fall 2, rise 1). stats_port is the admin socket."""

    def __init__(self, tmpdir, tcp_servers, http_servers):
        self.dir = str(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.tcp_port, self.http_port, self.stats_port = free_ports(3)
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.logpath = os.path.join(self.dir, "haproxy.out")
        self.proc = None

        def servers(spec, extra):
            return "\n".join(f"    server {name} 127.0.0.1:{port}{extra}" for name, port in spec)
        with open(self.cfg, "w") as f:
            f.write(f"""global
    stats socket ipv4@127.0.0.1:{self.stats_port} level admin
    maxconn 2000

defaults
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    timeout check 1s
    default-server inter 200ms fastinter 200ms downinter 200ms fall 2 rise 1 check

frontend fe_tcp
    mode tcp
    bind 127.0.0.1:{self.tcp_port}
    default_backend be_tcp

backend be_tcp
    mode tcp
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers(tcp_servers, " send-proxy-v2")}

frontend fe_http
    mode http
    bind 127.0.0.1:{self.http_port}
    option forwardfor
    default_backend be_http

backend be_http
    mode http
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
{servers(http_servers, "")}
""")

    def start(self):
        if shutil.which("haproxy") is None:
            raise AssertionError("haproxy is not installed (tests/install-deps.sh installs it)")
        check = subprocess.run(["haproxy", "-c", "-f", self.cfg], capture_output=True, text=True)
        assert check.returncode == 0, f"haproxy -c: {check.stdout}{check.stderr}"
        with open(self.logpath, "ab") as out:
            self.proc = subprocess.Popen(self.command_line(), stdout=out,
                                         stderr=subprocess.STDOUT, cwd=self.dir)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.proc.returncode}: {self.output()}")
            try:
                return bool(self.stat())
            except OSError:
                return False
        wait_for(up, 10, what="haproxy stats socket")
        return self

    def command_line(self):
        """How haproxy is started: in the foreground, logging to stdout."""
        return ["haproxy", "-f", self.cfg, "-db"]

    def connect(self):
        """A socket connected to the admin socket."""
        return socket.create_connection(("127.0.0.1", self.stats_port), timeout=2)

    def output(self):
        return read_text(self.logpath)

    def command(self, cmd):
        with self.connect() as s:
            s.sendall(cmd.encode() + b"\n")
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        return data.decode()

    def stat(self):
        """Rows of `show stat` as dicts."""
        text = self.command("show stat").lstrip("# ")
        return [row for row in csv.DictReader(io.StringIO(text)) if row.get("pxname")]

    def status(self, backend):
        """{server name: status} of a backend ("UP", "DOWN", "UP 1/2"...)."""
        return {r["svname"]: r["status"] for r in self.stat()
                if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, backend, want, timeout=10.0):
        """Wait until every server named in want has exactly that status."""
        def ok():
            st = self.status(backend)
            return st if all(st.get(k) == v for k, v in want.items()) else None
        try:
            return wait_for(ok, timeout, interval=0.05, what=f"haproxy {backend} {want}")
        except AssertionError as e:
            raise AssertionError(f"{e}; now {self.status(backend)}") from None

    def stop(self):
        stop_process(self.proc)
