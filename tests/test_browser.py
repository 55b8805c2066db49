"""The chat page end to end in a real browser (Debian's headless Chromium,
driven by playwright-core): each case is a node script in tests/browser/ run
against a fresh roomd as `node tests/browser/<case>.js PORT OUTDIR`. A script
exits non-zero with its reason and saves a screenshot of every open page to
OUTDIR (tests/out/browser/<case>/) on failure; its output is shown then."""
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
# Outside the source tree when it is read-only (make distcheck): ROOMD_TEST_OUT.
OUT_DIR = os.path.join(os.environ.get("ROOMD_TEST_OUT") or os.path.join(HERE, "out"), "browser")
# playwright-core: tests/browser/node_modules, or ROOMD_BROWSER_MODULES (make distcheck).
MODULES = os.environ.get("ROOMD_BROWSER_MODULES") or os.path.join(BROWSER_DIR, "node_modules")
ENV = dict(os.environ, NODE_PATH=MODULES)
NODE = shutil.which("node") or "node"
TIMEOUT = 60


def require_deps():
    """Missing tools fail the test (never skip it): the page must be tested."""
    if not os.path.isdir(os.path.join(MODULES, "playwright-core")):
        pytest.fail(f"{MODULES} has no playwright-core: run `npm ci --prefix tests/browser`")
    if not shutil.which("node"):
        pytest.fail("node is not installed (Debian: apt-get install nodejs)")
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.fail("/usr/bin/chromium is missing (Debian: apt-get install chromium)")


def outdir(case):
    require_deps()
    d = os.path.join(OUT_DIR, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def run_script(case, port):
    """Run one case script to completion; fail with its output unless it exits 0."""
    cmd = [NODE, os.path.join(BROWSER_DIR, f"{case}.js"), str(port), outdir(case)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=BROWSER_DIR, env=ENV)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{case}.js ran over {TIMEOUT}s\n{e.stdout or ''}{e.stderr or ''}")
    assert p.returncode == 0, f"{case}.js exited {p.returncode}\n{p.stdout}{p.stderr}"
    return p.stdout


class Script:
    """A case script we talk to while it runs: read its lines, write to its stdin."""

    def __init__(self, case, port):
        cmd = [NODE, os.path.join(BROWSER_DIR, f"{case}.js"), str(port), outdir(case)]
        self.case = case
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=BROWSER_DIR, env=ENV)
        self.lines, self.out = queue.Queue(), []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.out.append(line)
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def output(self):
        return "".join(self.out)

    def expect(self, word, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line == word:
                return
            if line is None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.case}.js never printed {word}\n{self.output()}")

    def say(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout=TIMEOUT):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.case}.js ran over {timeout}s\n{self.output()}")
        time.sleep(0.05)    # let the pump take the last lines
        assert rc == 0, f"{self.case}.js exited {rc}\n{self.output()}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_same_room_messages_mine_and_count(roomd):
    """Two pages in one room see each other's messages, own ones marked
    .mine, and both show "2 online"."""
    r = roomd()
    run_script("same_room", r.port)


def test_other_room_sees_nothing(roomd):
    """A third page in another room sees none of the first room and shows
    "1 online"."""
    r = roomd()
    run_script("other_room", r.port)


def test_who_lists_both_names(roomd):
    """The who list shows both names on both pages (own one marked), and
    follows a Leave."""
    r = roomd()
    run_script("who", r.port)


def test_html_in_message_name_and_room_is_text(roomd):
    """<img onerror>, <script>, <svg onload> in a message, a name and a room
    show literally and never run."""
    r = roomd()
    run_script("xss", r.port)


def test_restart_under_the_page(roomd):
    """roomd stopped (SIGTERM) and started again on the same port: both pages
    go reconnecting -> online, say "Reconnected", and chat on."""
    r = roomd()
    s = Script("restart", r.port)
    try:
        s.expect("READY")
        r.stop()
        time.sleep(0.3)     # the pages notice and start retrying against a closed port
        r.start()
        s.say("RESTARTED")
        s.finish()
    finally:
        s.kill()


def test_enter_sends_long_words_wrap_newest_in_view(roomd):
    """Enter sends; a long word wraps within the log; after 50 messages the
    newest is in view; a reader scrolled up is left alone."""
    r = roomd()
    run_script("scroll", r.port)


def test_phone_viewport(roomd):
    """At 390x700 the composer and the messages are in view, nothing scrolls
    sideways."""
    r = roomd()
    run_script("phone", r.port)


def test_json_heartbeat_answered(roomd):
    """With heartbeat_interval 1s and heartbeat_misses 2 the page answers the
    server's pings and stays connected for 4 s."""
    r = roomd({"heartbeat_interval": "1s", "heartbeat_misses": "2"})
    run_script("heartbeat", r.port)
    assert "missed" not in r.read_log(), r.read_log()[-3000:]
