"""The node's sweeper: expires lapsed holds and forgets old idempotency keys, on an interval.

Holds end (invariant 3) even when the node that placed a hold died: any node of the
region sweeps every lapsed hold of the region, and concurrent sweepers skip each other's
locked rows. Reads already treat lapsed holds as free; the sweep makes the rows say so
and returns the units to the inventory counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine

from ridgeline.regional.booking.expiry import expire_lapsed_holds
from ridgeline.regional.booking.idempotency import forget_older_than
from ridgeline.regional.metrics import HOLDS_SWEPT
from ridgeline.regional.periodic import Periodic
from ridgeline.regional.storage.db import run_transaction

_log = logging.getLogger(__name__)

#: Batches per sweep pass before yielding to the next interval.
SWEEP_BATCHES_MAX = 20


def sweep_once(engine: Engine, *, now: datetime, batch_max: int, actor: str) -> int:
    """Expires every lapsed hold (up to SWEEP_BATCHES_MAX batches) as ``actor`` (``node:<id>``); returns how many."""
    return _in_batches(engine, lambda conn: expire_lapsed_holds(conn, now=now, batch_max=batch_max, actor=actor).expired, batch_max)


def forget_old_keys(engine: Engine, *, cutoff: datetime, batch_max: int) -> int:
    """Deletes idempotency records older than ``cutoff`` (up to SWEEP_BATCHES_MAX batches)."""
    return _in_batches(engine, lambda conn: forget_older_than(conn, cutoff, batch_max=batch_max), batch_max)


def _in_batches(engine: Engine, batch: Callable[[Connection], int], batch_max: int) -> int:
    """Runs ``batch`` (one transaction each) until one does less than a full batch; returns the total."""
    total = 0
    for _ in range(SWEEP_BATCHES_MAX):
        done = run_transaction(engine, batch)
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
        """``actor``: the node's own (``node:<id>``), named on every expiry it writes."""
        self._engine = engine
        self._actor = actor
        self._clock = clock
        self._batch_max = batch_max
        self._key_retention = timedelta(seconds=key_retention_seconds)
        self._periodic = Periodic("hold-sweeper", interval_seconds, self._pass)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._periodic.stop(timeout_seconds)

    def _pass(self) -> None:
        now = self._clock()
        expired = sweep_once(self._engine, now=now, batch_max=self._batch_max, actor=self._actor)
        forgotten = forget_old_keys(self._engine, cutoff=now - self._key_retention, batch_max=self._batch_max)
        HOLDS_SWEPT.inc(expired)
        if expired or forgotten:
            _log.info("expired %d lapsed hold(s), forgot %d old idempotency key(s)", expired, forgotten)
