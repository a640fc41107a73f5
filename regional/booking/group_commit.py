"""Group commit for holds: many concurrent PlaceHold calls placed by one statement.

Measured (BENCHMARKS.md): one hold per statement costs the node about 1.5 ms of CPU
per RPC and PostgreSQL about 0.7 ms, most of it per-statement overhead. A committer
thread therefore takes every hold waiting when it is free (no added delay: at low load a
round holds one request) and places them with ONE statement, each still all or nothing
for its caller:

* Requests in a round never share an idempotency key, and two requests share a
  (resource, night) row only when they ask for exactly the same stay (the popular
  night everyone wants); others wait for the next round. Requests for one stay are
  taken in arrival order, each counting the units of those before it, so the ones
  that fit are a prefix and every request is decided alone: all its nights or none.
* The statement skips requests whose key already has a record or whose basecamp lease
  no longer carries the request's epoch (invariant 6), takes units only for
  requests that fit on every night, and inserts booking, history and idempotency
  record for exactly those. The same CHECKs as the single path (capacity per night,
  every night reserved) back it up in the database: if they fire, the whole round
  fails and its requests go one by one.
* A request the round did not place (no room, key seen before, round failed) falls back
  to :func:`holds.place_hold` in the caller's thread, which reclaims lapsed holds,
  answers replays and records refusals exactly as before. A round whose commit was lost
  (its outcome unknown) falls back the same way, and each hold's key resolves whether the
  round placed it (``idempotency.run_keyed``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, Engine, text

from ridgeline.regional.booking import history, holds, idempotency
from ridgeline.regional.booking.model import Booking
from ridgeline.regional.errors import AmbiguousCommit, DeadlineExceeded, NodeUnavailable
from ridgeline.regional.metrics import HOLD_ROUND_SIZE
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing.leases import fence_sql

_log = logging.getLogger(__name__)

# The round's bookings (those whose every night was taken), their first history rows and
# their records.
_ROUND_BOOKINGS = holds.booking_insert_sql(
    columns_from="r.", reserved_nights="s.nights", source="FROM req AS r JOIN reserved AS s ON s.booking_id = r.booking_id", workflow="r.workflow"
)
_ROUND_HISTORY = history.hold_placed_sql(
    booking_id="b.booking_id",
    actor="b.created_by",
    lease_epoch="CAST(r.epoch AS BIGINT)",
    source="FROM booking AS b JOIN req AS r ON r.booking_id = b.booking_id",
)
_ROUND_RECORDS = idempotency.record_insert_sql(
    key="r.idempotency_key",
    fingerprint="r.fingerprint",
    result="r.result",
    source="FROM req AS r JOIN history AS h ON h.booking_id = r.booking_id",
)

_PLACE_ROUND = text(
    f"""
    WITH req AS (
        SELECT e->>'key' AS idempotency_key,
               CAST(e->>'booking_id' AS UUID) AS booking_id,
               e->>'basecamp_id' AS basecamp_id,
               e->>'resource_id' AS resource_id,
               CAST(e->>'start' AS DATE) AS first_night,
               CAST(e->>'end' AS DATE) AS end_night,
               CAST(e->>'units' AS INT) AS units,
               e->>'customer_id' AS customer_id,
               CAST(e->>'total_price_cents' AS BIGINT) AS total_price_cents,
               e->>'currency' AS currency,
               CAST(e->>'expires_at' AS TIMESTAMPTZ) AS expires_at,
               e->>'fingerprint' AS fingerprint,
               e->>'actor' AS actor,
               e->>'workflow' AS workflow,
               e->>'epoch' AS epoch,
               e->'result' AS result,
               x.position
        FROM jsonb_array_elements(CAST(:batch AS JSONB)) WITH ORDINALITY AS x(e, position)
        WHERE NOT EXISTS (SELECT 1 FROM idempotency_records AS k WHERE k.idempotency_key = e->>'key')
          AND {fence_sql("e->>'basecamp_id'", "CAST(e->>'epoch' AS BIGINT)")}
    ), wanted AS (
        -- One row per night of each request. Requests for the same stay share rows: each
        -- counts the units of the ones before it in the round (units_so_far).
        SELECT r.booking_id, r.resource_id, CAST(n AS DATE) AS night, r.units,
               SUM(r.units) OVER (
                   PARTITION BY r.resource_id, r.first_night, r.end_night, CAST(n AS DATE) ORDER BY r.position
               ) AS units_so_far
        FROM req AS r
        CROSS JOIN LATERAL generate_series(
            CAST(r.first_night AS TIMESTAMP), CAST(r.end_night AS TIMESTAMP) - INTERVAL '1 day', INTERVAL '1 day'
        ) AS n
    ), checked AS (
        -- Whether each night has room, by primary key (NULL when the night is not on sale).
        SELECT w.booking_id,
               (SELECT i.held + i.booked + w.units_so_far <= i.capacity
                FROM inventory AS i
                WHERE i.resource_id = w.resource_id AND i.night = w.night) AS has_room
        FROM wanted AS w
    ), fitting AS (
        SELECT booking_id FROM checked GROUP BY booking_id HAVING bool_and(COALESCE(has_room, FALSE))
    ), per_row AS (
        SELECT w.resource_id, w.night, SUM(w.units) AS units
        FROM wanted AS w JOIN fitting AS f ON f.booking_id = w.booking_id
        GROUP BY w.resource_id, w.night
    ), taken AS (
        UPDATE inventory AS i
        SET held = i.held + p.units
        FROM per_row AS p
        WHERE i.resource_id = p.resource_id AND i.night = p.night
          AND i.held + i.booked + p.units <= i.capacity
        RETURNING i.resource_id, i.night
    ), reserved AS (
        SELECT w.booking_id, count(*) AS nights
        FROM wanted AS w
        JOIN fitting AS f ON f.booking_id = w.booking_id
        JOIN taken AS t ON t.resource_id = w.resource_id AND t.night = w.night
        GROUP BY w.booking_id
    ), booking AS (
        {_ROUND_BOOKINGS}
        RETURNING booking_id, created_by
    ), history AS (
        {_ROUND_HISTORY}
        RETURNING booking_id
    ), record AS (
        {_ROUND_RECORDS}
        RETURNING idempotency_key
    )
    SELECT idempotency_key FROM record
    """
)


@dataclass
class _Pending:
    request: holds.HoldRequest
    epoch: int
    deadline: float | None
    #: The placed booking; or None (not placed: the single path decides); or the round's lost commit.
    outcome: Future[Booking | AmbiguousCommit | None]

    def stay(self) -> tuple[str, date, date]:
        return self.request.resource_id, self.request.nights.start, self.request.nights.end

    def rows(self) -> set[tuple[str, date]]:
        return {(self.request.resource_id, night) for night in self.request.nights.each()}


class HoldGroupCommitter:
    """Places concurrent holds in rounds, one statement per round, from one thread."""

    def __init__(self, round_engine: Engine, engine: Engine, clock: Callable[[], datetime], *, round_max: int) -> None:
        """``round_engine`` runs the rounds (one connection, a short lock timeout); ``engine``
        serves the single-path fallbacks from the callers' threads."""
        assert round_max > 1, "a round of one is the single path; call holds.place_hold"
        self._round_engine = round_engine
        self._engine = engine
        self._clock = clock
        self._round_max = round_max
        self._queue: deque[_Pending] = deque()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="hold-group-commit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 5.0) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)
        self._round_engine.dispose()

    def place(self, request: holds.HoldRequest, *, epoch: int, deadline: float | None) -> Booking:
        """Places the hold in the next round; falls back to the single path if it was not placed."""
        assert not request.settle, "rounds insert no settlement row: a Book goes through holds.place_hold"
        pending = _Pending(request, epoch, deadline, Future())
        with self._wakeup:
            if self._stopping:
                raise NodeUnavailable("the node is shutting down; retry on another node")
            self._queue.append(pending)
            self._wakeup.notify()
        wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            placed = pending.outcome.result(timeout=wait)
        except FutureTimeout:
            # The round may still place it: the idempotency key makes a retry answer that hold.
            raise DeadlineExceeded("deadline passed while the hold waited for its round") from None
        if isinstance(placed, Booking):
            return placed
        return holds.place_hold(self._engine, request, epoch=epoch, now=self._clock(), deadline=deadline, resolving=placed)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    for pending in self._queue:
                        pending.outcome.set_result(None)
                    self._queue.clear()
                    return
                members = self._take_round()
            self._place_round(members)

    def _take_round(self) -> list[_Pending]:
        """Takes up to round_max requests with distinct keys whose rows are disjoint unless
        they ask for the same stay; the rest wait, in order, for the next round."""
        members: list[_Pending] = []
        rows_by_stay: dict[tuple[str, date, date], set[tuple[str, date]]] = {}
        keys: set[str] = set()
        deferred: list[_Pending] = []
        while self._queue and len(members) < self._round_max:
            pending = self._queue.popleft()
            stay = pending.stay()
            rows = pending.rows()
            clashes = any(rows & taken for other, taken in rows_by_stay.items() if other != stay)
            if pending.request.idempotency_key in keys or clashes:
                deferred.append(pending)
                continue
            members.append(pending)
            rows_by_stay[stay] = rows
            keys.add(pending.request.idempotency_key)
        self._queue.extendleft(reversed(deferred))
        return members

    def _place_round(self, members: list[_Pending]) -> None:
        now = self._clock()
        live = [m for m in members if m.deadline is None or m.deadline > time.monotonic()]
        bookings = [holds.new_booking(m.request, now) for m in live]
        HOLD_ROUND_SIZE.observe(len(live))
        lost: AmbiguousCommit | None = None
        try:
            placed = run_transaction(
                self._round_engine, lambda conn: _execute(conn, live, bookings, now), single_statement=True, operation=holds.OPERATION
            )
        except AmbiguousCommit as error:
            # Some of the round may have landed: each hold's key will tell, on the single path.
            _log.warning("hold round of %d lost its commit; resolving each hold by its key", len(live))
            lost, placed = error, set()
        except Exception:  # noqa: BLE001 - every caller falls back to the single path, which reports
            _log.warning("hold round of %d failed; placing its holds one by one", len(live), exc_info=True)
            placed = set()
        for member, booking in zip(live, bookings, strict=True):
            member.outcome.set_result(booking if member.request.idempotency_key in placed else lost)
        for member in members:
            if not member.outcome.done():
                member.outcome.set_result(None)


def _execute(conn: Connection, members: list[_Pending], bookings: list[Booking], now: datetime) -> set[str]:
    """Runs one round; returns the idempotency keys of the holds it placed.

    The round travels as one JSON document: psycopg dumps a Python list as a text array
    element by element in Python (a third of the committer's time, measured), while
    ``json.dumps`` of the whole round is one call into C.
    """
    if not members:
        return set()
    batch = [
        {
            "key": m.request.idempotency_key,
            "booking_id": b.booking_id,
            "basecamp_id": b.basecamp_id,
            "epoch": m.epoch,
            "resource_id": b.resource_id,
            "start": b.nights.start.isoformat(),
            "end": b.nights.end.isoformat(),
            "units": b.party_size,
            "customer_id": b.customer_id,
            "total_price_cents": b.total_price_cents,
            "currency": b.currency,
            "expires_at": b.expires_at.isoformat(),
            "fingerprint": m.request.fingerprint(),
            "actor": b.created_by,
            "workflow": b.workflow,
            "result": b.to_json(),
        }
        for m, b in zip(members, bookings, strict=True)
    ]
    rows = conn.execute(_PLACE_ROUND, {"batch": json.dumps(batch), "operation": holds.OPERATION, "now": now}).all()
    return {row.idempotency_key for row in rows}
