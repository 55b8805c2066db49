"""The chat page end to end in a real browser (Debian's headless Chromium,
driven by playwright-core): each case is a node script in tests/browser/ run
against a fresh roomd as `node tests/browser/<case>.js PORT OUTDIR`. A script
exits non-zero with its reason and saves a screenshot of every open page to
OUTDIR (tests/out/browser/<case>/) on failure; its output is shown then."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from roomd import NodeScript, browser_modules, node_for

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER_DIR = os.path.join(HERE, "browser")
# Outside the source tree when it is read-only (make distcheck): ROOMD_TEST_OUT.
OUT_DIR = os.path.join(os.environ.get("ROOMD_TEST_OUT") or os.path.join(HERE, "out"), "browser")
TIMEOUT = 60


def browser_node():
    """node with playwright-core, and Chromium: a missing one fails the test
    (never skips it), as the page must be tested."""
    node = node_for("playwright-core", browser_modules(), "tests/browser")
    assert os.access("/usr/bin/chromium", os.X_OK), \
        "/usr/bin/chromium is missing (Debian: apt-get install chromium)"
    return node


def case_argv(case, port):
    """The command line of a case script, with a fresh OUTDIR for its screenshots."""
    node = browser_node()
    d = os.path.join(OUT_DIR, case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return [node, os.path.join(BROWSER_DIR, f"{case}.js"), str(port), d]


def env():
    return dict(os.environ, NODE_PATH=browser_modules())


def run_script(case, port):
    """Run one case script to completion; fail with its output unless it exits 0."""
    try:
        p = subprocess.run(case_argv(case, port), capture_output=True, text=True, timeout=TIMEOUT,
                           cwd=BROWSER_DIR, env=env())
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{case}.js ran over {TIMEOUT}s\n{e.stdout or ''}{e.stderr or ''}")
    assert p.returncode == 0, f"{case}.js exited {p.returncode}\n{p.stdout}{p.stderr}"
    return p.stdout


def script(case, port):
    """A case script we talk to while it runs."""
    return NodeScript(case_argv(case, port), BROWSER_DIR, env(), f"{case}.js")


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
    s = script("restart", r.port)
    try:
        s.expect_line("READY", 30)
        r.stop()
        time.sleep(0.3)     # the pages notice and start retrying against a closed port
        r.start()
        s.say("RESTARTED")
        s.finish(TIMEOUT)
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


def test_page_recovers_after_worker_restart_and_reload(roomd, redis):
    """The page over roomd-client: every worker of the reader's instance
    SIGKILLed, then the reader's page reloaded, while a page on a second
    instance keeps sending: the reader shows every message once, in order,
    and after the reload the last 50 it had plus everything since."""
    a = roomd({"redis": redis.url, "history_size": "1000"}, workers=2)
    b = roomd({"redis": redis.url, "history_size": "1000"}, workers=1)
    s = NodeScript(case_argv("recover", a.port), BROWSER_DIR, dict(env(), ROOMD_PORT_B=str(b.port)), "recover.js")
    try:
        s.expect_line("READY", 40)
        for pid in a.worker_pids():
            os.kill(pid, signal.SIGKILL)
        s.say("KILLED")
        s.finish(TIMEOUT)
    finally:
        s.kill()


def test_page_history_and_gap_line(roomd, redis):
    """A page entering a room shows its last 50 messages; when Redis loses
    the room's history the page says "you missed messages you cannot see"
    once, before the next message."""
    r = roomd({"redis": redis.url})
    s = script("history", r.port)
    try:
        s.expect_line("READY", 40)
        assert redis.command("FLUSHALL") == "OK"
        s.say("FLUSHED")
        s.finish(TIMEOUT)
    finally:
        s.kill()
