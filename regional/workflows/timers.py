"""Durable timers: a booking's workflow step that is due at a time, as a row.

A timer is one ``workflow_timers`` row per (booking, step), written in the transaction
of the step that schedules it (settle@2's confirm schedules its reminder and its
balance). The owner of the basecamp claims due timers in batches, like settlement rows:
``SKIP LOCKED``, fenced by its lease epoch (invariant 6), only of the versions it runs,
and the claim pushes ``next_attempt_at`` out by the claim time, so a claimer killed at
any line leaves rows that are due again once the claim lapses; they survive crashes and
failover because they are rows. A timer fires at most once: :func:`fired` is guarded by
``fired_at IS NULL`` and runs in the transaction of the step's effect, and the effect
outside the database (a charge) carries a key derived from the booking and the step.

The claim reads the partial index ``workflow_timers_due`` (next_attempt_at, pending
only) as a range ``<= now``: its cost is the rows due, not the rows pending (100,000
pending timers a month out cost a tick nothing; tests/versions/test_timers.py EXPLAINs it).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from ridgeline.regional.booking import ownership
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing.leases import Fence, fence_json

REMINDER = "reminder"
BALANCE = "balance"
LAST_ERROR_LENGTH_MAX = 500


@dataclass(frozen=True)
class Timer:
    booking_id: str
    step: str
    basecamp_id: str
    workflow: str
    due_at: datetime
    next_attempt_at: datetime
    attempts: int


_SCHEDULE = text(
    """
    INSERT INTO workflow_timers (booking_id, step, basecamp_id, workflow, due_at, next_attempt_at)
    SELECT booking_id, :step, basecamp_id, workflow, :due_at, :due_at FROM bookings WHERE booking_id = :booking_id
    ON CONFLICT (booking_id, step) DO NOTHING
    """
)

#: The claim, shared with the benchmark's EXPLAIN: one index range read over due rows.
CLAIM_SQL = f"""
    WITH due AS (
        SELECT booking_id, step FROM workflow_timers
        WHERE fired_at IS NULL AND next_attempt_at <= :now
          AND basecamp_id = ANY(:basecamps) AND workflow = ANY(:workflows)
          AND {ownership.fenced_sql("workflow_timers.basecamp_id")}
        ORDER BY next_attempt_at
        LIMIT :batch_max
        FOR UPDATE SKIP LOCKED
    )
    UPDATE workflow_timers AS t SET next_attempt_at = :claimed_until, attempts = t.attempts + 1
    FROM due WHERE t.booking_id = due.booking_id AND t.step = due.step
    RETURNING t.booking_id, t.step, t.basecamp_id, t.workflow, t.due_at, t.next_attempt_at, t.attempts
"""
_CLAIM = text(CLAIM_SQL)

_FIRED = text(
    "UPDATE workflow_timers SET fired_at = :now WHERE booking_id = :booking_id AND step = :step AND fired_at IS NULL RETURNING 1"
)
_RETRY = text(
    """
    UPDATE workflow_timers SET next_attempt_at = :next_at, last_error = :error
    WHERE booking_id = :booking_id AND step = :step AND fired_at IS NULL
    """
)
_CANCEL_PENDING = text("UPDATE workflow_timers SET fired_at = :now, last_error = :why WHERE booking_id = :booking_id AND fired_at IS NULL")
_PENDING = text(
    "SELECT booking_id, step, basecamp_id, workflow, due_at, next_attempt_at, attempts FROM workflow_timers"
    " WHERE booking_id = ANY(:ids) AND fired_at IS NULL ORDER BY due_at"
)


def schedule(conn: Connection, booking_id: str, step: str, due_at: datetime) -> None:
    """Schedules ``step`` of the booking at ``due_at``, in the caller's transaction (once)."""
    conn.execute(_SCHEDULE, {"booking_id": booking_id, "step": step, "due_at": due_at})


def claim_due(
    engine: Engine, *, fence: Fence, workflows: Collection[str], now: datetime, batch_max: int, claim_seconds: float
) -> list[Timer]:
    """Claims up to ``batch_max`` due timers of the basecamps ``fence`` holds, of ``workflows``."""
    assert batch_max > 0 and claim_seconds > 0
    if not fence:
        return []
    params = {
        "now": now,
        "basecamps": sorted(fence),
        "workflows": sorted(workflows),
        "fence": fence_json(fence),
        "batch_max": batch_max,
        "claimed_until": now + timedelta(seconds=claim_seconds),
    }
    claimed = run_transaction(engine, lambda conn: [_timer(row) for row in conn.execute(_CLAIM, params)])
    assert len(claimed) <= batch_max
    return claimed


def fired(conn: Connection, timer: Timer, *, now: datetime) -> bool:
    """Marks the timer fired in the transaction of its effect; False if it had fired already
    (the caller's transaction must then have no effect either: roll it back)."""
    return conn.execute(_FIRED, {"booking_id": timer.booking_id, "step": timer.step, "now": now}).first() is not None


def retry_later(engine: Engine, timer: Timer, error: str, *, next_at: datetime) -> None:
    params = {"booking_id": timer.booking_id, "step": timer.step, "next_at": next_at, "error": error[:LAST_ERROR_LENGTH_MAX]}
    run_transaction(engine, lambda conn: conn.execute(_RETRY, params))


def cancel_pending(conn: Connection, booking_id: str, *, now: datetime, why: str) -> None:
    """The booking's workflow ended (cancelled): its pending timers will never fire."""
    conn.execute(_CANCEL_PENDING, {"booking_id": booking_id, "now": now, "why": why[:LAST_ERROR_LENGTH_MAX]})


def pending(conn: Connection, booking_ids: Sequence[str]) -> list[Timer]:
    return [_timer(row) for row in conn.execute(_PENDING, {"ids": list(booking_ids)})]


def _timer(row) -> Timer:  # noqa: ANN001 - a SQLAlchemy Row
    return Timer(str(row.booking_id), row.step, row.basecamp_id, row.workflow, row.due_at, row.next_attempt_at, row.attempts)
