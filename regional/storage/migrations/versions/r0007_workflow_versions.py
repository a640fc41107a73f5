"""Workflow versions as data, rollout state, durable timers, workflow steps, deposit terms.

Revision ID: r0007
Revises: r0006

Issue 13. ``bookings.workflow`` names the version of the workflow that advances each
booking (``settle@1`` …), written by the statement that creates the booking (every hold
statement names it); it must name a registered version (``workflow_versions``). Its
default, ``hold@1``, is for rows written outside the hold path (a hand repair, like
``created_by``'s ''): a plain hold, which nothing advances but its caller and expiry, and
which the audit names if it carries a settlement row or workflow steps.
``workflow_rollouts`` is the cluster state that decides which version a new booking of
a workflow gets (a target, the previous version, and the percentage of new bookings on
the target). ``cluster_members.workflows`` is what each node can run: ownership prefers
nodes that can run every version in use (ARCHITECTURE.md §11).

``workflow_timers`` are durable timers: one row per (booking, step), due at a time,
claimed in batches by the basecamp's owner; the partial index on ``next_attempt_at``
keeps a tick an index range read over the due rows only, however many are pending.
``workflow_steps`` is the booking's timeline of workflow steps (deposit charged, balance
due, reminder sent …), one row per step, written in the transaction of the step.
``settle_terms`` are settle@2's terms per basecamp (or '*' for the region's default).

Rows from before this revision: bookings with a settlement row ran settle@1, trek legs
trek@1, every other booking hold@1; which is what the code that made them did.
"""

from alembic import op

revision = "r0007"
down_revision = "r0006"
branch_labels = None
depends_on = None

_UPGRADE = [
    """
    CREATE TABLE workflow_versions (
        version TEXT PRIMARY KEY CHECK (version ~ '^[a-z]+@[1-9][0-9]*$'),
        workflow TEXT NOT NULL,
        retired_at TIMESTAMPTZ,
        retired_by TEXT
    )
    """,
    """
    INSERT INTO workflow_versions (version, workflow) VALUES
        ('hold@1', 'hold'), ('settle@1', 'settle'), ('settle@2', 'settle'), ('trek@1', 'trek')
    """,
    """
    CREATE TABLE workflow_rollouts (
        workflow TEXT PRIMARY KEY,
        target TEXT NOT NULL REFERENCES workflow_versions (version),
        previous TEXT NOT NULL REFERENCES workflow_versions (version),
        percent INT NOT NULL CHECK (percent BETWEEN 0 AND 100),
        changed_at TIMESTAMPTZ NOT NULL,
        changed_by TEXT NOT NULL
    )
    """,
    "INSERT INTO workflow_rollouts VALUES ('settle', 'settle@1', 'settle@1', 100, now(), 'migration r0007')",
    "ALTER TABLE bookings ADD COLUMN workflow TEXT NOT NULL DEFAULT 'hold@1' REFERENCES workflow_versions (version)",
    "UPDATE bookings SET workflow = 'settle@1' WHERE booking_id IN (SELECT booking_id FROM settlements)",
    "UPDATE bookings SET workflow = 'trek@1' WHERE booking_id IN (SELECT booking_id FROM trek_legs WHERE booking_id IS NOT NULL)",
    # ListBookings by version, newest first, pages by (created_at, booking_id).
    "CREATE INDEX bookings_by_workflow ON bookings (workflow, created_at DESC, booking_id DESC)",
    "ALTER TABLE cluster_members ADD COLUMN workflows TEXT[] NOT NULL DEFAULT '{}'",
    """
    CREATE TABLE workflow_timers (
        booking_id UUID NOT NULL REFERENCES bookings (booking_id),
        step TEXT NOT NULL,
        basecamp_id TEXT NOT NULL,
        workflow TEXT NOT NULL REFERENCES workflow_versions (version),
        due_at TIMESTAMPTZ NOT NULL,
        next_attempt_at TIMESTAMPTZ NOT NULL,
        attempts INT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error TEXT NOT NULL DEFAULT '',
        fired_at TIMESTAMPTZ,
        PRIMARY KEY (booking_id, step)
    )
    """,
    "CREATE INDEX workflow_timers_due ON workflow_timers (next_attempt_at) WHERE fired_at IS NULL",
    """
    CREATE TABLE workflow_steps (
        booking_id UUID NOT NULL REFERENCES bookings (booking_id),
        step TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        amount_cents BIGINT NOT NULL DEFAULT 0,
        detail TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL,
        PRIMARY KEY (booking_id, step)
    )
    """,
    """
    CREATE TABLE settle_terms (
        scope TEXT PRIMARY KEY,
        deposit_percent INT NOT NULL CHECK (deposit_percent BETWEEN 1 AND 100),
        balance_days_before INT NOT NULL CHECK (balance_days_before >= 0),
        reminder_days_before INT NOT NULL CHECK (reminder_days_before >= balance_days_before),
        grace_days INT NOT NULL CHECK (grace_days >= 0),
        refund_tiers JSONB NOT NULL
    )
    """,
    """
    INSERT INTO settle_terms VALUES
        ('*', 30, 14, 21, 3, '[{"days_before": 30, "refund_percent": 100}, {"days_before": 7, "refund_percent": 50}]')
    """,
]

_DOWNGRADE = [
    "DROP TABLE settle_terms",
    "DROP TABLE workflow_steps",
    "DROP TABLE workflow_timers",
    "ALTER TABLE cluster_members DROP COLUMN workflows",
    "DROP INDEX bookings_by_workflow",
    "ALTER TABLE bookings DROP COLUMN workflow",
    "DROP TABLE workflow_rollouts",
    "DROP TABLE workflow_versions",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
