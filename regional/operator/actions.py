"""Runs operator actions on one booking or a filtered set: claim the key, act, wait for the step, re-read, record.

One path for single and bulk actions, in phases, so that a bulk retry of a hundred
bookings waits once for the settlement loop (which takes every due row in one batch)
rather than a hundred times:

1. read each booking and its settlement, and check the caller reaches it (a desk only
   its basecamps: PermissionDenied otherwise, before anything is written);
2. claim the action's key in ``operator_actions`` (a repeat answers the first outcome);
3. refuse, or find nothing to do, or take the effect (:mod:`.effects`);
4. wait, at most ``wait_seconds``, until every step the effects made due has run;
5. re-read every booking, judge what happened, and finish each record with it.

A transient failure of one booking's effect (not the owner, contention, the database)
gives its claim back and is that booking's answer; the others go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine

from ridgeline.regional import errors
from ridgeline.regional.booking import idempotency, queries
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking
from ridgeline.regional.operator import effects, records
from ridgeline.regional.operator.model import Action, Outcome, Result
from ridgeline.regional.settlement import rows
from ridgeline.regional.settlement.rows import Settlement
from ridgeline.regional.storage.db import read_transaction
from ridgeline.regional.workflows import steps
from ridgeline.routing.leases import Fence

#: How long an action waits for the step it made due when the caller does not say.
WAIT_DEFAULT_SECONDS = 10.0
WAIT_MAX_SECONDS = 60.0
#: Most bookings one bulk call acts on.
BULK_MAX = 500
_POLL_SECONDS = 0.1
#: Effects that fail like this leave nothing decided: the claim is given back for a repeat.
_TRANSIENT = (errors.NotOwner, errors.Contention, errors.DatabaseUnavailable, errors.DeadlineExceeded, errors.NodeUnavailable)


@dataclass(frozen=True)
class Operator:
    """What actions run with on this node: its database, its leases, its clock."""

    engine: Engine
    fence: Callable[[], Fence]
    clock: Callable[[], datetime]
    #: How long after a release of a hold being paid its refund step runs (a charge in flight lands first).
    refund_grace_seconds: float


@dataclass(frozen=True)
class Request:
    action: Action
    booking_id: str
    #: In the caller's key space (``Caller.own_key``).
    key: str
    reason: str


@dataclass
class _Item:
    request: Request
    booking: Booking
    before: Settlement | None
    claim: records.Claim | None = None
    verdict: effects.Verdict | None = None
    answer: Outcome | errors.BookingError | None = None


def run(op: Operator, caller: Caller, requests: Sequence[Request], *, wait_seconds: float, deadline: float) -> list[Outcome | errors.BookingError]:
    """Each request's outcome (or the error that is its answer), in the order asked."""
    assert 0 <= wait_seconds <= WAIT_MAX_SECONDS and len(requests) <= BULK_MAX
    items = _read(op, caller, requests)
    started = time.monotonic()
    acting = [item for item in items if _claim_and_act(op, caller, item, deadline)]
    waited = _wait(op, acting, until=min(started + wait_seconds, deadline))
    found = _reread(op, [item.request.booking_id for item in items])
    for item in items:
        if item.answer is not None:
            continue
        booking, after, taken = found[item.request.booking_id]
        assert item.claim is not None
        if item.claim.kind == "done":
            item.answer = Outcome(item.claim.record, booking, after, taken)
            continue
        verdict = item.verdict or effects.judge(item.request.action, item.before, booking, after, waited)
        record = records.finish(op.engine, item.claim, verdict.result, verdict.detail, now=op.clock())
        item.answer = Outcome(record, booking, after, taken)
    assert all(item.answer is not None for item in items)
    return [item.answer for item in items]  # type: ignore[misc]


def run_one(op: Operator, caller: Caller, request: Request, *, wait_seconds: float, deadline: float) -> Outcome:
    """One action; a refusal is IllegalTransition (FAILED_PRECONDITION), recorded as its key's answer."""
    (answer,) = run(op, caller, [request], wait_seconds=wait_seconds, deadline=deadline)
    if isinstance(answer, errors.BookingError):
        raise answer
    if answer.record.result is Result.REFUSED:
        raise errors.IllegalTransition(answer.record.detail)
    return answer


def fingerprint(request: Request) -> str:
    return idempotency.fingerprint(f"operator:{request.action.value}", {"booking_id": request.booking_id, "reason": request.reason})


def _read(op: Operator, caller: Caller, requests: Sequence[Request]) -> list[_Item]:
    """The bookings as they are before acting; NotFound or PermissionDenied before any write."""

    def read(conn: Connection) -> list[_Item]:
        ids = [r.booking_id for r in requests]
        payments = rows.get(conn, ids)
        items = []
        for request in requests:
            booking = queries.get_booking(conn, request.booking_id)
            if booking is None:
                raise errors.NotFound(f"no booking {request.booking_id}")
            if not caller.reaches(basecamp_id=booking.basecamp_id, created_by=booking.created_by):
                raise errors.PermissionDenied(f"{caller.actor} may not act on booking {booking.booking_id}: {booking.basecamp_id} is outside its scope")
            items.append(_Item(request, booking, payments.get(request.booking_id)))
        return items

    return read_transaction(op.engine, read)


def _claim_and_act(op: Operator, caller: Caller, item: _Item, deadline: float) -> bool:
    """Claims the item's key and takes its effect; True when a step is to be waited for."""
    request, booking = item.request, item.booking
    try:
        item.claim = records.claim(
            op.engine, key=request.key, action=request.action, booking_id=booking.booking_id, basecamp_id=booking.basecamp_id,
            actor=caller.actor, reason=request.reason, fingerprint=fingerprint(request), clock=op.clock, deadline=deadline,
        )
    except errors.BookingError as error:
        item.answer = error
        return False
    if item.claim.kind == "done":
        return False
    item.verdict = effects.begin(request.action, booking, item.before)
    if item.verdict is not None:
        return False
    ctx = effects.Context(op.engine, caller.actor, request.reason, item.claim.record.action_id, op.fence, op.clock(), op.refund_grace_seconds)
    try:
        effects.apply(request.action, booking, item.before, ctx)
    except _TRANSIENT as error:
        records.give_back(op.engine, item.claim)
        item.answer = error
        return False
    except BaseException:
        records.give_back(op.engine, item.claim)
        raise
    return True


def _wait(op: Operator, acting: list[_Item], *, until: float) -> float:
    """Polls the acted-on settlements until no step is still to run, or ``until``; the seconds waited."""
    started = time.monotonic()
    pending = {item.request.booking_id: item for item in acting}
    while pending:
        now_rows = read_transaction(op.engine, lambda conn: rows.get(conn, list(pending)))
        pending = {b: item for b, item in pending.items() if effects.waits_for(item.request.action, item.before, now_rows.get(b))}
        if not pending or time.monotonic() + _POLL_SECONDS >= until:
            break
        time.sleep(_POLL_SECONDS)
    return time.monotonic() - started


def _reread(op: Operator, booking_ids: list[str]) -> dict[str, tuple[Booking, Settlement | None, tuple[steps.Step, ...]]]:
    """Every booking with its settlement and steps, in one snapshot, after the actions."""

    def read(conn: Connection) -> dict[str, tuple[Booking, Settlement | None, tuple[steps.Step, ...]]]:
        payments, taken = rows.get(conn, booking_ids), steps.of(conn, booking_ids)
        found = {}
        for booking_id in booking_ids:
            booking = queries.get_booking(conn, booking_id)
            assert booking is not None, "a booking is never deleted"
            found[booking_id] = (booking, payments.get(booking_id), tuple(taken.get(booking_id, ())))
        return found

    return read_transaction(op.engine, read)


def selected(op: Operator, where: queries.BookingFilter, caller: Caller, *, limit: int) -> tuple[list[str], bool]:
    """The bookings a bulk action takes (those ``caller`` reaches, newest first, as ListBookings
    pages them) and whether more matched than ``limit``."""
    assert 0 < limit <= BULK_MAX
    now = op.clock()
    page, more = read_transaction(op.engine, lambda conn: queries.list_bookings(conn, where, caller=caller, page_size=limit, page_token="", now=now))
    return [b.booking_id for b in page], bool(more)
