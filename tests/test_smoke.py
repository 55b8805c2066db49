"""First end-to-end check: roomd starts, answers /healthz, runs its workers."""
from roomd import http_get


def test_healthz_and_workers(roomd):
    r = roomd(workers=2)
    status, headers, body = http_get(r.port, "/healthz")
    assert status == 200
    assert body.strip() == b"ok"
    assert len(r.worker_pids()) == 2
