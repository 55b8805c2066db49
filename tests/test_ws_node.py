"""Interoperability with Node's ws@8 client: the scripts in tests/node talk to
a real roomd /echo route and exit 0 only if every check passed. node_modules
is not in the repository: run `npm ci --prefix tests/node` once (or point
ROOMD_NODE_MODULES at an installed node_modules, e.g. for `make distcheck`)."""
import pytest

from roomd import node_for, run_node

SCRIPTS = ["echo_sizes.js", "binary_ping.js", "close_codes.js"]


def run_script(script, url, *args):
    return run_node(script, url, *args, timeout=90)


@pytest.mark.parametrize("script", SCRIPTS)
def test_node_client(roomd, script):
    node_for("ws")
    r = roomd(settings={"max_message_size": "8m"}, workers=2)
    args = ["--big"] if script == "echo_sizes.js" else []
    rc, out = run_script(script, f"ws://127.0.0.1:{r.port}/echo", *args)
    assert rc == 0, f"{script} failed (exit {rc}): {out}"
    assert out.splitlines()[-1].startswith(script[:-3] + ": ok"), out


def test_node_client_reports_failure(roomd):
    """The scripts must be able to fail: an over-limit message gets 1009, not an echo."""
    node_for("ws")
    r = roomd(settings={"max_message_size": "1k"}, workers=1)
    rc, out = run_script("echo_sizes.js", f"ws://127.0.0.1:{r.port}/echo")
    assert rc == 1, out
    assert "FAIL" in out and "1009" in out, out
    rc, out = run_script("echo_sizes.js", f"ws://127.0.0.1:{r.port}/no-such-path")
    assert rc == 1 and "404" in out, out
