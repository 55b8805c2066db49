"""A slow, lossy Ethernet link for the lab, where the kernel has no sch_netem
(this machine's does not: CONFIG_NET_SCH_NETEM is off and it loads no
modules). Two tap devices, and every frame read from one is written to the
other after a fixed delay, or dropped with a given probability, in each
direction: netem's `delay D loss P` on both ends of a wire, frames kept in
order. TCP above it sees real loss and retransmits as on a real link.

Run in the lab's switch namespace; it makes the taps A and B, prints "ready",
and then the lab moves A into the client's namespace and puts B on a bridge.
Lines on stdin change the link at once: {"delay_ms": 200, "loss": 0.05}.
It exits when stdin closes (the lab ends it with SIGKILL at the latest)."""
import collections
import fcntl
import json
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454ca
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main(a_name, b_name, seed):
    rnd = random.Random(seed)
    fds = {open_tap(a_name): None, open_tap(b_name): None}
    a, b = list(fds)
    peer = {a: b, b: a}
    queue = {a: collections.deque(), b: collections.deque()}   # frames due for writing to fd
    link = {"delay_ms": 0.0, "loss": 0.0}
    counts = {"passed": 0, "dropped": 0}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    inbuf = b""
    print("ready", flush=True)
    while True:
        now = time.monotonic()
        due = [q[0][0] for q in queue.values() if q]
        timeout = max(0.0, min(due) - now) if due else 1.0
        readable, _, _ = select.select([a, b, stdin], [], [], timeout)
        for fd in readable:
            if fd == stdin:
                data = os.read(stdin, 4096)
                if not data:
                    print(json.dumps(counts), flush=True)
                    return 0
                inbuf += data
                while b"\n" in inbuf:
                    line, inbuf = inbuf.split(b"\n", 1)
                    if line.strip():
                        link.update(json.loads(line))
                        print(json.dumps({"link": link, **counts}), flush=True)
                continue
            for _ in range(64):
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if link["loss"] > 0 and rnd.random() < link["loss"]:
                    counts["dropped"] += 1
                    continue
                counts["passed"] += 1
                queue[peer[fd]].append((time.monotonic() + link["delay_ms"] / 1000.0, frame))
        now = time.monotonic()
        for fd, q in queue.items():
            while q and q[0][0] <= now:
                try:
                    os.write(fd, q.popleft()[1])
                except (BlockingIOError, OSError):
                    counts["dropped"] += 1   # a full tap queue drops, as a wire would


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1))
