"""settle@2's durable steps: deposit at booking, balance on a timer, cancellation by policy.

Each function is one transaction that moves the booking's workflow on and records the
step on its timeline (regional/workflows/steps.py) in the same commit, guarded so that a
re-run after a SIGKILL has no second effect: the confirm by the settlement row's state
(confirms.confirm_paid), a timer's effect by the timer's ``fired_at IS NULL``
(timers.fired), a cancellation by the booking's state (transitions.CANCEL). Gateway
calls happen between these transactions with keys from the booking and the step
(``charge:<id>`` for the deposit, ``balance:<id>``, refunds keyed by the charge and what
it had refunded before), never inside one (ARCHITECTURE.md §3). The flow side is
flows/deposit.py.

Fencing (invariant 6): the confirm and the cancel move the booking and carry the
basecamp's epoch; the timer claim is fenced; a reminder and a balance's record write
facts a keyed call made true, guarded by the timer row, like settlement's own steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, text

from ridgeline.regional.booking import transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking, BookingState
from ridgeline.regional.settlement import rows, terms
from ridgeline.regional.storage.db import run_transaction
from ridgeline.regional.workflows import steps, timers
from ridgeline.regional.workflows.timers import Timer
from ridgeline.routing.leases import Fence

DEPOSIT_CHARGED = "deposit charged"
BALANCE_DUE = "balance due"
REMINDER_SENT = "reminder sent"
BALANCE_DECLINED = "balance declined"
BALANCE_CHARGED = "balance charged"
CANCELLED_BY_POLICY = "cancelled by policy"
REFUNDED_BY_POLICY = "refunded by policy"
#: Every step settle@2 may record, in the order a booking meets them (the audit's list).
STEPS = (DEPOSIT_CHARGED, BALANCE_DUE, REMINDER_SENT, BALANCE_DECLINED, BALANCE_CHARGED, CANCELLED_BY_POLICY, REFUNDED_BY_POLICY)
REMINDER_MESSAGE = "balance_reminder"


def balance_key(booking_id: str) -> str:
    return f"balance:{booking_id}"


@dataclass(frozen=True)
class Stay:
    """What settle@2 needs to know of a booking to apply its terms."""

    booking_id: str
    basecamp_id: str
    state: BookingState
    total_cents: int
    currency: str
    first_night: date
    time_zone: str
    terms: terms.Terms
    #: When it was cancelled (its history's cancel row), else None.
    cancelled_at: datetime | None
    created_at: datetime

    def plan(self) -> terms.Plan:
        """The booking's plan, a function of when it was booked (so every step agrees on it)."""
        return terms.plan(self.terms, total_cents=self.total_cents, first_night=self.first_night, time_zone=self.time_zone, now=self.created_at)


_STAY = text(
    """
    SELECT b.booking_id, b.basecamp_id, b.state, b.total_price_cents, b.currency, b.first_night, c.time_zone, b.created_at,
           (SELECT max(h.at) FROM booking_history AS h WHERE h.booking_id = b.booking_id AND h.to_state = 'cancelled') AS cancelled_at
    FROM bookings AS b JOIN basecamps AS c USING (basecamp_id) WHERE b.booking_id = :booking_id
    """
)


def stay(conn: Connection, booking_id: str) -> Stay:
    row = conn.execute(_STAY, {"booking_id": booking_id}).one()
    return Stay(
        str(row.booking_id), row.basecamp_id, BookingState(row.state), row.total_price_cents, row.currency,
        row.first_night, row.time_zone, terms.load(conn, row.basecamp_id), row.cancelled_at, row.created_at,
    )


def stay_of(engine: Engine, booking_id: str) -> Stay:
    return run_transaction(engine, lambda conn: stay(conn, booking_id))


def confirmed_with_timers(plan: terms.Plan, time_zone: str, *, actor: str, now: datetime) -> Callable[[Connection, Booking], None]:
    """What settle@2 writes in its confirm's transaction (confirms.confirm_paid ``and_then``, also batched): the
    deposit and the balance due on its timeline, and the reminder and balance timers."""

    def scheduled(conn: Connection, booking: Booking) -> None:
        steps.record(conn, booking.booking_id, DEPOSIT_CHARGED, at=now, actor=actor, amount_cents=plan.deposit_cents)
        if plan.balance_due_at is None:
            return
        local = plan.balance_due_at.astimezone(ZoneInfo(time_zone)).date()
        steps.record(conn, booking.booking_id, BALANCE_DUE, at=now, actor=actor, amount_cents=plan.balance_cents, detail=f"on {local.isoformat()}")
        timers.schedule(conn, booking.booking_id, timers.BALANCE, plan.balance_due_at)
        if plan.reminder_at is not None:
            timers.schedule(conn, booking.booking_id, timers.REMINDER, plan.reminder_at)

    return scheduled


def remind(engine: Engine, timer: Timer, *, actor: str, now: datetime) -> bool:
    """Fires the reminder: the guest's message to the outbox and the step, once; nothing for a
    booking no longer confirmed or whose balance is paid already. Returns whether this call fired it."""

    def work(conn: Connection) -> bool:
        if not timers.fired(conn, timer, now=now):
            return False
        found = stay(conn, timer.booking_id)
        paid_already = BALANCE_CHARGED in {s.step for s in steps.of(conn, [timer.booking_id]).get(timer.booking_id, [])}
        if found.state is BookingState.CONFIRMED and not paid_already:
            payload = {"booking_id": found.booking_id, "first_night": found.first_night.isoformat(), "currency": found.currency}
            rows.enqueue(conn, found.booking_id, REMINDER_MESSAGE, payload, now=now)
            steps.record(conn, found.booking_id, REMINDER_SENT, at=now, actor=actor)
        return True

    return run_transaction(engine, work)


def balance_charged(engine: Engine, timer: Timer, charge_id: str, amount_cents: int, *, actor: str, now: datetime) -> None:
    def work(conn: Connection) -> None:
        timers.fired(conn, timer, now=now)
        steps.record(conn, timer.booking_id, BALANCE_CHARGED, at=now, actor=actor, amount_cents=amount_cents, detail=charge_id)

    run_transaction(engine, work)


def balance_declined(engine: Engine, timer: Timer, reason: str, *, actor: str, now: datetime, next_at: datetime) -> None:
    """The balance charge failed: the first failure goes on the timeline, the timer retries at ``next_at``."""
    run_transaction(engine, lambda conn: steps.record(conn, timer.booking_id, BALANCE_DECLINED, at=now, actor=actor, detail=reason[:200]))
    timers.retry_later(engine, timer, reason, next_at=next_at)


def ended(engine: Engine, timer: Timer, *, now: datetime) -> None:
    """The timer's booking is no longer confirmed: the timer fires with no effect."""
    run_transaction(engine, lambda conn: timers.fired(conn, timer, now=now))


def cancel_by_policy(engine: Engine, timer: Timer, reason: str, *, actor: str, fence: Fence, now: datetime) -> Booking:
    """The balance is unpaid past the grace: the booking is cancelled (fenced), its refund by
    the policy becomes due and its timers end, with the step: one transaction."""

    def cancelled(conn: Connection, booking: Booking) -> None:
        cancel_effects(conn, booking)
        steps.record(conn, booking.booking_id, CANCELLED_BY_POLICY, at=now, actor=actor, detail=reason[:200])

    return transitions.apply_move(
        engine, transitions.CANCEL, booking_id=timer.booking_id, idempotency_key=f"settle:policy-cancel:{timer.booking_id}",
        reason=reason, caller=Caller(actor), fence=fence, now=now, also=cancelled,
    )


def cancel_effects(conn: Connection, booking: Booking) -> None:
    """What a cancellation of a paid booking does in its transaction, for every version: the
    refund becomes due (settle@2 refunds by its policy) and pending timers end."""
    rows.refund_cancelled(conn, booking)
    timers.cancel_pending(conn, booking.booking_id, now=booking.updated_at, why="booking cancelled")


def refunded_by_policy(engine: Engine, booking_id: str, refund_cents: int, detail: str, *, actor: str, now: datetime) -> None:
    """No more than the policy keeps stands: the settlement row says refunded, with the step."""

    def work(conn: Connection) -> None:
        rows.mark_refunded(conn, booking_id, now=now, note=detail)
        steps.record(conn, booking_id, REFUNDED_BY_POLICY, at=now, actor=actor, amount_cents=refund_cents, detail=detail)

    run_transaction(engine, work)

