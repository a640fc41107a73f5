"""The durable side of settlement: a booking's payment state, its steps, and the outbox.

A Book places a hold and its ``settlements`` row in one statement (booking/holds.py). From then
on the row is the truth about the payment, never a workflow engine's history: each step
below is one transaction guarded by the row's state, so a settlement flow killed at any
line leaves either the state before the step or the state after it, and a re-run of the
step from there has no second effect. Gateway calls happen between these transactions,
never inside one (ARCHITECTURE.md §3), and carry keys derived from the booking id.

States: ``awaiting_payment`` → ``confirmed`` (charged, booking confirmed, message
enqueued, one transaction: confirms.py) | ``released`` (definitive decline, hold released) |
``refunding`` (a charge may stand but the booking cannot be confirmed) → ``refunded``.
Invariant 4: every path that does not confirm ends released or refunded.

Ownership (invariant 6): only the basecamp's lease holder claims its rows (the claim is
fenced), and the booking moves (confirm, release) carry the epoch like every other
write. The other row updates (retry later, refunding, refunded, outbox delivered) stay
unfenced on purpose: each is guarded by the row's state and records a fact about money
that keyed gateway calls made true, so a stale node finishing a step it started says
nothing false, and the new owner's next step reads it.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine, text

from ridgeline.regional import errors
from ridgeline.regional.booking import ownership, transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking, BookingState
from ridgeline.regional.storage.db import read_transaction, run_transaction
from ridgeline.routing.leases import Fence, fence_json

T = TypeVar("T")


class SettlementState(enum.StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    CONFIRMED = "confirmed"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    RELEASED = "released"


#: States in which settlement still owes the booking a step.
OPEN_STATES = frozenset({SettlementState.AWAITING_PAYMENT, SettlementState.REFUNDING})
#: The kind of the one message a confirmed booking sends its guest.
CONFIRMED_MESSAGE = "booking_confirmed"
LAST_ERROR_LENGTH_MAX = 500


def _step(engine: Engine, work: Callable[[Connection], T]) -> T:
    """A settlement step, guarded by the row's state: after a lost COMMIT it is run again
    and finds the row as the first run left it (a claim that did land is taken again once
    it lapses, after ``claim_seconds``)."""
    return run_transaction(engine, work, operation="settlement", idempotent=True)


def charge_key(booking_id: str) -> str:
    """The gateway idempotency key of a booking's charge: one charge per booking, ever."""
    return f"charge:{booking_id}"


def refund_key(booking_id: str) -> str:
    return f"refund:{booking_id}"


@dataclass(frozen=True)
class Settlement:
    """A settlement row with the facts about its booking that decide the next step."""

    booking_id: str
    basecamp_id: str
    state: SettlementState
    amount_cents: int
    currency: str
    attempts: int
    last_error: str
    charge_id: str | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    booking_state: BookingState
    expires_at: datetime
    #: The booking's workflow version: only that version's code takes the next step.
    workflow: str
    #: The W3C traceparent of the Book that wrote the row ('' when it was not traced).
    trace_parent: str = ""


@dataclass(frozen=True)
class OutboxMessage:
    message_id: str
    booking_id: str
    kind: str
    payload: dict[str, object]
    created_at: datetime


_SETTLEMENT_COLUMNS = """
    s.booking_id, s.basecamp_id, s.state, s.amount_cents, s.currency, s.attempts, s.last_error,
    s.charge_id, s.next_attempt_at, s.created_at, s.updated_at, s.trace_parent,
    b.state AS booking_state, b.expires_at, b.workflow
"""

_GET = text(f"SELECT {_SETTLEMENT_COLUMNS} FROM settlements AS s JOIN bookings AS b USING (booking_id) WHERE s.booking_id = ANY(:ids)")

# Takes up to :batch_max due rows of the given basecamps, skipping rows another settler has
# locked, and pushes their next attempt out by the claim time: a second loop (or this one
# after a crash) sees them again only once the claim has lapsed.
_CLAIM = text(
    f"""
    WITH due AS (
        SELECT booking_id FROM settlements
        WHERE state IN ('awaiting_payment', 'refunding') AND next_attempt_at <= :now
          AND basecamp_id = ANY(:basecamps)
          AND {ownership.fenced_sql("settlements.basecamp_id")}
          AND EXISTS (SELECT 1 FROM bookings AS v WHERE v.booking_id = settlements.booking_id AND v.workflow = ANY(:workflows))
        ORDER BY next_attempt_at
        LIMIT :batch_max
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE settlements AS s SET next_attempt_at = :claimed_until
        FROM due WHERE s.booking_id = due.booking_id
        RETURNING s.*
    )
    SELECT {_SETTLEMENT_COLUMNS} FROM claimed AS s JOIN bookings AS b USING (booking_id)
    ORDER BY s.next_attempt_at, s.booking_id
    """
)

_RETRY_LATER = text(
    """
    UPDATE settlements SET attempts = attempts + 1, last_error = :error, next_attempt_at = :next_at, updated_at = :now
    WHERE booking_id = :booking_id AND state = :state
    """
)

_MOVE_STATE = text(
    """
    UPDATE settlements
    SET state = :target, attempts = attempts + :attempted, last_error = :error,
        charge_id = COALESCE(:charge_id, charge_id), next_attempt_at = :next_at, updated_at = :now
    WHERE booking_id = :booking_id AND state = ANY(:sources)
    """
)

_ENQUEUE = text(
    """
    INSERT INTO outbox (message_id, booking_id, kind, payload, created_at)
    VALUES (:message_id, :booking_id, :kind, CAST(:payload AS JSONB), :now)
    ON CONFLICT (message_id) DO NOTHING
    """
)

_UNDELIVERED = text(
    """
    SELECT o.message_id, o.booking_id, o.kind, o.payload, o.created_at
    FROM outbox AS o JOIN bookings AS b USING (booking_id)
    WHERE o.delivered_at IS NULL AND b.basecamp_id = ANY(:basecamps)
    ORDER BY o.created_at LIMIT :limit
    """
)

_DELIVERED = text("UPDATE outbox SET delivered_at = :now WHERE message_id = ANY(:ids) AND delivered_at IS NULL")


def awaiting(booking: Booking) -> Settlement:
    """The settlement row a Book writes with its hold (what the Book reply shows)."""
    return Settlement(
        booking_id=booking.booking_id,
        basecamp_id=booking.basecamp_id,
        state=SettlementState.AWAITING_PAYMENT,
        amount_cents=booking.total_price_cents,
        currency=booking.currency,
        attempts=0,
        last_error="",
        charge_id=None,
        next_attempt_at=booking.created_at,
        created_at=booking.created_at,
        updated_at=booking.created_at,
        booking_state=booking.state,
        expires_at=booking.expires_at,
        workflow=booking.workflow,
    )


def claim_due(
    engine: Engine, *, fence: Fence, now: datetime, batch_max: int, claim_seconds: float, workflows: Collection[str]
) -> list[Settlement]:
    """Claims up to ``batch_max`` settlements that owe a step now, of the basecamps whose
    leases ``fence`` still holds (a node that lost a lease claims nothing of it), and only
    of bookings whose workflow version is one of ``workflows`` (the claimer can run them:
    a booking is never advanced by another version's code)."""
    params = {
        "workflows": sorted(workflows),
        "basecamps": sorted(fence),
        "fence": fence_json(fence),
        "now": now,
        "batch_max": batch_max,
        "claimed_until": now + timedelta(seconds=claim_seconds),
    }
    return _step(engine, lambda conn: [_settlement(row) for row in conn.execute(_CLAIM, params)])


def unclaim(engine: Engine, claimed: Sequence[Settlement], *, now: datetime) -> None:
    """Makes claimed rows due again at once, unless a step already moved or rescheduled them
    (a run that could not start, e.g. with the Prefect API down, gives its claim back)."""
    statement = text(
        """
        UPDATE settlements SET next_attempt_at = :now
        WHERE booking_id = :booking_id AND next_attempt_at = :claimed_until
          AND state IN ('awaiting_payment', 'refunding')
        """
    )
    params = [{"booking_id": s.booking_id, "claimed_until": s.next_attempt_at, "now": now} for s in claimed]
    if params:
        _step(engine, lambda conn: conn.execute(statement, params))


def get(conn: Connection, booking_ids: Sequence[str]) -> dict[str, Settlement]:
    """The settlement rows of these bookings (bookings without one are absent)."""
    return {str(row.booking_id): _settlement(row) for row in conn.execute(_GET, {"ids": list(booking_ids)})}


def retry_later(engine: Engine, settlement: Settlement, error: str, *, now: datetime, delay_seconds: float) -> None:
    """Counts a failed attempt and schedules the next one; the state stays as it is."""
    params = {
        "booking_id": settlement.booking_id,
        "state": settlement.state.value,
        "error": error[:LAST_ERROR_LENGTH_MAX],
        "next_at": now + timedelta(seconds=delay_seconds),
        "now": now,
    }
    _step(engine, lambda conn: conn.execute(_RETRY_LATER, params))


def enqueue(conn: Connection, booking_id: str, kind: str, payload: dict[str, object], *, now: datetime) -> None:
    """Enqueues the booking's one message of ``kind`` in the caller's transaction (its id is
    ``<kind>:<booking id>``, so a step re-run enqueues nothing twice: invariant 7)."""
    params = {"message_id": f"{kind}:{booking_id}", "booking_id": booking_id, "kind": kind, "payload": json.dumps(payload), "now": now}
    conn.execute(_ENQUEUE, params)


def release_unpaid(
    engine: Engine,
    settlement: Settlement,
    target: SettlementState,
    reason: str,
    *,
    actor: str,
    fence: Fence,
    now: datetime,
    grace_seconds: float = 0.0,
) -> None:
    """Releases the hold if it still stands and moves the settlement to ``target`` with it.

    ``released`` after a definitive decline (nothing was charged); ``refunding`` when the
    payment gave up with its outcome unknown, or the hold is gone, so that the refund step
    makes sure no charge stands (invariant 4), not before ``grace_seconds`` have passed.
    """
    assert target in (SettlementState.RELEASED, SettlementState.REFUNDING)
    error = reason[:LAST_ERROR_LENGTH_MAX]

    def moved(conn: Connection, _: Booking | None = None) -> None:
        move(conn, settlement.booking_id, target, {SettlementState.AWAITING_PAYMENT}, now=now, error=error, next_in_seconds=grace_seconds)

    try:
        transitions.apply_move(
            engine,
            transitions.RELEASE,
            booking_id=settlement.booking_id,
            idempotency_key=f"settle:release:{settlement.booking_id}",
            reason=error,
            caller=Caller(actor),
            fence=fence,
            now=now,
            also=moved,
        )
    except errors.IllegalTransition:  # expired, or confirmed by a desk: no hold to give back
        _step(engine, moved)


def refunding(engine: Engine, settlement: Settlement, charge_id: str, reason: str, *, now: datetime, grace_seconds: float) -> None:
    """A charge went through but the booking cannot be confirmed: the money must go back."""
    _step(
        engine,
        lambda conn: move(
            conn, settlement.booking_id, SettlementState.REFUNDING, {SettlementState.AWAITING_PAYMENT},
            now=now, attempted=1, charge_id=charge_id or None, error=reason, next_in_seconds=grace_seconds,
        ),
    )


def refund_cancelled(conn: Connection, booking: Booking) -> None:
    """A paid booking was cancelled: its charge must go back (invariant 4). Runs in the
    cancel's transaction (``transitions.apply_move(also=...)``), so the settlement row is
    due for its refund step the moment the cancel commits, instead of waiting for
    reconciliation to notice the charge; a booking that was never paid has no row to move."""
    move(
        conn, booking.booking_id, SettlementState.REFUNDING, {SettlementState.CONFIRMED},
        now=booking.updated_at, error=f"booking {booking.state.value}: refund due",
    )


def refunded(engine: Engine, booking_id: str, *, now: datetime, note: str = "") -> None:
    """No charge of the booking stands any more (refunded, or none was ever made).

    From any state: reconciliation also refunds the charge of a booking cancelled after
    it was confirmed, or one that a lost reply left behind a released booking.
    """
    _step(engine, lambda conn: mark_refunded(conn, booking_id, now=now, note=note))


def mark_refunded(conn: Connection, booking_id: str, *, now: datetime, note: str = "") -> None:
    """:func:`refunded` inside the caller's transaction (settle@2 records its refund step with it)."""
    sources = set(SettlementState) - {SettlementState.REFUNDED}
    move(conn, booking_id, SettlementState.REFUNDED, sources, now=now, error=note)


def due_now(engine: Engine, booking_id: str, state: SettlementState, *, now: datetime) -> bool:
    """Makes the booking's next settlement step due now if the row is still in ``state`` (an
    operator's retry or refund: the owner's loop takes it on its next tick, through the same
    steps as ever); False when the row has moved on meanwhile."""
    assert state in OPEN_STATES, f"only an open settlement owes a step, not one {state}"
    statement = text("UPDATE settlements SET next_attempt_at = :now WHERE booking_id = :booking_id AND state = :state")
    params = {"booking_id": booking_id, "state": state.value, "now": now}
    return _step(engine, lambda conn: conn.execute(statement, params).rowcount) == 1


def refund_released(engine: Engine, booking_id: str, reason: str, *, now: datetime) -> bool:
    """``released`` -> ``refunding``, due now: an operator doubts that a declined payment left
    nothing charged (a lost reply), so the refund step reads the gateway's ledger and refunds
    whatever stands (invariant 4); the booking itself stays released. False when the row is
    no longer released."""
    params = {"booking_id": booking_id, "error": reason[:LAST_ERROR_LENGTH_MAX], "now": now}
    statement = text(
        """
        UPDATE settlements SET state = 'refunding', last_error = :error, next_attempt_at = :now, updated_at = :now
        WHERE booking_id = :booking_id AND state = 'released'
        """
    )
    return _step(engine, lambda conn: conn.execute(statement, params).rowcount) == 1


def undelivered(engine: Engine, *, basecamps: Collection[str], limit: int) -> list[OutboxMessage]:
    """The oldest undelivered messages of these basecamps' bookings (left by any run, even a killed one)."""

    def read(conn: Connection) -> list[OutboxMessage]:
        rows = conn.execute(_UNDELIVERED, {"basecamps": sorted(basecamps), "limit": limit})
        return [OutboxMessage(r.message_id, str(r.booking_id), r.kind, r.payload, r.created_at) for r in rows]

    return read_transaction(engine, read)


def mark_delivered(engine: Engine, message_ids: Sequence[str], *, now: datetime) -> None:
    if message_ids:
        _step(engine, lambda conn: conn.execute(_DELIVERED, {"ids": list(message_ids), "now": now}))


def wait_until_settled(engine: Engine, booking_id: str, *, deadline: float, poll_seconds: float = 0.05) -> None:
    """Returns once the booking's settlement left ``awaiting_payment``, or at ``deadline``."""
    while time.monotonic() + poll_seconds < deadline:
        found = read_transaction(engine, lambda conn: get(conn, [booking_id]).get(booking_id))
        if found is None or found.state is not SettlementState.AWAITING_PAYMENT:
            return
        time.sleep(poll_seconds)


def move(
    conn: Connection,
    booking_id: str,
    target: SettlementState,
    sources: Collection[SettlementState],
    *,
    now: datetime,
    attempted: int = 0,
    charge_id: str | None = None,
    error: str = "",
    next_in_seconds: float = 0.0,
) -> None:
    """Moves the settlement row to ``target`` if it is in one of ``sources`` (else nothing), in the caller's transaction."""
    conn.execute(
        _MOVE_STATE,
        {
            "booking_id": booking_id,
            "target": target.value,
            "sources": [s.value for s in sources],
            "attempted": attempted,
            "charge_id": charge_id,
            "error": error[:LAST_ERROR_LENGTH_MAX],
            "next_at": now + timedelta(seconds=next_in_seconds),
            "now": now,
        },
    )


def _settlement(row) -> Settlement:  # noqa: ANN001 - a SQLAlchemy Row
    return Settlement(
        booking_id=str(row.booking_id),
        basecamp_id=row.basecamp_id,
        state=SettlementState(row.state),
        amount_cents=row.amount_cents,
        currency=row.currency,
        attempts=row.attempts,
        last_error=row.last_error,
        charge_id=row.charge_id,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        booking_state=BookingState(row.booking_state),
        expires_at=row.expires_at,
        trace_parent=row.trace_parent,
        workflow=row.workflow,
    )
