"""Operator actions on treks (issue 14): redrive one now, or abort one that is not decided.

Both go through the protocol's own steps, never around them: an abort writes the ABORT
decision with :func:`decision_log.decide` under the leader's fence, in the same
transaction as the action's row (so the first decision still stands for everyone, and a
trek decided COMMIT is refused, never half aborted); the legs are then released and
the charges refunded by the ordinary drive (:meth:`Coordinator.drive_now`), whose claim
keeps a second thread off the trek.

Each action is keyed by the operator's idempotency key in ``trek_operator_actions``
(schema version 4), with its actor, reason and leader epoch. The first request with a
key decides the result and records it (an abort in the transaction of its decision, a
redrive once its wait ended); a repeat, even one racing the first (log writes are
serialized, :mod:`.group_commit`), answers that result, with the trek as re-read now. A
key reused for another action or trek is refused.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator.decision_log import Decision, TrekRecord
from ridgeline.global_coordinator.errors import InvalidTrek, TrekStateConflict
from ridgeline.global_coordinator.protocol import Coordinator

#: How often a wait re-reads the trek.
_POLL_SECONDS = 0.05
_TEXT_MAX = 500


class Action(enum.StrEnum):
    REDRIVE = "redrive"
    ABORT = "abort"


class Result(enum.StrEnum):
    APPLIED = "applied"
    STILL_PENDING = "still_pending"
    ALREADY_DONE = "already_done"
    REFUSED = "refused"


@dataclass(frozen=True)
class ActionRecord:
    """One row of ``trek_operator_actions``; ``result`` is None while a redrive runs."""

    idempotency_key: str
    action: Action
    trek_id: str
    actor: str
    reason: str
    requested_at: datetime
    result: Result | None
    detail: str


@dataclass(frozen=True)
class Outcome:
    record: ActionRecord
    #: The trek re-read after the action.
    trek: TrekRecord


class TrekOperator:
    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    def abort(self, key: str, trek_id: str, reason: str, *, actor: str, wait_seconds: float) -> Outcome:
        """Decides an undecided trek ABORT (as ``actor``) and drives the abort; raises
        TrekStateConflict (recorded, so a repeat too) when the trek is decided COMMIT."""
        self._coordinator.get(trek_id)  # NOT_FOUND before anything is written
        why = f"aborted by {actor}" + (f": {reason}" if reason else "")

        def write(conn: Connection, epoch: int) -> ActionRecord:
            first = _claim_key(conn, key, Action.ABORT, trek_id, actor, reason, epoch, self._coordinator.now())
            if first is not None:
                return first
            trek = log.load(conn, trek_id)
            assert trek is not None, f"trek {trek_id} has an action row, so it exists"
            if trek.decision is None:
                # Serialized with every other log write: nothing decided it since the load above.
                standing = log.decide(conn, trek_id, Decision.ABORT, why, self._coordinator.now(), actor, epoch=epoch)
                result, detail = (Result.APPLIED, "decided abort; the drive aborts its legs and refunds its charges") if standing is Decision.ABORT else _refusal(trek_id)
            elif trek.decision is Decision.ABORT:
                result, detail = Result.ALREADY_DONE, f"already decided abort by {trek.decided_by or 'unrecorded'}: {trek.reason}"
            else:
                result, detail = _refusal(trek_id, trek)
            return _finish(conn, key, result, detail, self._coordinator.now())

        record = self._coordinator.write(write)
        if record.result is Result.REFUSED:
            raise TrekStateConflict(record.detail)
        return Outcome(record, self._settled(trek_id, wait_seconds))

    def redrive(self, key: str, trek_id: str, reason: str, *, actor: str, wait_seconds: float) -> Outcome:
        """Drives an unfinished trek now and answers it as re-read once it is final or
        ``wait_seconds`` passed (APPLIED when final by then, else STILL_PENDING and why)."""
        before = self._coordinator.get(trek_id)

        def write(conn: Connection, epoch: int) -> ActionRecord:
            first = _claim_key(conn, key, Action.REDRIVE, trek_id, actor, reason, epoch, self._coordinator.now())
            if first is not None:
                return first
            if before.final:
                return _finish(conn, key, Result.ALREADY_DONE, f"already {before.state.value}", self._coordinator.now())
            return _load(conn, key)

        record = self._coordinator.write(write)
        if record.result is None:
            # The first request with this key, or a repeat of one not finished (racing it, or
            # its process died): driving again is harmless (one claim per trek), and the
            # first result recorded stands for every request with the key.
            trek = self._settled(trek_id, wait_seconds)
            result, detail = (Result.APPLIED, f"driven to {trek.state.value}") if trek.final else (Result.STILL_PENDING, _pending_detail(trek))
            record = self._coordinator.write(lambda conn, _: _finish(conn, key, result, detail, self._coordinator.now()))
        return Outcome(record, self._coordinator.get(trek_id))

    def _settled(self, trek_id: str, wait_seconds: float) -> TrekRecord:
        """Drives the trek (unless a thread drives it already) and re-reads it until it is final or the wait ends."""
        self._coordinator.drive_now(trek_id)
        until = time.monotonic() + wait_seconds
        while not (trek := self._coordinator.get(trek_id)).final and time.monotonic() < until:
            time.sleep(_POLL_SECONDS)
        return trek


def _refusal(trek_id: str, trek: TrekRecord | None = None) -> tuple[Result, str]:
    state = f" ({trek.state.value})" if trek is not None else ""
    return Result.REFUSED, f"trek {trek_id} is decided commit{state}: aborting it would leave half a trek; a committed trek is undone with CancelTrek"


def _pending_detail(trek: TrekRecord) -> str:
    stuck = [f"leg {leg.index}: {leg.detail}" for leg in trek.legs if leg.detail]
    return f"still {trek.state.value}" + (f"; {'; '.join(stuck)}" if stuck else "")


def _claim_key(
    conn: Connection, key: str, action: Action, trek_id: str, actor: str, reason: str, epoch: int, now: datetime
) -> ActionRecord | None:
    """Records a new action under ``key``; returns None when this is its first request, else
    the row the first one wrote. Raises InvalidTrek for a key first used for another request."""
    inserted = conn.execute(
        text(
            """
            INSERT INTO trek_operator_actions (idempotency_key, action, trek_id, actor, reason, epoch, requested_at)
            VALUES (:key, :action, CAST(:trek_id AS UUID), :actor, :reason, :epoch, :now)
            ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1
            """
        ),
        {"key": key, "action": action.value, "trek_id": trek_id, "actor": actor, "reason": reason[:_TEXT_MAX], "epoch": epoch, "now": now},
    ).first()
    if inserted is not None:
        return None
    first = _load(conn, key)
    if (first.action, first.trek_id) != (action, trek_id):
        raise InvalidTrek(f"idempotency key {key!r} was first used to {first.action.value} trek {first.trek_id}")
    return first


def _finish(conn: Connection, key: str, result: Result, detail: str, now: datetime) -> ActionRecord:
    conn.execute(
        text("UPDATE trek_operator_actions SET result = :result, detail = :detail, finished_at = :now WHERE idempotency_key = :key AND result IS NULL"),
        {"key": key, "result": result.value, "detail": detail[:_TEXT_MAX], "now": now},
    )
    return _load(conn, key)


def _load(conn: Connection, key: str) -> ActionRecord:
    row = conn.execute(
        text(
            """
            SELECT idempotency_key, action, CAST(trek_id AS TEXT) AS trek_id, actor, reason, requested_at, result, detail
            FROM trek_operator_actions WHERE idempotency_key = :key
            """
        ),
        {"key": key},
    ).one()
    return ActionRecord(
        row.idempotency_key, Action(row.action), row.trek_id, row.actor, row.reason, row.requested_at, None if row.result is None else Result(row.result), row.detail
    )
