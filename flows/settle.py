"""The settle flow: one Prefect flow run per batch of bookings awaiting payment or refund.

For each booking (ARCHITECTURE.md §4: never one flow run per booking):
charge (key ``charge:<booking id>``) → confirm + outbox message in one transaction →
deliver the outbox. A definitive decline releases the hold. A payment whose outcome stays
unknown for ``charge_passes_max`` passes gives up: the hold is released and the refund
step makes sure nothing stays charged. A charge whose confirm is impossible (the hold
lapsed or was released meanwhile) is refunded (key ``refund:<booking id>``).

Every step reads its starting point from the settlement row and is idempotent, so a run
killed at any line (see crash_points) is finished by the next run over the same rows.
Each booking is visible in Prefect: the run's parameters list the booking ids, and its
table artifact the outcome of each. Each step is also a span of the booking's own trace
(``ridgeline.tracing``), continued from the Book call that wrote its row. (Not tags: Prefect indexes a run's tags in one
B-tree entry, and a batch of 113 booking tags made the API answer 500.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from prefect import flow
from prefect.artifacts import create_table_artifact

from ridgeline import tracing
from ridgeline.flows import runtime as runtimes
from ridgeline.flows.crash_points import AFTER_CHARGE, AFTER_CONFIRM, crash_point
from ridgeline.flows.payments import PaymentDeclined, PaymentError, PaymentUnavailable
from ridgeline.flows.runtime import SettlementRuntime
from ridgeline.regional.booking.model import BookingState
from ridgeline.regional.errors import BookingError, IllegalTransition
from ridgeline.regional.settlement import confirms
from ridgeline.regional.settlement import rows as settlements
from ridgeline.regional.settlement.confirms import AndThen
from ridgeline.regional.settlement.rows import Settlement, SettlementState
from ridgeline.regional.storage.db import read_transaction
from ridgeline.regional.workflows.versions import SETTLE_V1, SETTLE_V2

_log = logging.getLogger(__name__)
T = TypeVar("T")


class Outcome(StrEnum):
    CONFIRMED = "confirmed"
    RELEASED = "released"
    REFUNDED = "refunded"
    RETRY = "retry later"
    DONE_ALREADY = "nothing to do"
    #: The booking runs a version this process does not run: never touched here.
    LEFT_ALONE = "left alone (version not run here)"


@flow(name="settle", log_prints=False, persist_result=False)
def settle_batch(runtime: str, booking_ids: list[str], basecamps: list[str]) -> dict[str, str]:
    """Settles the given bookings, then delivers the outbox of ``basecamps``; returns each booking's outcome.

    Gateway calls overlap (their latency dominates); the confirms that follow are one
    transaction for the whole batch (``confirm_batch_max`` bookings at a time), and only
    the bookings it could not confirm are confirmed, or refused, one after another.
    Concurrent SERIALIZABLE confirms would conflict on shared index pages and retry each
    other (measured: ~2 rollbacks per booking at 32 at once); one after another they
    cost ~11 ms each (BENCHMARKS.md).
    """
    rt = runtimes.lookup(runtime)
    found = read_transaction(rt.engine, lambda conn: settlements.get(conn, booking_ids))
    # Only the code of a booking's own version advances it (ARCHITECTURE.md §11).
    steps = {v: steps_of(v) for v in rt.workflows}
    outcomes: dict[str, str] = {b: Outcome.LEFT_ALONE.value for b, s in found.items() if steps.get(s.workflow) is None}
    rows = {b: s for b, s in found.items() if b not in outcomes}
    if rows:
        with ThreadPoolExecutor(min(rt.policy.concurrency_max, len(rows)), thread_name_prefix="settle") as pool:
            first_steps = list(pool.map(lambda s: _step(rt, s, "settle.pay", lambda: steps[s.workflow].first_step(rt, s)), rows.values()))
        outcomes.update({s.booking_id: step.value for s, step in zip(rows.values(), first_steps) if not isinstance(step, Charged)})
        charged = [(s, step) for s, step in zip(rows.values(), first_steps) if isinstance(step, Charged)]
        outcomes.update(_confirm_charged(rt, steps, charged))
    deliver_outbox(rt, basecamps)
    if outcomes:
        record_outcomes(outcomes)
    return outcomes


def record_outcomes(outcomes: dict[str, str]) -> None:
    """The run's table artifact: each booking's outcome, where an operator reads it in Prefect
    (also what ``bench settle``'s floor pays for in each empty run)."""
    create_table_artifact(
        table=[{"booking": booking_id, "outcome": outcome} for booking_id, outcome in outcomes.items()],
        description=f"settlement of {len(outcomes)} booking(s)",
    )


@dataclass(frozen=True)
class VersionSteps:
    """The two steps of a settle version a batch takes: the first (refund, charge or give
    up), and what the version writes in the confirm's transaction after a charge (None:
    nothing beyond settle@1's confirm)."""

    first_step: Callable[[SettlementRuntime, Settlement], "Outcome | Charged"]
    confirm_writes: Callable[[SettlementRuntime, Settlement], AndThen] | None = None


@dataclass(frozen=True)
class Charged:
    """The gateway took the payment; the booking still needs its confirm."""

    charge_id: str


def _step(rt: SettlementRuntime, s: Settlement, name: str, step: Callable[[], T]) -> T | Outcome:
    """Runs one step, as span ``name`` of the booking's own trace (the Book's, kept in its
    row); a failure of one booking never stops the batch, the next pass retries it."""
    try:
        with tracing.span_continuing(name, s.trace_parent, {"ridgeline.booking_id": s.booking_id}):
            return step()
    except (BookingError, PaymentError) as error:  # the database or gateway failed in between
        _log.warning("settlement of %s: %s; next pass retries", s.booking_id, error)
        settlements.retry_later(rt.engine, s, str(error), now=rt.clock(), delay_seconds=rt.policy.retry_delay_seconds(s.attempts + 1))
        return Outcome.RETRY


def _confirm_charged(rt: SettlementRuntime, steps: dict[str, VersionSteps], charged: list[tuple[Settlement, Charged]]) -> dict[str, str]:
    """Confirms the charged bookings: every one that can be confirmed now in one batch
    transaction per ``confirm_batch_max``, then each one the batch left (its fence stale,
    its hold lapsed or released, the batch's transaction failed) on its own, which refunds
    a charge whose confirm is impossible; returns each booking's outcome."""
    outcomes: dict[str, str] = {}
    paid: list[confirms.Paid] = []
    for s, step in charged:
        crash_point(AFTER_CHARGE)
        prepare = steps[s.workflow].confirm_writes
        writes = None if prepare is None else _step(rt, s, "settle.confirm_writes", lambda: prepare(rt, s))
        if writes is Outcome.RETRY:
            outcomes[s.booking_id] = Outcome.RETRY.value
        else:
            paid.append(confirms.Paid(s, step.charge_id, writes))
    limit = rt.policy.confirm_batch_max
    for chunk in (paid[i : i + limit] for i in range(0, len(paid), limit)):
        confirmed = _confirm_batch(rt, chunk) if len(chunk) > 1 else set()
        for p in chunk:
            if p.settlement.booking_id in confirmed:
                crash_point(AFTER_CONFIRM)
                outcomes[p.settlement.booking_id] = Outcome.CONFIRMED.value
            else:
                s, charge_id, writes = p.settlement, p.charge_id, p.and_then
                outcomes[s.booking_id] = _step(rt, s, "settle.confirm", lambda: _confirm(rt, s, charge_id, and_then=writes)).value
    return outcomes


def _confirm_batch(rt: SettlementRuntime, chunk: list[confirms.Paid]) -> set[str]:
    """The bookings of ``chunk`` one transaction confirmed; each booking's part is a span of
    its own trace, as when it is confirmed alone."""
    with ExitStack() as spans:
        for p in chunk:
            spans.enter_context(tracing.span_continuing("settle.confirm", p.settlement.trace_parent, {"ridgeline.booking_id": p.settlement.booking_id}))
        return set(confirms.confirm_paid_batch(rt.engine, chunk, actor=rt.actor, fence=rt.fence(), now=rt.clock()))


def _first_step(rt: SettlementRuntime, s: Settlement, amount_cents: int | None = None) -> Outcome | Charged:
    """Refund, or charge (confirm follows), or what ends an unpaid booking. ``amount_cents``:
    what the charge takes (settle@1: the whole price; settle@2: its deposit)."""
    if s.state is SettlementState.REFUNDING:
        return refund(rt, s)
    if s.state is not SettlementState.AWAITING_PAYMENT:
        return Outcome.DONE_ALREADY
    policy, now = rt.policy, rt.clock()
    if s.booking_state is not BookingState.HELD or (s.expires_at - now).total_seconds() < policy.confirm_margin_seconds:
        return _give_up(rt, s, f"hold {s.booking_state.value} before payment completed")
    amount = s.amount_cents if amount_cents is None else amount_cents
    if amount == 0:
        return Charged("")
    try:
        charge = rt.gateway.charge(settlements.charge_key(s.booking_id), amount, s.currency, reference=s.booking_id)
    except PaymentDeclined as error:
        settlements.release_unpaid(
            rt.engine, s, SettlementState.RELEASED, f"payment declined ({error.code or 'declined'})", actor=rt.actor, fence=rt.fence(), now=rt.clock()
        )
        return Outcome.RELEASED
    except PaymentUnavailable as error:
        if s.attempts + 1 >= policy.charge_passes_max:
            return _give_up(rt, s, f"payment unavailable after {s.attempts + 1} passes: {error}")
        settlements.retry_later(rt.engine, s, str(error), now=rt.clock(), delay_seconds=policy.retry_delay_seconds(s.attempts + 1))
        return Outcome.RETRY
    return Charged(charge.charge_id)


def _confirm(rt: SettlementRuntime, s: Settlement, charge_id: str, and_then: AndThen | None = None) -> Outcome:
    """Confirms one booking after its charge; ``and_then`` adds a version's writes to the confirm's transaction."""
    try:
        confirms.confirm_paid(rt.engine, s, charge_id, actor=rt.actor, fence=rt.fence(), now=rt.clock(), and_then=and_then)
    except IllegalTransition as error:  # the hold lapsed or was released while the charge was out
        settlements.refunding(rt.engine, s, charge_id, f"charged but not confirmable: {error}", now=rt.clock(), grace_seconds=0)
        return refund(rt, s)
    crash_point(AFTER_CONFIRM)
    return Outcome.CONFIRMED


def _give_up(rt: SettlementRuntime, s: Settlement, reason: str) -> Outcome:
    """Releases the hold (if it still stands) and leaves the refund step to make sure
    nothing stays charged, after the grace a charge still in flight needs to land."""
    settlements.release_unpaid(
        rt.engine, s, SettlementState.REFUNDING, reason, actor=rt.actor, fence=rt.fence(), now=rt.clock(), grace_seconds=rt.policy.refund_grace_seconds
    )
    return Outcome.RELEASED


def refund(rt: SettlementRuntime, s: Settlement) -> Outcome:
    """Refunds every charge the gateway holds for the booking; then no charge stands."""
    for charge in rt.gateway.list_charges(reference=s.booking_id):
        if charge.status == "succeeded" and charge.refunded_cents < charge.amount_cents:
            assert charge.refunded_cents == 0, f"{charge.charge_id} partly refunded: only refund:<booking> ever refunds it"
            rt.gateway.refund(settlements.refund_key(s.booking_id), charge.charge_id, charge.amount_cents)
    settlements.refunded(rt.engine, s.booking_id, now=rt.clock())
    return Outcome.REFUNDED


def deliver_outbox(rt: SettlementRuntime, basecamps: list[str]) -> int:
    """Delivers the undelivered messages of ``basecamps`` (also ones a killed run left)."""
    messages = settlements.undelivered(rt.engine, basecamps=basecamps, limit=rt.policy.deliver_batch_max)
    if messages:
        # Each delivery waits on its own fsync: overlap them instead of queueing them.
        with ThreadPoolExecutor(min(rt.policy.concurrency_max, len(messages)), thread_name_prefix="deliver") as pool:
            list(pool.map(rt.spool.deliver, messages))
    settlements.mark_delivered(rt.engine, [m.message_id for m in messages], now=rt.clock())
    return len(messages)


def steps_of(version: str) -> VersionSteps | None:
    """The steps that advance bookings of ``version``; None for a version with no settle steps."""
    if version == SETTLE_V1:  # the code above, as it always was: everything charged at booking
        return VersionSteps(_first_step)
    if version == SETTLE_V2:
        from ridgeline.flows import deposit  # settle@2 builds on the steps above, so it imports this module

        return deposit.STEPS
    return None
