"""Read paths: one booking with its history, filtered booking lists, availability.

Reads never wait for the sweep: a hold whose ``expires_at`` has passed is reported as
free even while its row still says ``held`` (invariant 3 as the desk sees it).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, text

from ridgeline.regional import errors
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking, BookingState, NightAvailability, Nights, Transition

_BOOKING_COLUMNS = """
    booking_id, basecamp_id, resource_id, first_night, end_night, party_size, customer_id,
    state, version, total_price_cents, currency, created_at, updated_at, expires_at, created_by, workflow
"""

_GET = text(f"SELECT {_BOOKING_COLUMNS} FROM bookings WHERE booking_id = :booking_id")

_GET_MANY = text(f"SELECT {_BOOKING_COLUMNS} FROM bookings WHERE booking_id = ANY(:booking_ids) ORDER BY booking_id")

_HISTORY = text(
    """
    SELECT booking_id, version, from_state, to_state, at, reason, actor FROM booking_history
    WHERE booking_id = ANY(:booking_ids) ORDER BY booking_id, version
    """
)

_AVAILABILITY = text(
    """
    SELECT i.resource_id, i.night, i.capacity, i.held - COALESCE(lapsed.units, 0) AS held, i.booked
    FROM inventory AS i
    LEFT JOIN (
        SELECT b.resource_id, CAST(n AS DATE) AS night, SUM(b.party_size) AS units
        FROM bookings AS b
        CROSS JOIN LATERAL generate_series(
            CAST(b.first_night AS TIMESTAMP), CAST(b.end_night AS TIMESTAMP) - INTERVAL '1 day', INTERVAL '1 day'
        ) AS n
        WHERE b.state = 'held' AND b.expires_at <= :now
          AND b.resource_id = ANY(:resource_ids) AND b.first_night < :end AND b.end_night > :start
        GROUP BY b.resource_id, CAST(n AS DATE)
    ) AS lapsed ON lapsed.resource_id = i.resource_id AND lapsed.night = i.night
    WHERE i.resource_id = ANY(:resource_ids) AND i.night >= :start AND i.night < :end
    ORDER BY i.resource_id, i.night
    """
)

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 500


def get_booking(conn: Connection, booking_id: str) -> Booking | None:
    """The booking with its complete history, or None."""
    row = conn.execute(_GET, {"booking_id": booking_id}).one_or_none()
    if row is None:
        return None
    return _with_history(conn, [row])[0]


def get_bookings(conn: Connection, booking_ids: Sequence[str]) -> dict[str, Booking]:
    """The bookings with their complete histories, by id, in two statements (absent ids are left out)."""
    rows = conn.execute(_GET_MANY, {"booking_ids": list(booking_ids)}).all()
    return {b.booking_id: b for b in _with_history(conn, rows)}


@dataclass(frozen=True)
class BookingFilter:
    basecamp_id: str | None = None
    state: BookingState | None = None
    nights: Nights | None = None
    #: > 0: only bookings older than this many seconds whose hold or payment is still open,
    #: and bookings with a workflow timer overdue by that much.
    stuck_seconds: int = 0
    #: Only bookings that run this workflow version (``settle@2``).
    workflow: str | None = None
    #: Only this customer's bookings.
    customer_id: str | None = None


def list_bookings(
    conn: Connection, where: BookingFilter, *, caller: Caller, page_size: int, page_token: str, now: datetime | None = None
) -> tuple[list[Booking], str]:
    """One page of the bookings ``caller`` reaches, newest first; returns the page and the next page's token.

    The caller's reach is part of the WHERE clause (an agency's own bookings, a scoped
    desk's basecamps), so every page is full and a token never leads past another's rows.
    """
    clauses = ["TRUE"]
    params: dict[str, object] = {"limit": page_size + 1}
    if caller.own_only is not None:
        clauses.append("created_by = :created_by")
        params["created_by"] = caller.own_only
    if caller.basecamps is not None:
        clauses.append("basecamp_id = ANY(:reach)")
        params["reach"] = sorted(caller.basecamps)
    if where.stuck_seconds:
        assert now is not None, "the stuck filter is relative to now"
        clauses.append(
            "((created_at < :stuck_before AND (state = 'held' OR booking_id IN "
            "(SELECT booking_id FROM settlements WHERE state IN ('awaiting_payment', 'refunding'))))"
            " OR booking_id IN (SELECT booking_id FROM workflow_timers WHERE fired_at IS NULL AND due_at < :stuck_before))"
        )
        params["stuck_before"] = now - timedelta(seconds=where.stuck_seconds)
    if where.basecamp_id:
        clauses.append("basecamp_id = :basecamp_id")
        params["basecamp_id"] = where.basecamp_id
    if where.workflow is not None:
        clauses.append("workflow = :workflow")
        params["workflow"] = where.workflow
    if where.customer_id is not None:
        clauses.append("customer_id = :customer_id")
        params["customer_id"] = where.customer_id
    if where.state is not None:
        clauses.append("state = :state")
        params["state"] = where.state.value
    if where.nights is not None:
        clauses.append("first_night < :end AND end_night > :start")
        params.update(start=where.nights.start, end=where.nights.end)
    if page_token:
        created_at, booking_id = _decode_token(page_token)
        clauses.append("(created_at, booking_id) < (:after_created_at, :after_booking_id)")
        params.update(after_created_at=created_at, after_booking_id=booking_id)
    statement = text(
        f"SELECT {_BOOKING_COLUMNS} FROM bookings WHERE {' AND '.join(clauses)} "
        "ORDER BY created_at DESC, booking_id DESC LIMIT :limit"
    )
    rows = conn.execute(statement, params).all()
    page, more = rows[:page_size], len(rows) > page_size
    next_token = _encode_token(page[-1].created_at, page[-1].booking_id) if more else ""
    return _with_history(conn, page), next_token


def availability(conn: Connection, resource_ids: list[str], nights: Nights, now: datetime) -> dict[str, list[NightAvailability]]:
    """Per resource, each night's capacity, live holds and confirmed units."""
    rows = conn.execute(
        _AVAILABILITY, {"resource_ids": resource_ids, "start": nights.start, "end": nights.end, "now": now}
    ).all()
    result: dict[str, list[NightAvailability]] = {resource_id: [] for resource_id in resource_ids}
    for row in rows:
        result[row.resource_id].append(NightAvailability(row.night, row.capacity, row.held, row.booked))
    return result


def _with_history(conn: Connection, rows: Sequence[Row[Any]]) -> list[Booking]:
    if not rows:
        return []
    history: dict[str, list[Transition]] = {}
    for h in conn.execute(_HISTORY, {"booking_ids": [row.booking_id for row in rows]}):
        history.setdefault(str(h.booking_id), []).append(
            Transition(h.version, BookingState(h.from_state) if h.from_state else None, BookingState(h.to_state), h.at, h.reason, h.actor)
        )
    return [_booking(row, tuple(history.get(str(row.booking_id), ()))) for row in rows]


def _booking(row: Row[Any], history: tuple[Transition, ...]) -> Booking:
    return Booking(
        booking_id=str(row.booking_id),
        basecamp_id=row.basecamp_id,
        resource_id=row.resource_id,
        nights=Nights(row.first_night, row.end_night),
        party_size=row.party_size,
        customer_id=row.customer_id,
        state=BookingState(row.state),
        version=row.version,
        total_price_cents=row.total_price_cents,
        currency=row.currency,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        created_by=row.created_by,
        workflow=row.workflow,
        history=history,
    )


def _encode_token(created_at: datetime, booking_id: object) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{booking_id}".encode()).decode()


def _decode_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        created_at, booking_id = base64.urlsafe_b64decode(token.encode()).decode().split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(booking_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise errors.InvalidRequest("page_token is not a token this server issued") from error


