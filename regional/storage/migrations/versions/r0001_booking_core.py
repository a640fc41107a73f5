"""Catalog, per-night inventory, bookings with their history, idempotency records.

Revision ID: r0001
Revises:

Invariant 1 (no overbooking) is a CHECK on inventory: the database itself refuses any
write that would put held + booked above capacity, whatever the Python above it does.
A booking also records how many inventory nights its creating statement reserved, and a
CHECK requires that to be every night of the stay: a hold that could not take units on
some night cannot be inserted, so the statement that took the other nights fails whole.
"""

from alembic import op

revision = "r0001"
down_revision = None
branch_labels = None
depends_on = None

_UPGRADE = [
    """
    CREATE TABLE basecamps (
        basecamp_id TEXT PRIMARY KEY,
        region TEXT NOT NULL,
        name TEXT NOT NULL,
        time_zone TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE resources (
        resource_id TEXT PRIMARY KEY,
        basecamp_id TEXT NOT NULL REFERENCES basecamps (basecamp_id),
        kind TEXT NOT NULL CHECK (kind IN ('hut_bed', 'guided_slot', 'equipment_locker')),
        name TEXT NOT NULL,
        capacity INT NOT NULL CHECK (capacity > 0),
        unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0),
        currency TEXT NOT NULL
    )
    """,
    "CREATE INDEX resources_by_basecamp ON resources (basecamp_id)",
    """
    CREATE TABLE inventory (
        resource_id TEXT NOT NULL REFERENCES resources (resource_id),
        night DATE NOT NULL,
        capacity INT NOT NULL,
        held INT NOT NULL DEFAULT 0,
        booked INT NOT NULL DEFAULT 0,
        PRIMARY KEY (resource_id, night),
        CONSTRAINT inventory_no_overbooking
            CHECK (held >= 0 AND booked >= 0 AND held + booked <= capacity)
    )
    """,
    """
    CREATE TABLE bookings (
        booking_id UUID PRIMARY KEY,
        basecamp_id TEXT NOT NULL REFERENCES basecamps (basecamp_id),
        resource_id TEXT NOT NULL REFERENCES resources (resource_id),
        first_night DATE NOT NULL,
        end_night DATE NOT NULL,
        party_size INT NOT NULL CHECK (party_size > 0),
        customer_id TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('held', 'confirmed', 'released', 'expired', 'cancelled')),
        version INT NOT NULL CHECK (version > 0),
        total_price_cents BIGINT NOT NULL,
        currency TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        reserved_nights INT NOT NULL,
        CONSTRAINT bookings_nights_forward CHECK (end_night > first_night),
        CONSTRAINT bookings_reserved_every_night CHECK (reserved_nights = end_night - first_night)
    )
    """,
    "CREATE INDEX bookings_live_holds ON bookings (expires_at) WHERE state = 'held'",
    "CREATE INDEX bookings_held_by_resource ON bookings (resource_id, first_night) WHERE state = 'held'",
    "CREATE INDEX bookings_by_basecamp ON bookings (basecamp_id, first_night)",
    "CREATE INDEX bookings_by_state ON bookings (state, updated_at)",
    """
    CREATE TABLE booking_history (
        booking_id UUID NOT NULL REFERENCES bookings (booking_id),
        version INT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (booking_id, version)
    )
    """,
    """
    CREATE TABLE idempotency_records (
        idempotency_key TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        request_fingerprint TEXT NOT NULL,
        result JSONB,
        error_kind TEXT,
        error_message TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT idempotency_one_outcome CHECK ((result IS NULL) <> (error_kind IS NULL))
    )
    """,
    "CREATE INDEX idempotency_by_age ON idempotency_records (created_at)",
]

_DOWNGRADE = [
    "DROP TABLE idempotency_records",
    "DROP TABLE booking_history",
    "DROP TABLE bookings",
    "DROP TABLE inventory",
    "DROP TABLE resources",
    "DROP TABLE basecamps",
]


def upgrade() -> None:
    for statement in _UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in _DOWNGRADE:
        op.execute(statement)
