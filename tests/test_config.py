"""Command line and config checking: -t reports `file:line: what` and exits 1,
-T dumps the effective settings with -o/-l/-w applied over the file, -v names
the libraries, -h and bad flags print the usage."""
import os
import re
import subprocess

import pytest

from roomd import ROOMD_BIN

USAGE = "usage: roomd [-dhtTv] [-c file] [-l address] [-o 'key value'] [-w workers]\n"


def run(*args, cwd=None, timeout=10):
    """Run roomd with args; (exit status, stdout, stderr)."""
    p = subprocess.run([ROOMD_BIN] + list(args), capture_output=True, text=True,
                       cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def dump(*args, cwd=None):
    """Run roomd -T with args: {key: [values]} of the dump, which must succeed."""
    rc, out, err = run("-T", *args, cwd=cwd)
    assert rc == 0, err
    d = {}
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.partition(" ")
        d.setdefault(key, []).append(value)
    return d


GOOD = """# a good config: comments, blank lines, quotes
listen 127.0.0.1:9451

workers 3           # trailing comment
log_level "notice"
shutdown_timeout 1500ms
max_request_size 16k
route /chat echo
"""

# (text, bad line number, message): the error must read FILE:LINE: message.
BAD = [
    ("workers 2\n# comment\n\nbogus_key 1\n", 4, "unknown key 'bogus_key'"),
    ("workers 2\nmax_connections 12x\n", 2, "max_connections wants a whole number, got '12x'"),
    ("workers abc\n", 1, "workers wants a whole number, got 'abc'"),
    ("\n\nworkers 300\n", 3, "workers 300 is out of range (0 to 256)"),
    ("max_request_size 100\n", 1, "max_request_size 100 is out of range (1024 to 1048576 bytes)"),
    ("handshake_timeout 10ms\n", 1, "handshake_timeout 10ms is out of range (100ms to 3600s)"),
    ("listen 127.0.0.1:9451\nlisten [::1]9451\n", 2,
     "bad listen address '[::1]9451' (want [ipv6]:port)"),
    ("# x\nlisten 127.0.0.1:0\n", 2, "bad port in listen address '127.0.0.1:0' (want 1-65535)"),
    ("listen 127.0.0.1:65536\n", 1, "bad port in listen address '127.0.0.1:65536' (want 1-65535)"),
    ("listen 9451\nlisten *:9451\n", 2, "listen *:9451 given twice"),
    ("workers 1\n\n\n\n\nshutdown_timeout 5 minutes\n", 6,
     "shutdown_timeout wants a duration such as 30, 30s, 500ms or 2m, got '5 minutes'"),
    ("ping_interval 1.5s\n", 1, "ping_interval wants a duration such as 30, 30s, 500ms or 2m, got '1.5s'"),
    ("max_message_size 1t\n", 1, "max_message_size wants a size such as 8192, 64k or 1m, got '1t'"),
    ("daemonize sometimes\n", 1, "daemonize wants yes or no, got 'sometimes'"),
    ("log_level loud\n", 1, "log_level wants debug, info, notice, warning or error, got 'loud'"),
    ("workers 2\nuser \"nobody\n", 2, "unterminated quoted value for 'user'"),
    ("workers\n", 1, "'workers' wants a value"),
    ("workers 1\n# " + "x" * 5000 + "\n", 2, "line longer than 4094 bytes"),
]


@pytest.mark.parametrize("text,line,msg", BAD, ids=[m.split(" ")[0] + f"-line{l}" for _, l, m in BAD])
def test_check_reports_file_and_line(tmp_path, text, line, msg):
    path = write(tmp_path / "bad.conf", text)
    rc, out, err = run("-t", "-c", path)
    assert rc == 1
    assert out == ""
    assert err == f"roomd: {path}:{line}: {msg}\n"


def test_check_reports_unknown_route_kind(tmp_path):
    path = write(tmp_path / "bad.conf", "route /chat echo\nroute /x nope\n")
    rc, out, err = run("-t", "-c", path)
    assert rc == 1
    assert err.startswith(f"roomd: {path}:2: unknown route kind 'nope' (want "), err
    assert "echo" in err and "off" in err, "the error lists the kinds"


def test_check_good_file(tmp_path):
    path = write(tmp_path / "good.conf", GOOD)
    rc, out, err = run("-t", "-c", path)
    assert rc == 0, err
    assert out == ""
    assert err == f"roomd: configuration {path} is valid\n"


def test_check_cross_key_errors_name_the_file(tmp_path):
    path = write(tmp_path / "ping.conf", "ping_interval 30s\nping_timeout 30s\n")
    rc, _, err = run("-t", "-c", path)
    assert rc == 1
    assert err == f"roomd: {path}: ping_timeout (30000ms) must be longer than ping_interval (30000ms)\n"

    path = write(tmp_path / "daemon.conf", "daemonize yes\n")
    rc, _, err = run("-t", "-c", path)
    assert rc == 1
    assert err == f"roomd: {path}: daemonize yes needs a log_file (a path or syslog): stderr is closed\n"
    # With a log file the same setting is fine.
    write(tmp_path / "daemon.conf", f"daemonize yes\nlog_file {tmp_path}/roomd.log\n")
    assert run("-t", "-c", path)[0] == 0


def test_check_missing_file(tmp_path):
    path = str(tmp_path / "nonexistent.conf")
    rc, _, err = run("-t", "-c", path)
    assert rc == 1
    assert err == f"roomd: {path}: cannot open: No such file or directory\n"


def test_startup_uses_the_same_checks(tmp_path):
    """Starting (not -t) with a bad file fails the same way, before binding anything."""
    path = write(tmp_path / "bad.conf", "listen 127.0.0.1:9451\n\nworkers many\n")
    rc, out, err = run("-c", path)
    assert rc == 1
    assert err == f"roomd: {path}:3: workers wants a whole number, got 'many'\n"


def test_version():
    rc, out, err = run("-v")
    assert rc == 0
    assert err == ""
    lines = out.splitlines()
    assert re.fullmatch(r"roomd \d+\.\d+\.\d+\S*", lines[0]), out
    for lib in ("libevent", "hiredis", "json-c", "OpenSSL", "zlib"):
        assert re.search(rf"\b{lib} \d", out), f"{lib} missing from -v output: {out!r}"


def test_help_goes_to_stdout():
    rc, out, err = run("-h")
    assert rc == 0
    assert out == USAGE
    assert err == ""


@pytest.mark.parametrize("args", [["-x"], ["-c"], ["extra-argument"], ["-t", "-c", "/dev/null", "more"]],
                         ids=["unknown-flag", "missing-argument", "operand", "trailing-operand"])
def test_bad_flag_prints_usage_to_stderr(args):
    rc, out, err = run(*args)
    assert rc == 1
    assert out == ""
    assert err.endswith(USAGE)


def test_dump_shows_effective_settings(tmp_path):
    path = write(tmp_path / "good.conf", GOOD)
    d = dump("-c", path)
    assert d["listen"] == ["127.0.0.1:9451"]
    assert d["workers"] == ["3"]
    assert d["log_level"] == ["notice"]
    assert d["shutdown_timeout"] == ["1500ms"]
    assert d["max_request_size"] == ["16384"]
    assert d["route"] == ["/chat echo"]
    # Keys the file does not set show their defaults.
    assert d["max_connections"] == ["100000"]
    assert d["ping_interval"] == ["30s"]
    assert d["daemonize"] == ["no"]


def test_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path / "good.conf", GOOD)
    d = dump("-c", path, "-w", "5", "-l", "127.0.0.1:9452", "-o", "log_level debug",
             "-o", "max_request_size   4k")
    assert d["workers"] == ["5"]
    assert d["listen"] == ["127.0.0.1:9452"], "-l replaces the file's listen lines"
    assert d["log_level"] == ["debug"]
    assert d["max_request_size"] == ["4096"]
    assert d["shutdown_timeout"] == ["1500ms"], "keys not overridden come from the file"
    # -l can be given more than once; -d sets daemonize.
    d = dump("-c", path, "-l", "127.0.0.1:9453", "-l", "[::1]:9453", "-d",
             "-o", f"log_file {tmp_path}/roomd.log")
    assert d["listen"] == ["127.0.0.1:9453", "[::1]:9453"]
    assert d["daemonize"] == ["yes"]
    assert d["log_file"] == [f"{tmp_path}/roomd.log"]


def test_command_line_errors(tmp_path):
    path = write(tmp_path / "good.conf", GOOD)
    rc, out, err = run("-t", "-c", path, "-w", "abc")
    assert rc == 1
    assert err == "roomd: command line: workers wants a whole number, got 'abc'\n"
    rc, out, err = run("-t", "-c", path, "-o", "no_such_key 1")
    assert rc == 1
    assert err == "roomd: command line: unknown key 'no_such_key'\n"
    rc, out, err = run("-t", "-c", path, "-o", "workers")
    assert rc == 1
    assert err == "roomd: command line: -o wants 'key value', got 'workers'\n"
    rc, out, err = run("-t", "-c", path, "-l", "127.0.0.1:0")
    assert rc == 1
    assert err == "roomd: command line: bad port in listen address '127.0.0.1:0' (want 1-65535)\n"
    rc, out, err = run("-t", "-c", path, "-d")
    assert rc == 1
    assert "daemonize yes needs a log_file" in err


def test_dump_is_a_valid_config(tmp_path):
    """What -T prints loads back (-t) and dumps to the same text."""
    path = write(tmp_path / "good.conf", GOOD)
    rc, first, err = run("-T", "-c", path, "-o", f"pidfile {tmp_path}/with space/roomd.pid")
    assert rc == 0, err
    assert f'pidfile "{tmp_path}/with space/roomd.pid"' in first
    again = write(tmp_path / "dumped.conf", first)
    rc, second, err = run("-T", "-c", again)
    assert rc == 0, err
    assert second == first


def test_relative_paths_are_made_absolute(tmp_path):
    write(tmp_path / "rel.conf", "pidfile run/roomd.pid\nlog_file logs/roomd.log\n")
    d = dump("-c", "rel.conf", cwd=tmp_path)
    assert d["pidfile"] == [os.path.join(str(tmp_path), "run/roomd.pid")]
    assert d["log_file"] == [os.path.join(str(tmp_path), "logs/roomd.log")]
