"""The actor on the record: who made each booking change, and who created each booking.

Revision ID: r0005
Revises: r0004

Issue 11, item 4. ``booking_history.actor`` names who caused each transition
(``role:principal`` for a call, ``node:<id>`` for what a node does by itself,
``anonymous`` through an ``--insecure`` server), written by the statement that makes the
change (``regional/booking/history.py``). It has no default once the rows that predate it
are filled in: a statement that forgot its actor fails instead of writing a nameless row.
``bookings.created_by`` is the actor that placed the hold: an agency sees and changes only
the bookings it created (``ridgeline.trust.policy``), and lists them through the index
below. Its default is '' for rows written outside the hold path (a hand repair), which
then belong to no agency and which the audit names.

Rows from before this revision say ``unrecorded``: the truth is that nobody wrote it down.
"""

from alembic import op

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None

_UPGRADE = [
    "ALTER TABLE booking_history ADD COLUMN actor TEXT NOT NULL DEFAULT 'unrecorded'",
    "ALTER TABLE booking_history ALTER COLUMN actor DROP DEFAULT",
    "ALTER TABLE bookings ADD COLUMN created_by TEXT NOT NULL DEFAULT 'unrecorded'",
    "ALTER TABLE bookings ALTER COLUMN created_by SET DEFAULT ''",
    # An agency's listing (ListBookings), newest first, pages by (created_at, booking_id).
    "CREATE INDEX bookings_by_creator ON bookings (created_by, created_at DESC, booking_id DESC)",
]

_DOWNGRADE = [
    "DROP INDEX bookings_by_creator",
    "ALTER TABLE bookings DROP COLUMN created_by",
    "ALTER TABLE booking_history DROP COLUMN actor",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
