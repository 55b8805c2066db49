"""roomd-client, the JavaScript client (www/roomd-client.js, packaged in
clients/js): its own tests under Node's test runner (tests/js/client.test.mjs),
each run here against the real servers it needs (roomd instances sharing a
real Redis, with auth where it tests tokens); its TypeScript declarations
compiled with tsc; and the npm package made with npm pack, holding what
clients/js/README.md says and importable from a project that installs it."""
import json
import os
import re
import shutil
import subprocess
import tarfile

import pytest

from roomd import node_for, node_modules

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
PKG = os.path.join(TOP, "clients", "js")
TEST_FILE = os.path.join(HERE, "js", "client.test.mjs")
SECRET = "js-client-test-secret-0123456789abcdef"
TIMEOUT = 150

# Each case of client.test.mjs: (instances, settings, what it proves); every
# instance shares one real redis-server, so the test can flush it.
BASE = {"rate_limit": "0"}
AUTH = {"auth_secret": SECRET, "auth_failure": "event"}
CASES = {
    "basics": (1, BASE, "join, chat, who, history, leave; close() leaves no timer"),
    "first-entry": (1, BASE, "history K on entering; the position known without any message; a fast reconnect"),
    # A history that holds what the writer (250 a second) says during a
    # reconnect that has to wait out answerTimeout (see worker-kill).
    "server-close": (2, dict(BASE, history_size="2000"), "a graceful worker restart (1001): every message once, in order"),
    "worker-kill": (2, dict(BASE, history_size="2000"), "workers SIGKILLed twice: every message once, in order"),
    # Stopped for ~2 s while the writer says 250 a second: a history that holds them.
    "silent-server": (2, dict(BASE, history_size="2000"),
                      "workers SIGSTOPped: the silence noticed, hung handshakes given up, recovered"),
    "fifty-reconnects": (2, BASE, "50 reconnects to the other instance, half during a catch-up"),
    "gap-live": (1, BASE, "Redis flushed under a connected room: one gap, the new epoch delivered"),
    "gap-new-epoch": (1, BASE, "Redis flushed while away: one gap, then the new epoch's messages, none missed"),
    "gap-offline": (1, BASE, "positions in storage: a new client resumes with context; a flush is one gap"),
    "token-refresh": (1, dict(BASE, auth="required", **AUTH), "auth required: refresh keeps one connection"),
    "token-refresh-optional": (1, dict(BASE, auth="optional", **AUTH), "auth optional: the same"),
    "token-expiry": (1, dict(BASE, auth="required", **AUTH), "no getToken: 4001 at expiry, no reconnect loop"),
    "send-queue": (1, BASE, "sends queue while disconnected up to maxQueued, then queue_full"),
    "enter-errors": (1, dict(BASE, auth="optional", history_size="20", **AUTH),
                     "a forbidden room fails alone; history above history_size is clamped"),
}


def run_case(name, urls, pidfiles, redis_addr):
    """Run one node:test case of client.test.mjs; it must pass, and run."""
    node = node_for("ws")
    pattern = "token-refresh" if name == "token-refresh-optional" else name
    env = dict(os.environ, NODE_PATH=node_modules(), ROOMD_URLS=",".join(urls),
               ROOMD_PIDFILES=",".join(pidfiles), REDIS_ADDR=redis_addr, ROOMD_AUTH_SECRET=SECRET)
    try:
        p = subprocess.run([node, "--test-reporter=tap", f"--test-name-pattern=^{re.escape(pattern)}$", TEST_FILE],
                           capture_output=True, text=True, timeout=TIMEOUT, cwd=os.path.dirname(TEST_FILE), env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name} ran over {TIMEOUT}s\n{e.stdout or ''}{e.stderr or ''}")
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{name} failed (exit {p.returncode})\n{out}"
    assert re.search(r"^# pass 1$", out, re.M) and re.search(r"^# fail 0$", out, re.M), \
        f"{name}: not exactly one test passed\n{out}"


@pytest.mark.parametrize("case", list(CASES))
def test_client(roomd, redis, case):
    n, settings, _ = CASES[case]
    servers = [roomd(dict(settings, redis=redis.url), workers=2) for _ in range(n)]
    run_case(case, [f"ws://127.0.0.1:{r.port}/" for r in servers], [r.pidfile for r in servers],
             redis.url.split("//", 1)[1])


def npm():
    exe = shutil.which("npm")
    assert exe, "npm is not installed (tests/install-deps.sh installs it)"
    return exe


def tsc():
    path = os.path.join(os.environ.get("ROOMD_JS_MODULES") or os.path.join(PKG, "node_modules"),
                        "typescript", "bin", "tsc")
    assert os.path.isfile(path), f"{path} is missing: run `npm ci --prefix clients/js` first"
    return path


def test_types_compile(tmp_path):
    """tsc --noEmit over the declarations and a program that uses them
    (clients/js/tsconfig.json); the program holds @ts-expect-error lines, so
    declarations that accepted anything would fail it too."""
    node = node_for("ws")
    # The tree may be read-only (make distcheck): compile a copy.
    work = tmp_path / "js"
    shutil.copytree(PKG, work, ignore=shutil.ignore_patterns("node_modules", "*.tgz"))
    p = subprocess.run([node, tsc(), "--noEmit", "-p", str(work)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    # And it can fail: a wrong call is an error.
    bad = work / "test" / "bad.ts"
    bad.write_text('import { RoomdClient } from "../roomd-client.js";\n'
                   'new RoomdClient("ws://x/", { name: 42 });\n')
    p = subprocess.run([node, tsc(), "--noEmit", "-p", str(work)], capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "bad.ts" in p.stdout, p.stdout + p.stderr


def readme_files():
    """The files clients/js/README.md says the package holds (its "What the package holds" list)."""
    text = open(os.path.join(PKG, "README.md")).read()
    sec = text.split("## What the package holds", 1)[1].split("\n## ", 1)[0]
    return sorted(re.findall(r"^- `([^`]+)`", sec, re.M))


def test_npm_pack(tmp_path):
    """npm pack makes a tarball holding exactly the files the README lists,
    the module in it is byte for byte the one roomd serves, and a project
    that installs the tarball imports roomd-client by name."""
    # npm pack copies the module in from www/: work on a copy of the two.
    shutil.copytree(PKG, tmp_path / "clients" / "js", ignore=shutil.ignore_patterns("node_modules", "*.tgz"))
    os.makedirs(tmp_path / "www")
    shutil.copy(os.path.join(TOP, "www", "roomd-client.js"), tmp_path / "www")
    pkgdir = tmp_path / "clients" / "js"
    out = tmp_path / "out"
    os.makedirs(out)
    p = subprocess.run([npm(), "pack", "--json", "--pack-destination", str(out)], cwd=pkgdir,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    info = json.loads(p.stdout)[0]
    tgz = out / info["filename"]
    with tarfile.open(tgz) as t:
        names = sorted(n[len("package/"):] for n in t.getnames())
        module = t.extractfile("package/roomd-client.js").read()
    assert names == readme_files(), f"tarball {names} but README says {readme_files()}"
    assert module == open(os.path.join(TOP, "www", "roomd-client.js"), "rb").read()
    assert not os.path.exists(pkgdir / "roomd-client.js"), "npm pack left its copy behind"
    # A project that installs the tarball (no network: it has no dependencies).
    proj = tmp_path / "proj"
    os.makedirs(proj)
    (proj / "package.json").write_text('{"name":"proj","version":"1.0.0","private":true,"type":"module"}')
    p = subprocess.run([npm(), "install", "--offline", "--no-audit", "--no-fund", str(tgz)], cwd=proj,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    (proj / "use.js").write_text(
        'import { RoomdClient, RoomdError, memoryStorage, tokenExpiry } from "roomd-client";\n'
        'const c = new RoomdClient("ws://127.0.0.1:9/", { name: "x", WebSocket: class {} });\n'
        'console.log(typeof RoomdClient, typeof RoomdError, typeof memoryStorage, typeof tokenExpiry, c.state);\n')
    p = subprocess.run([node_for("ws"), "use.js"], cwd=proj, capture_output=True, text=True, timeout=30)
    assert p.stdout.strip() == "function function function function disconnected", p.stdout + p.stderr
    meta = json.loads((proj / "node_modules" / "roomd-client" / "package.json").read_text())
    assert meta["name"] == "roomd-client" and meta["types"] == "./roomd-client.d.ts"
    assert (proj / "node_modules" / "roomd-client" / "roomd-client.d.ts").is_file()
