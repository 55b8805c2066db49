"""Helpers for the load-balancer tests: raw WebSocket handshakes (optionally
behind a PROXY protocol header, from a chosen loopback source address),
access-log parsing, /metrics through the real Prometheus parser, a real
HAProxy in the foreground, and watching processes that are not our children."""
import base64
import csv
import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from roomd import free_ports, http_get, wait_for
from roomclient import mask_frame

# Loopback is all of 127.0.0.0/8 on Linux: a client bound to 127.0.0.N has an
# address that differs from the proxy's own 127.0.0.1, so the access log can
# prove which one roomd used.
def client_addr(n):
    return f"127.0.0.{n}"


# ---- raw HTTP / WebSocket ----

def ws_request(path="/echo", host="127.0.0.1", extra=(), key=None, method="GET", version="13"):
    """Bytes of a WebSocket opening handshake (extra: more header lines)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(port, src=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src is not None:
        s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def recv_all(s):
    """Everything the peer sends until it closes."""
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            return data
        data += d


def read_head(s):
    """(status, {lower-case header: value}, bytes after the head); status 0 on EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return 0, {}, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, rest


def read_frame(s, buf=b""):
    """One unmasked server frame: (opcode, payload, leftover)."""
    def need(n):
        nonlocal buf
        while len(buf) < n:
            d = s.recv(65536)
            if not d:
                raise ConnectionError("EOF inside a frame")
            buf += d
    need(2)
    op, ln = buf[0] & 0x0f, buf[1] & 0x7f
    hl = 2
    if ln == 126:
        need(4)
        ln, hl = struct.unpack("!H", buf[2:4])[0], 4
    elif ln == 127:
        need(10)
        ln, hl = struct.unpack("!Q", buf[2:10])[0], 10
    need(hl + ln)
    return op, buf[hl:hl + ln], buf[hl + ln:]


def close_frame(code=1000, reason=b""):
    return mask_frame(8, struct.pack("!H", code) + reason)


def ws_open(port, path="/echo", prefix=b"", src=None, extra=(), timeout=5.0):
    """Open a session by raw socket (prefix goes first, e.g. a PROXY header).
    Returns (socket, leftover bytes); asserts the 101."""
    s = connect(port, src, timeout)
    s.sendall(prefix + ws_request(path, extra=extra))
    status, hdrs, rest = read_head(s)
    assert status == 101, f"handshake answered with {status} {hdrs}"
    return s, rest


def ws_echo_and_close(s, rest=b"", text=b"hi", code=1000):
    """Send one text message, read its echo, close with code; returns the close code echoed."""
    s.sendall(mask_frame(1, text))
    op, payload, rest = read_frame(s, rest)
    assert (op, payload) == (1, text), f"echo gave {op} {payload!r}"
    s.sendall(close_frame(code))
    op, payload, rest = read_frame(s, rest)
    assert op == 8
    s.close()
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def proxy_v1(src, sport, dst="127.0.0.1", dport=80):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


V2SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(src=None, sport=0, dst="127.0.0.1", dport=80, tlvs=b"", local=False):
    """A PROXY v2 header: PROXY command with TCP over IPv4/IPv6, or LOCAL."""
    if local:
        return V2SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in src:
        addrs = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) +
                 struct.pack("!HH", sport, dport))
        fam = 0x21
    else:
        addrs = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
        fam = 0x11
    body = addrs + tlvs
    return V2SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def raw_request(port, data, src=None, timeout=5.0):
    """Send data, read until the peer closes; returns (status or 0, headers, body)."""
    s = connect(port, src, timeout)
    try:
        s.sendall(data)
        status, hdrs, rest = read_head(s)
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            rest += d
        return status, hdrs, rest
    finally:
        s.close()


def dropped_without_answer(port, data, timeout=5.0):
    """True if the server closes the connection after data without sending a byte."""
    s = connect(port, None, timeout)
    try:
        s.sendall(data)
        got = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
        return got == b""
    finally:
        s.close()


# ---- the access log ----

ACCESS_TEXT = re.compile(r" \[info\] access ((?:[a-z_]+=\S*)(?: [a-z_]+=\S*)*)$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def access_lines(text):
    """Every text-format access line of a log, as a dict of its fields."""
    out = []
    for line in text.splitlines():
        m = ACCESS_TEXT.search(line)
        if m:
            out.append(dict(kv.split("=", 1) for kv in m.group(1).split(" ")))
    return out


def wait_access(r, n, pred=lambda a: True, timeout=10.0):
    """Wait until r's new log (since log_mark) holds n access lines matching pred."""
    def got():
        lines = [a for a in access_lines(r.new_log()) if pred(a)]
        return lines if len(lines) >= n else None
    return wait_for(got, timeout, what=f"{n} access line(s) in {r.log}")


# ---- /metrics ----

class Metrics:
    """One scrape, parsed by prometheus_client: .types {family: type} and
    .value(name, **labels) for any sample (missing samples raise KeyError)."""

    def __init__(self, text):
        self.text = text
        self.types = {}
        self.samples = {}
        for fam in text_string_to_metric_families(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name, **labels):
        return self.samples[(name, frozenset(labels.items()))]

    def labelled(self, name):
        """{frozenset(labels): value} of every sample called name."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


def scrape(port, path="/metrics"):
    status, hdrs, body = http_get(port, path)
    assert status == 200, f"{path} answered {status}: {body[:200]!r}"
    ctype = {k.lower(): v for k, v in hdrs.items()}.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    return Metrics(body.decode())


# ---- processes that are not our children ----

def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def children_of(pid, comm_prefix=None):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                         text=True).stdout
    pids = []
    for p in (int(x) for x in out.split()):
        if comm_prefix is not None:
            try:
                with open(f"/proc/{p}/comm") as f:
                    if not f.read().startswith(comm_prefix):
                        continue
            except OSError:
                continue
        if pid_alive(p):
            pids.append(p)
    return sorted(pids)


def read_pid(path):
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
        try:
            with open(self.logpath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def command(self, cmd):
        with self.connect() as s:
            s.sendall(cmd.encode() + b"\n")
            return recv_all(s).decode()

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
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
