"""Fixtures of the deployment lab: `lab` builds one (namespaces, Redis, three
roomd hosts, HAProxy) and takes it down at teardown whatever happened; a
watchdog fails a scenario that outlives its deadline, so its teardown still
runs. The scenarios need root (network namespaces), as CI has."""
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netlab import Lab  # noqa: E402


class Deadline(Exception):
    pass


@pytest.fixture
def lab(tmp_path, request):
    """Factory: lab(settings={...}, client_nets=(...), slow_nets=(...), deadline=120) -> Lab, up."""
    made = []

    def on_alarm(signum, frame):
        raise Deadline(f"{request.node.name} passed its deadline")

    old = signal.signal(signal.SIGALRM, on_alarm)

    def make(deadline=150, **kw):
        lab = Lab(tmp_path / "lab", **kw)
        made.append(lab)
        # The deadline starts once the lab is ours: waiting for another run's
        # lab (bounded by Lab.lock) is not this scenario's time.
        lab.lock()
        signal.alarm(deadline)
        lab.up()
        return lab

    try:
        yield make
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        errors = []
        for lab in made:
            errors += lab.down()
    if errors:
        raise errors[0]

