"""Domain types of a regional booking: states, the legal transitions, nights, snapshots.

These are plain values so that the state machine can be read and tested without gRPC
or a database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any


class BookingState(enum.StrEnum):
    HELD = "held"
    CONFIRMED = "confirmed"
    RELEASED = "released"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


#: The booking state machine. Anything not listed here is refused.
LEGAL_TRANSITIONS: dict[BookingState, frozenset[BookingState]] = {
    BookingState.HELD: frozenset({BookingState.CONFIRMED, BookingState.RELEASED, BookingState.EXPIRED}),
    BookingState.CONFIRMED: frozenset({BookingState.CANCELLED}),
    BookingState.RELEASED: frozenset(),
    BookingState.EXPIRED: frozenset(),
    BookingState.CANCELLED: frozenset(),
}


class ResourceKind(enum.StrEnum):
    HUT_BED = "hut_bed"
    GUIDED_SLOT = "guided_slot"
    EQUIPMENT_LOCKER = "equipment_locker"


@dataclass(frozen=True)
class Nights:
    """The nights [start, end): ``end`` is the check-out day."""

    start: date
    end: date

    def __post_init__(self) -> None:
        assert self.end > self.start, f"empty or reversed nights {self.start}..{self.end}"

    @property
    def count(self) -> int:
        return (self.end - self.start).days

    def each(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.count)]


@dataclass(frozen=True)
class Transition:
    version: int
    from_state: BookingState | None
    to_state: BookingState
    at: datetime
    reason: str
    #: Who caused it: ``role:principal``, ``node:<id>``, or ``anonymous`` (ridgeline.trust.identity).
    actor: str


#: The actor of records made before actors were recorded (migration r0005 says the same).
UNRECORDED_ACTOR = "unrecorded"


@dataclass(frozen=True)
class Booking:
    """A booking as stored, with its history when the caller asked for it."""

    booking_id: str
    basecamp_id: str
    resource_id: str
    nights: Nights
    party_size: int
    customer_id: str
    state: BookingState
    version: int
    total_price_cents: int
    currency: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    #: The actor that placed the hold (an agency sees only the bookings it created).
    created_by: str
    #: The workflow version that advances it (``settle@1`` …; regional/workflows/versions.py),
    #: recorded by the statement that created it.
    workflow: str
    history: tuple[Transition, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The snapshot an idempotency record keeps, so a replay returns the first result."""
        return {
            "booking_id": self.booking_id,
            "basecamp_id": self.basecamp_id,
            "resource_id": self.resource_id,
            "start": self.nights.start.isoformat(),
            "end": self.nights.end.isoformat(),
            "party_size": self.party_size,
            "customer_id": self.customer_id,
            "state": self.state.value,
            "version": self.version,
            "total_price_cents": self.total_price_cents,
            "currency": self.currency,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "created_by": self.created_by,
            "workflow": self.workflow,
            "history": [
                {
                    "version": t.version,
                    "from_state": t.from_state.value if t.from_state else None,
                    "to_state": t.to_state.value,
                    "at": t.at.isoformat(),
                    "reason": t.reason,
                    "actor": t.actor,
                }
                for t in self.history
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Booking:
        return cls(
            booking_id=data["booking_id"],
            basecamp_id=data["basecamp_id"],
            resource_id=data["resource_id"],
            nights=Nights(date.fromisoformat(data["start"]), date.fromisoformat(data["end"])),
            party_size=data["party_size"],
            customer_id=data["customer_id"],
            state=BookingState(data["state"]),
            version=data["version"],
            total_price_cents=data["total_price_cents"],
            currency=data["currency"],
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            expires_at=datetime.fromisoformat(data["expires_at"]),
            created_by=data.get("created_by", UNRECORDED_ACTOR),
            workflow=data.get("workflow", UNRECORDED_ACTOR),
            history=tuple(
                Transition(
                    version=t["version"],
                    from_state=BookingState(t["from_state"]) if t["from_state"] else None,
                    to_state=BookingState(t["to_state"]),
                    at=datetime.fromisoformat(t["at"]),
                    reason=t["reason"],
                    actor=t.get("actor", UNRECORDED_ACTOR),
                )
                for t in data["history"]
            ),
        )


@dataclass(frozen=True)
class NightAvailability:
    night: date
    capacity: int
    held: int
    confirmed: int

    @property
    def free(self) -> int:
        return self.capacity - self.held - self.confirmed
