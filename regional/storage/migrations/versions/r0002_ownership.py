"""Cluster membership and per-basecamp ownership leases (fencing tokens).

Revision ID: r0002
Revises: r0001

A region runs several nodes over its one database. ``cluster_members`` holds one row
per live node (heartbeats on the database's clock, so that nodes' clocks never have
to agree). ``basecamp_leases`` grants one node the right to write for a basecamp until
``expires_at``; every grant to a new holder increments ``epoch``, the fencing token.
Every mutating statement a node runs for a basecamp names the epoch it believes it
holds and touches nothing unless the lease row still carries that epoch and has not
lapsed (invariant 6): a paused or partitioned ex-owner is refused by the database.

Each history row also records the epoch its writer held (NULL for unfenced writers such
as the sweeper), so an audit can check after the fact that no booking was changed under
an older epoch than an earlier change of it.
"""

from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None

_UPGRADE = [
    """
    CREATE TABLE cluster_members (
        node_id TEXT PRIMARY KEY,
        region TEXT NOT NULL,
        address TEXT NOT NULL,
        metrics_address TEXT NOT NULL DEFAULT '',
        incarnation UUID NOT NULL,
        started_at TIMESTAMPTZ NOT NULL,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )
    """,
    "CREATE INDEX cluster_members_live ON cluster_members (region, expires_at)",
    """
    CREATE TABLE basecamp_leases (
        basecamp_id TEXT PRIMARY KEY REFERENCES basecamps (basecamp_id),
        holder TEXT NOT NULL,
        epoch BIGINT NOT NULL CHECK (epoch > 0),
        acquired_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL
    )
    """,
    "ALTER TABLE booking_history ADD COLUMN lease_epoch BIGINT",
]

_DOWNGRADE = [
    "ALTER TABLE booking_history DROP COLUMN lease_epoch",
    "DROP TABLE basecamp_leases",
    "DROP TABLE cluster_members",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
