"""A booking's timeline of workflow steps: what its version did beyond state changes.

One ``workflow_steps`` row per (booking, step), written in the transaction of the step
it records (``ON CONFLICT DO NOTHING``: a step re-run after a crash records nothing
twice). State changes stay in ``booking_history``; these rows say what the workflow did
between them: ``deposit charged``, ``balance due`` (on a date), ``reminder sent``,
``balance charged``, ``cancelled by policy`` with the refund. The audit checks them
against the steps of the booking's version (ARCHITECTURE.md §11).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class Step:
    step: str
    at: datetime
    amount_cents: int
    detail: str
    actor: str


_RECORD = text(
    """
    INSERT INTO workflow_steps (booking_id, step, at, amount_cents, detail, actor)
    VALUES (:booking_id, :step, :at, :amount_cents, :detail, :actor)
    ON CONFLICT (booking_id, step) DO NOTHING
    """
)

_OF = text(
    """
    SELECT booking_id, step, at, amount_cents, detail, actor FROM workflow_steps
    WHERE booking_id = ANY(:ids) ORDER BY booking_id, at, step
    """
)


def record(conn: Connection, booking_id: str, step: str, *, at: datetime, actor: str, amount_cents: int = 0, detail: str = "") -> None:
    """Records ``step`` of the booking inside the caller's transaction (once, ever)."""
    assert step and actor and amount_cents >= 0, (step, actor, amount_cents)
    conn.execute(_RECORD, {"booking_id": booking_id, "step": step, "at": at, "amount_cents": amount_cents, "detail": detail, "actor": actor})


def of(conn: Connection, booking_ids: Sequence[str]) -> dict[str, list[Step]]:
    """Each booking's steps, oldest first (bookings without steps are absent)."""
    found: dict[str, list[Step]] = {}
    for row in conn.execute(_OF, {"ids": list(booking_ids)}):
        found.setdefault(str(row.booking_id), []).append(Step(row.step, row.at, row.amount_cents, row.detail, row.actor))
    return found
