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


#: A process whose SIGTERM the kernel hands to a thread other than the main one, as it may
#: with any of gRPC's threads: the main thread, waiting for the signal, must still wake.
_SIGNAL_TO_ANOTHER_THREAD = """
import signal, threading, time
from ridgeline.deploy.run.termination import Termination
termination = Termination()
def worker():
    time.sleep(0.5)  # the main thread is waiting by then
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    time.sleep(3600)
threading.Thread(target=worker, daemon=True).start()
termination.wait()
print("DRAINING", flush=True)
"""


def test_a_signal_delivered_to_another_thread_still_starts_the_drain() -> None:
    process = subprocess.Popen([sys.executable, "-c", _SIGNAL_TO_ANOTHER_THREAD], stdout=subprocess.PIPE, text=True)
    try:
        # Waiting on a lock, the main thread never ran the handler: this timed out.
        out, _ = process.communicate(timeout=10)
    finally:
        process.kill()
    assert out.strip() == "DRAINING" and process.returncode == 0
