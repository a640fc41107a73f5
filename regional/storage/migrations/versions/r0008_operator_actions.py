"""Operator actions, and the indexes that page in-flight work for consoles.

Revision ID: r0008
Revises: r0007

Issue 14. ``operator_actions`` records every action an operator took on stuck work
(retry a settlement, release a hold, refund a charge): who (the actor, ``desk:alice``),
why, on which booking, and what the booking was found to be after it. Its unique
``idempotency_key`` (in the caller's key space, ``<actor>/<key>``) makes a repeated
action answer the first outcome: the row is inserted ``running`` before the effect and
finished ``done`` with its result after the re-read, and a runner killed in between
leaves a row that a repeat takes over once ``started_at`` is old (the effects themselves
are the settlement and booking steps, each idempotent on its own).

The indexes let a console page through in-flight work by keyset without scanning the
region's bookings: held bookings by age (region-wide and per basecamp), open
settlements by age (a released booking whose refund is owed), pending timers by due
time, and a booking's actions.
"""

from alembic import op

revision = "r0008"
down_revision = "r0007"
branch_labels = None
depends_on = None

_UPGRADE = [
    """
    CREATE TABLE operator_actions (
        action_id UUID PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        action TEXT NOT NULL CHECK (action IN ('retry_settlement', 'release_hold', 'refund_charge')),
        booking_id UUID NOT NULL REFERENCES bookings (booking_id),
        basecamp_id TEXT NOT NULL,
        actor TEXT NOT NULL CHECK (actor <> ''),
        reason TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done')),
        result TEXT CHECK (result IN ('applied', 'still_pending', 'already_done', 'refused')),
        detail TEXT NOT NULL DEFAULT '',
        requested_at TIMESTAMPTZ NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ,
        CONSTRAINT operator_actions_done_has_result CHECK ((state = 'done') = (result IS NOT NULL AND finished_at IS NOT NULL))
    )
    """,
    "CREATE INDEX operator_actions_by_booking ON operator_actions (booking_id, requested_at)",
    "CREATE INDEX operator_actions_recent ON operator_actions (requested_at DESC, action_id DESC)",
    # In flight, oldest first: held bookings, and settlements that still owe a step.
    "CREATE INDEX bookings_held_by_age ON bookings (created_at, booking_id) WHERE state = 'held'",
    "CREATE INDEX bookings_held_by_basecamp_age ON bookings (basecamp_id, created_at, booking_id) WHERE state = 'held'",
    """
    CREATE INDEX settlements_open_by_age ON settlements (created_at, booking_id)
    WHERE state IN ('awaiting_payment', 'refunding')
    """,
    "CREATE INDEX workflow_timers_pending_by_due ON workflow_timers (due_at, booking_id, step) WHERE fired_at IS NULL",
]

_DOWNGRADE = [
    "DROP INDEX workflow_timers_pending_by_due",
    "DROP INDEX settlements_open_by_age",
    "DROP INDEX bookings_held_by_basecamp_age",
    "DROP INDEX bookings_held_by_age",
    "DROP TABLE operator_actions",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
