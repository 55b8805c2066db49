"""What roomd reports, read the way an operator would: access-log lines as
dicts of their fields, and /metrics parsed by the real Prometheus parser."""
import re

from prometheus_client.parser import text_string_to_metric_families

from roomd import http_get, wait_for


# ---- the access log ----

ACCESS_TEXT = re.compile(r" \[info\] access ((?:[a-z_]+=\S*)(?: [a-z_]+=\S*)*)$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def access_lines(text):
    """Every text-format access line of a log, as a dict of its fields."""
    out = []
    for line in text.splitlines():
        m = ACCESS_TEXT.search(line)
        if m:
            out.append(dict(kv.split("=", 1) for kv in m.group(1).split(" ")))
    return out


def wait_access(r, n, pred=lambda a: True, timeout=10.0):
    """Wait until r's new log (since log_mark) holds n access lines matching pred."""
    def got():
        lines = [a for a in access_lines(r.new_log()) if pred(a)]
        return lines if len(lines) >= n else None
    return wait_for(got, timeout, what=f"{n} access line(s) in {r.log}")


# ---- /metrics ----

class Metrics:
    """One scrape, parsed by prometheus_client: .types {family: type} and
    .value(name, **labels) for any sample (missing samples raise KeyError)."""

    def __init__(self, text):
        self.text = text
        self.types = {}
        self.samples = {}
        for fam in text_string_to_metric_families(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def value(self, name, **labels):
        return self.samples[(name, frozenset(labels.items()))]

    def labelled(self, name):
        """{frozenset(labels): value} of every sample called name."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


def scrape(port, path="/metrics"):
    status, hdrs, body = http_get(port, path)
    assert status == 200, f"{path} answered {status}: {body[:200]!r}"
    ctype = {k.lower(): v for k, v in hdrs.items()}.get("content-type", "")
    assert ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype
    return Metrics(body.decode())
