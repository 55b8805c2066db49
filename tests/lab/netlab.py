"""The deployment lab: roomd hosts, HAProxy, Redis and chat clients, each in a
network namespace of its own, joined by veth pairs to two bridges that live in
a namespace of their own, and the faults real deployments meet, made with the
kernel's tools.

    front 198.18.1.0/24  clients (.21..) -- HAProxy (.2) -- hosts A B C (.11 .12 .13)
    back  198.18.2.0/24  hosts A B C (.11 .12 .13) -- Redis (.2)

Redis is one server, or (sentinel=True) a master, two replicas and three
sentinels, all in the Redis namespace on .2 (LabSentinels).

Every address is inside 198.18.0.0/15 (RFC 2544's range for test labs) and
no namespace has a default route: up() proves that nothing can leave before
it starts a process. Namespace names carry PREFIX; a lock file serialises labs
on one machine, so namespaces with PREFIX found while holding it are a stale
lab from a killed run and are removed. down() kills every process in every lab
namespace (the kernel's list, `ip netns pids`, so nothing escapes by forking or
by a binary upgrade) and deletes the namespaces, and is safe to call twice.

Also a command line for trying roomd's failure modes by hand: lab.sh wraps
`python3 netlab.py up|down|status` (see tests/README.md)."""
import contextlib
import ctypes
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from roomd import (ROOMD_BIN, HAProxy, RedisSentinels, RedisServer, Roomd,  # noqa: E402
                   children_of, stop_pid, wait_for)
from wsraw import read_to_close  # noqa: E402

PREFIX = "rlab-"
LOCK = "/run/lock/roomd-lab.lock"
FRONT = "198.18.1."
BACK = "198.18.2."
HAPROXY_IP = FRONT + "2"
REDIS_IP = BACK + "2"
WS_PORT = 8080          # roomd's proxy_protocol listener, for HAProxy
PLAIN_PORT = 8081       # roomd's plain listener on the namespace's own 127.0.0.1
LB_PORT = 80            # HAProxy's frontend
HOST_NAMES = "ABCDEFGH"
CHECK_INTER_MS = 1000   # HAProxy's /readyz check: inter 1s fall 2 rise 1
CHECK_FALL = 2

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ns_run(ns, argv, check=True, timeout=20, **kw):
    """Run argv inside namespace ns (or in ours if ns is None); CompletedProcess."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def ip(*args, check=True):
    return ns_run(None, ["ip"] + list(args), check=check)


def lab_namespaces(prefix=PREFIX):
    out = ip("-j", "netns", "list").stdout.strip()
    return sorted(n["name"] for n in (json.loads(out) if out else []) if n["name"].startswith(prefix))


def ns_pids(ns):
    p = ip("netns", "pids", ns, check=False)
    return [int(x) for x in p.stdout.split()] if p.returncode == 0 else []


def ns_socket(ns, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket that belongs to namespace ns: made by a thread that joined ns
    (setns moves only the calling thread). The socket stays in ns for life,
    so the test can use it from any thread or event loop."""
    out = {}

    def make():
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}) failed: {os.strerror(e)}")
            finally:
                os.close(fd)
            out["s"] = socket.socket(family, kind)
        except BaseException as e:  # handed to the caller
            out["e"] = e
    t = threading.Thread(target=make)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["s"]


def ns_connect(ns, addr, port, timeout=5.0):
    s = ns_socket(ns)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
    except OSError:
        s.close()
        raise
    return s


def ns_http(ns, addr, port, path, timeout=2.0):
    """(status, body) of GET path from inside ns; status 0 if nothing answered in time."""
    try:
        s = ns_connect(ns, addr, port, timeout)
    except OSError:
        return 0, b""
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
        data = read_to_close(s)
    except OSError:
        return 0, b""
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return 0, b""


class Host(Roomd):
    """roomd on one lab host: listens for HAProxy (PROXY v2) on the front
    address and, plain, on the namespace's own 127.0.0.1; Redis is across the
    back network."""

    def __init__(self, lab, name, index, settings=None, pidns=False):
        self.lab = lab
        self.name = name
        self.pidns = pidns      # in a PID namespace of its own: its master is pid 1 there
        self.ns = lab.ns(f"h{index}")
        self.front = f"{FRONT}{10 + index}"
        self.back = f"{BACK}{10 + index}"
        conf = {
            "listen": [f"{self.front}:{WS_PORT} proxy_protocol", f"127.0.0.1:{PLAIN_PORT}"],
            "redis": f"redis://{REDIS_IP}:6379",
            "presence_ttl": "3s",
            "drain_time": "4s",
            "shutdown_timeout": "8s",
            "rate_limit": "0",
            "max_sessions_per_ip": "0",
        }
        conf.update(settings or {})
        super().__init__(os.path.join(lab.dir, f"host-{name}"), settings=conf, workers=2,
                         port=PLAIN_PORT)

    def start(self, wait=True):
        self.stderr_path = os.path.join(self.dir, "stderr.txt")
        with open(self.stderr_path, "ab") as err:
            # In a PID namespace, unshare forks roomd as the namespace's pid 1 and
            # waits for it; SIGTERM to unshare reaches roomd too (--kill-child).
            pidns = ["unshare", "--pid", "--mount-proc", "--kill-child=SIGTERM"] if self.pidns else []
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns] + pidns +
                                         [ROOMD_BIN, "-c", self.conf] + self.args,
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         env=self.env, cwd=self.dir)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        """The master's pid as we see it (in a PID namespace: unshare's child)."""
        if self.pidns:
            kids = children_of(self.proc.pid, "roomd")
            return kids[0] if kids else self.proc.pid
        return self.proc.pid

    def logged_worker_pids(self):
        """The worker pids the masters logged ("worker N started (pid P)"), as they saw them."""
        return sorted({int(line.rsplit("(pid ", 1)[1].split(")")[0])
                       for line in self.read_log().splitlines() if " started (pid " in line})

    def drain_time_s(self):
        """drain_time as configured, in seconds (the lab writes it as "Ns")."""
        with open(self.conf) as f:
            for line in f:
                if line.startswith("drain_time "):
                    return float(line.split()[1].rstrip("s"))
        return 0.0

    def http(self, path, timeout=2.0):
        return ns_http(self.ns, "127.0.0.1", PLAIN_PORT, path, timeout)

    def healthy(self):
        return self.http("/healthz", 1.0)[0] == 200

    def ready(self):
        return self.http("/readyz", 1.0)[0] == 200

    def master_pid(self):
        """The running master: the pidfile's (a binary upgrade replaces it)."""
        try:
            with open(self.pidfile) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def instance(self):
        """Instance ids this host's masters logged ("instance ID; rooms in redis ...")."""
        return [line.split("instance ", 1)[1].split(";")[0]
                for line in self.read_log().splitlines() if " instance " in line and "; rooms in" in line]

    def stop(self, check=True):
        """Graceful stop of the running master, also one a binary upgrade started
        (not our child: stopped by pid, SIGKILLed if it lingers)."""
        pid = self.master_pid()
        if pid and (self.proc is None or pid != self.proc.pid) and pid in ns_pids(self.ns):
            stop_pid(pid)
        if self.pidns and self.proc is not None and self.proc.poll() is None:
            stop_pid(self.pid, 20)     # the master itself, so that it drains as usual
        super().stop(check)

    def signal_all(self, sig):
        """Send sig to every process of the host (what the kernel lists in its namespace)."""
        pids = ns_pids(self.ns)
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        return pids

    def crashed(self):
        """After a SIGKILL: reap our child; the log check still runs at teardown."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)


class LabRedis(RedisServer):
    """redis-server in the Redis namespace, on the back network and its own
    loopback; from a config file of its own, so that Sentinel can rewrite it."""

    def __init__(self, lab, port=6379, name="redis", args=()):
        super().__init__(os.path.join(lab.dir, name), args=args)
        self.lab = lab
        self.ns = lab.ns("redis")
        self.port = port

    def start(self):
        if not os.path.exists(self.conf):
            with open(self.conf, "w") as f:
                f.write("# written by the lab; redis may rewrite it\n")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "redis-server", self.conf, "--port", str(self.port),
             "--bind", f"{REDIS_IP} 127.0.0.1", "--protected-mode", "no", "--save", "",
             "--appendonly", "no", "--dir", self.dir,
             "--logfile", os.path.join(self.dir, "redis.log"), *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, 10, what=f"redis-server on port {self.port} in the lab")
        return self

    def connect(self):
        return ns_connect(self.ns, "127.0.0.1", self.port, 2)


class LabSentinels(RedisSentinels):
    """tests/roomd.py's Sentinel set in the Redis namespace: a master (6379)
    and two replicas (6380, 6381) on the back address, watched by three
    redis-sentinel processes (26379..26381; quorum 2, down after 1 s, failover
    timeout 6 s). The hosts' setting is .url."""

    NAME = "roomdm"
    PORTS = (6379, 6380, 6381)
    SENTINEL_PORTS = (26379, 26380, 26381)
    addr = REDIS_IP

    def __init__(self, lab):
        self.lab = lab
        self.ns = lab.ns("redis")
        self.dir = os.path.join(lab.dir, "sentinel")
        self.name = self.NAME
        fast = ["--repl-diskless-sync-delay", "0"]
        master = self.PORTS[0]
        self.nodes = [LabRedis(lab, master, "redis", fast)]
        self.nodes += [LabRedis(lab, p, f"redis-{p}", fast + ["--replicaof", REDIS_IP, str(master)])
                       for p in self.PORTS[1:]]
        self.sentinels = []
        for port in self.SENTINEL_PORTS:
            d = os.path.join(self.dir, f"s{port}")
            os.makedirs(d, exist_ok=True)
            self.sentinels.append((port, d, None))

    def command_prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def sentinel_socket(self, port):
        return ns_connect(self.ns, "127.0.0.1", port, 2)

    def failover(self):
        self.sentinel(0, "SENTINEL", "FAILOVER", self.name)


class LabHAProxy(HAProxy):
    """Debian's haproxy in its namespace, master-worker (-W) so that SIGUSR2
    reloads it; mode tcp, PROXY v2 to every host, GET /readyz checks (inter 1s,
    fall 2, rise 1), leastconn as HAProxy advises for long-lived connections.
    The admin socket is a unix socket in the lab directory."""

    def __init__(self, lab, hosts):
        self.dir = os.path.join(lab.dir, "haproxy")
        os.makedirs(self.dir, exist_ok=True)
        self.ns = lab.ns("ha")
        self.sock = os.path.join(self.dir, "admin.sock")
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.logpath = os.path.join(self.dir, "haproxy.out")
        self.proc = None
        servers = "\n".join(f"    server {h.name} {h.front}:{WS_PORT} send-proxy-v2" for h in hosts)
        with open(self.cfg, "w") as f:
            f.write(f"""global
    stats socket {self.sock} mode 600 level admin expose-fd listeners
    maxconn 5000
    hard-stop-after 30s

defaults
    mode tcp
    timeout connect 2s
    timeout client 300s
    timeout server 300s
    timeout check 1s
    retries 3
    option redispatch
    default-server inter {CHECK_INTER_MS}ms fall {CHECK_FALL} rise 1 check

frontend chat
    bind {HAPROXY_IP}:{LB_PORT}
    default_backend hosts

backend hosts
    balance leastconn
    option httpchk GET /readyz
    http-check expect status 200
{servers}
""")

    def command_line(self):
        return ["ip", "netns", "exec", self.ns, "haproxy", "-W", "-db", "-f", self.cfg]

    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(self.sock)
        return s

    def sessions(self):
        """{(client address, client port): server name} of every client stream now
        (`show sess`), so a test knows which host each client is on."""
        out = {}
        for line in self.command("show sess").splitlines():
            f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
            if "src" in f and f.get("srv") not in (None, "<none>"):
                addr, _, port = f["src"].rpartition(":")
                out[(addr, int(port))] = f["srv"]
        return out

    def reload(self):
        """Reload as an operator does (SIGUSR2 to the master): a new worker takes
        the listeners, the old one keeps its connections until they end."""
        self.proc.send_signal(signal.SIGUSR2)


class Lab:
    """The whole lab. up() builds the network and starts Redis, the hosts and
    HAProxy; crowd.py runs clients in it; down() removes everything."""

    def __init__(self, workdir, hosts=3, client_nets=("c1",), slow_nets=(), settings=None,
                 prefix=PREFIX, sentinel=False, pidns_hosts=()):
        """sentinel: Redis is a Sentinel set (LabSentinels), not one server;
        pidns_hosts: names of the hosts whose roomd runs in a PID namespace of its own."""
        self.dir = str(workdir)
        os.makedirs(self.dir, exist_ok=True)
        self.prefix = prefix
        self.nhosts = hosts
        self.client_nets = list(client_nets) + [c for c in slow_nets if c not in client_nets]
        self.slow_nets = list(slow_nets)
        self.emulators = {}     # slow client net -> its linkemu process (no netem here)
        self.netem = None
        self.settings = settings or {}
        self.lockf = None
        self.locked = False     # holding LOCK: only then may this lab clear namespaces
        self.hosts = []
        self.redis = None
        self.sentinels = None
        self.sentinel = sentinel
        self.pidns_hosts = set(pidns_hosts)
        self.haproxy = None
        self.procs = []         # other processes we started (clients, taps, emulators)
        self.events = []        # (time.time(), what): the faults, for the report

    def ns(self, short):
        return self.prefix + short

    def all_ns(self):
        return ([self.ns("sw"), self.ns("redis"), self.ns("ha")] +
                [self.ns(f"h{i}") for i in range(1, self.nhosts + 1)] +
                [self.ns(c) for c in self.client_nets])

    def client_ip(self, short):
        return f"{FRONT}{21 + self.client_nets.index(short)}"

    def note(self, what):
        self.events.append((time.time(), what))

    # ---- building ----

    def lock(self, timeout=600):
        """Hold the machine's lab lock (another run's lab waits, bounded)."""
        if self.locked:
            return
        os.makedirs(os.path.dirname(LOCK), exist_ok=True)
        self.lockf = open(LOCK, "w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self.lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.locked = True
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"another lab held {LOCK} for {timeout}s") from None
                time.sleep(0.5)

    def clear(self):
        """Kill every process in a namespace with our prefix and delete the namespaces."""
        left = lab_namespaces(self.prefix)
        for ns in left:
            for p in ns_pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        for ns in left:
            deadline = time.monotonic() + 5
            while ns_pids(ns) and time.monotonic() < deadline:
                time.sleep(0.05)
            ip("netns", "del", ns, check=False)
        return left

    def build_network(self):
        sw = self.ns("sw")
        for ns in self.all_ns():
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            # IPv4 only, no forwarding: nothing routes anywhere.
            ns_run(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=0"])
            if os.path.exists("/proc/sys/net/ipv6"):
                ns_run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                            "net.ipv6.conf.default.disable_ipv6=1"])
        for br in ("front", "back"):
            ip("-n", sw, "link", "add", br, "type", "bridge")
            ip("-n", sw, "link", "set", br, "up")
        self.attach("ha", "front", HAPROXY_IP)
        self.attach("redis", "back", REDIS_IP)
        for i in range(1, self.nhosts + 1):
            self.attach(f"h{i}", "front", f"{FRONT}{10 + i}", dev="eth0")
            self.attach(f"h{i}", "back", f"{BACK}{10 + i}", dev="eth1")
        for c in self.client_nets:
            if c in self.slow_nets and not self.has_netem():
                self.attach_emulated(c, "front", self.client_ip(c))
            else:
                self.attach(c, "front", self.client_ip(c))

    def port(self, short, net):
        """The bridge-side end of short's link to net (its name in the switch namespace)."""
        return f"{net[0]}-{short}"

    def attach(self, short, net, addr, dev="eth0"):
        """A veth pair from short's namespace (dev, addr/24) to bridge net."""
        sw, ns, port = self.ns("sw"), self.ns(short), self.port(short, net)
        ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns)
        ip("-n", sw, "link", "set", port, "master", net)
        ip("-n", sw, "link", "set", port, "up")
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")

    def has_netem(self):
        """Whether the kernel has sch_netem (tried on a scratch veth in the switch namespace)."""
        if self.netem is None:
            sw = self.ns("sw")
            ip("-n", sw, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
            self.netem = ns_run(sw, ["tc", "qdisc", "add", "dev", "probe0", "root", "netem",
                                     "delay", "1ms"], check=False).returncode == 0
            ip("-n", sw, "link", "del", "probe0")
        return self.netem

    def attach_emulated(self, short, net, addr):
        """Like attach(), through linkemu.py's tap pair instead of a veth pair."""
        sw, ns, port = self.ns("sw"), self.ns(short), self.port(short, net)
        inner = f"i-{short}"
        p = self.spawn("sw", [sys.executable, os.path.join(HERE, "linkemu.py"), inner, port,
                              str(sum(map(ord, short)))],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = p.stdout.readline()
        assert line.strip() == "ready", f"linkemu did not start: {line!r}"
        self.emulators[short] = p
        ip("-n", sw, "link", "set", inner, "netns", ns)
        ip("-n", ns, "link", "set", inner, "name", "eth0")
        ip("-n", sw, "link", "set", port, "master", net)
        ip("-n", sw, "link", "set", port, "up")
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")

    def check_isolated(self):
        """Nothing can leave: no default route in any lab namespace, no route to
        an outside address, and every address is loopback or in 198.18.0.0/15."""
        problems = []
        for ns in self.all_ns():
            if ip("-n", ns, "route", "show", "default").stdout.strip():
                problems.append(f"{ns} has a default route")
            for dst in ("1.1.1.1", "10.0.0.1", "192.168.0.1"):
                if ip("-n", ns, "route", "get", dst, check=False).returncode == 0:
                    problems.append(f"{ns} has a route to {dst}")
            for a in json.loads(ip("-j", "-n", ns, "addr", "show").stdout):
                for info in a.get("addr_info", []):
                    local = info["local"]
                    if info["family"] == "inet" and not (local.startswith("127.") or
                                                         local.startswith("198.18.") or
                                                         local.startswith("198.19.")):
                        problems.append(f"{ns} has address {local}")
                    if info["family"] == "inet6" and local != "::1":
                        problems.append(f"{ns} has address {local}")
        assert not problems, "the lab is not sealed: " + "; ".join(problems)

    def up(self, start=True):
        self.lock()
        stale = self.clear()
        if stale:
            self.note(f"removed a stale lab: {' '.join(stale)}")
        self.build_network()
        self.check_isolated()
        if start:
            self.start_services()
        return self

    def start_services(self):
        settings = dict(self.settings)
        if self.sentinel:
            self.sentinels = LabSentinels(self).start()
            self.redis = self.sentinels.nodes[0]
            settings["redis"] = self.sentinels.url
        else:
            self.redis = LabRedis(self).start()
        for i in range(1, self.nhosts + 1):
            name = HOST_NAMES[i - 1]
            self.hosts.append(Host(self, name, i, settings, pidns=name in self.pidns_hosts).start())
        self.haproxy = LabHAProxy(self, self.hosts).start()
        self.haproxy.wait_status("hosts", {h.name: "UP" for h in self.hosts}, 15)

    def host(self, name):
        return next(h for h in self.hosts if h.name == name)

    # ---- processes ----

    def spawn(self, short, argv, **kw):
        """Start argv in namespace short (a lab process down() will end)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(short)] + list(argv), **kw)
        self.procs.append(p)
        return p

    # ---- faults ----

    def link(self, short, net, up):
        """Cut (or restore) short's link to net at the bridge: its own interface
        stays up, packets are simply no longer carried, as when a switch port dies."""
        ip("-n", self.ns("sw"), "link", "set", self.port(short, net), "up" if up else "down")
        self.note(f"link {short}/{net} {'up' if up else 'down'}")

    def rate(self, short, net, rate):
        """Shape what the bridge sends towards short on net (its download) with tbf."""
        ip("-n", self.ns("sw"), "link", "set", self.port(short, net), "up")
        ns_run(self.ns("sw"), ["tc", "qdisc", "replace", "dev", self.port(short, net), "root",
                               "tbf", "rate", rate, "burst", "4kb", "latency", "2s"])
        self.note(f"rate {short}/{net} {rate}")

    def impair(self, short, delay_ms, loss):
        """Delay every frame on short's link by delay_ms and drop a fraction loss
        of them, in both directions (netem where the kernel has it, else
        linkemu.py); impair(short, 0, 0) makes the link clean again."""
        if short in self.emulators:
            p = self.emulators[short]
            p.stdin.write(json.dumps({"delay_ms": delay_ms, "loss": loss}) + "\n")
            p.stdin.flush()
            assert "link" in p.stdout.readline()
        else:
            for ns, dev in ((self.ns("sw"), self.port(short, "front")), (self.ns(short), "eth0")):
                if delay_ms or loss:
                    ns_run(ns, ["tc", "qdisc", "replace", "dev", dev, "root", "netem", "delay",
                                f"{delay_ms}ms", "loss", f"{loss * 100:g}%"])
                else:
                    ns_run(ns, ["tc", "qdisc", "del", "dev", dev, "root"], check=False)
        self.note(f"impair {short}: delay {delay_ms}ms loss {loss * 100:g}% each way")

    def kill_host(self, name, sig=signal.SIGKILL):
        pids = self.host(name).signal_all(sig)
        self.note(f"{signal.Signals(sig).name} host {name} ({len(pids)} processes)")
        return pids

    # ---- taking it down ----

    def down(self):
        """Stop everything; returns the errors of the log checks (alerts,
        sanitizer reports) so a test can fail on them after cleaning up."""
        errors = []
        for h in self.hosts:
            try:
                h.stop(check=False)
            except Exception as e:  # keep cleaning up
                errors.append(e)
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        if self.haproxy is not None:
            with contextlib.suppress(Exception):
                self.haproxy.stop()
        if self.sentinels is not None:
            with contextlib.suppress(Exception):
                self.sentinels.stop()
        elif self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        # The namespaces are another run's lab unless we hold the lock (a
        # scenario that failed while it waited for the lock must not touch them).
        if self.locked:
            self.clear()
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        for h in self.hosts:
            try:
                h.check_log()
            except AssertionError as e:
                errors.append(e)
        with contextlib.suppress(OSError):
            with open(os.path.join(self.dir, "events.json"), "w") as f:
                json.dump(self.events, f)
        if self.lockf is not None:
            self.lockf.close()
            self.lockf = None
            self.locked = False
        return errors

    # ---- looking at it ----

    def status(self):
        """A few lines on what is running: for lab.sh status and failure reports."""
        lines = []
        for ns in lab_namespaces(self.prefix):
            comms = []
            for p in ns_pids(ns):
                with contextlib.suppress(OSError):
                    with open(f"/proc/{p}/comm") as f:
                        comms.append(f.read().strip())
            addrs = [f"{i['local']}" for a in json.loads(ip("-j", "-n", ns, "addr", "show").stdout)
                     for i in a.get("addr_info", []) if i["family"] == "inet" and i["local"] != "127.0.0.1"]
            lines.append(f"{ns:12} {' '.join(addrs):32} {' '.join(sorted(set(comms))) or '-'}")
        return "\n".join(lines)


def main(argv):
    """lab.sh up [--sentinel] [DIR] | down | status: the lab by hand."""
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "up":
        rest = argv[2:]
        sentinel = "--sentinel" in rest
        rest = [a for a in rest if a != "--sentinel"]
        workdir = rest[0] if rest else "/tmp/roomd-lab"
        lab = Lab(workdir, sentinel=sentinel)
        lab.up()
        # The lab outlives this command: leave the lock, keep the namespaces.
        print(lab.status())
        if sentinel:
            print(f"\nredis: {lab.sentinels.url}; fail over: ip netns exec {lab.ns('redis')} "
                  f"redis-cli -p {LabSentinels.SENTINEL_PORTS[0]} SENTINEL FAILOVER {LabSentinels.NAME}")
        print(f"\nclients: ip netns exec {lab.ns('c1')} ... ws://{HAPROXY_IP}:{LB_PORT}/")
        print(f"haproxy admin: socat - {lab.haproxy.sock}; logs under {workdir}")
        return 0
    if cmd == "down":
        lab = Lab("/tmp/roomd-lab")
        lab.lock(30)
        gone = lab.clear()
        print("removed: " + (" ".join(gone) or "nothing"))
        return 0
    if cmd == "status":
        print(Lab("/tmp/roomd-lab").status() or "no lab")
        return 0
    print("usage: lab.sh up [--sentinel] [DIR] | down | status", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
