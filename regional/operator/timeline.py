"""One booking's story for an operator: every fact the region database holds about it, in time order.

Transitions (with actor and reason) from ``booking_history``; the settlement row (when
payment was awaited, how many attempts, the last error, its state now) and the gateway
charge and refund as recorded on our side (``settlements.charge_id``, the refunded
state; the gateway's own ledger is the audit's to compare); workflow steps and timers
(settle@2); operator actions (``operator_actions``); the trek leg fence of a trek leg;
and the trace id of the Book that started it (``settlements.trace_parent``, r0006).
Nothing here is inferred: an entry names a row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from ridgeline import tracing
from ridgeline.regional.booking import queries
from ridgeline.regional.booking.model import Booking, BookingState
from ridgeline.regional.operator import records
from ridgeline.regional.settlement import rows
from ridgeline.regional.settlement.rows import Settlement, SettlementState
from ridgeline.regional.workflows import steps


class Kind(enum.StrEnum):
    TRANSITION = "transition"
    SETTLEMENT = "settlement"
    CHARGE = "charge"
    REFUND = "refund"
    WORKFLOW_STEP = "workflow_step"
    TIMER = "timer"
    OPERATOR_ACTION = "operator_action"
    TREK_LEG = "trek_leg"


@dataclass(frozen=True)
class Entry:
    kind: Kind
    at: datetime
    actor: str
    detail: str
    from_state: BookingState | None = None
    to_state: BookingState | None = None
    amount_cents: int = 0
    reference: str = ""


@dataclass(frozen=True)
class Timeline:
    booking: Booking
    settlement: Settlement | None
    steps: tuple[steps.Step, ...]
    entries: tuple[Entry, ...]
    trace_id: str

    def __post_init__(self) -> None:
        assert all(a.at <= b.at for a, b in zip(self.entries, self.entries[1:])), "a timeline is in time order"


_TIMERS = text("SELECT step, due_at, fired_at, attempts, last_error FROM workflow_timers WHERE booking_id = :booking_id")
_LEG = text("SELECT trek_id, leg_index, state, decision_deadline, created_at, updated_at FROM trek_legs WHERE booking_id = :booking_id")


def of(conn: Connection, booking: Booking) -> Timeline:
    """The timeline of ``booking`` (read by the caller in this transaction), oldest first."""
    booking_id = booking.booking_id
    settlement = rows.get(conn, [booking_id]).get(booking_id)
    taken = tuple(steps.of(conn, [booking_id]).get(booking_id, ()))
    entries = [
        Entry(Kind.TRANSITION, t.at, t.actor, t.reason, t.from_state, t.to_state) for t in booking.history
    ]
    if settlement is not None:
        entries += _payment(settlement)
    entries += [Entry(Kind.WORKFLOW_STEP, s.at, s.actor, f"{s.step}: {s.detail}" if s.detail else s.step, amount_cents=s.amount_cents) for s in taken]
    for t in conn.execute(_TIMERS, {"booking_id": booking_id}):
        fate = f"fired {t.fired_at.isoformat()}" if t.fired_at is not None else f"pending, {t.attempts} attempt(s)"
        error = f": {t.last_error}" if t.last_error else ""
        entries.append(Entry(Kind.TIMER, t.due_at, "", f"{t.step} due; {fate}{error}"))
    for a in records.of_booking(conn, booking_id):
        outcome = f"{a.result.value}: {a.detail}" if a.result is not None else "running"
        why = f" ({a.reason})" if a.reason else ""
        entries.append(Entry(Kind.OPERATOR_ACTION, a.requested_at, a.actor, f"{a.action.value}{why} -> {outcome}", reference=a.action_id))
    leg = conn.execute(_LEG, {"booking_id": booking_id}).one_or_none()
    if leg is not None:
        detail = f"leg {leg.leg_index} of trek {leg.trek_id}: {leg.state}, decision due by {leg.decision_deadline.isoformat()}"
        entries.append(Entry(Kind.TREK_LEG, leg.created_at, "", detail, reference=leg.trek_id))
    entries.sort(key=lambda e: e.at)
    trace = tracing.trace_id_of(settlement.trace_parent) if settlement is not None else ""
    return Timeline(booking, settlement, taken, tuple(entries), trace)


def read(conn: Connection, booking_id: str) -> Timeline | None:
    booking = queries.get_booking(conn, booking_id)
    return None if booking is None else of(conn, booking)


def _payment(s: Settlement) -> list[Entry]:
    """The settlement row as entries: awaited, where it stands, the charge and refund it records."""
    found = [Entry(Kind.SETTLEMENT, s.created_at, "", f"payment of {s.amount_cents} {s.currency} awaited ({s.workflow})", amount_cents=s.amount_cents)]
    if s.charge_id:
        found.append(Entry(Kind.CHARGE, s.updated_at, "", f"charge {s.charge_id} recorded", amount_cents=s.amount_cents, reference=s.charge_id))
    error = f"; last error: {s.last_error}" if s.last_error else ""
    found.append(Entry(Kind.SETTLEMENT, s.updated_at, "", f"payment {s.state.value} after {s.attempts} attempt(s){error}"))
    if s.state is SettlementState.REFUNDED:
        refunded = s.amount_cents if s.charge_id else 0
        found.append(Entry(Kind.REFUND, s.updated_at, "", "no charge stands" + (f" (charge {s.charge_id} refunded)" if s.charge_id else ""), amount_cents=refunded, reference=s.charge_id or ""))
    return found
