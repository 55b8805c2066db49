"""WebSocket and HTTP by hand, for tests that must see or send exact bytes:
opening handshakes with any header, client frames with any flags (masked or
not, RSV bits, a false length), PROXY protocol headers, server frames parsed
from a buffer or read from a blocking socket, and short blocking exchanges
(a request, then what comes back until the peer closes). The one place for
byte-level helpers: the chat client is roomclient.Chat, processes roomd.py."""
import base64
import hashlib
import os
import socket
import struct
import time

HOST = "127.0.0.1"
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---- building what a client sends ----

def ws_request(path="/echo", host=None, port=None, extra=(), key=None, method="GET", version="13",
               connection="Upgrade"):
    """Bytes of a WebSocket opening handshake. Host is host, else HOST:port, else
    HOST; key None is a fresh random key and False leaves the header out (as
    version None does); extra is more header lines."""
    if host is None:
        host = HOST if port is None else f"{HOST}:{port}"
    if key is None:
        key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
             f"Connection: {connection}"]
    if key is not False:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_accept(key):
    """The Sec-WebSocket-Accept a server must answer key with (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def xor_mask(payload, key):
    """payload XOR the repeated 4-byte key (big-integer XOR: fast for large payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, length=None):
    """A client frame; rsv is the 3-bit RSV field (4 = RSV1); length overrides the encoded length."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n <= 0xffff:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + xor_mask(payload, key)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def close_frame(code=1000, reason=b""):
    """A masked close frame."""
    return frame(8, close_payload(code, reason))


def close_code(payload):
    """The status code of a close frame's payload; 1005 (none) if it has none."""
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005


def proxy_v1(src, sport, dst="127.0.0.1", dport=80):
    """A PROXY v1 line: TCP6 when src is an IPv6 address."""
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


# ---- reading what a server sends ----

def frame_at(buf, i=0):
    """The server frame starting at buf[i]: (fin, rsv, opcode, payload, end), or
    None while buf holds less than all of it. Server frames are never masked."""
    n = len(buf)
    if n - i < 2:
        return None
    b0, b1 = buf[i], buf[i + 1]
    assert not b1 & 0x80, "server frame is masked"
    ln, hl = b1 & 0x7f, 2
    if ln == 126:
        if n - i < 4:
            return None
        ln, hl = struct.unpack("!H", buf[i + 2:i + 4])[0], 4
    elif ln == 127:
        if n - i < 10:
            return None
        ln, hl = struct.unpack("!Q", buf[i + 2:i + 10])[0], 10
    if n - i < hl + ln:
        return None
    return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0f, bytes(buf[i + hl:i + hl + ln]), i + hl + ln


def parse_frames(buf):
    """The whole server frames in buf: ([(opcode, payload)], the bytes after them)."""
    out, i = [], 0
    while (f := frame_at(buf, i)) is not None:
        out.append((f[2], f[3]))
        i = f[4]
    return out, buf[i:]


def read_frame(s, buf=b""):
    """One server frame from socket s, after the bytes already in buf: (opcode, payload, leftover)."""
    while (f := frame_at(buf)) is None:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("EOF inside a frame")
        buf += d
    return f[2], f[3], buf[f[4]:]


def parse_head(head):
    """(status, {lower-case name: value}) of the bytes of a response head; status 0 if not HTTP."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") else 0
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


def read_head(s, limit=65536):
    """(status, headers, the bytes after the head) of a response on socket s;
    status 0 and no headers if the peer closes first. Fails past limit bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        assert len(buf) < limit, f"no end of the response head in {len(buf)} bytes"
        d = s.recv(65536)
        if not d:
            return 0, {}, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return (*parse_head(head), rest)


# Loopback is all of 127.0.0.0/8 on Linux: a client bound to 127.0.0.N has an
# address that differs from the proxy's own 127.0.0.1, so the access log can
# prove which one roomd used.
def client_addr(n):
    return f"127.0.0.{n}"


def connect(port, src=None, timeout=5.0):
    """A blocking TCP connection to HOST:port, from source address src if given."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src is not None:
        s.bind((src, 0))
    s.connect((HOST, port))
    return s


def read_to_close(s):
    """Everything s receives until the peer ends the stream (EOF or reset)."""
    got = b""
    while True:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return got
        if not d:
            return got
        got += d


def raw_request(port, data, src=None, timeout=5.0):
    """Send data, read until the peer closes; returns (status or 0, headers, body)."""
    s = connect(port, src, timeout)
    try:
        s.sendall(data)
        status, hdrs, rest = read_head(s)
        return status, hdrs, rest + read_to_close(s)
    finally:
        s.close()


def dropped_without_answer(port, data, timeout=5.0):
    """True if the server closes the connection after data without sending a byte."""
    s = connect(port, None, timeout)
    try:
        s.sendall(data)
        return read_to_close(s) == b""
    finally:
        s.close()


def handshake(port, path="/", headers=(), host=None, keep=False, timeout=5.0):
    """Send an upgrade request (Host HOST:port unless host); (status, headers[, sock, leftover])."""
    s = socket.create_connection((HOST, port), timeout=timeout)
    s.sendall(ws_request(path, host, port, headers))
    status, hdrs, rest = read_head(s)
    if keep:
        return status, hdrs, s, rest
    s.close()
    return status, hdrs


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
    s.sendall(frame(1, text))
    op, payload, rest = read_frame(s, rest)
    assert (op, payload) == (1, text), f"echo gave {op} {payload!r}"
    s.sendall(close_frame(code))
    op, payload, rest = read_frame(s, rest)
    assert op == 8
    s.close()
    return close_code(payload)


class RawSocket:
    """A plain TCP client: send bytes, read an HTTP head or one server frame."""

    def __init__(self, port, timeout=5.0, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf is not None:
            # Before connecting, so that the window the server sees is small too.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data, bytewise=False, pause=0.0):
        if not bytewise:
            self.sock.sendall(data)
            return
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            if pause:
                time.sleep(pause)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head_lines(self):
        """(status, header lines as sent, head text) of an HTTP response."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        return int(lines[0].split()[1]), lines[1:], text

    def read_head(self):
        """(status, headers dict with lower-case names) of an HTTP response."""
        status, lines, _ = self.read_head_lines()
        headers = {}
        for line in lines:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def read_body(self, headers):
        return self._take(int(headers.get("content-length", "0")))

    def read_frame_rsv(self):
        """(fin, rsv, opcode, payload) of one server frame."""
        while (f := frame_at(self.buf)) is None:
            self._fill()
        self.buf = self.buf[f[4]:]
        return f[:4]

    def expect_eof(self, timeout=5.0):
        """Read and drop until the server ends the stream (EOF or reset)."""
        self.sock.settimeout(timeout)
        read_to_close(self.sock)

    def close(self):
        self.sock.close()
