"""In-flight work for consoles, one keyset page at a time: stuck bookings, pending timers, legs in doubt.

Each kind is a range read of a partial index in its own order (migration r0008):
stuck bookings oldest first, merged from held bookings (``bookings_held_by_age``, or
``bookings_held_by_basecamp_age`` with a basecamp) and from open settlements of bookings
no longer held (``settlements_open_by_age``: a refund still owed); timers soonest due
first (``workflow_timers_pending_by_due``); prepared legs by decision deadline
(``trek_legs_in_doubt``). A page token carries the last row's key, so the next page
starts where the index left off: a page costs its own rows, never the region's
100,000 bookings. Details (the booking, its payment) are read by primary key for the
page's rows only.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, text

from ridgeline.regional import errors
from ridgeline.regional.booking.model import BookingState
from ridgeline.regional.settlement.rows import SettlementState

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 500


class Kind(enum.StrEnum):
    STUCK = "stuck"
    WAITING_ON_TIMER = "waiting_on_timer"
    LEG_IN_DOUBT = "leg_in_doubt"


@dataclass(frozen=True)
class Query:
    kind: Kind
    #: STUCK: created this long ago or more; timers: overdue by this much; legs: past their deadline by this much.
    older_than_seconds: int = 0
    basecamp_id: str | None = None
    workflow: str | None = None
    #: A scoped desk's basecamps (None: every basecamp of the region).
    reach: frozenset[str] | None = None
    page_size: int = PAGE_SIZE_DEFAULT

    def __post_init__(self) -> None:
        assert 0 < self.page_size <= PAGE_SIZE_MAX and self.older_than_seconds >= 0


@dataclass(frozen=True)
class Item:
    kind: Kind
    booking_id: str
    basecamp_id: str
    resource_id: str
    customer_id: str
    state: BookingState
    workflow: str
    created_at: datetime
    updated_at: datetime
    payment_state: SettlementState | None
    attempts: int
    last_error: str
    #: STUCK: the settlement's next step (None without one); timers: due; legs: the decision deadline.
    next_at: datetime | None
    timer_step: str = ""
    trek_id: str = ""
    leg_index: int = 0


_STUCK = """
    SELECT * FROM (
        (SELECT b.booking_id, b.created_at AS k1, '' AS k2, 0 AS k3 FROM bookings AS b
         WHERE b.state = 'held' AND {held} ORDER BY b.created_at, b.booking_id LIMIT :limit)
        UNION ALL
        (SELECT s.booking_id, s.created_at AS k1, '' AS k2, 0 AS k3 FROM settlements AS s JOIN bookings AS b USING (booking_id)
         WHERE s.state IN ('awaiting_payment', 'refunding') AND b.state <> 'held' AND {open}
         ORDER BY s.created_at, s.booking_id LIMIT :limit)
    ) AS stuck ORDER BY k1, booking_id LIMIT :limit
"""
_TIMERS = """
    SELECT t.booking_id, t.due_at AS k1, t.step AS k2, 0 AS k3, t.step, t.attempts AS timer_attempts, t.last_error AS timer_error
    FROM workflow_timers AS t WHERE t.fired_at IS NULL AND {where}
    ORDER BY t.due_at, t.booking_id, t.step LIMIT :limit
"""
_LEGS = """
    SELECT l.booking_id, l.decision_deadline AS k1, l.trek_id AS k2, l.leg_index AS k3
    FROM trek_legs AS l JOIN bookings AS b ON b.booking_id = l.booking_id
    WHERE l.state = 'prepared' AND {where}
    ORDER BY l.decision_deadline, l.trek_id, l.leg_index LIMIT :limit
"""
_DETAILS = text(
    """
    SELECT b.booking_id, b.basecamp_id, b.resource_id, b.customer_id, b.state, b.workflow, b.created_at, b.updated_at,
           s.state AS payment_state, s.attempts, s.last_error, s.next_attempt_at
    FROM bookings AS b LEFT JOIN settlements AS s USING (booking_id) WHERE b.booking_id = ANY(:ids)
    """
)


def page(conn: Connection, query: Query, *, token: str, now: datetime) -> tuple[list[Item], str]:
    """One page of ``query``'s in-flight work and the next page's token ('' on the last page)."""
    params: dict[str, object] = {"limit": query.page_size + 1, "cutoff": now - timedelta(seconds=query.older_than_seconds)}
    after = _decode(token, query) if token else None
    if query.kind is Kind.STUCK:
        held, open_ = _common(query, "b", params), _common(query, "b", params)
        held.append("b.created_at <= :cutoff")
        open_.append("s.created_at <= :cutoff")
        if after is not None:
            held.append("(b.created_at, b.booking_id) > (:k1, CAST(:b AS UUID))")
            open_.append("(s.created_at, s.booking_id) > (:k1, CAST(:b AS UUID))")
        statement = _STUCK.format(held=" AND ".join(held), open=" AND ".join(open_))
    elif query.kind is Kind.WAITING_ON_TIMER:
        where = _common(query, "t", params)
        if query.older_than_seconds:
            where.append("t.due_at <= :cutoff")
        if after is not None:
            where.append("(t.due_at, t.booking_id, t.step) > (:k1, CAST(:b AS UUID), :k2)")
        statement = _TIMERS.format(where=" AND ".join(where))
    else:
        where = _common(query, "b", params)
        if query.older_than_seconds:
            where.append("l.decision_deadline <= :cutoff")
        if after is not None:
            where.append("(l.decision_deadline, l.trek_id, l.leg_index) > (:k1, :k2, :k3)")
        statement = _LEGS.format(where=" AND ".join(where))
    if after is not None:
        params.update(after)
    found = conn.execute(text(statement), params).all()
    rows, more = found[: query.page_size], len(found) > query.page_size
    details = {str(r.booking_id): r for r in conn.execute(_DETAILS, {"ids": [r.booking_id for r in rows]})}
    items = [_item(query.kind, r, details[str(r.booking_id)]) for r in rows]
    return items, _encode(rows[-1], query) if more else ""


def _common(query: Query, alias: str, params: dict[str, object]) -> list[str]:
    """The filters every kind shares, on the table ``alias`` that has basecamp_id and workflow."""
    clauses = ["TRUE"]
    if query.basecamp_id is not None:
        clauses.append(f"{alias}.basecamp_id = :basecamp_id")
        params["basecamp_id"] = query.basecamp_id
    if query.workflow is not None:
        clauses.append(f"{alias}.workflow = :workflow")
        params["workflow"] = query.workflow
    if query.reach is not None:
        clauses.append(f"{alias}.basecamp_id = ANY(:reach)")
        params["reach"] = sorted(query.reach)
    return clauses


def _item(kind: Kind, key, row) -> Item:  # noqa: ANN001 - SQLAlchemy Rows
    if kind is Kind.WAITING_ON_TIMER:
        attempts, error, next_at, step = key.timer_attempts, key.timer_error, key.k1, key.step
    else:
        attempts, error, step = row.attempts or 0, row.last_error or "", ""
        next_at = key.k1 if kind is Kind.LEG_IN_DOUBT else row.next_attempt_at
    return Item(
        kind=kind,
        booking_id=str(row.booking_id),
        basecamp_id=row.basecamp_id,
        resource_id=row.resource_id,
        customer_id=row.customer_id,
        state=BookingState(row.state),
        workflow=row.workflow,
        created_at=row.created_at,
        updated_at=row.updated_at,
        payment_state=SettlementState(row.payment_state) if row.payment_state else None,
        attempts=attempts,
        last_error=error,
        next_at=next_at,
        timer_step=step,
        trek_id=key.k2 if kind is Kind.LEG_IN_DOUBT else "",
        leg_index=key.k3 if kind is Kind.LEG_IN_DOUBT else 0,
    )


def _scope(query: Query) -> str:
    """What a token is valid for: the same kind and filters (a token from another query is refused)."""
    scope = json.dumps([query.kind.value, query.older_than_seconds, query.basecamp_id, query.workflow, sorted(query.reach or ())])
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def _encode(row, query: Query) -> str:  # noqa: ANN001 - a SQLAlchemy Row
    payload = {"q": _scope(query), "k1": row.k1.isoformat(), "b": str(row.booking_id), "k2": row.k2, "k3": row.k3}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode(token: str, query: Query) -> dict[str, object]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if payload["q"] != _scope(query):
            raise errors.InvalidRequest("page_token belongs to another query: keep the kind and filters while paging")
        return {"k1": datetime.fromisoformat(payload["k1"]), "b": payload["b"], "k2": payload["k2"], "k3": int(payload["k3"])}
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise errors.InvalidRequest("page_token is not a token this server issued") from error
