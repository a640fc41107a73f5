"""The participant side of a cross-region trek: prepare, commit, abort and cancel one leg.

ARCHITECTURE.md §5, invariant 5 (treks are atomic). Each leg is try-confirm-cancel with a
fence row per (trek_id, leg_index) in ``trek_legs``, written in the same transaction as
the booking change it guards:

- prepare inserts the fence ``prepared`` and places the hold; if the fence already
  exists the hold is not placed: a prepared or committed leg answers as it is (a retried
  prepare), an aborted one refuses the late prepare. A prepare that finds no room writes
  the fence ``aborted`` (the leg voted no, and a retry gets the same answer);
- commit moves ``prepared → committed`` and confirms the hold, even past its TTL;
- abort moves ``prepared → aborted`` and releases the hold, or, with no fence yet,
  inserts an ``aborted`` fence and does nothing else (an empty abort);
- cancel (compensation after a commit) moves ``committed → cancelled`` and cancels the
  booking.

Every function is idempotent: repeating it answers the leg as it is. Concurrent callers
race on the fence's primary key and row, under SERIALIZABLE, so exactly one wins.

Each names its ``actor`` on the booking's history: the coordinator's node identity for
its calls (``node:<principal>``; the reason names the trek), the node's own for the
in-doubt resolver. The prepared hold's actor travels in its HoldRequest.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, text

from ridgeline.regional import errors
from ridgeline.regional.booking import holds, ownership, queries, transitions
from ridgeline.regional.booking.access import Caller
from ridgeline.regional.booking.model import Booking
from ridgeline.regional.storage.db import read_transaction, run_transaction
from ridgeline.routing.leases import Fence


class LegState(enum.StrEnum):
    PREPARED = "prepared"
    COMMITTED = "committed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class LegKey:
    trek_id: str
    leg_index: int


@dataclass(frozen=True)
class Leg:
    """A leg as the participant knows it; ``booking`` is None for an empty abort."""

    key: LegKey
    state: LegState
    booking: Booking | None


_INSERT_FENCE = text(
    """
    INSERT INTO trek_legs (trek_id, leg_index, state, booking_id, coordinator_target, decision_deadline, created_at, updated_at)
    VALUES (:trek_id, :leg_index, :state, :booking_id, :coordinator_target, :decision_deadline, :now, :now)
    ON CONFLICT (trek_id, leg_index) DO NOTHING
    RETURNING 1
    """
)

_MOVE_FENCE = text(
    """
    UPDATE trek_legs SET state = :target, updated_at = :now
    WHERE trek_id = :trek_id AND leg_index = :leg_index AND state = :source
    RETURNING CAST(booking_id AS TEXT) AS booking_id
    """
)

_READ_FENCE = text(
    """
    SELECT state, CAST(booking_id AS TEXT) AS booking_id, coordinator_target FROM trek_legs
    WHERE trek_id = :trek_id AND leg_index = :leg_index
    """
)

_IN_DOUBT = text(
    """
    SELECT trek_id, leg_index, coordinator_target FROM trek_legs
    WHERE state = 'prepared' AND decision_deadline <= :now
      AND booking_id IN (SELECT booking_id FROM bookings WHERE basecamp_id = ANY(:basecamps))
    ORDER BY decision_deadline
    LIMIT :batch_max
    """
)


def prepare(
    engine: Engine,
    key: LegKey,
    hold: holds.HoldRequest,
    *,
    fence: Fence,
    coordinator_target: str,
    now: datetime,
    deadline: float | None = None,
) -> Leg:
    """Try: the fence and the hold in one transaction; refuses a late prepare after an abort.

    A node that does not hold the basecamp's lease writes nothing (NotOwner): the leg's
    vote is the owner's to give, and the coordinator follows the hint.
    """
    booking = holds.new_booking(hold, now)
    decision_deadline = now + timedelta(seconds=hold.ttl_seconds)
    epoch = fence.get(hold.basecamp_id)

    def work(conn: Connection) -> Leg | errors.BookingError:
        not_owner = ownership.refusal_if_fenced(conn, hold.basecamp_id, epoch)
        if not_owner is not None:
            return not_owner
        fenced = conn.execute(
            _INSERT_FENCE,
            _fence_params(key, LegState.PREPARED, booking.booking_id, coordinator_target, decision_deadline, now),
        ).first()
        if fenced is None:
            return _as_found(conn, key, refuse_aborted=True)
        outcome = holds.hold_within(conn, hold, booking, epoch=epoch, now=now, reclaim_first=False)
        if isinstance(outcome, errors.BookingError):
            # The leg votes no. Its fence says so, so a retried prepare gets the same answer;
            # the fence then carries no booking (the hold never existed).
            conn.execute(
                text("UPDATE trek_legs SET state = 'aborted', booking_id = NULL WHERE trek_id = :trek_id AND leg_index = :leg_index"),
                {"trek_id": key.trek_id, "leg_index": key.leg_index},
            )
            return outcome
        return Leg(key, LegState.PREPARED, outcome)

    return _run(engine, work, deadline, "PrepareLeg")


def commit(engine: Engine, key: LegKey, *, actor: str, fence: Fence, now: datetime, deadline: float | None = None) -> Leg:
    """Confirm: prepared → committed with the hold confirmed; a committed leg answers as it is."""
    return _move(engine, key, LegState.PREPARED, LegState.COMMITTED, transitions.COMMIT_LEG, Caller(actor), fence, now, deadline)


def cancel(engine: Engine, key: LegKey, *, actor: str, fence: Fence, now: datetime, deadline: float | None = None) -> Leg:
    """Compensation after a commit: committed → cancelled with the booking cancelled."""
    return _move(engine, key, LegState.COMMITTED, LegState.CANCELLED, transitions.CANCEL, Caller(actor), fence, now, deadline)


def abort(engine: Engine, key: LegKey, *, actor: str, fence: Fence, now: datetime, deadline: float | None = None) -> Leg:
    """Cancel before the decision: releases a prepared hold, or fences a leg never prepared.

    The empty abort's fence row names no basecamp (no hold exists to own), so it is not
    lease-fenced: it only ever refuses a later prepare, which is what a tombstone is for.
    """

    def work(conn: Connection) -> Leg | errors.BookingError:
        moved = _move_within(conn, key, LegState.PREPARED, LegState.ABORTED, transitions.ABORT_LEG, Caller(actor), fence, now)
        if moved is not None:
            return moved
        fenced = conn.execute(_INSERT_FENCE, _fence_params(key, LegState.ABORTED, None, "", now, now)).first()
        if fenced is not None:
            return Leg(key, LegState.ABORTED, None)
        found = _as_found(conn, key, refuse_aborted=False)
        if isinstance(found, Leg) and found.state is not LegState.ABORTED:
            return errors.IllegalTransition(f"trek {key.trek_id} leg {key.leg_index} is {found.state.value}; it cannot be aborted")
        return found

    return _run(engine, work, deadline, transitions.ABORT_LEG.operation)


def read(engine: Engine, key: LegKey, *, deadline: float | None = None) -> tuple[Leg, str]:
    """The leg as its fence has it, and the coordinator the fence names; NotFound without a fence.

    Read before CommitLeg and CancelLeg ask the coordinator (outside any transaction), so a
    leg already moved answers as it is without asking."""

    def work(conn: Connection) -> tuple[Leg, str] | errors.BookingError:
        row = conn.execute(_READ_FENCE, {"trek_id": key.trek_id, "leg_index": key.leg_index}).first()
        if row is None:
            return errors.NotFound(f"trek {key.trek_id} has no leg {key.leg_index} here")
        booking = queries.get_booking(conn, row.booking_id) if row.booking_id else None
        return Leg(key, LegState(row.state), booking), row.coordinator_target

    found = read_transaction(engine, work, deadline=deadline)
    if isinstance(found, errors.BookingError):
        raise found
    return found


def in_doubt(conn: Connection, *, basecamps: Collection[str], now: datetime, batch_max: int) -> list[tuple[LegKey, str]]:
    """Prepared legs of ``basecamps`` past their decision deadline, with the coordinator to ask about each."""
    rows = conn.execute(_IN_DOUBT, {"basecamps": sorted(basecamps), "now": now, "batch_max": batch_max}).all()
    return [(LegKey(row.trek_id, row.leg_index), row.coordinator_target) for row in rows]


def _move(
    engine: Engine,
    key: LegKey,
    source: LegState,
    target: LegState,
    move: transitions.Move,
    caller: Caller,
    fence: Fence,
    now: datetime,
    deadline: float | None,
) -> Leg:
    def work(conn: Connection) -> Leg | errors.BookingError:
        moved = _move_within(conn, key, source, target, move, caller, fence, now)
        if moved is not None:
            return moved
        found = _as_found(conn, key, refuse_aborted=True)
        if isinstance(found, Leg) and found.state is not target:
            return errors.IllegalTransition(
                f"trek {key.trek_id} leg {key.leg_index} is {found.state.value}; {move.operation} needs it {source.value}"
            )
        return found

    return _run(engine, work, deadline, move.operation)


def _move_within(
    conn: Connection, key: LegKey, source: LegState, target: LegState, move: transitions.Move, caller: Caller, fence: Fence, now: datetime
) -> Leg | None:
    """Moves the fence and its booking together; None when the fence was not at ``source``.

    Raises NotOwner when the booking's basecamp lease is not the caller's: raising (not
    returning) rolls the fence row's move back with the refused booking move."""
    row = conn.execute(
        _MOVE_FENCE, {"trek_id": key.trek_id, "leg_index": key.leg_index, "source": source.value, "target": target.value, "now": now}
    ).first()
    if row is None:
        return None
    reason = f"trek {key.trek_id} leg {key.leg_index}: {move.operation}"
    booking = transitions.move_within(conn, move, booking_id=row.booking_id, reason=reason, caller=caller, fence=fence, now=now)
    if isinstance(booking, errors.NotOwner):
        raise booking
    # The fence and the booking move together or not at all: anything else is a bug.
    assert isinstance(booking, Booking) and booking.state is move.target, f"{key}: booking did not follow its fence: {booking}"
    return Leg(key, target, booking)


def _as_found(conn: Connection, key: LegKey, *, refuse_aborted: bool) -> Leg | errors.BookingError:
    row = conn.execute(_READ_FENCE, {"trek_id": key.trek_id, "leg_index": key.leg_index}).first()
    if row is None:
        return errors.NotFound(f"trek {key.trek_id} has no leg {key.leg_index} here")
    state = LegState(row.state)
    if state is LegState.ABORTED and refuse_aborted:
        return errors.IllegalTransition(f"trek {key.trek_id} leg {key.leg_index} was aborted; it cannot be prepared or committed")
    booking = queries.get_booking(conn, row.booking_id) if row.booking_id else None
    return Leg(key, state, booking)


def _fence_params(
    key: LegKey, state: LegState, booking_id: str | None, coordinator_target: str, decision_deadline: datetime, now: datetime
) -> dict[str, object]:
    return {
        "trek_id": key.trek_id,
        "leg_index": key.leg_index,
        "state": state.value,
        "booking_id": booking_id,
        "coordinator_target": coordinator_target,
        "decision_deadline": decision_deadline,
        "now": now,
    }


def _run(engine: Engine, work: Callable[[Connection], Leg | errors.BookingError], deadline: float | None, operation: str) -> Leg:
    # Idempotent by the fence's key (trek, leg): after a lost commit, the re-run's fence
    # insert waits for the first transaction to end and then answers the leg as it left it.
    outcome = run_transaction(engine, work, deadline=deadline, operation=operation, idempotent=True)
    if isinstance(outcome, errors.BookingError):
        raise outcome
    return outcome


def hold_key(key: LegKey) -> str:
    """The idempotency key of the hold a leg places: one hold per leg, ever."""
    return f"trek-leg:{key.trek_id}:{key.leg_index}"
