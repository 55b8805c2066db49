"""roomd over TLS (`listen ... ssl`): wss:// with Python websockets and Node ws
for echo and chat, TLS 1.2+ only with ECDHE AEAD suites for 1.2, the page over
https, certificates reloaded on SIGHUP (and a bad replacement refused), and a
bad certificate path as a config error. Certificates are made with the openssl
CLI in tmp_path."""
import asyncio
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import websockets

# Offering TLS 1.0/1.1 is the point of one test: its deprecation warnings are noise.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")

from roomclient import run
from roomd import ROOMD_BIN, free_port, free_ports, make_cert, node_for, run_node, wait_for

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))



def der_of(cert_path):
    with open(cert_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def subject_serial(der):
    """(subject, serial) of a DER certificate, via the openssl CLI."""
    p = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject", "-serial"],
                       input=der, capture_output=True, check=True, timeout=10)
    out = p.stdout.decode()
    return (re.search(r"subject=\s*(.*)", out).group(1).strip(),
            re.search(r"serial=\s*(\S+)", out).group(1))


def client_ctx(ca=None, tls_max=None, tls_min=None, ciphers=None):
    if ca is not None:
        ctx = ssl.create_default_context(cafile=ca)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if tls_min is not None:
        ctx.minimum_version = tls_min
    if tls_max is not None:
        ctx.maximum_version = tls_max
    return ctx


def tls_connect(port, ctx, timeout=5):
    """A finished TLS handshake (the socket) or the ssl.SSLError / OSError it raised."""
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=HOST)
    except (ssl.SSLError, OSError):
        raw.close()
        raise


@pytest.fixture
def tls_roomd(roomd, tmp_path):
    """roomd with a plain listener (for the harness) and a TLS one; .tls_port, .cert, .key."""
    def make(settings=None, workers=2, kind="ec"):
        cert, key = make_cert(tmp_path / "pki", "server", "roomd-a.test", 4001, kind)
        port, tport = free_ports(2)
        s = {"listen": [f"127.0.0.1:{port}", f"127.0.0.1:{tport} ssl"],
             "ssl_certificate": cert, "ssl_certificate_key": key}
        s.update(settings or {})
        r = roomd(s, workers=workers, port=port)
        r.tls_port, r.cert, r.key = tport, cert, key
        return r
    return make


# ---- wss:// ----

def test_wss_python_echo_and_chat(tls_roomd):
    # 2m: websockets deflates, and 1 MiB of random bytes is a little longer deflated.
    r = tls_roomd({"max_message_size": "2m"})
    ctx = client_ctx(ca=r.cert)

    async def main():
        url = f"wss://{HOST}:{r.tls_port}"
        async with websockets.connect(f"{url}/echo", ssl=ctx, max_size=None) as ws:
            assert ws.transport.get_extra_info("ssl_object").version() in ("TLSv1.3", "TLSv1.2")
            for n in (0, 1, 125, 126, 65535, 65536, 1 << 20):
                await ws.send("t" * n)
                assert await asyncio.wait_for(ws.recv(), 10) == "t" * n, n
                blob = os.urandom(n)
                await ws.send(blob)
                assert await asyncio.wait_for(ws.recv(), 10) == blob, n
        # Chat over TLS, and between a TLS and a plain client in one room.
        a = await websockets.connect(f"{url}/", ssl=ctx)
        b = await websockets.connect(f"ws://{HOST}:{r.port}/")

        async def until(ws, pred):
            while True:
                ev = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if pred(ev):
                    return ev
        await a.send(json.dumps({"event": "enter", "message": "ann", "roomid": "sec"}))
        await until(a, lambda e: e["event"] == "enter" and e["name"] == "ann")
        await b.send(json.dumps({"event": "enter", "message": "bob", "roomid": "sec"}))
        ev = await until(a, lambda e: e["event"] == "enter" and e["name"] == "bob")
        assert ev["num"] == 2
        await b.send(json.dumps({"event": "message", "message": "to tls", "roomid": "sec"}))
        ev = await until(a, lambda e: e["event"] == "message")
        assert (ev["name"], ev["message"]) == ("bob", "to tls")
        await a.send(json.dumps({"event": "message", "message": "from tls", "roomid": "sec"}))
        ev = await until(b, lambda e: e["event"] == "message" and e["name"] == "ann")
        assert ev["message"] == "from tls"
        await a.close()
        await b.close()
        # Certificate checking is real: another CA is refused.
        other, _ = make_cert(os.path.join(os.path.dirname(r.cert), "other"), "x", "roomd-a.test", 9)
        with pytest.raises(ssl.SSLCertVerificationError):
            await websockets.connect(f"{url}/echo", ssl=client_ctx(ca=other))
    run(main())


def test_wss_node_client(tls_roomd):
    node_for("ws")
    r = tls_roomd({"max_message_size": "2m"})
    rc, out = run_node("tls_client.js", f"wss://{HOST}:{r.tls_port}", r.cert, timeout=90)
    assert rc == 0, out
    assert out.splitlines()[-1].startswith("tls_client: ok"), out


# ---- protocol versions and suites ----

def test_tls_1_0_and_1_1_refused(tls_roomd):
    r = tls_roomd()
    for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        # Let the client offer the old version at all (Debian's defaults refuse it).
        ctx = client_ctx(tls_min=ssl.TLSVersion.TLSv1, tls_max=v, ciphers="DEFAULT:@SECLEVEL=0")
        with pytest.raises(ssl.SSLError) as e:
            tls_connect(r.tls_port, ctx).close()
        # The server said no (a protocol_version alert), not the client library.
        assert re.search(r"PROTOCOL_VERSION|protocol version|UNSUPPORTED_PROTOCOL", str(e.value)), e.value
        assert "NO_PROTOCOLS_AVAILABLE" not in str(e.value), e.value
    # 1.3 and 1.2 work.
    for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        s = tls_connect(r.tls_port, client_ctx(ca=r.cert, tls_min=v, tls_max=v))
        assert s.version() == {"TLSv1_3": "TLSv1.3", "TLSv1_2": "TLSv1.2"}[v.name]
        s.close()


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_tls_1_2_suites_are_ecdhe_aead(tls_roomd, kind):
    r = tls_roomd(kind=kind)
    s = tls_connect(r.tls_port, client_ctx(ca=r.cert, tls_max=ssl.TLSVersion.TLSv1_2))
    name, version, bits = s.cipher()
    s.close()
    assert version == "TLSv1.2"
    assert re.fullmatch(r"ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)", name), name
    assert bits >= 128
    # A client that offers only weak suites (static RSA, DHE, CBC, 3DES) gets no handshake.
    weak = ("AES128-GCM-SHA256:AES256-SHA:DHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA:"
            "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:DES-CBC3-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as e:
        tls_connect(r.tls_port, client_ctx(tls_max=ssl.TLSVersion.TLSv1_2, ciphers=weak)).close()
    assert re.search(r"HANDSHAKE_FAILURE|handshake failure|NO_SHARED_CIPHER|no shared cipher", str(e.value)), e.value


def test_https_page_and_health(tls_roomd):
    r = tls_roomd()
    ctx = client_ctx(ca=r.cert)
    c = http.client.HTTPSConnection(HOST, r.tls_port, context=ctx, timeout=5)
    c.request("GET", "/")
    resp = c.getresponse()
    body = resp.read()
    assert resp.status == 200
    assert resp.getheader("Content-Type", "").startswith("text/html")
    assert b"<html" in body.lower()
    with open(os.path.join(HERE, "..", "www", "index.html"), "rb") as f:
        assert body == f.read()
    # Keep-alive over TLS: a second request on the same connection.
    c.request("GET", "/healthz")
    resp = c.getresponse()
    assert (resp.status, resp.read()) == (200, b"ok\n")
    c.close()


def test_https_pipelined_gets_all_answered(tls_roomd):
    """Over TLS, 300 GETs pipelined before any answer is read are all
    answered in order: the requests held back while answers wait unsent are
    taken up again once those are written, from input OpenSSL already
    decrypted as well as from the socket."""
    r = tls_roomd(workers=1)
    names = ["app.js", "style.css", "index.html"] * 100
    files = {}
    for n in set(names):
        with open(os.path.join(HERE, "..", "www", n), "rb") as f:
            files[n] = f.read()
    s = tls_connect(r.tls_port, client_ctx(ca=r.cert))
    assert isinstance(s, ssl.SSLSocket), s
    try:
        s.sendall(b"".join(f"GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for n in names))
        time.sleep(0.5)
        buf = b""
        for i, n in enumerate(names):
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                assert d, f"closed after {i} of {len(names)} answers"
                buf += d
            head, _, buf = buf.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n"), (i, head[:40])
            size = int(re.search(rb"\r\nContent-Length: (\d+)", head).group(1))
            while len(buf) < size:
                d = s.recv(65536)
                assert d, f"closed inside answer {i}"
                buf += d
            assert buf[:size] == files[n], f"answer {i}: not /{n}"
            buf = buf[size:]
    finally:
        s.close()


def test_hostile_bytes_on_the_tls_port(tls_roomd):
    """Plain HTTP, garbage and a half handshake on the TLS port are dropped;
    the server keeps serving TLS."""
    r = tls_roomd({"handshake_timeout": "1s"})
    s = socket.create_connection((HOST, r.tls_port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = s.recv(4096)
    except ConnectionResetError:
        data = b""
    assert b"HTTP/1.1 200" not in data
    s.close()
    s = socket.create_connection((HOST, r.tls_port), timeout=5)
    s.sendall(os.urandom(4096))
    s.close()
    # A ClientHello's first bytes and then silence: dropped by handshake_timeout.
    s = socket.create_connection((HOST, r.tls_port), timeout=5)
    s.sendall(bytes.fromhex("160301"))
    s.settimeout(5)
    try:
        assert s.recv(4096) == b""
    except ConnectionResetError:
        pass
    s.close()
    t = tls_connect(r.tls_port, client_ctx(ca=r.cert))
    t.close()


# ---- certificates ----

def test_sighup_reloads_the_certificate(tls_roomd, tmp_path):
    r = tls_roomd()
    old_der = der_of(r.cert)
    s = tls_connect(r.tls_port, client_ctx())
    assert s.getpeercert(binary_form=True) == old_der
    s.close()
    assert subject_serial(old_der) == ("CN = roomd-a.test", "0FA1")

    new_cert, new_key = make_cert(tmp_path / "new", "server", "roomd-b.test", 4002)
    before = r.worker_pids()
    shutil.copy(new_key, r.key + ".tmp")
    shutil.copy(new_cert, r.cert + ".tmp")
    os.replace(r.key + ".tmp", r.key)
    os.replace(r.cert + ".tmp", r.cert)
    r.log_mark()
    r.sighup()
    r.wait_log(r"reload: configuration re-read; starting worker generation 1")
    wait_for(lambda: len(r.worker_pids()) == 2 and not set(r.worker_pids()) & set(before), 10,
             what="the new generation of workers")
    for _ in range(8):           # every worker of the new generation has it
        s = tls_connect(r.tls_port, client_ctx(ca=new_cert))
        der = s.getpeercert(binary_form=True)
        s.close()
        assert der == der_of(new_cert)
    assert subject_serial(der) == ("CN = roomd-b.test", "0FA2")

    # A broken replacement (a key of another certificate) is a reload error: the current one stays.
    wrong_cert, wrong_key = make_cert(tmp_path / "wrong", "server", "roomd-c.test", 4003)
    shutil.copy(wrong_key, r.key)
    r.log_mark()
    r.sighup()
    r.wait_log(r"reload failed: .*ssl_certificate_key.*keeping the current configuration")
    s = tls_connect(r.tls_port, client_ctx(ca=new_cert))
    assert s.getpeercert(binary_form=True) == der_of(new_cert)
    s.close()
    shutil.copy(new_key, r.key)      # leave a valid pair for the stop


def roomd_t(conf):
    return subprocess.run([ROOMD_BIN, "-t", "-c", conf], capture_output=True, text=True, timeout=20)


def test_bad_certificate_paths_are_config_errors(tmp_path):
    cert, key = make_cert(tmp_path / "pki", "server", "roomd-a.test", 1)
    other_cert, other_key = make_cert(tmp_path / "pki2", "server", "roomd-x.test", 2)
    conf = str(tmp_path / "roomd.conf")
    missing_key = str(tmp_path / "nowhere" / "server.key")
    missing_cert = str(tmp_path / "nowhere" / "server.crt")
    garbage = str(tmp_path / "garbage.pem")
    with open(garbage, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")

    def write(**kw):
        lines = [f"listen 127.0.0.1:{free_port()} ssl", f"log_file {tmp_path / 'log'}"]
        lines += [f"{k} {v}" for k, v in kw.items() if v is not None]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    for kw, named in [
        ({"ssl_certificate": cert, "ssl_certificate_key": missing_key}, missing_key),
        ({"ssl_certificate": missing_cert, "ssl_certificate_key": key}, missing_cert),
        ({"ssl_certificate": garbage, "ssl_certificate_key": key}, garbage),
        ({"ssl_certificate": cert, "ssl_certificate_key": other_key}, other_key),   # a key of another cert
        ({"ssl_certificate": cert}, "ssl_certificate_key"),
    ]:
        write(**kw)
        p = roomd_t(conf)
        assert p.returncode == 1, (kw, p.stderr)
        assert named in p.stderr, (kw, p.stderr)
    write(ssl_certificate=cert, ssl_certificate_key=key)
    p = roomd_t(conf)
    assert p.returncode == 0, p.stderr
    assert "is valid" in p.stderr
