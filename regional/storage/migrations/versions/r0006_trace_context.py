"""The trace a Book started, kept with its settlement row.

Revision ID: r0006
Revises: r0005

Issue 14, item 4. ``settlements.trace_parent`` is the W3C ``traceparent`` of the Book call
that wrote the row (``ridgeline.tracing``), '' when the node did not trace. The settle
flow runs later, in a batch, in another thread and often on another node; it continues
each booking's own trace from this value, so one Book is one trace from the desk's call
through the charge to the confirm, and GetBooking shows the trace id.
"""

from alembic import op

revision = "r0006"
down_revision = "r0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE settlements ADD COLUMN trace_parent TEXT NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE settlements DROP COLUMN trace_parent")
