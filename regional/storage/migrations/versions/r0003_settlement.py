"""Settlement: one payment state row per booked (not merely held) stay, and the outbox.

Revision ID: r0003
Revises: r0002

A ``settlements`` row is written in the same statement as the hold a Book call places;
plain holds (PlaceHold, trek legs) have none and are never charged by settlement. The
row, not Prefect's history, is the durable state of the payment: a settlement flow that
dies at any line leaves the row where a re-run picks it up. ``outbox`` messages are
written in the same transaction as the confirm they announce; their id is derived from
the booking, so a re-run cannot enqueue a second one (invariant 7).
"""

from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None

_UPGRADE = [
    """
    CREATE TABLE settlements (
        booking_id UUID PRIMARY KEY REFERENCES bookings (booking_id),
        basecamp_id TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('awaiting_payment', 'confirmed', 'refunding', 'refunded', 'released')),
        amount_cents BIGINT NOT NULL CHECK (amount_cents >= 0),
        currency TEXT NOT NULL,
        attempts INT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error TEXT NOT NULL DEFAULT '',
        charge_id TEXT,
        next_attempt_at TIMESTAMPTZ NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )
    """,
    # The settlement loop's work queue: only rows that still need a step are indexed.
    """
    CREATE INDEX settlements_due ON settlements (next_attempt_at)
    WHERE state IN ('awaiting_payment', 'refunding')
    """,
    """
    CREATE TABLE outbox (
        message_id TEXT PRIMARY KEY,
        booking_id UUID NOT NULL REFERENCES bookings (booking_id),
        kind TEXT NOT NULL,
        payload JSONB NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        delivered_at TIMESTAMPTZ
    )
    """,
    "CREATE INDEX outbox_undelivered ON outbox (created_at) WHERE delivered_at IS NULL",
]

_DOWNGRADE = ["DROP TABLE outbox", "DROP TABLE settlements"]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
