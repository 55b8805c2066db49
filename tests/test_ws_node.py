"""Interoperability with Node's ws@8 client: the scripts in tests/node talk to
a real roomd /echo route and exit 0 only if every check passed. node_modules
is not in the repository: run `npm ci --prefix tests/node` once (or point
ROOMD_NODE_MODULES at an installed node_modules, e.g. for `make distcheck`)."""
import os
import shutil
import subprocess

import pytest

from roomd import node_modules

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
SCRIPTS = ["echo_sizes.js", "binary_ping.js", "close_codes.js"]


def node_ready():
    """Fail (never skip) with what to do when node or the ws package is missing."""
    node = shutil.which("node")
    assert node, "node is not installed: the Node interoperability tests need it (apt-get install nodejs)"
    assert os.path.isfile(os.path.join(node_modules(), "ws", "package.json")), \
        f"{node_modules()} has no ws package: run `npm ci --prefix tests/node` first"
    return node


def run_script(node, script, url, *args):
    env = dict(os.environ, NODE_PATH=node_modules())
    p = subprocess.run([node, os.path.join(NODE_DIR, script), url, *args],
                       capture_output=True, text=True, timeout=90, cwd=NODE_DIR, env=env)
    out = (p.stdout + p.stderr).strip()
    return p.returncode, out


@pytest.mark.parametrize("script", SCRIPTS)
def test_node_client(roomd, script):
    node = node_ready()
    r = roomd(settings={"max_message_size": "8m"}, workers=2)
    args = ["--big"] if script == "echo_sizes.js" else []
    rc, out = run_script(node, script, f"ws://127.0.0.1:{r.port}/echo", *args)
    assert rc == 0, f"{script} failed (exit {rc}): {out}"
    assert out.splitlines()[-1].startswith(script[:-3] + ": ok"), out


def test_node_client_reports_failure(roomd):
    """The scripts must be able to fail: an over-limit message gets 1009, not an echo."""
    node = node_ready()
    r = roomd(settings={"max_message_size": "1k"}, workers=1)
    rc, out = run_script(node, "echo_sizes.js", f"ws://127.0.0.1:{r.port}/echo")
    assert rc == 1, out
    assert "FAIL" in out and "1009" in out, out
    rc, out = run_script(node, "echo_sizes.js", f"ws://127.0.0.1:{r.port}/no-such-path")
    assert rc == 1 and "404" in out, out
