"""A node's background passes (sweeps, in-doubt leg resolution): one thread, one step per interval.

A step that fails with a BookingError (contention, an unreachable database) is logged
and the next interval tries again: a background pass must outlive a database restart.
"""

from __future__ import annotations

import logging
import threading
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
        while not self._stop.wait(self._interval_seconds):
            try:
                self._step()
            except BookingError as error:
                _log.warning("%s pass skipped: %s", self._name, error)
