"""settle@2: a deposit charged at booking, the balance on a durable timer, refunds by policy.

Its settlement steps build on settle@1's (flows/settle.py): the first step charges the
deposit share (key ``charge:<booking>``) instead of the whole price, and the confirm
also records the deposit and the balance due and schedules the reminder and balance
timers in its transaction (regional/settlement/deposits.py). The timers then fire in
:func:`fire_timers` runs, started by the node's settlement loop for the basecamps it owns:

* ``reminder`` (``reminder_days_before`` arrival): the guest's reminder to the outbox;
* ``balance`` (``balance_days_before`` arrival, basecamp-local midnight): charges the
  balance (key ``balance:<booking>``); a decline or an unknown outcome retries every
  ``balance_retry_seconds`` until the grace ends, then the booking is cancelled by the
  policy, whose refund the next settlement pass makes.

A cancelled settle@2 booking (by a desk, or by the policy) is refunded what the policy
does not keep (regional/settlement/terms.py), counted from the ledger so that the step
is idempotent: each refund's key names the charge and what it had refunded before.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from prefect import flow

from ridgeline.flows import runtime as runtimes
from ridgeline.flows import settle
from ridgeline.flows.crash_points import AFTER_BALANCE_CHARGE, crash_point
from ridgeline.flows.payments import PaymentError
from ridgeline.flows.runtime import SettlementRuntime
from ridgeline.flows.settle import Charged, Outcome, VersionSteps
from ridgeline.regional.booking.model import BookingState
from ridgeline.regional.errors import BookingError
from ridgeline.regional.settlement import deposits, terms
from ridgeline.regional.settlement.confirms import AndThen
from ridgeline.regional.settlement.rows import Settlement, SettlementState
from ridgeline.regional.storage.db import run_transaction
from ridgeline.regional.workflows import timers
from ridgeline.regional.workflows.timers import Timer
from ridgeline.regional.workflows.versions import SETTLE_V2

_log = logging.getLogger(__name__)


def _first_step(rt: SettlementRuntime, s: Settlement) -> Outcome | Charged:
    if s.state is SettlementState.REFUNDING and s.booking_state is BookingState.CANCELLED:
        return refund_by_policy(rt, s.booking_id)
    if s.state is SettlementState.AWAITING_PAYMENT:
        return settle._first_step(rt, s, amount_cents=deposits.stay_of(rt.engine, s.booking_id).plan().deposit_cents)
    return settle._first_step(rt, s)  # a charge whose hold is gone goes back whole, as in settle@1


def _confirm_writes(rt: SettlementRuntime, s: Settlement) -> AndThen:
    """The deposit, the balance due and the timers, written in the booking's confirm transaction."""
    found = deposits.stay_of(rt.engine, s.booking_id)
    return deposits.confirmed_with_timers(found.plan(), found.time_zone, actor=rt.actor, now=rt.clock())


#: What settle_batch runs for settle@2 bookings.
STEPS = VersionSteps(_first_step, _confirm_writes)


def refund_by_policy(rt: SettlementRuntime, booking_id: str) -> Outcome:
    """Refunds what the cancellation policy does not keep, balance charge first, then the deposit."""
    found = deposits.stay_of(rt.engine, booking_id)
    assert found.state is BookingState.CANCELLED and found.cancelled_at is not None, f"{booking_id} is {found.state}: nothing to refund by policy"
    charges = sorted((c for c in rt.gateway.list_charges(reference=booking_id) if c.status == "succeeded"), key=lambda c: c.created_at, reverse=True)
    paid = min(sum(c.amount_cents for c in charges), found.total_cents)
    days = terms.days_before_arrival(found.first_night, found.time_zone, found.cancelled_at)
    kept = terms.kept_cents(found.terms, total_cents=found.total_cents, paid_cents=paid, days_before=days)
    excess = sum(c.amount_cents - c.refunded_cents for c in charges) - kept
    for charge in charges:
        part = min(excess, charge.amount_cents - charge.refunded_cents)
        if part > 0:
            rt.gateway.refund(f"refund:{booking_id}:{charge.charge_id}:{charge.refunded_cents}", charge.charge_id, part)
            excess -= part
    percent = terms.refund_percent(found.terms, days)
    detail = f"cancelled {days} day(s) before arrival: {percent}% refund, {kept} kept"
    deposits.refunded_by_policy(rt.engine, booking_id, paid - kept, detail, actor=rt.actor, now=rt.clock())
    return Outcome.REFUNDED


@flow(name="fire-timers", log_prints=False, persist_result=False)
def fire_timers(runtime: str, claimed: list[list[str]]) -> dict[str, str]:
    """Fires the claimed timers (``[booking id, step]`` pairs); returns each one's outcome."""
    rt = runtimes.lookup(runtime)
    wanted = {(b, step) for b, step in claimed}
    found = [t for t in run_transaction(rt.engine, lambda conn: timers.pending(conn, sorted({b for b, _ in wanted}))) if (t.booking_id, t.step) in wanted]
    if not found:
        return {}
    # Gateway calls overlap their latency, as settle_batch's do; each timer's writes are its own.
    with ThreadPoolExecutor(min(rt.policy.concurrency_max, len(found)), thread_name_prefix="timers") as pool:
        outcomes = list(pool.map(lambda t: _fire_one(rt, t), found))
    return {f"{t.booking_id}:{t.step}": outcome for t, outcome in zip(found, outcomes)}


def _fire_one(rt: SettlementRuntime, timer: Timer) -> str:
    """A failure of one timer never stops the batch: its claim lapses and a later tick retries it."""
    try:
        return fire(rt, timer)
    except (BookingError, PaymentError) as error:
        _log.warning("timer %s of %s: %s; due again after its claim", timer.step, timer.booking_id, error)
        return Outcome.RETRY.value


def fire(rt: SettlementRuntime, timer: Timer) -> str:
    """One timer's step, by settle@2's code only; any failure leaves it due again after its claim."""
    if timer.workflow != SETTLE_V2 or timer.workflow not in rt.workflows:
        return Outcome.LEFT_ALONE.value
    now = rt.clock()
    if timer.step == timers.REMINDER:
        deposits.remind(rt.engine, timer, actor=rt.actor, now=now)
        return deposits.REMINDER_SENT
    assert timer.step == timers.BALANCE, timer.step
    found = deposits.stay_of(rt.engine, timer.booking_id)
    if found.state is not BookingState.CONFIRMED:
        deposits.ended(rt.engine, timer, now=now)
        return Outcome.DONE_ALREADY.value
    plan = found.plan()
    assert plan.cancel_after is not None and plan.balance_cents > 0, f"{timer.booking_id} has no balance to charge"
    if now >= plan.cancel_after:
        deposits.cancel_by_policy(
            rt.engine, timer, f"balance unpaid {found.terms.grace_days} day(s) after it was due", actor=rt.actor, fence=rt.fence(), now=now
        )
        return deposits.CANCELLED_BY_POLICY
    try:
        charge = rt.gateway.charge(deposits.balance_key(timer.booking_id), plan.balance_cents, found.currency, reference=timer.booking_id)
    except PaymentError as error:
        next_at = min(now + timedelta(seconds=rt.policy.balance_retry_seconds), plan.cancel_after)
        deposits.balance_declined(rt.engine, timer, str(error), actor=rt.actor, now=now, next_at=next_at)
        return deposits.BALANCE_DECLINED
    crash_point(AFTER_BALANCE_CHARGE)
    deposits.balance_charged(rt.engine, timer, charge.charge_id, plan.balance_cents, actor=rt.actor, now=rt.clock())
    return deposits.BALANCE_CHARGED
