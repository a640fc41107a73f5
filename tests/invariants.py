"""SQL checks of the ARCHITECTURE.md §2 invariants, computed from the data alone.

The tally and history statements are the audit's own (regional/storage/audit_sql.py), which the
seeded-violation tests check against corrupted databases.

Every function takes a region database URL (the ``cockroachdb+psycopg://`` URL the nodes use,
or a plain libpq URL) and reads it in single statements from one snapshot, so that each answer
is consistent even while nodes are writing: a check may run in the middle of a race.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date

import psycopg
from psycopg.rows import namedtuple_row

from ridgeline.regional.storage.audit_sql import BROKEN_HISTORY_SQL, TALLY_SQL

_TALLY = TALLY_SQL
_BROKEN_HISTORY = BROKEN_HISTORY_SQL + " LIMIT 10"

_SNAPSHOT = """
SELECT (SELECT count(*) FROM bookings) AS bookings,
       (SELECT count(*) FROM booking_history) AS history,
       (SELECT count(*) FROM idempotency_records) AS idempotency_records,
       (SELECT COALESCE(SUM(held), 0) FROM inventory) AS held_total,
       (SELECT COALESCE(SUM(booked), 0) FROM inventory) AS booked_total
"""


def libpq_url(url: str) -> str:
    """The plain PostgreSQL URL behind a SQLAlchemy ``cockroachdb+psycopg://`` URL."""
    scheme, _, rest = url.partition("://")
    return url if scheme in ("postgresql", "postgres") else f"postgresql://{rest}"


#: The main thread's open connections by URL, most recent last (tests check the same
#: database many times in a row; a new connection per check costs a backend fork).
_cached: dict[str, psycopg.Connection] = {}
CACHED_CONNECTIONS_MAX = 4


def _connect(url: str) -> psycopg.Connection:
    # REPEATABLE READ READ ONLY: the region database defaults to SERIALIZABLE, where a checker
    # racing the writers could be cancelled as the pivot of a conflict; a snapshot read never
    # is, and one snapshot is all a check needs.
    conn = psycopg.connect(libpq_url(url), row_factory=namedtuple_row)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def _run(conn: psycopg.Connection, sql: str, params: dict[str, object] | None) -> list:
    with conn.transaction():
        return conn.execute(sql, params or {}).fetchall()


def query(url: str, sql: str, params: dict[str, object] | None = None) -> list:
    """Rows of one statement, as named tuples, read from one snapshot."""
    if threading.current_thread() is not threading.main_thread():
        with _connect(url) as conn:
            return _run(conn, sql, params)
    conn = _cached.pop(url, None)
    if conn is None or conn.closed or conn.broken:
        conn = _connect(url)
    _cached[url] = conn
    while len(_cached) > CACHED_CONNECTIONS_MAX:
        _cached.pop(next(iter(_cached))).close()
    return _run(conn, sql, params)


@dataclass(frozen=True)
class NightTally:
    resource_id: str
    night: date
    capacity: int | None
    held: int | None
    booked: int | None
    bookings_held: int
    bookings_booked: int

    @property
    def taken(self) -> int:
        return (self.held or 0) + (self.booked or 0)

    def problems(self) -> list[str]:
        found = []
        if self.capacity is None:
            found.append("live bookings on a night that has no inventory row")
            return found
        if self.held != self.bookings_held:
            found.append(f"inventory held {self.held} != {self.bookings_held} units of held bookings")
        if self.booked != self.bookings_booked:
            found.append(f"inventory booked {self.booked} != {self.bookings_booked} units of confirmed bookings")
        if self.held < 0 or self.booked < 0:
            found.append("negative counter")
        if self.held + self.booked > self.capacity:
            found.append(f"held {self.held} + booked {self.booked} > capacity {self.capacity} (invariant 1)")
        return found


def night_tallies(url: str, resource_id: str | None = None, first: date | None = None, end: date | None = None) -> list[NightTally]:
    """Tallies of one resource's nights in [first, end) (all of them, even empty), or of every
    (resource, night) that has units taken or live bookings when no resource is given."""
    if resource_id is None:
        where, params = "COALESCE(i.held, 0) <> 0 OR COALESCE(i.booked, 0) <> 0 OR c.resource_id IS NOT NULL", {}
    else:
        assert first is not None and end is not None
        where = "COALESCE(i.resource_id, c.resource_id) = %(resource_id)s AND COALESCE(i.night, c.night) >= %(first)s AND COALESCE(i.night, c.night) < %(end)s"
        params = {"resource_id": resource_id, "first": first, "end": end}
    return [NightTally(*row) for row in query(url, _TALLY.format(where=where), params)]


def inventory_problems(url: str) -> list[str]:
    """Every (resource, night) whose counters disagree with its live bookings or exceed capacity."""
    return [f"{t.resource_id} {t.night}: {'; '.join(t.problems())}" for t in night_tallies(url) if t.problems()]


def assert_inventory_matches_bookings(url: str) -> list[NightTally]:
    """Invariant 1 and the bookkeeping behind it: for every inventory row, held and booked equal the
    units of the live held / confirmed bookings covering that night, and never exceed capacity."""
    tallies = night_tallies(url)
    problems = [f"{t.resource_id} {t.night}: {'; '.join(t.problems())}" for t in tallies if t.problems()]
    assert not problems, f"{len(problems)} inventory night(s) disagree with bookings:\n" + "\n".join(problems[:10])
    return tallies


def assert_history_consistent(url: str) -> None:
    """Each booking's history is a gapless chain of legal-looking moves ending in its state."""
    broken = query(url, _BROKEN_HISTORY)
    assert not broken, "bookings whose history does not explain their state:\n" + "\n".join(map(str, broken))


@dataclass(frozen=True)
class Snapshot:
    """Row counts and inventory totals: equal snapshots around a call mean it wrote nothing."""

    bookings: int
    history: int
    idempotency_records: int
    held_total: int
    booked_total: int

    def plus(self, **changes: int) -> Snapshot:
        """This snapshot with some fields moved by the given amounts: the expected one after a call."""
        return replace(self, **{name: getattr(self, name) + change for name, change in changes.items()})


def snapshot(url: str) -> Snapshot:
    return Snapshot(*query(url, _SNAPSHOT)[0])


def bookings_by_id(url: str, booking_ids: Iterable[str] | None = None) -> dict[str, object]:
    """booking_id -> row (state, resource_id, first_night, end_night, party_size, expires_at, updated_at)."""
    sql = "SELECT CAST(booking_id AS TEXT) AS booking_id, state, resource_id, first_night, end_night, party_size, expires_at, updated_at FROM bookings"
    params: dict[str, object] = {}
    if booking_ids is not None:
        sql += " WHERE CAST(booking_id AS TEXT) = ANY(%(ids)s)"
        params["ids"] = list(booking_ids)
    return {row.booking_id: row for row in query(url, sql, params)}


def history_of(url: str, booking_id: str) -> list:
    """The booking's transitions in order: (version, from_state, to_state, reason)."""
    return query(
        url,
        "SELECT version, from_state, to_state, reason FROM booking_history WHERE booking_id = %(id)s ORDER BY version",
        {"id": booking_id},
    )
