"""Trek legs: one fence row per (trek, leg) on the participant side.

Revision ID: r0004
Revises: r0003

ARCHITECTURE.md §5: each leg of a cross-region trek is try-confirm-cancel. The fence row
is written in the same transaction as the leg's hold (prepare) or as its abort, and its
primary key makes exactly one of them first: a late prepare after an abort finds the
aborted fence and is refused; an abort before any prepare leaves that fence and does
nothing else. While a leg is ``prepared`` its hold is not expired by the sweep; the node
asks the coordinator for the decision once ``decision_deadline`` has passed.
"""

from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None

_UPGRADE = [
    """
    CREATE TABLE trek_legs (
        trek_id TEXT NOT NULL,
        leg_index INT NOT NULL CHECK (leg_index >= 0),
        state TEXT NOT NULL CHECK (state IN ('prepared', 'committed', 'aborted', 'cancelled')),
        booking_id UUID,
        coordinator_target TEXT NOT NULL DEFAULT '',
        decision_deadline TIMESTAMPTZ NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (trek_id, leg_index),
        CONSTRAINT trek_legs_booked_unless_aborted CHECK (state = 'aborted' OR booking_id IS NOT NULL)
    )
    """,
    "CREATE UNIQUE INDEX trek_legs_by_booking ON trek_legs (booking_id) WHERE booking_id IS NOT NULL",
    "CREATE INDEX trek_legs_in_doubt ON trek_legs (decision_deadline) WHERE state = 'prepared'",
]

_DOWNGRADE = ["DROP TABLE trek_legs"]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
