"""Harness around the real roomd binary: a temporary directory with a generated
config, a free port, readiness proven by GET /healthz, signal helpers, and a
log check that fails on [alert] lines and sanitizer reports."""
import os
import re
import resource
import signal
import socket
import subprocess
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

    def children(self):
        """PIDs of the master's direct children."""
        try:
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.pid)],
                                 capture_output=True, text=True).stdout
        except OSError:
            return []
        return [int(x) for x in out.split()]

    def worker_pids(self):
        pids = []
        for p in self.children():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().startswith("roomd-w"):
                        pids.append(p)
            except OSError:
                pass
        return sorted(pids)

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
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

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
        if self.proc is not None and self.proc.poll() is None:
            self.sigterm()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if check:
            self.check_log()

    def read_stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except (OSError, AttributeError):
            return ""

    def check_log(self):
        """Fail on [alert] lines, sanitizer reports or valgrind errors in the log or stderr."""
        for name, text in (("log", self.read_log()), ("stderr", self.read_stderr())):
            bad = [l for l in text.splitlines() if BAD_LOG.search(l)]
            assert not bad, f"roomd {name} has alerts or sanitizer reports:\n" + text[-20000:]
