"""pytest fixtures shared by every test file: `roomd` starts instances of the
real binary and stops and checks every one at teardown (alerts or sanitizer
reports fail the test); `redis` is a real redis-server they can share."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roomd import RedisServer, Roomd  # noqa: E402


@pytest.fixture
def roomd(tmp_path):
    """Factory: roomd(settings={...}, workers=2, start=True) -> Roomd."""
    made = []

    def make(settings=None, workers=2, start=True, **kw):
        r = Roomd(tmp_path / f"r{len(made)}", settings=settings, workers=workers, **kw)
        made.append(r)
        if start:
            r.start()
        return r

    yield make
    # Stop every instance even when one's log check fails, then report the first failure.
    errors = []
    for r in made:
        try:
            r.stop()
        except AssertionError as e:
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def redis(tmp_path):
    """A real redis-server on 127.0.0.1 that roomd instances can share
    (settings {"redis": redis.url}); stopped at teardown."""
    srv = RedisServer(tmp_path / "redis").start()
    yield srv
    srv.stop()
