"""The coordinator's own database: the decision log (ARCHITECTURE.md §1: never in a participant's).

A short ordered list of versions applied in order and recorded in ``coordinator_schema``,
instead of a second Alembic environment: the log has four tables and no catalog. Each
version's DDL is plain SQL that PostgreSQL and CockroachDB both accept.

Version 2 (issue 11, the actor on the record): ``treks.planned_by`` and
``treks.cancelled_by`` name the planner who planned and who cancelled a trek,
``trek_decisions.decided_by`` who decided (``node:<coordinator>``, or the planner whose
CancelTrek aborted it). Rows from before it say ``unrecorded``; later rows written
outside the coordinator's code (a hand repair) default to '' and name nobody.

Version 3 (issue 12, coordinator high availability): ``coordinator_leader`` is the one
lease row whose holder leads (:mod:`.leadership`), ``coordinator_terms`` one row per
epoch ever granted (who, which process, where, when: the record the fencing checks read), and
``trek_decisions.epoch`` / ``recorded_at`` the leader epoch a decision was written under
and the database's clock when it was. Rows from before it say epoch 0.

Version 4 (issue 14, operator actions on treks): ``trek_operator_actions`` one row per
operator idempotency key: which action (redrive, abort) on which trek, who asked
(``sre:<principal>``), why, under which leader epoch, and the result it answered
(:mod:`.operator_actions`). Written in the same fenced transaction as an abort's decision.

Tables: ``treks`` (one row per planned trek, keyed by the planner's idempotency key too),
``trek_legs`` (what each leg asked and what its participant answered), ``trek_decisions``
(at most one row per trek: its primary key makes the first decision final; no row means
abort), ``trek_charges`` (the saga's payment step, one charge per trek and currency).
"""

from __future__ import annotations

from sqlalchemy import Engine, text

_FINAL = "('committed', 'aborted', 'cancelled')"

VERSIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE treks (
                trek_id UUID PRIMARY KEY,
                idempotency_key TEXT NOT NULL UNIQUE,
                request_fingerprint TEXT NOT NULL,
                customer_id TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN
                    ('preparing', 'committing', 'committed', 'aborting', 'aborted', 'cancelling', 'cancelled')),
                reason TEXT NOT NULL DEFAULT '',
                created_at TIMESTAMPTZ NOT NULL,
                prepare_deadline TIMESTAMPTZ NOT NULL,
                decided_at TIMESTAMPTZ,
                settled_at TIMESTAMPTZ,
                updated_at TIMESTAMPTZ NOT NULL,
                CONSTRAINT treks_settled_when_final CHECK ((settled_at IS NOT NULL) = (state IN """ + _FINAL + """))
            )
            """,
            "CREATE INDEX treks_unfinished ON treks (created_at) WHERE state NOT IN " + _FINAL,
            "CREATE INDEX treks_by_state ON treks (state, created_at)",
            """
            CREATE TABLE trek_legs (
                trek_id UUID NOT NULL REFERENCES treks (trek_id),
                leg_index INT NOT NULL,
                region TEXT NOT NULL,
                basecamp_id TEXT NOT NULL,
                resource_id TEXT NOT NULL,
                first_night DATE NOT NULL,
                end_night DATE NOT NULL,
                party_size INT NOT NULL CHECK (party_size > 0),
                state TEXT NOT NULL CHECK (state IN
                    ('pending', 'prepared', 'refused', 'committed', 'aborted', 'cancelled')),
                booking_id TEXT,
                price_cents BIGINT NOT NULL DEFAULT 0,
                currency TEXT NOT NULL DEFAULT '',
                detail TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (trek_id, leg_index),
                CONSTRAINT trek_legs_nights_forward CHECK (end_night > first_night)
            )
            """,
            """
            CREATE TABLE trek_decisions (
                trek_id UUID PRIMARY KEY REFERENCES treks (trek_id),
                decision TEXT NOT NULL CHECK (decision IN ('commit', 'abort')),
                reason TEXT NOT NULL,
                decided_at TIMESTAMPTZ NOT NULL
            )
            """,
            """
            CREATE TABLE trek_charges (
                trek_id UUID NOT NULL REFERENCES treks (trek_id),
                currency TEXT NOT NULL,
                amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
                charge_id TEXT NOT NULL,
                refunded_cents BIGINT NOT NULL DEFAULT 0 CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
                PRIMARY KEY (trek_id, currency)
            )
            """,
        ),
    ),
    (
        2,
        (
            "ALTER TABLE treks ADD COLUMN planned_by TEXT NOT NULL DEFAULT 'unrecorded'",
            "ALTER TABLE treks ALTER COLUMN planned_by SET DEFAULT ''",
            "ALTER TABLE treks ADD COLUMN cancelled_by TEXT",
            "ALTER TABLE trek_decisions ADD COLUMN decided_by TEXT NOT NULL DEFAULT 'unrecorded'",
            "ALTER TABLE trek_decisions ALTER COLUMN decided_by SET DEFAULT ''",
        ),
    ),
    (
        3,
        (
            """
            CREATE TABLE coordinator_leader (
                lease TEXT PRIMARY KEY CHECK (lease = 'leader'),
                holder TEXT NOT NULL,
                incarnation TEXT NOT NULL,
                address TEXT NOT NULL,
                epoch BIGINT NOT NULL CHECK (epoch > 0),
                acquired_at TIMESTAMPTZ NOT NULL,
                expires_at TIMESTAMPTZ NOT NULL
            )
            """,
            """
            CREATE TABLE coordinator_terms (
                epoch BIGINT PRIMARY KEY CHECK (epoch > 0),
                holder TEXT NOT NULL,
                incarnation TEXT NOT NULL,
                address TEXT NOT NULL,
                granted_at TIMESTAMPTZ NOT NULL
            )
            """,
            "ALTER TABLE trek_decisions ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0",
            "ALTER TABLE trek_decisions ADD COLUMN recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()",
        ),
    ),
    (
        4,
        (
            """
            CREATE TABLE trek_operator_actions (
                idempotency_key TEXT PRIMARY KEY,
                action TEXT NOT NULL CHECK (action IN ('redrive', 'abort')),
                trek_id UUID NOT NULL REFERENCES treks (trek_id),
                actor TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '',
                epoch BIGINT NOT NULL CHECK (epoch > 0),
                requested_at TIMESTAMPTZ NOT NULL,
                result TEXT CHECK (result IN ('applied', 'still_pending', 'already_done', 'refused')),
                detail TEXT NOT NULL DEFAULT '',
                finished_at TIMESTAMPTZ
            )
            """,
            "CREATE INDEX trek_operator_actions_by_trek ON trek_operator_actions (trek_id, requested_at)",
        ),
    ),
)


def migrate(engine: Engine) -> int:
    """Applies every version the database lacks (idempotent); returns the version it is at."""
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS coordinator_schema (version INT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"))
    current = 0
    for version, statements in VERSIONS:
        with engine.begin() as conn:
            # The version row first: a concurrent migrator conflicts here and rolls back whole.
            applied = conn.execute(
                text("INSERT INTO coordinator_schema (version) VALUES (:v) ON CONFLICT DO NOTHING RETURNING version"), {"v": version}
            ).first()
            if applied is not None:
                for statement in statements:
                    conn.execute(text(statement))
        current = version
    return current
