"""The node's sweeper: expires lapsed holds and forgets old idempotency keys, on an interval.

Holds end (invariant 3) even when the node that placed a hold died: any node of the
region sweeps every lapsed hold of the region, and concurrent sweepers skip each other's
locked rows. Reads already treat lapsed holds as free; the sweep makes the rows say so
and returns the units to the inventory counters.

A pass cannot starve behind the hot path (issue 12, item 5: a pass once lost 12 attempts
in a row to concurrent writers and was skipped whole, twice, leaving holds up to 7 s past
the promise). Its batches are small, run READ COMMITTED on the sweeper's own engine, and
never conflict with a hold's serializable snapshot (the statement's reasoning is in
expiry.py). A batch that fails anyway (a lock wait timed out, the database blinked) is
retried after a short jittered pause: it never abandons the pass, which keeps going until
no lapsed hold is left or its deadline, one sweep interval, has passed. Each batch reads
the clock again, so a hold that lapses during a long pass is taken by that pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from ridgeline.regional.booking.expiry import ExpiryResult, expire_lapsed_holds
from ridgeline.regional.booking.idempotency import forget_older_than
from ridgeline.regional.errors import BookingError
from ridgeline.regional.metrics import HOLDS_SWEPT, SWEEP_BATCH_FAILURES, SWEEP_PASSES
from ridgeline.regional.periodic import Periodic
from ridgeline.regional.storage.db import run_transaction, sqlstate
from ridgeline.routing.retry import RetryPolicy

_log = logging.getLogger(__name__)

#: Batches per sweep pass at most; a pass's deadline (one interval) usually ends it first.
SWEEP_BATCHES_MAX = 1000
#: Pauses after a failed batch (10 ms doubling to 250 ms, jittered). Without a deadline (a
#: one-off sweep) ``attempts_max`` failures in a row end it; with one, only the deadline does.
BATCH_RETRY = RetryPolicy(attempts_max=12, backoff_base_seconds=0.01, backoff_cap_seconds=0.25)
#: Pause before the next batch when every due hold left was locked by a concurrent mover.
_LOCKED_PAUSE_SECONDS = 0.02


@dataclass(frozen=True)
class PassResult:
    expired: int
    #: No lapsed hold was left (as of the last batch's clock); False: the deadline came first.
    complete: bool
    failed_batches: int


def sweep_once(engine: Engine, *, now: datetime, batch_max: int, actor: str) -> int:
    """Expires every hold lapsed at ``now`` as ``actor`` (``node:<id>``), with no deadline; returns how many."""
    return sweep_pass(engine, lambda: now, batch_max=batch_max, actor=actor, deadline=None).expired


def sweep_pass(engine: Engine, clock: Callable[[], datetime], *, batch_max: int, actor: str, deadline: float | None) -> PassResult:
    """Expires lapsed holds in batches of ``batch_max`` until none is left or ``deadline``
    (a ``time.monotonic()`` instant) passes, retrying failed batches in between."""
    assert batch_max > 0
    expired = failures = failures_in_a_row = 0
    for _ in range(SWEEP_BATCHES_MAX):
        try:
            batch = _batch(engine, clock(), batch_max, actor)
        except BookingError as error:
            failures, failures_in_a_row = failures + 1, failures_in_a_row + 1
            SWEEP_BATCH_FAILURES.labels(_reason(error)).inc()
            if deadline is None and failures_in_a_row >= BATCH_RETRY.attempts_max:
                raise
            pause = BATCH_RETRY.backoff_seconds(min(failures_in_a_row, BATCH_RETRY.attempts_max))
            if deadline is not None and time.monotonic() + pause >= deadline:
                _log.warning("sweep batch failed (%s); the pass ends at its deadline", error)
                return PassResult(expired, False, failures)
            _log.info("sweep batch failed (%s); retrying in %.0f ms", error, pause * 1000)
            time.sleep(pause)
            continue
        failures_in_a_row = 0
        expired += batch.expired
        if not batch.more:
            return PassResult(expired, True, failures)
        if deadline is not None and time.monotonic() >= deadline:
            return PassResult(expired, False, failures)
        if batch.expired == 0:
            time.sleep(_LOCKED_PAUSE_SECONDS)  # whoever holds them is moving them, or will let go
    return PassResult(expired, False, failures)


def _batch(engine: Engine, now: datetime, batch_max: int, actor: str) -> ExpiryResult:
    # Idempotent by state: after a lost COMMIT the re-run expires whatever is still held.
    return run_transaction(
        engine,
        lambda conn: expire_lapsed_holds(conn, now=now, batch_max=batch_max, actor=actor),
        single_statement=True,
        operation="sweep",
        idempotent=True,
    )


def _reason(error: BookingError) -> str:
    """A bounded label for a failed batch: the SQLSTATE behind it, else the error's kind."""
    cause = error.__cause__
    return (sqlstate(cause) if cause is not None else None) or type(error).__name__


def forget_old_keys(engine: Engine, *, cutoff: datetime, batch_max: int) -> int:
    """Deletes idempotency records older than ``cutoff`` (up to SWEEP_BATCHES_MAX batches)."""
    total = 0
    for _ in range(SWEEP_BATCHES_MAX):
        done = run_transaction(engine, lambda conn: forget_older_than(conn, cutoff, batch_max=batch_max), operation="forget_keys", idempotent=True)
        total += done
        if done < batch_max:
            break
    return total


class Sweeper:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        *,
        interval_seconds: float,
        batch_max: int,
        key_retention_seconds: int,
        actor: str,
    ) -> None:
        """``engine``: the sweeper's own (READ COMMITTED, a short lock timeout: see
        ``regional.node``); ``actor``: the node's own (``node:<id>``), named on every expiry."""
        self._engine = engine
        self._actor = actor
        self._clock = clock
        self._interval_seconds = interval_seconds
        self._batch_max = batch_max
        self._key_retention = timedelta(seconds=key_retention_seconds)
        self._periodic = Periodic("hold-sweeper", interval_seconds, self._pass)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._periodic.stop(timeout_seconds)

    def _pass(self) -> None:
        deadline = time.monotonic() + self._interval_seconds
        result = sweep_pass(self._engine, self._clock, batch_max=self._batch_max, actor=self._actor, deadline=deadline)
        HOLDS_SWEPT.inc(result.expired)
        SWEEP_PASSES.labels("complete" if result.complete else "deadline").inc()
        if not result.complete:
            _log.warning(
                "sweep pass used its whole interval (%d expired, %d batch(es) failed) and left lapsed holds; the next pass starts now",
                result.expired, result.failed_batches,
            )
        forgotten = forget_old_keys(self._engine, cutoff=self._clock() - self._key_retention, batch_max=self._batch_max)
        if result.expired or forgotten:
            _log.info("expired %d lapsed hold(s), forgot %d old idempotency key(s)", result.expired, forgotten)
