"""The operator's vocabulary: the actions, what each was found to have done, and its record."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from ridgeline.regional.booking.model import Booking
from ridgeline.regional.settlement.rows import Settlement
from ridgeline.regional.workflows.steps import Step


class Action(enum.StrEnum):
    RETRY_SETTLEMENT = "retry_settlement"
    RELEASE_HOLD = "release_hold"
    REFUND_CHARGE = "refund_charge"


class Result(enum.StrEnum):
    """What an action did, judged from the booking as re-read after it (never assumed)."""

    APPLIED = "applied"  # the booking moved (confirmed, released, refunded)
    STILL_PENDING = "still_pending"  # the step ran or is due, and the booking is where it was
    ALREADY_DONE = "already_done"  # the booking was already where the action leads
    REFUSED = "refused"  # the booking's state does not allow the action


@dataclass(frozen=True)
class ActionRecord:
    """One row of ``operator_actions``; ``result`` is None while the action runs."""

    action_id: str
    action: Action
    booking_id: str
    basecamp_id: str
    actor: str
    reason: str
    result: Result | None
    detail: str
    requested_at: datetime
    finished_at: datetime | None

    def __post_init__(self) -> None:
        assert (self.result is None) == (self.finished_at is None), "a finished record has its result, a running one neither"


@dataclass(frozen=True)
class Outcome:
    """An action's answer: its record (finished) and the booking as re-read for the reply."""

    record: ActionRecord
    booking: Booking
    settlement: Settlement | None
    steps: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        assert self.record.result is not None, "an outcome answers a finished action"
        assert self.record.booking_id == self.booking.booking_id
