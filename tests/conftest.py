"""pytest fixtures: `roomd` starts instances of the real binary and stops and
checks every one at teardown (alerts or sanitizer reports fail the test)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roomd import Roomd  # noqa: E402


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
