"""What each operator action does to one booking, and how its outcome is judged from the re-read.

Every effect is a step the cluster already takes, so the invariants guarded there hold
here (ARCHITECTURE.md §2):

- **retry** makes an awaiting settlement due now (``rows.due_now``): the basecamp owner's
  settlement loop charges and confirms it, or records the decline, as for any booking.
- **release** of a hold being paid goes through ``rows.release_unpaid`` towards
  ``refunding``, exactly as settlement gives a payment up: the booking's move is fenced
  by the lease (invariant 6), and the refund step, after the grace a charge still in
  flight needs to land, makes sure no charge stands (invariant 4). A charge that lands
  after the release finds the hold gone, and the settle flow refunds it itself. A plain
  hold is released by the ordinary fenced move. A trek leg is never released here: only
  the coordinator's decision moves a prepared leg (invariant 5).
- **refund** makes an owed refund due now, or, for a booking that is not confirmed and
  whose payment ended released (or was left awaiting behind a hold that ended), moves the
  settlement to ``refunding``, so the refund step reads the gateway's ledger.

:func:`begin` refuses (or finds nothing to do) before any effect, from the booking and
settlement as read; :func:`judge` says what happened from the state re-read afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from ridgeline.regional import errors
from ridgeline.regional.booking import transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking, BookingState
from ridgeline.regional.operator.model import Action, Result
from ridgeline.regional.settlement import rows
from ridgeline.regional.settlement.rows import Settlement, SettlementState
from ridgeline.regional.workflows.versions import TREK_V1
from ridgeline.routing.leases import Fence


@dataclass(frozen=True)
class Verdict:
    result: Result
    detail: str


@dataclass(frozen=True)
class Context:
    """What an effect needs besides the booking: who acts, why, under which leases, when."""

    engine: Engine
    actor: str
    reason: str
    action_id: str
    fence: Callable[[], Fence]
    now: datetime
    refund_grace_seconds: float


def begin(action: Action, booking: Booking, settlement: Settlement | None) -> Verdict | None:
    """The verdict when the action cannot or need not act on this booking; None: act."""
    return _BEGIN[action](booking, settlement)


def apply(action: Action, booking: Booking, settlement: Settlement | None, ctx: Context) -> None:
    """Takes the action's effect (after :func:`begin` said act)."""
    _APPLY[action](booking, settlement, ctx)


def waits_for(action: Action, before: Settlement | None, after: Settlement | None) -> bool:
    """Whether the re-read should wait longer: the step the action made due has not run yet."""
    if action is Action.RELEASE_HOLD or before is None or after is None:
        return False  # a release is done when apply returns
    # An open row whose attempts did not move has not taken the step yet (a failed step counts one).
    return after.state in rows.OPEN_STATES and after.attempts == before.attempts


def judge(action: Action, before: Settlement | None, booking: Booking, after: Settlement | None, waited_seconds: float) -> Verdict:
    """What the action achieved, from the booking and settlement re-read after it."""
    return _JUDGE[action](before, booking, after, waited_seconds)


# ---------------------------------------------------------------------------- retry


def _begin_retry(booking: Booking, s: Settlement | None) -> Verdict | None:
    if s is None:
        return Verdict(Result.REFUSED, f"booking {booking.booking_id} has no payment to retry (a plain hold, a trek leg, or paid at a desk)")
    if s.state is SettlementState.CONFIRMED:
        return Verdict(Result.ALREADY_DONE, f"already paid and {booking.state.value}")
    if s.state is not SettlementState.AWAITING_PAYMENT:
        return Verdict(Result.REFUSED, f"the payment ended {s.state.value} ({s.last_error or 'no error recorded'}); nothing to retry: RefundCharge drives a refund")
    return None


def _apply_retry(booking: Booking, s: Settlement | None, ctx: Context) -> None:
    assert s is not None
    rows.due_now(ctx.engine, booking.booking_id, SettlementState.AWAITING_PAYMENT, now=ctx.now)


def _judge_retry(before: Settlement | None, booking: Booking, s: Settlement | None, waited: float) -> Verdict:
    assert before is not None and s is not None, "a retried booking has its settlement"
    if s.state is SettlementState.CONFIRMED:
        return Verdict(Result.APPLIED, f"charged and {booking.state.value}")
    if s.state is SettlementState.AWAITING_PAYMENT:
        if s.attempts > before.attempts:
            return Verdict(Result.STILL_PENDING, f"still {booking.state.value}, payment awaiting after {s.attempts} attempt(s): {s.last_error or 'no error recorded'}")
        return Verdict(Result.STILL_PENDING, f"still {booking.state.value}, payment due now; no attempt ran within {waited:.0f} s (is the basecamp owner's settlement running?)")
    return Verdict(Result.APPLIED, f"the payment ended {s.state.value}: {s.last_error or 'no error recorded'}; the booking is {booking.state.value}")


# ---------------------------------------------------------------------------- release


def _begin_release(booking: Booking, s: Settlement | None) -> Verdict | None:
    if booking.state in (BookingState.RELEASED, BookingState.EXPIRED):
        return Verdict(Result.ALREADY_DONE, f"the hold already ended: {booking.state.value}")
    if booking.state is not BookingState.HELD:
        return Verdict(Result.REFUSED, f"booking {booking.booking_id} is {booking.state.value}, not held: CancelBooking cancels it (and refunds its payment)")
    if booking.workflow == TREK_V1:
        return Verdict(Result.REFUSED, f"booking {booking.booking_id} is a prepared trek leg: only its trek's decision moves it (abort the trek)")
    return None


def _apply_release(booking: Booking, s: Settlement | None, ctx: Context) -> None:
    reason = ctx.reason or f"released by {ctx.actor}"
    if s is not None and s.state is SettlementState.AWAITING_PAYMENT:
        rows.release_unpaid(
            ctx.engine, s, SettlementState.REFUNDING, reason, actor=ctx.actor, fence=ctx.fence(), now=ctx.now, grace_seconds=ctx.refund_grace_seconds
        )
        return
    try:
        transitions.apply_move(
            ctx.engine, transitions.RELEASE, booking_id=booking.booking_id, idempotency_key=f"operator:{ctx.action_id}",
            reason=reason, caller=Caller(ctx.actor), fence=ctx.fence(), now=ctx.now,
        )
    except errors.IllegalTransition:
        pass  # expired or confirmed meanwhile: the judge reports what it finds


def _judge_release(before: Settlement | None, booking: Booking, s: Settlement | None, waited: float) -> Verdict:
    if booking.state is BookingState.RELEASED:
        money = f"; payment {s.state.value}: any charge is refunded" if s is not None and s.state is not SettlementState.RELEASED else ""
        return Verdict(Result.APPLIED, f"hold released, its units free again{money}")
    if booking.state is BookingState.EXPIRED:
        return Verdict(Result.ALREADY_DONE, "the hold expired before the release landed")
    return Verdict(Result.REFUSED, f"booking became {booking.state.value} before the release landed")


# ---------------------------------------------------------------------------- refund


def _begin_refund(booking: Booking, s: Settlement | None) -> Verdict | None:
    if s is None:
        return Verdict(Result.REFUSED, f"booking {booking.booking_id} has no payment recorded here (a plain hold; a trek's charge is its coordinator's)")
    if s.state is SettlementState.REFUNDED:
        return Verdict(Result.ALREADY_DONE, f"no charge stands: refunded {s.last_error or ''}".rstrip())
    if booking.state in (BookingState.CONFIRMED, BookingState.HELD):
        return Verdict(Result.REFUSED, f"booking {booking.booking_id} is {booking.state.value}: its charge is owed; cancel or release it first")
    if s.state is SettlementState.CONFIRMED:
        return Verdict(Result.REFUSED, f"booking {booking.booking_id} is {booking.state.value} and its payment confirmed: the cancellation drives its refund")
    return None


def _apply_refund(booking: Booking, s: Settlement | None, ctx: Context) -> None:
    assert s is not None
    why = ctx.reason or f"refund requested by {ctx.actor}"
    if s.state is SettlementState.REFUNDING:
        rows.due_now(ctx.engine, booking.booking_id, SettlementState.REFUNDING, now=ctx.now)
    elif s.state is SettlementState.RELEASED:
        rows.refund_released(ctx.engine, booking.booking_id, why, now=ctx.now)
    else:  # awaiting behind a hold that ended: give the payment up as settlement would
        rows.release_unpaid(ctx.engine, s, SettlementState.REFUNDING, why, actor=ctx.actor, fence=ctx.fence(), now=ctx.now, grace_seconds=ctx.refund_grace_seconds)


def _judge_refund(before: Settlement | None, booking: Booking, s: Settlement | None, waited: float) -> Verdict:
    assert s is not None, "a refunded booking has its settlement"
    if s.state is SettlementState.REFUNDED:
        return Verdict(Result.APPLIED, f"no charge stands (booking {booking.state.value})")
    if s.state is SettlementState.REFUNDING:
        error = f": {s.last_error}" if s.last_error else ""
        return Verdict(Result.STILL_PENDING, f"refund still owed after {s.attempts} attempt(s){error}; within {waited:.0f} s it did not complete")
    return Verdict(Result.REFUSED, f"the payment became {s.state.value} before the refund")


_BEGIN = {Action.RETRY_SETTLEMENT: _begin_retry, Action.RELEASE_HOLD: _begin_release, Action.REFUND_CHARGE: _begin_refund}
_APPLY = {Action.RETRY_SETTLEMENT: _apply_retry, Action.RELEASE_HOLD: _apply_release, Action.REFUND_CHARGE: _apply_refund}
_JUDGE = {Action.RETRY_SETTLEMENT: _judge_retry, Action.RELEASE_HOLD: _judge_release, Action.REFUND_CHARGE: _judge_refund}
