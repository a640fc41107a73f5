"""Placing a hold: units for every night of a stay, all or nothing, until a TTL.

Invariant 1 (no overbooking) is kept twice over: the conditional UPDATE only takes
units where ``held + booked + units <= capacity``, and the inventory table's CHECK
constraint refuses any write that would overbook, so no code path in Python can.

The fast path is two statements in one transaction (ARCHITECTURE.md §3): the
conditional UPDATE over the stay's nights, then one statement inserting the booking,
its first history row and its idempotency record. It does not read the idempotency
record first; a repeated key surfaces as a unique violation on the record's primary key
and is answered from the stored first result. When a night is short, the slow path
reclaims lapsed holds on those nights, tries once more, and otherwise records the
refusal under the key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from . import errors, expiry, idempotency
from .db import run_transaction
from .model import Booking, BookingState, Nights, Transition

OPERATION = "PlaceHold"

_TAKE_UNITS = text(
    """
    UPDATE inventory SET held = held + :units
    WHERE resource_id = :resource_id AND night >= :start AND night < :end
      AND held + booked + :units <= capacity
    RETURNING night
    """
)

_INSERT_HOLD = text(
    """
    WITH booking AS (
        INSERT INTO bookings (booking_id, basecamp_id, resource_id, first_night, end_night, party_size,
                              customer_id, state, version, total_price_cents, currency,
                              created_at, updated_at, expires_at)
        VALUES (:booking_id, :basecamp_id, :resource_id, :start, :end, :units,
                :customer_id, 'held', 1, :total_price_cents, :currency, :now, :now, :expires_at)
        RETURNING booking_id
    ), history AS (
        INSERT INTO booking_history (booking_id, version, from_state, to_state, at, reason)
        SELECT booking_id, 1, NULL, 'held', :now, 'hold placed' FROM booking
        RETURNING 1
    )
    INSERT INTO idempotency_records
        (idempotency_key, operation, request_fingerprint, result, error_kind, error_message, created_at)
    SELECT :key, :operation, :fingerprint, CAST(:result AS JSONB), NULL, NULL, :now
    FROM history
    """
)

_NIGHT_FREE = text(
    """
    SELECT night, capacity - held - booked AS free FROM inventory
    WHERE resource_id = :resource_id AND night >= :start AND night < :end
    ORDER BY night
    """
)


@dataclass(frozen=True)
class HoldRequest:
    """A validated PlaceHold; prices come from the catalog, not from the caller."""

    idempotency_key: str
    basecamp_id: str
    resource_id: str
    nights: Nights
    party_size: int
    customer_id: str
    ttl_seconds: int
    unit_price_cents: int
    currency: str

    def fingerprint(self) -> str:
        return idempotency.fingerprint(
            OPERATION,
            {
                "basecamp_id": self.basecamp_id,
                "resource_id": self.resource_id,
                "start": self.nights.start,
                "end": self.nights.end,
                "party_size": self.party_size,
                "customer_id": self.customer_id,
                "ttl_seconds": self.ttl_seconds,
            },
        )


class _Short(Exception):
    """Internal: some night lacked units; rolls the fast path back."""


def place_hold(
    engine: Engine,
    request: HoldRequest,
    *,
    now: datetime,
    deadline: float | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> Booking:
    """Holds ``party_size`` units on every night of the stay, or raises a BookingError."""
    booking = _new_booking(request, now)
    fingerprint = request.fingerprint()
    params = _params(request, booking, fingerprint)

    def fast(conn: Connection) -> Booking:
        if not _take_units(conn, request):
            raise _Short
        conn.execute(_INSERT_HOLD, params)
        return booking

    def slow(conn: Connection) -> Booking | errors.BookingError:
        prior = idempotency.replay(conn, request.idempotency_key, OPERATION, fingerprint)
        if prior is not None:
            return prior
        reclaimed = expiry.reclaim_for(conn, resource_id=request.resource_id, nights=request.nights, now=now)
        if reclaimed.expired:
            retry = conn.begin_nested()
            if _take_units(conn, request):
                retry.commit()
                conn.execute(_INSERT_HOLD, params)
                return booking
            retry.rollback()
        refusal = _diagnose(conn, request)
        idempotency.record(conn, request.idempotency_key, OPERATION, fingerprint, now, error=refusal)
        return refusal

    try:
        return run_transaction(engine, fast, deadline=deadline, on_retry=on_retry)
    except _Short:
        outcome = run_transaction(engine, slow, deadline=deadline, on_retry=on_retry)
    except IntegrityError as error:
        if not idempotency.is_key_conflict(error):
            raise
        outcome = run_transaction(engine, _replayer(request, fingerprint), deadline=deadline, on_retry=on_retry)
    if isinstance(outcome, errors.BookingError):
        raise outcome
    return outcome


def _replayer(request: HoldRequest, fingerprint: str) -> Callable[[Connection], Booking]:
    def replay(conn: Connection) -> Booking:
        prior = idempotency.replay(conn, request.idempotency_key, OPERATION, fingerprint)
        assert prior is not None, "a key conflict implies a committed record"
        return prior

    return replay


def _take_units(conn: Connection, request: HoldRequest) -> bool:
    taken = conn.execute(
        _TAKE_UNITS,
        {"units": request.party_size, "resource_id": request.resource_id, "start": request.nights.start, "end": request.nights.end},
    ).all()
    # Partial success leaves some nights taken: the caller must roll back (never commit).
    return len(taken) == request.nights.count


def _diagnose(conn: Connection, request: HoldRequest) -> errors.BookingError:
    rows = conn.execute(
        _NIGHT_FREE, {"resource_id": request.resource_id, "start": request.nights.start, "end": request.nights.end}
    ).all()
    if len(rows) < request.nights.count:
        opened = {row.night for row in rows}
        missing = [night for night in request.nights.each() if night not in opened]
        return errors.NightsNotOpen(
            f"{request.resource_id} is not on sale for {len(missing)} night(s) from {missing[0].isoformat()}"
        )
    short = [row for row in rows if row.free < request.party_size]
    # Same snapshot as the failed UPDATE (SERIALIZABLE): some night must be short.
    assert short, "the conditional UPDATE failed although every night has room"
    worst = min(short, key=lambda row: row.free)
    return errors.SoldOut(
        f"{request.resource_id} has {worst.free} free unit(s) on {worst.night.isoformat()} "
        f"but {request.party_size} were asked ({len(short)} night(s) short)"
    )


def _new_booking(request: HoldRequest, now: datetime) -> Booking:
    total = request.unit_price_cents * request.party_size * request.nights.count
    return Booking(
        booking_id=str(uuid.uuid4()),
        basecamp_id=request.basecamp_id,
        resource_id=request.resource_id,
        nights=request.nights,
        party_size=request.party_size,
        customer_id=request.customer_id,
        state=BookingState.HELD,
        version=1,
        total_price_cents=total,
        currency=request.currency,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=request.ttl_seconds),
        history=(Transition(1, None, BookingState.HELD, now, "hold placed"),),
    )


def _params(request: HoldRequest, booking: Booking, fingerprint: str) -> dict[str, object]:
    record = idempotency.insert_params(request.idempotency_key, OPERATION, fingerprint, booking.created_at, result=booking)
    return {
        **record,
        "booking_id": booking.booking_id,
        "basecamp_id": booking.basecamp_id,
        "resource_id": booking.resource_id,
        "start": booking.nights.start,
        "end": booking.nights.end,
        "units": booking.party_size,
        "customer_id": booking.customer_id,
        "total_price_cents": booking.total_price_cents,
        "currency": booking.currency,
        "expires_at": booking.expires_at,
    }
