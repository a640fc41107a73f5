"""The ``booking_history`` row every change of a booking's state appends, composed once.

Each statement that changes a state (a hold, a group-commit round, a move, an expiry)
appends its history row in the same statement, selected from the rows it just wrote, so
the history can never miss a change (the audit checks it). The column list lives here;
each caller says, per column, which SQL expression fills it. Every row names its actor,
who caused the change (issue 11: ``role:principal``, ``node:<id>`` or ``anonymous``): the
column has no default, so a statement cannot forget it.
"""

from __future__ import annotations

from ridgeline.regional.booking.model import BookingState

#: The reason of every booking's first row (version 1, nothing → held).
HOLD_PLACED_REASON = "hold placed"


def insert_sql(
    *,
    source: str,
    from_state: str,
    to_state: str,
    reason: str,
    actor: str,
    booking_id: str = "booking_id",
    version: str = "version",
    lease_epoch: str = "NULL",
) -> str:
    """The INSERT of one history row per row of ``source`` (a FROM clause), stamped ``:now``.

    Every other argument is the SQL expression of its column. ``lease_epoch`` is the
    epoch the writer held the basecamp's lease with (invariant 6); NULL for writes that
    need no lease (the expiry of a lapsed hold).
    """
    assert source.lstrip().upper().startswith("FROM "), f"a history row is selected from the rows just written: {source!r}"
    assert actor.strip(), "every history row names who caused the change"
    return (
        "INSERT INTO booking_history (booking_id, version, from_state, to_state, at, reason, lease_epoch, actor)"
        f" SELECT {booking_id}, {version}, {from_state}, {to_state}, :now, {reason}, {lease_epoch}, {actor} {source}"
    )


def hold_placed_sql(*, source: str, lease_epoch: str, actor: str, booking_id: str = "booking_id") -> str:
    """The first row of every booking ``source`` yields: version 1, nothing → held, by
    ``actor`` (the booking's ``created_by`` column: whoever placed the hold)."""
    return insert_sql(
        source=source,
        actor=actor,
        booking_id=booking_id,
        version="1",
        from_state="NULL",
        to_state=f"'{BookingState.HELD.value}'",
        reason=f"'{HOLD_PLACED_REASON}'",
        lease_epoch=lease_epoch,
    )
