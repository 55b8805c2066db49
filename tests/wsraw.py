"""WebSocket by hand, for tests that must see or send exact bytes: client
frames with any flags (masked or not, RSV bits, a false length), and a
blocking socket that reads HTTP heads and unmasked server frames."""
import os
import socket
import struct
import time

HOST = "127.0.0.1"


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


class RawSocket:
    """A plain TCP client: send bytes, read an HTTP head or one server frame."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
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
        """(fin, rsv, opcode, payload) of one server frame; server frames are never masked."""
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frame is masked"
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0f, self._take(n)

    def expect_eof(self, timeout=5.0):
        """Read and drop until the server ends the stream (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return
        except ConnectionResetError:
            return

    def close(self):
        self.sock.close()
