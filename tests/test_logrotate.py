"""conf/roomd.logrotate against a running roomd: `logrotate -f`, twice, while
chat sessions open and close without pause, each in a room of its own. The shipped file is used as
it is, with only its paths (log directory, pidfile) and its `su` user pointed
at this test's instance. Every session's access line must be found exactly
once over the rotated files (the older one gzip-compressed, the newer one not
yet: delaycompress), and the new log file must be written to."""
import collections
import gzip
import os
import re
import subprocess
import threading
import time

from readouts import access_lines
from wsraw import close_frame, read_frame, ws_open
from roomclient import mask_frame
from roomd import HERE, wait_for

LOGROTATE_CONF = os.path.join(HERE, "..", "conf", "roomd.logrotate")


def local_conf(r, path):
    """The shipped file, pointed at r's log directory and pidfile."""
    with open(LOGROTATE_CONF) as f:
        text = f.read()
    for old, new in (("/var/log/roomd/*.log", os.path.join(r.dir, "*.log")),
                     ("/run/roomd/roomd.pid", r.pidfile),
                     ("su roomd adm", "su root root")):
        assert text.count(old) >= 1, f"conf/roomd.logrotate no longer has {old!r}: update this test"
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)
    return path


def chat_session(port, room):
    """Enter room as the only member, hear the enter event, close."""
    s, rest = ws_open(port, "/")
    try:
        s.sendall(mask_frame(1, b'{"event":"enter","roomid":"%s","message":"u"}' % room.encode()))
        op, payload, rest = read_frame(s, rest)
        assert op == 1 and b'"enter"' in payload, (op, payload)
        s.sendall(close_frame(1000))
        while op != 8:
            op, payload, rest = read_frame(s, rest)
    finally:
        s.close()


class Sessions:
    """One thread running chat sessions back to back (bounded: at most 5000),
    each in room rN, which its access line names."""

    def __init__(self, port):
        self.port = port
        self.rooms = []
        self.errors = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_ev.is_set() and len(self.rooms) + len(self.errors) < 5000:
            room = f"r{len(self.rooms)}"
            try:
                chat_session(self.port, room)
                self.rooms.append(room)
            except (OSError, AssertionError) as e:
                self.errors.append(repr(e))

    def wait_count(self, n):
        wait_for(lambda: len(self.rooms) >= n or self.errors, 20, what=f"{n} sessions")
        assert not self.errors, self.errors[:3]


def rotate(conf, state):
    p = subprocess.run(["logrotate", "-f", "-s", state, conf], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and not p.stderr.strip(), f"logrotate exit {p.returncode}: {p.stderr}"


def test_logrotate_loses_no_line(roomd, tmp_path):
    r = roomd({}, workers=2)
    conf = local_conf(r, str(tmp_path / "logrotate.conf"))
    state = str(tmp_path / "logrotate.state")
    load = Sessions(r.port)
    load.thread.start()
    try:
        load.wait_count(50)
        rotate(conf, state)
        wait_for(lambda: "log file reopened" in r.read_log(), 10, what="the master's line in the new log")
        load.wait_count(len(load.rooms) + 50)
        rotate(conf, state)
        wait_for(lambda: "log file reopened" in r.read_log(), 10, what="the master's line in the new log")
        load.wait_count(len(load.rooms) + 50)
    finally:
        load.stop_ev.set()
        load.thread.join(30)
    assert not load.errors, load.errors[:3]

    older, newer = r.log + ".2.gz", r.log + ".1"
    assert os.path.exists(older) and os.path.exists(newer), os.listdir(r.dir)
    assert not os.path.exists(newer + ".gz") and not os.path.exists(r.log + ".3.gz")

    def texts():
        with gzip.open(older, "rt", errors="replace") as f:
            old = f.read()
        with open(newer, errors="replace") as f:
            mid = f.read()
        return old, mid, r.read_log()

    want = collections.Counter(load.rooms)

    def logged():
        return collections.Counter(a["rooms"] for t in texts() for a in access_lines(t))
    try:
        wait_for(lambda: logged() == want, 10, what="an access line for every session")
    except AssertionError:
        missing, extra = sorted(want - logged()), sorted(logged() - want)
        raise AssertionError(f"{len(want)} sessions: {len(missing)} missing from the logs "
                             f"{missing[:5]}, {len(extra)} more than once {extra[:5]}") from None
    old, mid, new = texts()
    for name, text in (("roomd.log.2.gz", old), ("roomd.log.1", mid), ("roomd.log", new)):
        assert access_lines(text), f"{name} holds no access line"
    assert re.search(r"master \[notice\] log file reopened", new), new[:2000]
