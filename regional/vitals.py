"""The region's vital signs as gauges, so alert rules can see work that stopped moving.

Counters and histograms only move when something happens: a settlement loop that
stopped claiming (Prefect down, the node wedged) observes no lag at all, and a sweeper
that gives up expires nothing. So every node samples, every ``interval_seconds``, what
is *waiting* in its region's database: how long the oldest due settlement and the
oldest undelivered outbox message have waited, how many holds lapsed more than a sweep
grace ago and still say held (invariant 3 slipping), and how many prepared trek legs
are past their decision deadline (a trek undecided too long). Each figure is one
indexed read (the partial indexes the hot paths already use), all four in one
statement, so a sample costs a few index probes whatever the table sizes.

Every node of a region reports the same region-wide figures: the alert rules take the
``max by (region)``. A sample that fails (the database is down) leaves the gauges as
they were and is logged by :class:`Periodic`; the node-down and database alerts cover
that case.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import Gauge
from sqlalchemy import Engine, text

from ridgeline.regional.periodic import Periodic
from ridgeline.regional.storage.db import read_transaction

SETTLEMENT_OLDEST_DUE = Gauge("ridgeline_settlement_oldest_due_seconds", "How long the region's oldest due settlement step has waited (0: none due).")
OUTBOX_OLDEST_UNDELIVERED = Gauge("ridgeline_outbox_oldest_undelivered_seconds", "Age of the region's oldest undelivered outbox message (0: none).")
HOLDS_LAPSED_UNSWEPT = Gauge("ridgeline_holds_lapsed_unswept", "Holds of the region that lapsed more than the sweep grace ago and still say held.")
LEGS_PAST_DEADLINE = Gauge("ridgeline_trek_legs_past_deadline", "Prepared trek legs of the region past their decision deadline (their trek is undecided too long).")

_SAMPLE = text(
    """
    SELECT
        (SELECT min(next_attempt_at) FROM settlements
          WHERE state IN ('awaiting_payment', 'refunding') AND next_attempt_at <= :now) AS oldest_due,
        (SELECT min(created_at) FROM outbox WHERE delivered_at IS NULL) AS oldest_undelivered,
        (SELECT count(*) FROM bookings
          WHERE state = 'held' AND expires_at < :now - make_interval(secs => :grace)) AS lapsed_unswept,
        (SELECT count(*) FROM trek_legs WHERE state = 'prepared' AND decision_deadline < :now) AS legs_past_deadline
    """
)


class Vitals:
    """Samples the region's waiting work into the gauges above, on an interval."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], *, interval_seconds: float, sweep_grace_seconds: float) -> None:
        """``sweep_grace_seconds``: how long after its expiry a lapsed hold may still say held
        (one sweep interval and a little) before it counts."""
        self._engine = engine
        self._clock = clock
        self._grace = sweep_grace_seconds
        self._periodic = Periodic("vitals", interval_seconds, self.sample)

    def start(self) -> None:
        self._periodic.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        self._periodic.stop(timeout_seconds)

    def sample(self) -> None:
        """Reads the four figures in one statement and sets the gauges."""
        now = self._clock()
        row = read_transaction(self._engine, lambda conn: conn.execute(_SAMPLE, {"now": now, "grace": self._grace}).one(), single_statement=True)
        SETTLEMENT_OLDEST_DUE.set(_age(now, row.oldest_due))
        OUTBOX_OLDEST_UNDELIVERED.set(_age(now, row.oldest_undelivered))
        HOLDS_LAPSED_UNSWEPT.set(row.lapsed_unswept)
        LEGS_PAST_DEADLINE.set(row.legs_past_deadline)


def _age(now: datetime, since: datetime | None) -> float:
    return max(0.0, (now - since).total_seconds()) if since is not None else 0.0
