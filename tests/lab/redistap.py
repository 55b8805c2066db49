"""The lab's view of what Redis published: subscribes (PSUBSCRIBE) to every
room channel of roomd's prefix from inside the Redis namespace and writes one
JSON line per message, [time, channel, payload], in the order Redis
delivered them -- the order every member of a room must see.

Usage: redistap.py PORT PATTERN OUT; prints "ready" once subscribed and ends
when stdin closes (or after --max-seconds, the last argument, 300 by default).
It subscribes again whenever Redis drops it (see main)."""
import json
import os
import select
import socket
import sys
import time


def resp(*args):
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        a = a.encode()
        out += f"${len(a)}\r\n".encode() + a + b"\r\n"
    return out


def parse(buf, i):
    """One RESP value at buf[i:]: (value, next index), or (None, -1) if incomplete."""
    end = buf.find(b"\r\n", i)
    if end < 0:
        return None, -1
    kind, line = buf[i:i + 1], buf[i + 1:end]
    if kind in (b"+", b"-"):
        return line.decode(), end + 2
    if kind == b":":
        return int(line), end + 2
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, end + 2
        if len(buf) < end + 2 + n + 2:
            return None, -1
        return buf[end + 2:end + 2 + n], end + 2 + n + 2
    if kind == b"*":
        n, j, items = int(line), end + 2, []
        for _ in range(n):
            v, j = parse(buf, j)
            if j < 0:
                return None, -1
            items.append(v)
        return items, j
    raise ValueError(f"bad RESP {buf[i:i + 20]!r}")


def main(port, pattern, out, max_seconds=300.0):
    """Subscribe and record; when Redis closes the connection (Sentinel kills
    the subscribers of a node it reconfigures) or the node is gone, connect
    and subscribe again every 0.1 s until stdin closes or max_seconds pass."""
    deadline = time.monotonic() + max_seconds
    stdin = sys.stdin.fileno()
    ready = False
    with open(out, "w") as f:
        while time.monotonic() < deadline:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=1)
            except OSError:
                s = None
            if s is None:
                r, _, _ = select.select([stdin], [], [], 0.1)
                if stdin in r and not os.read(stdin, 4096):
                    break
                continue
            with s:
                s.sendall(resp("PSUBSCRIBE", pattern))
                s.setblocking(False)
                if record(s, f, stdin, deadline, ready):
                    break
                ready = True
    return 0


def record(s, f, stdin, deadline, ready):
    """Write what s carries to f until s closes (False) or stdin closes (True)."""
    buf, pos = b"", 0
    while time.monotonic() < deadline:
        r, _, _ = select.select([s, stdin], [], [], 1.0)
        if stdin in r and not os.read(stdin, 4096):
            return True
        if s not in r:
            continue
        try:
            data = s.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            return False
        t = time.time()
        buf += data
        while True:
            v, nxt = parse(buf, pos)
            if nxt < 0:
                break
            pos = nxt
            if v[0] == b"psubscribe":
                if not ready:
                    print("ready", flush=True)
                ready = True
            elif v[0] == b"pmessage":
                f.write(json.dumps([t, v[2].decode(errors="replace"),
                                    v[3].decode(errors="replace")]) + "\n")
        f.flush()
        buf, pos = buf[pos:], 0
    return True


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], sys.argv[3],
                  float(sys.argv[4]) if len(sys.argv) > 4 else 300.0))
