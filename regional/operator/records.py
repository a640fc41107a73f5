"""``operator_actions``: one durable record per keyed action, claimed before its effect and finished after the re-read.

Invariant 7 for operators. The record is inserted ``running`` under the caller's key
(``ON CONFLICT DO NOTHING``: of racing repeats exactly one inserts and runs); the others
find it and wait for it to be ``done``, then answer its outcome. Nothing of the effect is
in the record's transaction: the effects are the cluster's own guarded steps (a fenced
release, a settlement made due), each idempotent by itself, so a runner killed between
claim and finish leaves only a ``running`` row, which a repeat takes over once it is
older than :data:`TAKEOVER_SECONDS` and runs again to the same end. A transient failure
of the effect (not the owner, contention) gives the claim back, so the repeat at the
owner runs at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Engine, Row, text

from ridgeline.regional import errors
from ridgeline.regional.operator.model import Action, ActionRecord, Result
from ridgeline.regional.storage.db import read_transaction, run_transaction

#: A ``running`` record older than this belongs to a runner presumed dead (longer than any
#: action's wait, ``actions.WAIT_MAX_SECONDS``, plus its effect).
TAKEOVER_SECONDS = 120.0
#: How often a repeat looks whether the first runner finished.
POLL_SECONDS = 0.05
PAGE_SIZE_MAX = 500

_COLUMNS = "action_id, action, booking_id, basecamp_id, actor, reason, result, detail, requested_at, finished_at"

_CLAIM = text(
    f"""
    INSERT INTO operator_actions
        (action_id, idempotency_key, action, booking_id, basecamp_id, actor, reason, fingerprint, state, requested_at, started_at)
    VALUES (:action_id, :key, :action, :booking_id, :basecamp_id, :actor, :reason, :fingerprint, 'running', :now, :now)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING {_COLUMNS}, started_at
    """
)
_BY_KEY = text(f"SELECT {_COLUMNS}, fingerprint, state, started_at FROM operator_actions WHERE idempotency_key = :key")
_TAKE_OVER = text(
    f"""
    UPDATE operator_actions SET started_at = :now
    WHERE idempotency_key = :key AND state = 'running' AND started_at = :seen AND started_at < :stale_before
    RETURNING {_COLUMNS}, started_at
    """
)
_FINISH = text(
    f"""
    UPDATE operator_actions SET state = 'done', result = :result, detail = :detail, finished_at = :now
    WHERE action_id = :action_id AND state = 'running'
    RETURNING {_COLUMNS}
    """
)
_BY_ID = text(f"SELECT {_COLUMNS} FROM operator_actions WHERE action_id = :action_id")
_GIVE_BACK = text("DELETE FROM operator_actions WHERE action_id = :action_id AND state = 'running' AND started_at = :started_at")
_OF_BOOKING = text(f"SELECT {_COLUMNS} FROM operator_actions WHERE booking_id = :booking_id ORDER BY requested_at, action_id")


@dataclass(frozen=True)
class Claim:
    """``run``: this caller runs the action (``started_at`` identifies its claim);
    ``done``: a first run finished, ``record`` is the answer."""

    kind: Literal["run", "done"]
    record: ActionRecord
    started_at: datetime


def claim(
    engine: Engine,
    *,
    key: str,
    action: Action,
    booking_id: str,
    basecamp_id: str,
    actor: str,
    reason: str,
    fingerprint: str,
    clock: Callable[[], datetime],
    deadline: float,
) -> Claim:
    """Claims ``key`` for a run, or answers the finished first run of it.

    Waits (until ``deadline``) while another runner holds a live claim; raises
    IdempotencyKeyReused for a key first used for another request, and Contention when
    the first run is still going at the deadline (repeat later: it will have finished).
    """
    params = {
        "action_id": str(uuid.uuid4()), "key": key, "action": action.value, "booking_id": booking_id,
        "basecamp_id": basecamp_id, "actor": actor, "reason": reason, "fingerprint": fingerprint,
    }
    while True:
        params["now"] = now = clock()
        mine = run_transaction(engine, lambda conn: conn.execute(_CLAIM, params).one_or_none(), operation="operator_claim", idempotent=False)
        if mine is not None:
            return Claim("run", _record(mine), mine.started_at)
        found = read_transaction(engine, lambda conn: conn.execute(_BY_KEY, {"key": key}).one_or_none())
        if found is None:  # given back between our insert and our read: try again
            continue
        if found.fingerprint != fingerprint:
            raise errors.IdempotencyKeyReused(f"idempotency key {key.rsplit('/', 1)[-1]!r} was used for another action or booking")
        if found.state == "done":
            return Claim("done", _record(found), found.started_at)
        stale = {"key": key, "seen": found.started_at, "stale_before": now - timedelta(seconds=TAKEOVER_SECONDS), "now": now}
        taken = run_transaction(
            engine,
            lambda conn: conn.execute(_TAKE_OVER, stale).one_or_none(),
            operation="operator_claim",
            idempotent=False,
        )
        if taken is not None:
            return Claim("run", _record(taken), taken.started_at)
        if time.monotonic() + POLL_SECONDS >= deadline:
            raise errors.Contention(f"action {found.action_id} with this key is still running; repeat the call to get its outcome")
        time.sleep(POLL_SECONDS)


def finish(engine: Engine, claimed: Claim, result: Result, detail: str, *, now: datetime) -> ActionRecord:
    """Marks the claimed run done with what the re-read found; a run that a taker-over
    finished first answers that run's record (the same effect, one outcome)."""
    assert claimed.kind == "run"
    params = {"action_id": claimed.record.action_id, "result": result.value, "detail": detail, "now": now}

    def work(conn: Connection) -> ActionRecord:
        row = conn.execute(_FINISH, params).one_or_none() or conn.execute(_BY_ID, params).one()
        return _record(row)

    record = run_transaction(engine, work, operation="operator_finish", idempotent=True)
    assert record.result is not None, "a finished action has its result"
    return record


def give_back(engine: Engine, claimed: Claim) -> None:
    """Drops a claim whose effect failed transiently, so that a repeat runs at once."""
    params = {"action_id": claimed.record.action_id, "started_at": claimed.started_at}
    run_transaction(engine, lambda conn: conn.execute(_GIVE_BACK, params), operation="operator_give_back", idempotent=True)


def of_booking(conn: Connection, booking_id: str) -> list[ActionRecord]:
    """The booking's actions, oldest first (``operator_actions_by_booking``)."""
    return [_record(row) for row in conn.execute(_OF_BOOKING, {"booking_id": booking_id})]


def recent(conn: Connection, *, booking_id: str | None, basecamps: frozenset[str] | None, page_size: int, after: tuple[datetime, str] | None) -> list[ActionRecord]:
    """One page of the region's actions, newest first, by keyset on ``operator_actions_recent``
    (``page_size + 1`` rows: the caller tells from the extra one that there is more)."""
    assert 0 < page_size <= PAGE_SIZE_MAX
    clauses, params = ["TRUE"], {"limit": page_size + 1}
    if booking_id is not None:
        clauses.append("booking_id = :booking_id")
        params["booking_id"] = booking_id
    if basecamps is not None:
        clauses.append("basecamp_id = ANY(:basecamps)")
        params["basecamps"] = sorted(basecamps)
    if after is not None:
        clauses.append("(requested_at, action_id) < (:after_at, :after_id)")
        params.update(after_at=after[0], after_id=after[1])
    statement = text(f"SELECT {_COLUMNS} FROM operator_actions WHERE {' AND '.join(clauses)} ORDER BY requested_at DESC, action_id DESC LIMIT :limit")
    return [_record(row) for row in conn.execute(statement, params)]


def _record(row: Row) -> ActionRecord:
    return ActionRecord(
        action_id=str(row.action_id),
        action=Action(row.action),
        booking_id=str(row.booking_id),
        basecamp_id=row.basecamp_id,
        actor=row.actor,
        reason=row.reason,
        result=Result(row.result) if row.result is not None else None,
        detail=row.detail,
        requested_at=row.requested_at,
        finished_at=row.finished_at,
    )
