"""A process's drain has a deadline: a drain stuck on a dead peer does not keep it alive."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

#: A process whose drain never ends (a retry loop against a database that is gone).
_STUCK_DRAIN = """
import sys, time
from ridgeline.deploy.run.termination import Termination
termination = Termination(drain_deadline_seconds=float(sys.argv[1]))
print("READY", flush=True)
termination.wait()
print("DRAINING", flush=True)
while True:
    time.sleep(1)
"""


def _started(deadline_seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", _STUCK_DRAIN, str(deadline_seconds)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "READY"
    return process


def test_a_stuck_drain_ends_at_its_deadline_as_a_kill_would() -> None:
    process = _started(1.0)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None and process.stdout.readline().strip() == "DRAINING"
    status = process.wait(30)
    assert status == 128 + signal.SIGKILL, status
    assert time.monotonic() - signalled >= 1.0, "exited before its drain's deadline"


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_ends_the_drain_at_once(second: signal.Signals) -> None:
    process = _started(3600.0)
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None and process.stdout.readline().strip() == "DRAINING"
    process.send_signal(second)
    assert process.wait(30) == 128 + signal.SIGKILL
