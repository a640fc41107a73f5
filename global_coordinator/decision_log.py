"""The decision log: treks, their legs, the decision and the charges, in the coordinator's database.

Invariant 5 hinges on one row: ``trek_decisions`` has at most one row per trek (its
primary key), written by :func:`decide` with ``ON CONFLICT DO NOTHING`` and read back, so
whoever decides first (the trek's own drive, a participant's GetDecision past the
deadline, a restarted coordinator) decides for everyone. No row means abort. The insert
is fenced by the leader epoch it names (:mod:`.leadership`): a deposed leader writes none.

The same read-back resolves an ambiguous commit (the connection lost during COMMIT, the
outcome unknown): every write here is keyed by the trek (a decision, a charge per
currency, a trek per idempotency key) or guarded by the state it moves from, so running
it again finds what the first attempt wrote, or writes it now; nothing is assumed.

Every function runs inside the caller's transaction (see :data:`Transact`). A write that
touches several legs or charges is one statement over a JSONB array of them: psycopg's
``executemany`` pipeline cost the coordinator more CPU than the rest of the trek's SQL.
The writes a
trek's own drive makes also return the trek as they left it (:func:`planned`,
:func:`record_decision`, :func:`settled`), so the drive never reads back what it has
just written: a committed trek costs three log transactions and no read.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, text

from ridgeline.global_coordinator.errors import NotLeader
from ridgeline.global_coordinator.leadership import FENCE_REFUSED, decision_fence_sql

_log = logging.getLogger(__name__)

T = TypeVar("T")

#: Runs a function in one database transaction, re-running it whole on a serialization
#: failure (deploy/ passes the regions' ``run_transaction`` bound to the log's engine).
Transact = Callable[[Callable[[Connection], T]], T]


class TrekState(enum.StrEnum):
    PREPARING = "preparing"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ABORTING = "aborting"
    ABORTED = "aborted"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({TrekState.COMMITTED, TrekState.ABORTED, TrekState.CANCELLED})


class LegState(enum.StrEnum):
    PENDING = "pending"
    PREPARED = "prepared"
    REFUSED = "refused"
    COMMITTED = "committed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


class Decision(enum.StrEnum):
    COMMIT = "commit"
    ABORT = "abort"


@dataclass(frozen=True)
class LegPlan:
    """One leg as the planner asked for it, with the region that serves its basecamp."""

    region: str
    basecamp_id: str
    resource_id: str
    first_night: date
    end_night: date
    party_size: int


@dataclass(frozen=True)
class LegRecord:
    index: int
    plan: LegPlan
    state: LegState
    booking_id: str | None
    price_cents: int
    currency: str
    detail: str


@dataclass(frozen=True)
class ChargeRecord:
    currency: str
    amount_cents: int
    charge_id: str
    refunded_cents: int


@dataclass(frozen=True)
class TrekRecord:
    trek_id: str
    customer_id: str
    state: TrekState
    reason: str
    decision: Decision | None
    legs: tuple[LegRecord, ...]
    charges: tuple[ChargeRecord, ...]
    created_at: datetime
    prepare_deadline: datetime
    decided_at: datetime | None
    settled_at: datetime | None
    updated_at: datetime
    #: Who planned it (the PlanTrek caller's actor, ``ridgeline.trust.identity.actor_of``).
    planned_by: str
    #: Who decided: ``node:<coordinator>``, or the planner whose CancelTrek aborted it; None while undecided.
    decided_by: str | None = None
    #: Who asked CancelTrek, if anyone did.
    cancelled_by: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class PrepareOutcome:
    """What a participant answered to one prepare (or why no answer counts as a no)."""

    index: int
    prepared: bool
    booking_id: str | None = None
    price_cents: int = 0
    currency: str = ""
    detail: str = ""


#: Longest reason or leg detail kept (a participant's error text can be long).
_TEXT_MAX = 500


def planned(
    *, trek_id: str, customer_id: str, legs: Sequence[LegPlan], now: datetime, prepare_deadline: datetime, planned_by: str
) -> TrekRecord:
    """A new trek as :func:`new_trek` records it: preparing, every leg pending, planned by ``planned_by``."""
    assert planned_by, "a trek names who planned it"
    return TrekRecord(
        trek_id=trek_id,
        customer_id=customer_id,
        state=TrekState.PREPARING,
        reason="",
        decision=None,
        legs=tuple(LegRecord(i, leg, LegState.PENDING, None, 0, "", "") for i, leg in enumerate(legs)),
        charges=(),
        created_at=now,
        prepare_deadline=prepare_deadline,
        decided_at=None,
        settled_at=None,
        updated_at=now,
        planned_by=planned_by,
    )


def new_trek(conn: Connection, trek: TrekRecord, *, key: str, fingerprint: str) -> tuple[str, str]:
    """Records ``trek`` (from :func:`planned`) and its legs; a repeated key returns the first trek's (id, fingerprint)."""
    inserted = conn.execute(
        text(
            """
            INSERT INTO treks (trek_id, idempotency_key, request_fingerprint, customer_id, state, created_at, prepare_deadline, updated_at, planned_by)
            VALUES (:trek_id, :key, :fingerprint, :customer_id, :state, :created_at, :deadline, :created_at, :planned_by)
            ON CONFLICT (idempotency_key) DO NOTHING
            RETURNING 1
            """
        ),
        {
            "trek_id": trek.trek_id, "key": key, "fingerprint": fingerprint, "customer_id": trek.customer_id,
            "state": trek.state.value, "created_at": trek.created_at, "deadline": trek.prepare_deadline, "planned_by": trek.planned_by,
        },
    ).first()
    if inserted is None:
        row = conn.execute(
            text("SELECT CAST(trek_id AS TEXT) AS trek_id, request_fingerprint FROM treks WHERE idempotency_key = :key"), {"key": key}
        ).one()
        return row.trek_id, row.request_fingerprint
    conn.execute(
        text(
            """
            INSERT INTO trek_legs (trek_id, leg_index, region, basecamp_id, resource_id, first_night, end_night, party_size, state)
            SELECT CAST(:trek_id AS UUID), CAST(e->>'leg_index' AS INT), e->>'region', e->>'basecamp_id', e->>'resource_id',
                   CAST(e->>'first_night' AS DATE), CAST(e->>'end_night' AS DATE), CAST(e->>'party_size' AS INT), e->>'state'
            FROM jsonb_array_elements(CAST(:legs AS JSONB)) AS e
            """
        ),
        {
            "trek_id": trek.trek_id,
            "legs": _json_rows({"leg_index": leg.index, "state": leg.state.value, **vars(leg.plan)} for leg in trek.legs),
        },
    )
    return trek.trek_id, fingerprint


def read_only(conn: Connection) -> Connection:
    """Marks the caller's transaction read-only, before its first statement: a read-only
    SERIALIZABLE transaction cannot be the pivot of a conflict (PostgreSQL's SSI), so the
    readers (GetTrek, the redriver's scans) no longer make the writers fail with 40001."""
    conn.execute(text("SET TRANSACTION READ ONLY"))
    return conn


def load(conn: Connection, trek_id: str) -> TrekRecord | None:
    row = conn.execute(
        text(
            """
            SELECT CAST(t.trek_id AS TEXT) AS trek_id, t.customer_id, t.state, t.reason, d.decision, t.created_at,
                   t.prepare_deadline, t.decided_at, t.settled_at, t.updated_at, t.planned_by, t.cancelled_by, d.decided_by
            FROM treks AS t LEFT JOIN trek_decisions AS d ON d.trek_id = t.trek_id
            WHERE t.trek_id = :trek_id
            """
        ),
        {"trek_id": trek_id},
    ).first()
    if row is None:
        return None
    legs = conn.execute(text("SELECT * FROM trek_legs WHERE trek_id = :trek_id ORDER BY leg_index"), {"trek_id": trek_id}).all()
    charges = conn.execute(text("SELECT * FROM trek_charges WHERE trek_id = :trek_id ORDER BY currency"), {"trek_id": trek_id}).all()
    return TrekRecord(
        trek_id=row.trek_id,
        customer_id=row.customer_id,
        state=TrekState(row.state),
        reason=row.reason,
        decision=Decision(row.decision) if row.decision else None,
        legs=tuple(_leg(leg) for leg in legs),
        charges=tuple(ChargeRecord(c.currency, c.amount_cents, c.charge_id, c.refunded_cents) for c in charges),
        created_at=row.created_at,
        prepare_deadline=row.prepare_deadline,
        decided_at=row.decided_at,
        settled_at=row.settled_at,
        updated_at=row.updated_at,
        planned_by=row.planned_by,
        decided_by=row.decided_by,
        cancelled_by=row.cancelled_by,
    )


def _leg(row: Any) -> LegRecord:  # noqa: ANN401 - a SQLAlchemy Row
    plan = LegPlan(row.region, row.basecamp_id, row.resource_id, row.first_night, row.end_night, row.party_size)
    return LegRecord(row.leg_index, plan, LegState(row.state), row.booking_id, row.price_cents, row.currency, row.detail)


def record_decision(
    conn: Connection,
    trek: TrekRecord,
    outcomes: Sequence[PrepareOutcome],
    charges: Sequence[ChargeRecord],
    decision: Decision,
    reason: str,
    now: datetime,
    actor: str,
    *,
    epoch: int,
) -> TrekRecord:
    """Stores what each participant answered and the charges made, then decides (as ``actor``,
    the coordinator's ``node:<id>``, under leader ``epoch``); returns the trek as it stands.

    ``trek`` is the fresh trek its planner drives (every leg pending, no charge). When this
    decision is the first, the result is what these writes made of ``trek``, without a
    read: no other writer touches an undecided trek's legs. When another decision stood
    already (a GetDecision past the deadline, a cancel, a leader that took the trek over
    while this planner was paused), the trek is read back here, and if that abort had
    already ended the trek while a charge of this planner still stands, the trek goes back
    to aborting (:func:`_reopen_for_refund`).
    """
    assert trek.decision is None and not trek.charges and all(leg.state is LegState.PENDING for leg in trek.legs), "a fresh trek"
    answers = {o.index: o for o in outcomes}
    legs = tuple(_answered(leg, answers[leg.index]) if leg.index in answers else leg for leg in trek.legs)
    # Only pending legs change, so a replay changes nothing.
    conn.execute(
        text(
            """
            UPDATE trek_legs AS l SET state = e->>'state', booking_id = e->>'booking_id', price_cents = CAST(e->>'price_cents' AS BIGINT),
                                      currency = e->>'currency', detail = e->>'detail'
            FROM jsonb_array_elements(CAST(:legs AS JSONB)) AS e
            WHERE l.trek_id = CAST(:trek_id AS UUID) AND l.leg_index = CAST(e->>'leg_index' AS INT) AND l.state = 'pending'
            """
        ),
        {
            "trek_id": trek.trek_id,
            "legs": _json_rows(
                {"leg_index": leg.index, "state": leg.state.value, "booking_id": leg.booking_id, "price_cents": leg.price_cents,
                 "currency": leg.currency, "detail": leg.detail}
                for leg in legs
                if leg.index in answers
            ),
        },
    )
    record_charges(conn, trek.trek_id, charges)
    reason = reason[:_TEXT_MAX]
    if not _insert_decision(conn, trek.trek_id, decision, reason, now, actor, epoch):
        if charges:
            _reopen_for_refund(conn, trek.trek_id, now)
        standing = load(conn, trek.trek_id)
        assert standing is not None and standing.decision is not None, "a decision row has its trek"
        return standing
    return dataclasses.replace(
        trek,
        state=_DECIDED_STATE[decision],
        reason=reason,
        decision=decision,
        legs=legs,
        charges=tuple(sorted(charges, key=lambda c: c.currency)),
        decided_at=now,
        updated_at=now,
        decided_by=actor,
    )


def _answered(leg: LegRecord, outcome: PrepareOutcome) -> LegRecord:
    state = LegState.PREPARED if outcome.prepared else LegState.REFUSED
    return dataclasses.replace(
        leg, state=state, booking_id=outcome.booking_id, price_cents=outcome.price_cents, currency=outcome.currency, detail=outcome.detail[:_TEXT_MAX]
    )


def record_charges(conn: Connection, trek_id: str, charges: Sequence[ChargeRecord]) -> None:
    """Stores charges the provider made for the trek; a currency already recorded keeps its row."""
    if charges:
        conn.execute(
            text(
                """
                INSERT INTO trek_charges (trek_id, currency, amount_cents, charge_id, refunded_cents)
                SELECT CAST(:trek_id AS UUID), e->>'currency', CAST(e->>'amount_cents' AS BIGINT), e->>'charge_id',
                       CAST(e->>'refunded_cents' AS BIGINT)
                FROM jsonb_array_elements(CAST(:charges AS JSONB)) AS e
                ON CONFLICT (trek_id, currency) DO NOTHING
                """
            ),
            {"trek_id": trek_id, "charges": _json_rows(vars(charge) for charge in charges)},
        )


def _reopen_for_refund(conn: Connection, trek_id: str, now: datetime) -> None:
    """Invariant 4 for a charge that landed after its trek was aborted and ended.

    A planner paused between its charge and its decision (SIGSTOP, a starved CPU) may find
    that a leader took the trek over meanwhile, presumed abort, refunded what the provider
    held *then* and ended it; if this planner then leads again, its fenced write succeeds
    and records a charge nobody refunds. So a trek that ended aborted while a recorded charge
    still stands goes back to ``aborting``, in the transaction that recorded the charge: the
    planner's own drive, or after a crash the redriver (it lists every trek not final),
    refunds it by reference and ends the trek again. A trek is ``aborted`` only with its
    money at rest."""
    reopened = conn.execute(
        text(
            """
            UPDATE treks SET state = 'aborting', settled_at = NULL, updated_at = :now
            WHERE trek_id = CAST(:trek_id AS UUID) AND state = 'aborted'
              AND EXISTS (SELECT 1 FROM trek_charges AS c WHERE c.trek_id = treks.trek_id AND c.refunded_cents < c.amount_cents)
            RETURNING 1
            """
        ),
        {"trek_id": trek_id, "now": now},
    ).first()
    if reopened is not None:
        _log.warning("trek %s: a charge landed after the trek was aborted; back to aborting so that it is refunded", trek_id)


def _json_rows(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as one JSONB array parameter (dates as ISO text, which CAST reads back)."""
    return json.dumps(list(rows), default=str)


def record_refund(conn: Connection, trek_id: str, charge_id: str, refunded_cents: int) -> None:
    conn.execute(
        text("UPDATE trek_charges SET refunded_cents = :refunded WHERE trek_id = :trek_id AND charge_id = :charge_id"),
        {"trek_id": trek_id, "charge_id": charge_id, "refunded": refunded_cents},
    )


_DECIDED_STATE = {Decision.COMMIT: TrekState.COMMITTING, Decision.ABORT: TrekState.ABORTING}


def decide(conn: Connection, trek_id: str, decision: Decision, reason: str, now: datetime, actor: str, *, epoch: int) -> Decision:
    """Writes ``decision`` by ``actor`` under leader ``epoch`` unless one stands already; returns the one that stands."""
    if _insert_decision(conn, trek_id, decision, reason[:_TEXT_MAX], now, actor, epoch):
        return decision
    standing = _standing(conn, trek_id)
    assert standing is not None, f"trek {trek_id}: no decision stands, yet none was written"
    return standing


def _standing(conn: Connection, trek_id: str) -> Decision | None:
    standing = conn.execute(text("SELECT decision FROM trek_decisions WHERE trek_id = :trek_id"), {"trek_id": trek_id}).scalar()
    return None if standing is None else Decision(standing)


def _insert_decision(conn: Connection, trek_id: str, decision: Decision, reason: str, now: datetime, actor: str, epoch: int) -> bool:
    """Writes the decision, naming who took it under which leader epoch, and moves the trek to
    driving it; False when a decision stood already. Raises NotLeader when ``epoch`` no longer
    leads (the fence is in the statement: a deposed leader's decision is never written)."""
    assert actor, "a decision names who took it"
    assert epoch > 0, f"a decision is written under a leader epoch, not {epoch}"
    won = conn.execute(
        text(
            f"""
            INSERT INTO trek_decisions (trek_id, decision, reason, decided_at, decided_by, epoch, recorded_at)
            SELECT CAST(:trek_id AS UUID), :decision, :reason, :now, :actor, :epoch, clock_timestamp()
            WHERE {decision_fence_sql(":epoch")}
            ON CONFLICT (trek_id) DO NOTHING RETURNING 1
            """
        ),
        {"trek_id": trek_id, "decision": decision.value, "reason": reason, "now": now, "actor": actor, "epoch": epoch},
    ).first()
    if won is None:
        if _standing(conn, trek_id) is None:
            FENCE_REFUSED.inc()
            raise NotLeader(f"leader epoch {epoch} is stale: no decision written for trek {trek_id}")
        return False
    conn.execute(
        text(
            """
            UPDATE treks SET state = :state, reason = :reason, decided_at = :now, updated_at = :now
            WHERE trek_id = :trek_id AND state = 'preparing'
            """
        ),
        {"trek_id": trek_id, "state": _DECIDED_STATE[decision].value, "reason": reason, "now": now},
    )
    return True


def cancel_asked(conn: Connection, trek_id: str, actor: str) -> None:
    """Records who asked to cancel the trek; the first to ask stays on the record."""
    assert actor, "a cancel names who asked for it"
    conn.execute(text("UPDATE treks SET cancelled_by = :actor WHERE trek_id = :trek_id AND cancelled_by IS NULL"), {"trek_id": trek_id, "actor": actor})


def set_legs(conn: Connection, trek_id: str, indexes: Sequence[int], state: LegState) -> None:
    if indexes:
        conn.execute(
            text("UPDATE trek_legs SET state = :state, detail = '' WHERE trek_id = :trek_id AND leg_index = ANY(:indexes)"),
            {"trek_id": trek_id, "indexes": list(indexes), "state": state.value},
        )


def note_leg(conn: Connection, trek_id: str, index: int, detail: str) -> None:
    """The last error driving a leg, for GetTrek and the stuck list."""
    conn.execute(
        text("UPDATE trek_legs SET detail = :detail WHERE trek_id = :trek_id AND leg_index = :index"),
        {"trek_id": trek_id, "index": index, "detail": detail[:_TEXT_MAX]},
    )


def move(conn: Connection, trek_id: str, sources: Sequence[TrekState], target: TrekState, now: datetime, reason: str | None = None) -> bool:
    """Moves the trek from one of ``sources`` to ``target``; False when it was elsewhere."""
    settled = now if target in FINAL_STATES else None
    moved = conn.execute(
        text(
            """
            UPDATE treks SET state = :target, updated_at = :now, settled_at = :settled, reason = COALESCE(:reason, reason)
            WHERE trek_id = :trek_id AND state = ANY(:sources)
            RETURNING 1
            """
        ),
        {"trek_id": trek_id, "target": target.value, "now": now, "settled": settled, "reason": reason, "sources": [s.value for s in sources]},
    ).first()
    return moved is not None


def settled(trek: TrekRecord, landed: Collection[int], target: LegState, final: TrekState, now: datetime) -> TrekRecord:
    """``trek`` as :func:`set_legs` (``landed`` to ``target``) and :func:`move` (to ``final``) at ``now`` leave it."""
    assert final in FINAL_STATES, f"{final} is not a final state"
    legs = tuple(dataclasses.replace(leg, state=target, detail="") if leg.index in landed else leg for leg in trek.legs)
    return dataclasses.replace(trek, state=final, legs=legs, settled_at=now, updated_at=now)


def unfinished(conn: Connection, *, limit: int) -> list[str]:
    rows = conn.execute(
        text("SELECT CAST(trek_id AS TEXT) AS trek_id FROM treks WHERE state NOT IN ('committed', 'aborted', 'cancelled') ORDER BY created_at LIMIT :limit"),
        {"limit": limit},
    ).all()
    return [row.trek_id for row in rows]


def list_treks(conn: Connection, *, state: TrekState | None, stuck_before: datetime | None, limit: int) -> list[str]:
    """Trek ids, newest first; ``stuck_before``: only unfinished treks created before it."""
    clauses, params = ["TRUE"], {"limit": limit}
    if state is not None:
        clauses.append("state = :state")
        params["state"] = state.value
    if stuck_before is not None:
        clauses.append("state NOT IN ('committed', 'aborted', 'cancelled') AND created_at < :stuck_before")
        params["stuck_before"] = stuck_before
    rows = conn.execute(
        text(f"SELECT CAST(trek_id AS TEXT) AS trek_id FROM treks WHERE {' AND '.join(clauses)} ORDER BY created_at DESC LIMIT :limit"),
        params,
    ).all()
    return [row.trek_id for row in rows]
