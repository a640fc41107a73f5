"""Turns lapsed holds into ``expired`` bookings and gives their units back.

Invariant 3 (holds end). Two callers: the sweep, which walks every lapsed hold of the
region in bounded batches, and a hold that found a night full, which first reclaims the
lapsed holds on its own resource and nights. Readers never wait for either: queries
treat a hold whose ``expires_at`` has passed as free already.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from ridgeline.regional.booking import history
from ridgeline.regional.booking.model import Nights

# One statement: pick due holds (skipping rows another expirer or mover has locked), move
# them to 'expired', append their history, and return their units night by night, having
# locked those inventory rows in one order (resource, night). The counts come back so the
# caller can assert that every night of every expired hold was returned, and ``more`` says
# whether a due hold was left behind (beyond the batch, or locked by someone else).
#
# Why this cannot starve behind the hot path, and is safe at READ COMMITTED (the sweeper's
# engine; ARCHITECTURE.md invariant 3):
# * Booking rows: SKIP LOCKED, so the sweep never waits for a mover; a hold being
#   confirmed, released or reclaimed right now is that mover's, or the next batch's. Its
#   state is re-checked on the locked row version (``b.state = 'held'``), and nobody can
#   move it between that lock and the update, so an expiry never overwrites a move.
# * Inventory rows: locked in (resource, night) order, waiting in the lock queue (fair, so
#   a row the hot path keeps busy is still reached; bounded by the engine's lock_timeout,
#   shorter than deadlock_timeout, so a cycle with an unordered writer costs the batch, not
#   a second of the hot path). Under READ COMMITTED the lock and the decrement apply to the
#   newest committed counters, so no concurrent hold's increment is lost; a SERIALIZABLE
#   writer that meets the sweep's newer row retries whole (40001), as with any writer. The
#   counters only go down here, so the capacity CHECK cannot fire; the booking and its units
#   change in one statement, so counters and rows agree at every commit (invariant 1).
# * Readers never needed the sweep (a lapsed hold counts as free at once), and the hot path
#   reads nothing the sweep writes except these rows, whose locks order every change.
# A 40001 can no longer hit the sweep at READ COMMITTED: nothing is left to give up on.
_EXPIRE_TEMPLATE = """
WITH due AS MATERIALIZED (
    SELECT booking_id FROM bookings
    WHERE state = 'held' AND expires_at <= :now {scope}
      -- A prepared trek leg waits for its coordinator's decision instead (trek_legs/participant.py).
      AND NOT EXISTS (SELECT 1 FROM trek_legs AS t WHERE t.booking_id = bookings.booking_id AND t.state = 'prepared')
    ORDER BY expires_at
    LIMIT :batch_max
    FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE bookings AS b
    SET state = 'expired', version = b.version + 1, updated_at = :now
    FROM due
    WHERE b.booking_id = due.booking_id AND b.state = 'held'
    RETURNING b.booking_id, b.resource_id, b.first_night, b.end_night, b.party_size, b.version
), history AS (
    {history}
    RETURNING 1
), released AS (
    SELECT e.resource_id, CAST(n AS DATE) AS night, SUM(e.party_size) AS units
    FROM expired AS e
    CROSS JOIN LATERAL generate_series(
        CAST(e.first_night AS TIMESTAMP),
        CAST(e.end_night AS TIMESTAMP) - INTERVAL '1 day',
        INTERVAL '1 day'
    ) AS n
    GROUP BY e.resource_id, CAST(n AS DATE)
), locked AS MATERIALIZED (
    SELECT i.resource_id, i.night
    FROM inventory AS i JOIN released AS r ON r.resource_id = i.resource_id AND r.night = i.night
    ORDER BY i.resource_id, i.night
    FOR UPDATE OF i
), returned AS (
    UPDATE inventory AS i
    SET held = i.held - r.units
    FROM released AS r JOIN locked AS l ON l.resource_id = r.resource_id AND l.night = r.night
    WHERE i.resource_id = r.resource_id AND i.night = r.night
    RETURNING 1
)
SELECT
    (SELECT count(*) FROM expired) AS expired,
    (SELECT count(*) FROM history) AS histories,
    (SELECT count(*) FROM released) AS nights_due,
    (SELECT count(*) FROM returned) AS nights_returned,
    EXISTS (
        SELECT 1 FROM bookings AS left_behind
        WHERE left_behind.state = 'held' AND left_behind.expires_at <= :now {left_scope}
          AND left_behind.booking_id NOT IN (SELECT booking_id FROM expired)
          AND NOT EXISTS (SELECT 1 FROM trek_legs AS t WHERE t.booking_id = left_behind.booking_id AND t.state = 'prepared')
    ) AS more
"""

# Expiry needs no lease (a lapsed hold's units are nobody's), so its history row has no epoch.
# Its actor is the node that expires the hold (``node:<id>``): the TTL ran out on its watch.
_EXPIRED_HISTORY = history.insert_sql(
    source="FROM expired", from_state="'held'", to_state="'expired'", reason="'hold TTL elapsed'", actor=":actor"
)
_OVERLAPPING = "AND {t}resource_id = :resource_id AND {t}first_night < :end AND {t}end_night > :start"
_EXPIRE_ALL = text(_EXPIRE_TEMPLATE.format(scope="", left_scope="", history=_EXPIRED_HISTORY))
_EXPIRE_OVERLAPPING = text(
    _EXPIRE_TEMPLATE.format(scope=_OVERLAPPING.format(t=""), left_scope=_OVERLAPPING.format(t="left_behind."), history=_EXPIRED_HISTORY)
)


@dataclass(frozen=True)
class ExpiryResult:
    expired: int
    nights_returned: int
    #: A due hold was left behind: beyond the batch, or locked by a concurrent mover.
    more: bool


def expire_lapsed_holds(conn: Connection, *, now: datetime, batch_max: int, actor: str) -> ExpiryResult:
    """Expires up to ``batch_max`` lapsed holds of the region, oldest first, as ``actor`` (the node)."""
    assert actor.startswith("node:"), f"a node expires holds, not {actor!r}"
    row = conn.execute(_EXPIRE_ALL, {"now": now, "batch_max": batch_max, "actor": actor}).one()
    return _checked(row)


def reclaim_for(conn: Connection, *, resource_id: str, nights: Nights, now: datetime, actor: str, batch_max: int = 500) -> ExpiryResult:
    """Expires the lapsed holds that overlap ``nights`` of one resource, as ``actor`` (the
    node serving the hold that needs their units, never that hold's caller)."""
    assert actor.startswith("node:"), f"a node expires holds, not {actor!r}"
    row = conn.execute(
        _EXPIRE_OVERLAPPING,
        {"now": now, "batch_max": batch_max, "resource_id": resource_id, "start": nights.start, "end": nights.end, "actor": actor},
    ).one()
    return _checked(row)


def _checked(row) -> ExpiryResult:  # noqa: ANN001 - a SQLAlchemy Row
    # Every expired booking has its history row and gives back every one of its nights;
    # anything else means inventory and bookings disagree, and the transaction must not commit.
    assert row.histories == row.expired, f"history rows {row.histories} != expired bookings {row.expired}"
    assert row.nights_returned == row.nights_due, f"returned {row.nights_returned} of {row.nights_due} inventory nights"
    return ExpiryResult(expired=row.expired, nights_returned=row.nights_returned, more=row.more)
