"""The gateway's own ledger: charges and refunds in its own PostgreSQL database.

The schema is created with plain ``CREATE TABLE IF NOT EXISTS`` at start instead of
Alembic: this is a stand-in for a provider whose schema Ridgeline never owns or
migrates, and it is thrown away with its test database. The money rules live in the
database, not in Python:

- one charge per idempotency key (``UNIQUE``), so concurrent duplicates cannot both
  insert; the answer to a duplicate is read back from the stored row;
- ``refunded_cents <= amount_cents`` (``CHECK``), and a refund moves it with one
  conditional ``UPDATE``, so racing refunds can never exceed the charge.

Because those constraints carry the rules, the ledger runs READ COMMITTED (a provider's
isolation is its own business; Ridgeline's databases stay SERIALIZABLE). Under
SERIALIZABLE, a read of the key followed by an insert made concurrent charges share the
small index's predicate locks, and most of them rolled back under load (BENCHMARKS.md).
Now every write goes first and relies on the constraint: ``INSERT … ON CONFLICT DO
NOTHING`` waits for a concurrent insert of the same key, and when that one commits, the
next statement (a fresh snapshot under READ COMMITTED) reads the row it stored; the
refund's conditional ``UPDATE`` re-checks the row's newest version after any wait.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from ridgeline.regional.storage.db import make_engine, run_transaction

#: Largest page ``list_charges`` returns; the ledger is read page by page.
PAGE_SIZE_MAX = 500

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS gateway_charges (
        charge_id       TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        status          TEXT NOT NULL CHECK (status IN ('succeeded', 'declined')),
        amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
        refunded_cents  BIGINT NOT NULL DEFAULT 0
                        CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
        currency        TEXT NOT NULL,
        reference       TEXT NOT NULL,
        created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX IF NOT EXISTS gateway_charges_reference ON gateway_charges (reference, charge_id)",
    """
    CREATE TABLE IF NOT EXISTS gateway_refunds (
        refund_id       TEXT PRIMARY KEY,
        idempotency_key TEXT NOT NULL UNIQUE,
        charge_id       TEXT NOT NULL REFERENCES gateway_charges (charge_id),
        amount_cents    BIGINT NOT NULL CHECK (amount_cents > 0),
        created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
    )
    """,
)

_CHARGE_COLUMNS = "charge_id, status, amount_cents, refunded_cents, currency, reference, created_at"
_REFUND_COLUMNS = "refund_id, charge_id, amount_cents, created_at"


class LedgerError(Exception):
    """A request the ledger refuses; ``status`` and ``code`` become the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class ChargeResult:
    """A charge row; ``declined`` rows are remembered so a retried key is declined again."""

    row: dict[str, Any]

    @property
    def declined(self) -> bool:
        return self.row["status"] == "declined"


class Ledger:
    """Charges and refunds, each keyed by the caller's idempotency key."""

    def __init__(self, database_url: str, *, pool_size: int = 16) -> None:
        self._engine: Engine = make_engine(
            database_url, pool_size=pool_size, application_name="ridgeline-gateway", isolation_level="READ COMMITTED"
        )

    def create_schema(self) -> None:
        with self._engine.begin() as conn:
            for statement in _SCHEMA:
                conn.execute(text(statement))

    def close(self) -> None:
        self._engine.dispose()

    def reachable(self) -> bool:
        """Whether the ledger's database answers a trivial query now (for health checks)."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError:
            return False
        return True

    def charge(self, key: str, amount_cents: int, currency: str, reference: str, *, decline: bool) -> ChargeResult:
        """Charges once per key; a repeat with the same body answers the stored row."""

        def work(conn: Connection) -> ChargeResult:
            row = _one(
                conn,
                f"""INSERT INTO gateway_charges (charge_id, idempotency_key, status, amount_cents, currency, reference)
                    VALUES (:charge_id, :key, :status, :amount, :currency, :reference)
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING {_CHARGE_COLUMNS}""",
                charge_id=f"ch_{uuid.uuid4().hex}", key=key, status="declined" if decline else "succeeded",
                amount=amount_cents, currency=currency, reference=reference,
            )
            if row is None:  # the key was charged before (or concurrently, and that committed)
                row = _one(conn, f"SELECT {_CHARGE_COLUMNS} FROM gateway_charges WHERE idempotency_key = :key", key=key)
            assert row is not None, "a charge key is either inserted or stored (charges are never deleted)"
            if (row["amount_cents"], row["currency"], row["reference"]) != (amount_cents, currency, reference):
                raise LedgerError(409, "idempotency_key_reused", f"idempotency key {key!r} was used for a different charge ({row['charge_id']})")
            return ChargeResult(row)

        return run_transaction(self._engine, work)

    def refund(self, key: str, charge_id: str, amount_cents: int) -> dict[str, Any]:
        """Refunds once per key, never past the charge (the conditional UPDATE and CHECK refuse it)."""

        def work(conn: Connection) -> dict[str, Any]:
            # Selecting the charge keeps a missing one from tripping the foreign key: it
            # inserts nothing, and the key's lookup below tells "not found" from "seen".
            row = _one(
                conn,
                f"""INSERT INTO gateway_refunds (refund_id, idempotency_key, charge_id, amount_cents)
                    SELECT :refund_id, :key, charge_id, :amount FROM gateway_charges WHERE charge_id = :charge_id
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING {_REFUND_COLUMNS}""",
                refund_id=f"re_{uuid.uuid4().hex}", key=key, charge_id=charge_id, amount=amount_cents,
            )
            if row is not None:
                if not _take_refund(conn, charge_id, amount_cents):  # raising rolls the refund row back
                    raise LedgerError(409, "refund_exceeds_charge", f"refunding {amount_cents} would exceed what is left of {charge_id} (or it was declined)")
                return row
            row = _one(conn, f"SELECT {_REFUND_COLUMNS} FROM gateway_refunds WHERE idempotency_key = :key", key=key)
            if row is None:
                raise LedgerError(404, "charge_not_found", f"no charge {charge_id!r}")
            if (row["charge_id"], row["amount_cents"]) != (charge_id, amount_cents):
                raise LedgerError(409, "idempotency_key_reused", f"idempotency key {key!r} was used for a different refund ({row['refund_id']})")
            return row

        return run_transaction(self._engine, work)

    def get_charge(self, charge_id: str) -> dict[str, Any]:
        row = run_transaction(
            self._engine,
            lambda conn: _one(conn, f"SELECT {_CHARGE_COLUMNS} FROM gateway_charges WHERE charge_id = :c", c=charge_id),
        )
        if row is None:
            raise LedgerError(404, "charge_not_found", f"no charge {charge_id!r}")
        return row

    def list_charges(self, *, reference: str | None, after: str | None, limit: int) -> list[dict[str, Any]]:
        """One page of charges ordered by id (a keyset cursor: ``after`` is the last id seen)."""
        assert 1 <= limit <= PAGE_SIZE_MAX, "the API validates the page size"
        query = f"""SELECT {_CHARGE_COLUMNS} FROM gateway_charges
                    WHERE (CAST(:reference AS TEXT) IS NULL OR reference = :reference)
                      AND (CAST(:after AS TEXT) IS NULL OR charge_id > :after)
                    ORDER BY charge_id LIMIT :limit"""
        return run_transaction(
            self._engine,
            lambda conn: [dict(r) for r in conn.execute(text(query), {"reference": reference, "after": after, "limit": limit}).mappings()],
        )


def _take_refund(conn: Connection, charge_id: str, amount_cents: int) -> bool:
    """Moves ``refunded_cents`` only if the charge succeeded and has that much left."""
    moved = conn.execute(
        text(
            """UPDATE gateway_charges SET refunded_cents = refunded_cents + :amount
               WHERE charge_id = :c AND status = 'succeeded' AND refunded_cents + :amount <= amount_cents
               RETURNING charge_id"""
        ),
        {"c": charge_id, "amount": amount_cents},
    ).first()
    return moved is not None


def _one(conn: Connection, sql: str, **params: Any) -> dict[str, Any] | None:
    row = conn.execute(text(sql), params).mappings().first()
    return dict(row) if row is not None else None
