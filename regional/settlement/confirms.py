"""Settlement's confirm: a charged booking becomes confirmed, its settlement row confirmed and
its guest's message enqueued, in one transaction, one booking at a time or a batch at once.

:func:`confirm_paid` is the booking state machine's CONFIRM move (``transitions.apply_move``)
with settlement's writes beside it. :func:`confirm_paid_batch` does the same for every
booking of a batch in one set-based statement, because one booking after another cost
~11 ms each (BENCHMARKS.md, ``bench settle``): the statement moves exactly the bookings
the single move would move (still held, hold not lapsed, the basecamp's lease still at
the writer's epoch: each row decided by its own predicate), appends their history rows,
moves their units, marks their settlements confirmed and enqueues their messages; then
one statement writes their idempotency records, under the keys and fingerprints the
single move uses. Bookings the statement did not move are left exactly as they were: the
caller confirms those one by one, which names why each one cannot be confirmed (NotOwner,
HoldExpired, IllegalTransition) or answers one that is confirmed already.

Why that is as safe as one booking at a time:

* all-or-nothing per booking: the writes of a booking are rows of one transaction, and a
  booking that fails its predicate contributes no row to any of them;
* fenced (invariant 6): the same ``fenced_sql`` predicate as every move, per row, under
  SERIALIZABLE, so a concurrent takeover orders before the batch (its rows are left
  alone) or after it;
* a lost COMMIT is resolved by the keys: the batch gives up and the per-booking confirm of
  each booking runs ``run_keyed`` with the same key, which meets the record of a commit
  that landed and answers it, or applies the move once;
* SIGKILL at any line leaves the batch committed whole or not at all; the charges are
  keyed, so a successor charges again with no second effect and confirms.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from ridgeline.regional import errors
from ridgeline.regional.booking import history, idempotency, ownership, queries, transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking, BookingState
from ridgeline.regional.settlement.rows import CONFIRMED_MESSAGE, Settlement, enqueue, move
from ridgeline.regional.settlement.rows import SettlementState as State
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing.leases import Fence, fence_json

#: The reason on a settlement confirm's history row (and in its idempotency fingerprint).
REASON = "paid"

#: What a version adds to a booking's confirm transaction (settle@2: its steps and timers).
AndThen = Callable[[Connection, Booking], None]


def confirm_key(booking_id: str) -> str:
    """The idempotency key of a booking's settlement confirm, single or batched."""
    return f"settle:confirm:{booking_id}"


@dataclass(frozen=True)
class Paid:
    """A charged booking waiting for its confirm: the charge, and what its version adds."""

    settlement: Settlement
    charge_id: str
    and_then: AndThen | None = None


def confirm_paid(
    engine: Engine,
    settlement: Settlement,
    charge_id: str,
    *,
    actor: str,
    fence: Fence,
    now: datetime,
    and_then: AndThen | None = None,
) -> Booking:
    """Confirms the booking, marks the settlement confirmed and enqueues the guest's message:
    one transaction. Raises HoldExpired / IllegalTransition when the hold is gone. ``actor``:
    the settling node's (``node:<id>``), named on the confirm's history row. ``and_then``
    adds a version's own writes to that transaction (settle@2: its steps and timers)."""

    def paid(conn: Connection, booking: Booking) -> None:
        move(conn, settlement.booking_id, State.CONFIRMED, {State.AWAITING_PAYMENT}, now=now, attempted=1, charge_id=charge_id or None)
        enqueue(conn, booking.booking_id, CONFIRMED_MESSAGE, _message(booking, settlement, charge_id), now=now)
        if and_then is not None:
            and_then(conn, booking)

    return transitions.apply_move(
        engine,
        transitions.CONFIRM,
        booking_id=settlement.booking_id,
        idempotency_key=confirm_key(settlement.booking_id),
        reason=REASON,
        caller=Caller(actor),
        fence=fence,
        now=now,
        also=paid,
    )


def confirm_paid_batch(engine: Engine, batch: Sequence[Paid], *, actor: str, fence: Fence, now: datetime) -> dict[str, Booking]:
    """Confirms every booking of ``batch`` that can be confirmed now, in one transaction;
    returns those, by booking id. The others are untouched, for :func:`confirm_paid` to
    answer one by one. Returns nothing when the batch's transaction failed or its commit
    was lost: the per-booking confirm then resolves each booking by its key."""
    if not batch:
        return {}
    assert not Caller(actor).restricted, "a node confirms its own bookings: no reach check (transitions.out_of_reach) is skipped"
    assert len({p.settlement.booking_id for p in batch}) == len(batch), "a booking appears once in a batch"
    items = [
        {"booking_id": p.settlement.booking_id, "charge_id": p.charge_id, "amount_cents": p.settlement.amount_cents, "currency": p.settlement.currency}
        for p in batch
    ]
    params = {
        "items": json.dumps(items), "actor": actor, "fence": fence_json(fence), "now": now, "reason": REASON,
        "source": BookingState.HELD.value, "target": BookingState.CONFIRMED.value, "kind": CONFIRMED_MESSAGE,
    }  # fmt: skip
    and_then = {p.settlement.booking_id: p.and_then for p in batch if p.and_then is not None}

    def work(conn: Connection) -> dict[str, Booking]:
        rows = conn.execute(_CONFIRM_BATCH, params).all()
        if not rows:
            return {}
        counts = rows[0]
        assert counts.histories == len(rows), "a move writes exactly one history row"
        assert counts.nights_moved == counts.nights_wanted, f"moved units on {counts.nights_moved} of {counts.nights_wanted} (resource, night) rows"
        confirmed = queries.get_bookings(conn, [str(r.booking_id) for r in rows])
        assert all(b.state is BookingState.CONFIRMED for b in confirmed.values()) and len(confirmed) == len(rows)
        for booking_id, booking in confirmed.items():
            if booking_id in and_then:
                and_then[booking_id](conn, booking)
        idempotency.record_results(
            conn, transitions.CONFIRM.operation, now, [(confirm_key(b), _fingerprint(b), booking) for b, booking in confirmed.items()]
        )
        return confirmed

    try:
        return run_transaction(engine, work, operation="settlement.confirm_batch")
    except errors.BookingError:  # contention past the retries, the database away, a lost COMMIT
        return {}
    except IntegrityError as error:  # a record under one of the keys: that booking's first confirm answers it
        if not idempotency.is_key_conflict(error):
            raise
        return {}


def _fingerprint(booking_id: str) -> str:
    """What :func:`transitions.apply_move` fingerprints for this confirm (a repeat of the key
    by the single confirm must find the same request)."""
    return idempotency.fingerprint(transitions.CONFIRM.operation, {"booking_id": booking_id, "reason": REASON})


def _message(booking: Booking, settlement: Settlement, charge_id: str) -> dict[str, object]:
    """The guest's confirmation message (the batch builds the same document in SQL)."""
    return {
        "booking_id": booking.booking_id,
        "customer_id": booking.customer_id,
        "basecamp_id": booking.basecamp_id,
        "resource_id": booking.resource_id,
        "first_night": booking.nights.start.isoformat(),
        "end_night": booking.nights.end.isoformat(),
        "party_size": booking.party_size,
        "amount_cents": settlement.amount_cents,
        "currency": settlement.currency,
        "charge_id": charge_id,
    }


# The CONFIRM move (transitions._MOVE) over a batch, with settlement's writes
# (confirm_paid's ``paid``) beside it. Units are summed per (resource, night) first: two
# bookings of the batch on one inventory row must both move their units, and an UPDATE
# ... FROM joining one row twice updates it once.
_CONFIRM_BATCH = text(
    f"""
    WITH wanted AS (
        SELECT CAST(w.booking_id AS UUID) AS booking_id, w.charge_id, w.amount_cents, w.currency
        FROM jsonb_to_recordset(CAST(:items AS JSONB)) AS w(booking_id TEXT, charge_id TEXT, amount_cents BIGINT, currency TEXT)
    ), moved AS (
        UPDATE bookings
        SET state = :target, version = bookings.version + 1, updated_at = :now
        FROM wanted AS w
        WHERE bookings.booking_id = w.booking_id AND bookings.state = :source AND bookings.expires_at > :now
          AND {ownership.fenced_sql("bookings.basecamp_id")}
        RETURNING bookings.booking_id, bookings.basecamp_id, bookings.resource_id, bookings.first_night, bookings.end_night,
                  bookings.party_size, bookings.version, bookings.customer_id, w.charge_id, w.amount_cents, w.currency
    ), history AS (
        {history.insert_sql(
            source="FROM moved", from_state=":source", to_state=":target", reason=":reason", actor=":actor",
            lease_epoch=ownership.fence_epoch_sql("basecamp_id"),
        )}
        RETURNING 1
    ), nights AS (
        SELECT m.resource_id, CAST(n AS DATE) AS night, SUM(m.party_size) AS units
        FROM moved AS m
        CROSS JOIN LATERAL generate_series(
            CAST(m.first_night AS TIMESTAMP), CAST(m.end_night AS TIMESTAMP) - INTERVAL '1 day', INTERVAL '1 day'
        ) AS n
        GROUP BY m.resource_id, CAST(n AS DATE)
    ), units AS (
        UPDATE inventory AS i
        SET held = i.held - n.units, booked = i.booked + n.units
        FROM nights AS n
        WHERE i.resource_id = n.resource_id AND i.night = n.night
        RETURNING 1
    ), paid AS (
        UPDATE settlements AS s
        SET state = 'confirmed', attempts = s.attempts + 1, last_error = '',
            charge_id = COALESCE(NULLIF(m.charge_id, ''), s.charge_id), next_attempt_at = :now, updated_at = :now
        FROM moved AS m
        WHERE s.booking_id = m.booking_id AND s.state = 'awaiting_payment'
    ), messages AS (
        INSERT INTO outbox (message_id, booking_id, kind, payload, created_at)
        SELECT :kind || ':' || CAST(m.booking_id AS TEXT), m.booking_id, :kind,
               jsonb_build_object(
                   'booking_id', CAST(m.booking_id AS TEXT), 'customer_id', m.customer_id, 'basecamp_id', m.basecamp_id,
                   'resource_id', m.resource_id, 'first_night', to_char(m.first_night, 'YYYY-MM-DD'),
                   'end_night', to_char(m.end_night, 'YYYY-MM-DD'), 'party_size', m.party_size,
                   'amount_cents', m.amount_cents, 'currency', m.currency, 'charge_id', m.charge_id
               ),
               :now
        FROM moved AS m
        ON CONFLICT (message_id) DO NOTHING
    )
    SELECT m.booking_id,
           (SELECT count(*) FROM history) AS histories,
           (SELECT count(*) FROM units) AS nights_moved,
           (SELECT count(*) FROM nights) AS nights_wanted
    FROM moved AS m
    """
)
