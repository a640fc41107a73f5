"""A circuit breaker for calls to an outside system (the payment gateway).

When the gateway is down, waiting out a timeout and a retry budget on every booking
would stall settlement for everyone. After ``failure_threshold`` consecutive failures
the breaker opens and calls fail at once without touching the network; after
``cooldown_seconds`` it half-opens and lets exactly one trial call through; that call's
outcome closes it again or re-opens it for another cooldown.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

from prometheus_client import Gauge


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


STATE = Gauge("ridgeline_circuit_breaker_state", "0 closed, 1 half-open, 2 open.", ["target"])
_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class CircuitBreaker:
    """Thread-safe; ``clock`` (seconds, monotonic) is injectable so tests need not sleep."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        target: str = "payment_gateway",
    ) -> None:
        if failure_threshold < 1 or cooldown_seconds < 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_seconds >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._gauge = STATE.labels(target)
        self._gauge.set(_STATE_VALUE[BreakerState.CLOSED])

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current()

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open only one trial at a time may."""
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._become(BreakerState.CLOSED)
            self._failures = 0
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            state = self._current()
            self._trial_in_flight = False
            if state is BreakerState.OPEN:
                return  # a call that left before the breaker opened; the cooldown stands
            self._failures += 1
            if state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._become(BreakerState.OPEN)
                self._opened_at = self._clock()

    def _current(self) -> BreakerState:
        """The state now, moving OPEN to HALF_OPEN once the cooldown has passed (lock held)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_seconds:
            self._become(BreakerState.HALF_OPEN)
            self._trial_in_flight = False
        return self._state

    def _become(self, state: BreakerState) -> None:
        self._state = state
        self._gauge.set(_STATE_VALUE[state])
