"""The page's static files over raw sockets: sizes and types, HEAD,
conditional requests (ETag, Last-Modified -> 304), 404/405, every way out of
www_root refused (.., %2e%2e, %2f, NUL, symlinks), keep-alive, pipelining and
Connection: close."""
import os
import socket
import time

import pytest

from wsraw import RawSocket

HERE = os.path.dirname(os.path.abspath(__file__))
WWW = os.path.join(HERE, "..", "www")


class Http(RawSocket):
    """One raw HTTP/1.1 connection: send bytes, read responses one by one."""

    def get(self, path, method="GET", headers=None, close=False):
        h = {"Host": "127.0.0.1", **(headers or {})}
        if close:
            h["Connection"] = "close"
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in h.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def response(self, head=False):
        """(status, headers with lower-case names, body) of the next response."""
        status, lines, text = self.read_head_lines()
        assert text.startswith("HTTP/1.1 "), text.split("\r\n")[0]
        headers = {}
        for l in lines:
            k, v = l.split(":", 1)
            assert k.lower() not in headers, f"header {k} twice"
            headers[k.lower()] = v.strip()
        n = 0 if head or status in (204, 304) else int(headers["content-length"])
        return status, headers, self._take(n)

    def nothing_more(self, wait=0.3):
        """Whether no further bytes arrive (the connection stays open, quiet)."""
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return self.buf == b""
        finally:
            self.sock.settimeout(5.0)
        self.buf += chunk
        return False

    def closed_by_peer(self, wait=3.0):
        self.sock.settimeout(wait)
        try:
            return self.sock.recv(65536) == b"" and self.buf == b""
        except ConnectionResetError:
            return self.buf == b""
        except socket.timeout:
            return False


def fetch(port, path, method="GET", headers=None, raw=None):
    """One request on a fresh connection: (status, headers, body)."""
    c = Http(port)
    try:
        c.send(raw if raw is not None else c.get(path, method, headers))
        return c.response(head=method == "HEAD")
    finally:
        c.close()


def read(name):
    with open(os.path.join(WWW, name), "rb") as f:
        return f.read()


@pytest.fixture
def srv(roomd):
    return roomd(workers=1)


def test_get_page_size_and_type(srv):
    """GET / is the page: 200, text/html, Content-Length the file's size, the
    file's bytes, validators and keep-alive."""
    st, h, body = fetch(srv.port, "/")
    assert st == 200
    assert h["content-type"].startswith("text/html")
    want = read("index.html")
    assert int(h["content-length"]) == len(want) == os.path.getsize(os.path.join(WWW, "index.html"))
    assert body == want
    assert h["etag"].startswith('"') and h["etag"].endswith('"')
    assert h["last-modified"].endswith(" GMT")
    assert h["connection"] == "keep-alive"
    # A chat route with a query string is the page too.
    assert fetch(srv.port, "/?room=tea")[2] == want
    assert fetch(srv.port, "/index.html")[2] == want


def test_head_same_headers_no_body(srv):
    """HEAD / has GET's headers and no body: the next response on the
    connection follows the head directly."""
    _, gh, _ = fetch(srv.port, "/")
    c = Http(srv.port)
    try:
        c.send(c.get("/", "HEAD"))
        st, hh, body = c.response(head=True)
        assert st == 200 and body == b""
        assert hh == gh
        assert c.nothing_more(), f"HEAD sent a body: {c.buf[:80]!r}"
        c.send(c.get("/style.css"))
        st, h, body = c.response()
        assert st == 200 and body == read("style.css")
    finally:
        c.close()


def test_etag_if_none_match_304(srv):
    """If-None-Match with the ETag -> 304 without a body; another tag -> 200."""
    _, h, _ = fetch(srv.port, "/app.js")
    c = Http(srv.port)
    try:
        c.send(c.get("/app.js", headers={"If-None-Match": h["etag"]}))
        st, h304, body = c.response()
        assert st == 304 and body == b""
        assert h304["etag"] == h["etag"]
        assert "content-length" not in h304 or h304["content-length"] == "0"
        # The connection is still good and no stray body follows the 304.
        c.send(c.get("/app.js", headers={"If-None-Match": '"nope-1", W/"nope-2"'}))
        st, _, body = c.response()
        assert st == 200 and body == read("app.js")
    finally:
        c.close()
    assert fetch(srv.port, "/app.js", headers={"If-None-Match": f'"x", {h["etag"]}'})[0] == 304


def test_if_modified_since_304(srv):
    """If-Modified-Since with the Last-Modified value (or later) -> 304; an
    earlier date -> 200."""
    _, h, _ = fetch(srv.port, "/style.css")
    st, _, body = fetch(srv.port, "/style.css", headers={"If-Modified-Since": h["last-modified"]})
    assert st == 304 and body == b""
    st, _, body = fetch(srv.port, "/style.css", headers={"If-Modified-Since": "Thu, 01 Jan 1998 00:00:00 GMT"})
    assert st == 200 and body == read("style.css")


def test_content_types(srv):
    """app.js, the client module it imports and style.css are served with
    their types (and nosniff): a browser runs a module script only with a
    JavaScript type."""
    for path, want in (("/app.js", "text/javascript"), ("/roomd-client.js", "text/javascript"),
                       ("/style.css", "text/css")):
        st, h, body = fetch(srv.port, path)
        assert st == 200, path
        assert h["content-type"].split(";")[0] == want, (path, h["content-type"])
        assert h["x-content-type-options"] == "nosniff"
        assert body == read(path[1:])


def test_missing_file_404(srv):
    for path in ("/nope.html", "/nope/", "/app.js/x"):
        st, h, body = fetch(srv.port, path)
        assert st == 404, path
        assert b"<!doctype" not in body


def test_post_405_with_allow(srv):
    for path in ("/", "/app.js"):
        st, h, _ = fetch(srv.port, path, method="POST",
                         raw=f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        assert st == 405, path
        assert {m.strip() for m in h["allow"].split(",")} >= {"GET", "HEAD"}
    for method in ("PUT", "DELETE"):
        assert fetch(srv.port, "/style.css", method=method)[0] == 405


@pytest.mark.parametrize("path,want", [
    ("/../etc/passwd", 403),
    ("/%2e%2e/%2e%2e/etc/passwd", 403),
    ("/%2E%2E/%2e%2E/etc/passwd", 403),
    ("/..%2f..%2fetc%2fpasswd", 403),
    ("/static/..%2f..%2f..%2f..%2fetc/passwd", 403),
    ("/./index.html", 403),
    ("/a%00b", 400),
    ("/index.html%00.js", 400),
    ("/..%5c..%5cetc%5cpasswd", 400),
    ("/%zz", 400),
])
def test_traversal_refused(srv, path, want):
    """Ways out of www_root are refused: never 200, never the file."""
    st, _, body = fetch(srv.port, path)
    assert st == want, (path, st, body)
    assert b"root:" not in body
    assert "static file refused" in srv.read_log()


def test_symlink_out_of_root_refused(roomd, tmp_path):
    """In a www_root of our own: a normal file is served, a link to a file
    inside is served, a link (or a linked directory) leading outside is 403."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>t</title>\n")
    (root / "ok.txt").write_text("inside\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("outside secret\n")
    os.symlink(secret, root / "leak.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "ok.txt", root / "alias.txt")
    r = roomd({"www_root": str(root)}, workers=1)

    st, h, body = fetch(r.port, "/ok.txt")
    assert (st, body) == (200, b"inside\n")
    assert h["content-type"].startswith("text/plain")
    assert fetch(r.port, "/")[2] == b"<!doctype html><title>t</title>\n"
    assert fetch(r.port, "/alias.txt")[:3:2] == (200, b"inside\n")
    for path in ("/leak.txt", "/up/secret.txt", "/up/www/../secret.txt".replace("..", "%2e%2e")):
        st, _, body = fetch(r.port, path)
        assert st == 403, (path, st)
        assert b"secret" not in body and b"inside" not in body
    # A way out that comes back in resolves inside the root: served.
    assert fetch(r.port, "/up/www/ok.txt")[:3:2] == (200, b"inside\n")


def test_keep_alive_two_requests(srv):
    """Two requests one after the other on one connection, both answered."""
    c = Http(srv.port)
    try:
        for path, name in (("/app.js", "app.js"), ("/style.css", "style.css")):
            c.send(c.get(path))
            st, h, body = c.response()
            assert st == 200 and body == read(name)
            assert h["connection"] == "keep-alive"
        assert c.nothing_more()
    finally:
        c.close()


def test_pipelined_requests_in_order(srv):
    """Three requests in one write get three responses, in request order."""
    c = Http(srv.port)
    try:
        c.send(c.get("/style.css") + c.get("/app.js", "HEAD") + c.get("/app.js"))
        st1, h1, b1 = c.response()
        st2, h2, b2 = c.response(head=True)
        st3, h3, b3 = c.response()
        assert (st1, st2, st3) == (200, 200, 200)
        assert h1["content-type"].startswith("text/css") and b1 == read("style.css")
        assert h2["content-type"].startswith("text/javascript") and b2 == b""
        assert h3["content-type"].startswith("text/javascript") and b3 == read("app.js")
        assert c.nothing_more()
    finally:
        c.close()


def test_pipelined_head_split_across_writes(srv):
    """A request head that arrives in pieces, with the next one behind it."""
    c = Http(srv.port)
    try:
        req = c.get("/style.css") + c.get("/index.html")
        for i in range(0, len(req), 7):
            c.send(req[i:i + 7])
            time.sleep(0.002)
        assert c.response()[2] == read("style.css")
        assert c.response()[2] == read("index.html")
    finally:
        c.close()


def test_connection_close(srv):
    """Connection: close -> the response says close and the server closes."""
    c = Http(srv.port)
    try:
        c.send(c.get("/style.css", close=True))
        st, h, body = c.response()
        assert st == 200 and body == read("style.css")
        assert h["connection"] == "close"
        assert c.closed_by_peer(), "the connection stayed open after Connection: close"
    finally:
        c.close()
    # HTTP/1.0 without keep-alive closes too.
    c = Http(srv.port)
    try:
        c.send(b"GET /style.css HTTP/1.0\r\n\r\n")
        st, h, body = c.response()
        assert st == 200 and h["connection"] == "close"
        assert c.closed_by_peer()
    finally:
        c.close()


def test_pipelined_flood_does_not_exhaust_files(srv):
    """A client that pipelines thousands of GETs and never reads the answers
    must not make the worker hold a file descriptor per queued response (that
    ends in EMFILE: nobody else gets in)."""
    worker = srv.worker_pids()[0]
    c = Http(srv.port)
    most = 0
    try:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.settimeout(0.2)
        burst = c.get("/index.html") * 500
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and most < 1000:
            try:
                c.send(burst)
            except (socket.timeout, ConnectionError):
                break
            most = max(most, len(os.listdir(f"/proc/{worker}/fd")))
        time.sleep(0.3)
        most = max(most, len(os.listdir(f"/proc/{worker}/fd")))
        assert most < 1000, f"the worker held {most} descriptors for one client"
        st, _, body = fetch(srv.port, "/healthz")
        assert (st, body) == (200, b"ok\n")
    finally:
        c.close()


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_pipelined_gets_unread_hold_few_files_and_all_are_answered(srv, capsys):
    """A client pipelines 600 GETs of the page's files and reads nothing for
    a while. The worker must not hold a file open per queued answer: it
    queues a few answers, then leaves the client's requests unread until
    those are sent (backpressure), so its open descriptors stay about where
    they were. Once the client reads, every request is answered, in order,
    on the same connection. (The connection was closed after 32 unanswered
    requests instead, losing the rest.)"""
    worker = srv.worker_pids()[0]
    idle = open_fds(worker)
    names = ["app.js", "style.css", "index.html"] * 200
    c = Http(srv.port, rcvbuf=4096)
    try:
        c.send(b"".join(c.get("/" + n) for n in names))
        most = idle
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            most = max(most, open_fds(worker))
            time.sleep(0.02)
        with capsys.disabled():
            print(f"\n  [static] worker descriptors: {idle} idle, at most {most} "
                  f"with {len(names)} requests pipelined and unread")
        assert most - idle <= 10, f"the worker opened {most - idle} descriptors for one client"
        for i, n in enumerate(names):
            st, h, body = c.response()
            assert (st, body) == (200, read(n)), f"answer {i} of {len(names)}: {st} for /{n}"
        assert c.nothing_more()
    finally:
        c.close()
    st, _, body = fetch(srv.port, "/healthz")
    assert (st, body) == (200, b"ok\n")
