"""A node's background passes (sweeps, in-doubt leg resolution): one thread, one step per interval, at a fixed rate.

A step that fails with a BookingError (contention, an unreachable database) is logged
and the next interval tries again: a background pass must outlive a database restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ridgeline.regional.errors import BookingError

_log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval_seconds: float, step: Callable[[], None]) -> None:
        self._name = name
        self._interval_seconds = interval_seconds
        self._step = step
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)

    def _run(self) -> None:
        # Fixed rate: a step is due one interval after the previous one *started*, so a long
        # step does not push every later one back (a hold sweep promises one interval from
        # a hold's expiry to its end); a step that overran its interval is followed at once.
        due = time.monotonic() + self._interval_seconds
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            started = time.monotonic()
            try:
                self._step()
            except BookingError as error:
                _log.warning("%s pass skipped: %s", self._name, error)
            due = started + self._interval_seconds
