"""How a long-running Ridgeline process ends: a signal starts a drain that has a deadline.

A drain (gRPC grace, handing leases back, finishing a flow run's claim) talks to databases
and peers that may be dying in the same instant: under ``ridgeline up`` killed whole, or a
node shut down with its region, every child gets its SIGTERM together. A drain that waits
on a dead database would hold the process for its retries' whole budget and outlive what
a supervisor or container runtime allows. Nothing here needs the drain to finish: every
write is transactional and keyed, and every lease lapses by itself (ARCHITECTURE.md,
Process lifetime), so once the deadline passes the process exits as a SIGKILL would have
ended it, and a second signal ends it at once.

The main thread waits for the signal by polling a flag, not on a lock. The kernel hands a
process signal to any thread that does not block it (gRPC's, a pool's, the metrics
server's); there Python's C handler only marks the signal pending, and the Python handler
runs when the main thread next executes bytecode. A main thread blocked on a lock never
does: one coordinator start in ten or twenty sat out its whole stop timeout that way
before it was SIGKILLed. And the handler touches no lock: it runs between any two
bytecodes of the main thread, which may be holding that very lock.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

_log = logging.getLogger(__name__)

#: The longest a drain may take: under Docker's and Kubernetes' default grace of 15 s (a
#: SIGKILL after it is the same outcome, only later and without the log line).
DRAIN_DEADLINE_SECONDS = 10.0
#: Exit status after a drain cut short: 128 + SIGKILL, what a killed process reports.
_CUT_SHORT_STATUS = 128 + signal.SIGKILL
#: How often the waiting main thread looks for a signal (see the module docstring): the
#: delay a drain may start late.
_POLL_SECONDS = 0.1


class Termination:
    """SIGTERM and SIGINT handlers, installed at construction (from the main thread, before
    the work starts, so no signal finds the default handler), and the drain's deadline."""

    def __init__(self, drain_deadline_seconds: float = DRAIN_DEADLINE_SECONDS) -> None:
        self._deadline_seconds = drain_deadline_seconds
        self._signalled = False
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._signalled:
            _log.warning("second %s: exiting without finishing the drain", signal.Signals(signum).name)
            os._exit(_CUT_SHORT_STATUS)
        self._signalled = True

    def wait(self) -> None:
        """Blocks until the first signal, then arms the deadline and returns, to drain."""
        while not self._signalled:
            time.sleep(_POLL_SECONDS)
        timer = threading.Timer(self._deadline_seconds, _cut_short, (self._deadline_seconds,))
        timer.daemon = True
        timer.start()


def _cut_short(seconds: float) -> None:
    _log.warning("drain not done after %.0f s: exiting; leases lapse and keyed work resumes elsewhere", seconds)
    logging.shutdown()
    os._exit(_CUT_SHORT_STATUS)
