"""Confirm, release and cancel: the booking state machine's moves after the hold.

Each move is one statement that changes the booking's state only if it is still in the
expected state, appends the history row, and moves the units between ``held``,
``booked`` and free, all in the caller's transaction, with the idempotency record beside
it. A move to the state the booking is already in has no effect and answers the
booking as it is, so that a desk or a coordinator can retry a confirm or cancel safely.
A repeated idempotency key is detected by the record's primary key (see idempotency).

Moves are fenced (invariant 6): the caller passes the epochs of the leases it holds, and
the statement moves nothing unless the booking's basecamp lease still carries the
caller's epoch; the refusal then says who owns it (NotOwner, never recorded).

Every move names its caller (:class:`.access.Caller`): its actor goes on the history row,
and a caller restricted by trust.policy (an agency, a scoped desk) moves only bookings it
reaches. That check reads the booking in the move's transaction, before the move, so no
race can slip a foreign booking past it; a booking out of reach is answered exactly like
one that does not exist (NotVisible), and nothing is written, not even the key's record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from ridgeline.regional import errors
from ridgeline.regional.booking import history, idempotency, ownership, queries
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import LEGAL_TRANSITIONS, Booking, BookingState
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing.leases import Fence, fence_json


@dataclass(frozen=True)
class Move:
    """One edge of the state machine and what it does to inventory."""

    operation: str
    source: BookingState
    target: BookingState
    held_delta: int
    booked_delta: int
    requires_live_hold: bool

    def __post_init__(self) -> None:
        assert self.target in LEGAL_TRANSITIONS[self.source], f"{self.source} -> {self.target} is not a legal transition"


CONFIRM = Move("ConfirmBooking", BookingState.HELD, BookingState.CONFIRMED, -1, +1, requires_live_hold=True)
RELEASE = Move("ReleaseHold", BookingState.HELD, BookingState.RELEASED, -1, 0, requires_live_hold=False)
CANCEL = Move("CancelBooking", BookingState.CONFIRMED, BookingState.CANCELLED, 0, -1, requires_live_hold=False)
#: A trek leg's confirm: the coordinator decided commit, so the hold is confirmed even if
#: its TTL passed while the trek was undecided (prepared legs are never expired).
COMMIT_LEG = Move("CommitLeg", BookingState.HELD, BookingState.CONFIRMED, -1, +1, requires_live_hold=False)
ABORT_LEG = Move("AbortLeg", BookingState.HELD, BookingState.RELEASED, -1, 0, requires_live_hold=False)

# The move's history row carries the epoch the writer holds the booking's basecamp with.
_MOVE_HISTORY = history.insert_sql(
    source="FROM moved", from_state=":source", to_state=":target", reason=":reason", actor=":actor", lease_epoch=ownership.fence_epoch_sql("basecamp_id")
)

_REACH = text("SELECT basecamp_id, created_by FROM bookings WHERE booking_id = :booking_id")

_MOVE = text(
    f"""
    WITH moved AS (
        UPDATE bookings
        SET state = :target, version = version + 1, updated_at = :now
        WHERE booking_id = :booking_id AND state = :source
          AND (NOT :requires_live_hold OR expires_at > :now)
          AND {ownership.fenced_sql("bookings.basecamp_id")}
        RETURNING booking_id, basecamp_id, resource_id, first_night, end_night, party_size, version
    ), history AS (
        {_MOVE_HISTORY}
        RETURNING 1
    ), units AS (
        UPDATE inventory AS i
        SET held = i.held + :held_delta * m.party_size, booked = i.booked + :booked_delta * m.party_size
        FROM moved AS m
        WHERE i.resource_id = m.resource_id AND i.night >= m.first_night AND i.night < m.end_night
        RETURNING 1
    )
    SELECT m.first_night, m.end_night,
           (SELECT count(*) FROM history) AS histories,
           (SELECT count(*) FROM units) AS nights_moved
    FROM moved AS m
    """
)


def apply_move(
    engine: Engine,
    move: Move,
    *,
    booking_id: str,
    idempotency_key: str,
    reason: str,
    caller: Caller,
    fence: Fence,
    now: datetime,
    deadline: float | None = None,
    also: Callable[[Connection, Booking], None] | None = None,
) -> Booking:
    """Moves a booking along ``move`` for ``caller`` or raises NotFound / NotOwner / IllegalTransition / HoldExpired.

    ``fence`` holds the epochs of the basecamp leases the caller holds (basecamp_id -> epoch).
    ``also`` runs in the move's transaction once the booking is at the target state (moved
    now, or already there), so that what must commit with the move (settlement's state, its
    outbox message) commits with it or not at all. It must be idempotent. It does not run
    when the key repeats: the first run committed with the first move.
    """
    fingerprint = idempotency.fingerprint(move.operation, {"booking_id": booking_id, "reason": reason})

    def work(conn: Connection) -> Booking | errors.BookingError:
        outcome = _move_once(conn, move, booking_id, reason or _default_reason(move), caller, fence, now)
        if isinstance(outcome, (errors.NotOwner, errors.NotVisible)):
            return outcome  # not recorded: the same key must work at the owner; a hidden booking leaves no trace
        if isinstance(outcome, Booking):
            if also is not None:
                also(conn, outcome)
            idempotency.record(conn, idempotency_key, move.operation, fingerprint, now, result=outcome)
        else:
            idempotency.record(conn, idempotency_key, move.operation, fingerprint, now, error=outcome)
        return outcome

    outcome = idempotency.run_keyed(
        engine,
        idempotency_key,
        move.operation,
        fingerprint,
        lambda: run_transaction(engine, work, deadline=deadline, operation=move.operation),
        deadline=deadline,
    )
    if isinstance(outcome, errors.BookingError):
        raise outcome
    return outcome


def move_within(
    conn: Connection, move: Move, *, booking_id: str, reason: str, caller: Caller, fence: Fence, now: datetime
) -> Booking | errors.BookingError:
    """Moves a booking inside the caller's transaction (a trek leg moves it beside its fence row)."""
    return _move_once(conn, move, booking_id, reason, caller, fence, now)


def out_of_reach(conn: Connection, booking_id: str, caller: Caller) -> errors.NotVisible | None:
    """NotVisible when ``caller`` may not see the booking (or it does not exist), read in the
    caller's transaction; None when the caller reaches it, or reaches every booking."""
    if not caller.restricted:
        return None
    row = conn.execute(_REACH, {"booking_id": booking_id}).one_or_none()
    if row is not None and caller.reaches(basecamp_id=row.basecamp_id, created_by=row.created_by):
        return None
    return errors.NotVisible(not_found_message(booking_id))


def not_found_message(booking_id: str) -> str:
    """The one answer about a booking the caller cannot see, whether it exists or not."""
    return f"no booking {booking_id}"


def _move_once(
    conn: Connection, move: Move, booking_id: str, reason: str, caller: Caller, fence: Fence, now: datetime
) -> Booking | errors.BookingError:
    hidden = out_of_reach(conn, booking_id, caller)
    if hidden is not None:
        return hidden
    row = conn.execute(
        _MOVE,
        {
            "booking_id": booking_id,
            "source": move.source.value,
            "target": move.target.value,
            "requires_live_hold": move.requires_live_hold,
            "held_delta": move.held_delta,
            "booked_delta": move.booked_delta,
            "reason": reason,
            "actor": caller.actor,
            "fence": fence_json(fence),
            "now": now,
        },
    ).one_or_none()
    if row is not None:
        nights = (row.end_night - row.first_night).days
        assert row.histories == 1, "a move writes exactly one history row"
        assert row.nights_moved == nights, f"moved units on {row.nights_moved} of {nights} nights"
        booking = queries.get_booking(conn, booking_id)
        assert booking is not None and booking.state is move.target
        return booking
    return _refusal(conn, move, booking_id, fence, now)


def _refusal(conn: Connection, move: Move, booking_id: str, fence: Fence, now: datetime) -> Booking | errors.BookingError:
    """Why a move did not happen; a booking already at the target is answered as it is."""
    booking = queries.get_booking(conn, booking_id)
    if booking is None:
        return errors.NotFound(not_found_message(booking_id))
    fenced = ownership.refusal_if_fenced(conn, booking.basecamp_id, fence.get(booking.basecamp_id))
    if fenced is not None:
        return fenced
    if booking.state is move.target:
        return booking
    if booking.state is move.source and move.requires_live_hold:
        return errors.HoldExpired(f"hold {booking_id} expired at {booking.expires_at.isoformat()}; place a new hold")
    return errors.IllegalTransition(
        f"booking {booking_id} is {booking.state.value}; {move.operation} needs it {move.source.value}"
    )


def _default_reason(move: Move) -> str:
    return {CONFIRM: "confirmed", RELEASE: "released by request", CANCEL: "cancelled by request"}[move]
