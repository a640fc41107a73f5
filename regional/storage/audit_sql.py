"""Invariant checks on one region database, for ``ridgeline audit``, drills and tests.

All checks read in one read-only SERIALIZABLE transaction (retried whole if the
database cancels it), so an audit can run beside a busy cluster and its answer is one
consistent snapshot. A check returns
the offending rows in words a person can act on; an empty list is a pass. The checks
are computed from the data alone, independently of the code paths that wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from ridgeline.regional.settlement.deposits import STEPS as SETTLE_V2_STEPS
from ridgeline.regional.storage.db import run_transaction

#: Offenders listed per check; the count is always exact.
OFFENDERS_SHOWN = 20

# Per (resource, night): the inventory counters beside the units of the live bookings
# covering that night. Live: held (even lapsed, until expired) or confirmed. FULL JOIN, so
# that a live booking on a night without an inventory row shows up too.
TALLY_SQL = """
WITH covered AS (
    SELECT b.resource_id, CAST(n AS DATE) AS night,
           COALESCE(SUM(b.party_size) FILTER (WHERE b.state = 'held'), 0) AS bookings_held,
           COALESCE(SUM(b.party_size) FILTER (WHERE b.state = 'confirmed'), 0) AS bookings_booked
    FROM bookings AS b
    CROSS JOIN LATERAL generate_series(
        CAST(b.first_night AS TIMESTAMP), CAST(b.end_night AS TIMESTAMP) - INTERVAL '1 day', INTERVAL '1 day'
    ) AS n
    WHERE b.state IN ('held', 'confirmed')
    GROUP BY b.resource_id, CAST(n AS DATE)
)
SELECT COALESCE(i.resource_id, c.resource_id) AS resource_id, COALESCE(i.night, c.night) AS night,
       i.capacity, i.held, i.booked,
       COALESCE(c.bookings_held, 0) AS bookings_held, COALESCE(c.bookings_booked, 0) AS bookings_booked
FROM inventory AS i
FULL OUTER JOIN covered AS c ON c.resource_id = i.resource_id AND c.night = i.night
WHERE {where}
ORDER BY 1, 2
"""

_INVENTORY = text(
    TALLY_SQL.format(
        where="i.resource_id IS NULL OR i.held <> COALESCE(c.bookings_held, 0) OR i.booked <> COALESCE(c.bookings_booked, 0)"
        " OR i.held < 0 OR i.booked < 0 OR i.held + i.booked > i.capacity"
    )
)

# Every booking's history: versions 1..version without gaps, starting with NULL -> held,
# each transition one the contract allows (held -> confirmed | released | expired,
# confirmed -> cancelled) leaving the state the previous one entered, the last entering
# the booking's current state.
BROKEN_HISTORY_SQL = """
SELECT b.booking_id, b.state, b.version,
       array_agg(h.version ORDER BY h.version) AS versions,
       array_agg(COALESCE(h.from_state, '-') || '>' || h.to_state ORDER BY h.version) AS moves
FROM bookings AS b LEFT JOIN booking_history AS h USING (booking_id)
GROUP BY b.booking_id, b.state, b.version
HAVING count(h.version) <> b.version
    OR min(h.version) <> 1 OR max(h.version) <> b.version
    OR (array_agg(h.to_state ORDER BY h.version DESC))[1] <> b.state
    OR (array_agg(COALESCE(h.from_state, '-') ORDER BY h.version))[1] <> '-'
    OR (array_agg(h.to_state ORDER BY h.version))[1] <> 'held'
    OR EXISTS (
        SELECT 1 FROM booking_history AS h1 JOIN booking_history AS h2
          ON h2.booking_id = h1.booking_id AND h2.version = h1.version + 1
        WHERE h1.booking_id = b.booking_id AND h2.from_state IS DISTINCT FROM h1.to_state
    )
    OR EXISTS (
        SELECT 1 FROM booking_history AS h
        WHERE h.booking_id = b.booking_id AND h.version > 1
          AND (h.from_state, h.to_state) NOT IN (
              ('held', 'confirmed'), ('held', 'released'), ('held', 'expired'), ('confirmed', 'cancelled')
          )
    )
"""

_HISTORY = text(BROKEN_HISTORY_SQL + " LIMIT 1000")

_LEAKED_HOLDS = text(
    """
    SELECT booking_id, basecamp_id, resource_id, expires_at,
           EXTRACT(EPOCH FROM now() - expires_at) AS lapsed_seconds
    FROM bookings
    WHERE state = 'held' AND expires_at < now() - make_interval(secs => :grace)
    ORDER BY expires_at
    LIMIT 1000
    """
)

# An acknowledged hold has its idempotency record, written in the same statement: a
# record whose booking is missing is an acknowledged booking that was lost.
_LOST_BOOKINGS = text(
    """
    SELECT k.idempotency_key, k.result->>'booking_id' AS booking_id, k.created_at
    FROM idempotency_records AS k
    WHERE k.operation IN ('PlaceHold', 'Book') AND k.result IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM bookings AS b WHERE CAST(b.booking_id AS TEXT) = k.result->>'booking_id')
    LIMIT 1000
    """
)

# Every hold was placed under one key (PlaceHold or Book): a booking younger than the key
# retention without exactly one such record naming it was created twice or outside the
# keyed path.
_UNKEYED_BOOKINGS = text(
    """
    SELECT CAST(b.booking_id AS TEXT) AS booking_id, b.created_at, count(k.idempotency_key) AS records
    FROM bookings AS b
    LEFT JOIN idempotency_records AS k
      ON k.operation IN ('PlaceHold', 'Book') AND k.result->>'booking_id' = CAST(b.booking_id AS TEXT)
    WHERE b.created_at > now() - make_interval(secs => :retention)
    GROUP BY b.booking_id, b.created_at
    HAVING count(k.idempotency_key) <> 1
    LIMIT 1000
    """
)

# Invariant 6 after the fact: a change of a booking written under an older lease epoch
# than an earlier change of the same booking came from a writer that had lost the lease.
_STALE_WRITES = text(
    """
    SELECT h2.booking_id, h2.version, h2.to_state, h2.lease_epoch AS epoch, h1.lease_epoch AS earlier_epoch
    FROM booking_history AS h1
    JOIN booking_history AS h2 ON h2.booking_id = h1.booking_id AND h2.version > h1.version
    WHERE h1.lease_epoch IS NOT NULL AND h2.lease_epoch IS NOT NULL AND h2.lease_epoch < h1.lease_epoch
    LIMIT 1000
    """
)


# Every change names who made it (issue 11: the actor on the record), so the history can
# answer "who cancelled this": a history row or a booking that names nobody was written
# outside Ridgeline's code paths. (Rows from before actors were recorded say 'unrecorded'.)
_NAMELESS = text(
    """
    SELECT CAST(booking_id AS TEXT) AS booking_id, version, to_state FROM booking_history WHERE actor = ''
    UNION ALL
    SELECT CAST(booking_id AS TEXT), 0, 'created' FROM bookings WHERE created_by = ''
    ORDER BY 1, 2
    LIMIT 1000
    """
)


# Every booking took only the steps of its own workflow version (issue 13, ARCHITECTURE.md
# §11), and none is stranded: a settle@2 booking that owes its balance has its timer.
_VERSION_STEPS = text(
    """
    WITH b AS (
        SELECT b.booking_id, b.workflow, b.state,
               EXISTS (SELECT 1 FROM settlements AS s WHERE s.booking_id = b.booking_id) AS settled,
               EXISTS (SELECT 1 FROM trek_legs AS l WHERE l.booking_id = b.booking_id) AS leg,
               EXISTS (SELECT 1 FROM booking_history AS h WHERE h.booking_id = b.booking_id AND h.to_state = 'confirmed') AS was_confirmed,
               COALESCE((SELECT array_agg(w.step) FROM workflow_steps AS w WHERE w.booking_id = b.booking_id), '{}') AS steps,
               COALESCE((SELECT array_agg(t.step) FROM workflow_timers AS t WHERE t.booking_id = b.booking_id AND t.fired_at IS NULL), '{}') AS pending
        FROM bookings AS b
    )
    SELECT CAST(booking_id AS TEXT) AS booking_id, workflow, state, problem FROM b, LATERAL (VALUES
        (workflow <> 'settle@2' AND cardinality(steps) > 0, 'took settle@2 steps'),
        (workflow <> 'settle@2' AND cardinality(pending) > 0, 'has workflow timers'),
        (workflow IN ('hold@1', 'trek@1') AND settled, 'has a settlement row'),
        (workflow LIKE 'settle@%' AND NOT settled, 'has no settlement row'),
        (workflow = 'trek@1' AND NOT leg, 'is no trek leg'),
        (workflow = 'settle@2' AND NOT steps <@ CAST(:settle_v2_steps AS TEXT[]), 'took a step settle@2 does not have'),
        (workflow = 'settle@2' AND was_confirmed AND NOT 'deposit charged' = ANY(steps), 'was confirmed without its deposit step'),
        (workflow = 'settle@2' AND NOT was_confirmed AND cardinality(steps) > 0, 'took steps without being confirmed'),
        (workflow = 'settle@2' AND 'balance charged' = ANY(steps) AND NOT 'balance due' = ANY(steps), 'charged a balance that was never due'),
        (workflow = 'settle@2' AND state = 'confirmed' AND 'balance due' = ANY(steps) AND NOT 'balance charged' = ANY(steps)
            AND NOT 'balance' = ANY(pending), 'owes its balance and has no timer for it (stranded)'),
        (workflow = 'settle@2' AND state <> 'cancelled' AND ('cancelled by policy' = ANY(steps) OR 'refunded by policy' = ANY(steps)),
            'has policy steps but is not cancelled'),
        (state IN ('released', 'expired', 'cancelled') AND cardinality(pending) > 0, 'ended with timers pending')
    ) AS v(bad, problem)
    WHERE bad
    ORDER BY 1, 4
    LIMIT 1000
    """
)


@dataclass(frozen=True)
class Check:
    """One check of one invariant in one place, with its verdict and offenders."""

    invariant: str
    name: str
    where: str
    offenders: list[str] = field(default_factory=list)
    count: int = 0

    @property
    def passed(self) -> bool:
        return self.count == 0


def audit_region(engine: Engine, region: str, *, hold_grace_seconds: float, key_retention_seconds: float) -> list[Check]:
    """Every region-level check, from one snapshot.

    ``hold_grace_seconds``: how long after its expiry a hold may still be unswept (a sweep
    interval and some slack): older ones broke invariant 3. ``key_retention_seconds``:
    bookings younger than this must still have their idempotency record.
    """
    where = f"region {region}"

    def work(conn: Connection) -> list[Check]:
        conn.execute(text("SET TRANSACTION READ ONLY"))
        return [
            Check("1 no overbooking", "inventory counters equal live bookings, within capacity", where, *_rows(conn, _INVENTORY, {}, _night)),
            Check("2 nothing acknowledged is lost", "every acknowledged hold's booking exists", where, *_rows(conn, _LOST_BOOKINGS, {}, _lost)),
            Check("2 nothing acknowledged is lost", "every booking's history explains its state", where, *_rows(conn, _HISTORY, {}, _history)),
            Check("2 nothing acknowledged is lost", "every change names who made it", where, *_rows(conn, _NAMELESS, {}, _nameless)),
            Check("2 nothing acknowledged is lost", "every booking took only its version's steps, none stranded", where,
                  *_rows(conn, _VERSION_STEPS, {"settle_v2_steps": list(SETTLE_V2_STEPS)}, _version_steps)),
            Check("3 holds end", f"no hold live {hold_grace_seconds:g} s past its expiry", where,
                  *_rows(conn, _LEAKED_HOLDS, {"grace": hold_grace_seconds}, _leaked)),
            Check("6 one writer per basecamp", "no change written under an older lease epoch than an earlier one", where,
                  *_rows(conn, _STALE_WRITES, {}, _stale)),
            Check("7 idempotency", "every booking was placed under exactly one key", where,
                  *_rows(conn, _UNKEYED_BOOKINGS, {"retention": key_retention_seconds}, _unkeyed)),
        ]

    return run_transaction(engine, work)


def _rows(conn: Connection, statement, params: dict[str, object], describe) -> tuple[list[str], int]:  # noqa: ANN001
    rows = conn.execute(statement, params).all()
    return [describe(r) for r in rows[:OFFENDERS_SHOWN]], len(rows)


def _night(r) -> str:  # noqa: ANN001 - a SQLAlchemy Row
    if r.capacity is None:
        return f"{r.resource_id} {r.night}: live bookings ({r.bookings_held} held, {r.bookings_booked} confirmed) on a night not on sale"
    return (
        f"{r.resource_id} {r.night}: inventory held {r.held} / booked {r.booked} of capacity {r.capacity}, "
        f"bookings hold {r.bookings_held} / confirm {r.bookings_booked}"
    )


def _lost(r) -> str:  # noqa: ANN001
    return f"key {r.idempotency_key} acknowledged booking {r.booking_id} at {r.created_at:%Y-%m-%d %H:%M:%S}, which does not exist"


def _history(r) -> str:  # noqa: ANN001
    return f"booking {r.booking_id} is {r.state} v{r.version}, history {list(r.moves)}"


def _nameless(r) -> str:  # noqa: ANN001
    if r.version == 0:
        return f"booking {r.booking_id} does not name who created it"
    return f"booking {r.booking_id} v{r.version} ({r.to_state}) does not name who made the change"


def _version_steps(r) -> str:  # noqa: ANN001
    return f"booking {r.booking_id} ({r.workflow}, {r.state}) {r.problem}"


def _leaked(r) -> str:  # noqa: ANN001
    return f"hold {r.booking_id} at {r.basecamp_id} ({r.resource_id}) lapsed {float(r.lapsed_seconds):.0f} s ago and is still held"


def _stale(r) -> str:  # noqa: ANN001
    return f"booking {r.booking_id} v{r.version} ({r.to_state}) written under epoch {r.epoch} after a change under epoch {r.earlier_epoch}"


def _unkeyed(r) -> str:  # noqa: ANN001
    return f"booking {r.booking_id} (created {r.created_at:%Y-%m-%d %H:%M:%S}) has {r.records} PlaceHold/Book records"
