"""Idempotency records: the first result of a keyed request, returned to every repeat.

Invariant 7. A record is written in the same transaction as the effect it describes,
so a crash can never leave an effect without its record or a record without its effect.
Writers do not read the record first: a repeat surfaces as a unique violation on the
record's primary key, its transaction rolls back whole, and :func:`answer_from_record`
answers the stored first result. (Reading first costs a round trip and, under
SERIALIZABLE on PostgreSQL, predicate locks on the index that made concurrent writers
of other keys fail with 40001: measured, 341 failures for 128 racing sold-out holds.)
Definitive refusals (sold out, illegal transition…) are recorded too: the first result
of a request is its answer, even when the answer was no. Transient failures (contention,
an unreachable database) are not recorded, so a retry with the same key can succeed.

The same record resolves a commit whose outcome was lost (:func:`run_keyed`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from ridgeline.regional import errors
from ridgeline.regional.booking.model import Booking
from ridgeline.regional.storage.db import AMBIGUOUS_RERUNS_MAX, count_resolutions, run_transaction
from ridgeline.routing.retry import Resolution

R = TypeVar("R")

#: The refusals worth remembering, by the name stored in the record.
_RECORDED_ERRORS: dict[str, type[errors.BookingError]] = {
    cls.__name__: cls
    for cls in (
        errors.SoldOut,
        errors.NightsNotOpen,
        errors.NotFound,
        errors.IllegalTransition,
        errors.HoldExpired,
    )
}

#: The constraint whose violation means "a concurrent request with this key won".
KEY_CONSTRAINT = "idempotency_records_pkey"


def record_insert_sql(
    *,
    key: str = ":key",
    fingerprint: str = ":fingerprint",
    result: str = "CAST(:result AS JSONB)",
    error_kind: str = "NULL",
    error_message: str = "NULL",
    source: str = "",
) -> str:
    """The INSERT of idempotency records, composed here for every statement that writes one.

    Each argument is the SQL expression of its column; the defaults are the bind names of
    :func:`insert_params` and a record of a result (no refusal). ``source`` is a FROM
    clause: one record per row it yields, so a statement that just wrote bookings (the
    hold, a group-commit round) records them in the same statement, with no round trip.
    Without it the statement inserts the one record bound by :func:`insert_params`.
    """
    assert key and fingerprint and result, "every record has a key, a fingerprint and a result expression"
    return (
        "INSERT INTO idempotency_records"
        " (idempotency_key, operation, request_fingerprint, result, error_kind, error_message, created_at)"
        f" SELECT {key}, :operation, {fingerprint}, {result}, {error_kind}, {error_message}, :now {source}"
    )


_LOOKUP = text(
    """
    SELECT operation, request_fingerprint, result, error_kind, error_message
    FROM idempotency_records WHERE idempotency_key = :key
    """
)

#: A record of either outcome, bound by :func:`insert_params`.
_INSERT = text(record_insert_sql(error_kind=":error_kind", error_message=":error_message"))


def fingerprint(operation: str, fields: dict[str, Any]) -> str:
    """A stable digest of what a request asks for, to spot a key reused for another request."""
    canonical = json.dumps({"operation": operation, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def replay(conn: Connection, key: str, operation: str, request_fingerprint: str) -> Booking | None:
    """The first result for ``key``: a booking, a raised recorded refusal, or None if new."""
    row = conn.execute(_LOOKUP, {"key": key}).one_or_none()
    if row is None:
        return None
    if row.operation != operation or row.request_fingerprint != request_fingerprint:
        raise errors.IdempotencyKeyReused(
            f"idempotency key {key!r} was already used for a different {row.operation} request; "
            "use a new key for a new request"
        )
    if row.error_kind is not None:
        raise _RECORDED_ERRORS[row.error_kind](row.error_message)
    return Booking.from_json(row.result)


def answer_from_record(
    engine: Engine,
    key: str,
    operation: str,
    request_fingerprint: str,
    *,
    deadline: float | None,
) -> Booking:
    """After a key conflict: the committed first result, or its recorded refusal raised."""

    def read(conn: Connection) -> Booking:
        prior = replay(conn, key, operation, request_fingerprint)
        assert prior is not None, "a key conflict implies a committed record"
        return prior

    return run_transaction(engine, read, deadline=deadline)


def run_keyed(
    engine: Engine,
    key: str,
    operation: str,
    request_fingerprint: str,
    attempt: Callable[[], R],
    *,
    deadline: float | None,
    ambiguous: errors.AmbiguousCommit | None = None,
) -> R | Booking:
    """Runs a keyed write and answers a repeat of its key from the key's record.

    ``attempt`` runs the write's transaction(s), each recording its outcome under ``key``
    in the transaction of its effect. A key conflict means the key's first request
    committed: its stored result is answered (or its recorded refusal raised).

    A lost commit (:class:`errors.AmbiguousCommit`) is resolved by the key, never guessed:
    ``attempt`` runs again with the same key. If the lost commit landed, the re-run's record
    insert meets that record, the re-run rolls back whole, and the first result is answered
    (resolution ``committed``). If it did not, the re-run applies the write, once
    (``not_committed``). A bare read of the record would not do: a COMMIT still in flight
    on the dead connection can land after such a read, whereas the re-run's insert waits on
    the key's unique index until that transaction has ended. ``ambiguous``: a commit already
    lost before this call (a group-commit round the request was in), resolved the same way.
    A re-run that answers what is never recorded (not the owner) leaves it ``unresolved``:
    the client's retry with the key, at the owner, resolves it.
    """
    lost = [ambiguous] if ambiguous is not None else []
    resolution = Resolution.UNRESOLVED
    try:
        for _ in range(AMBIGUOUS_RERUNS_MAX + 1):
            if lost and deadline is not None and time.monotonic() >= deadline:
                break
            try:
                outcome = attempt()
            except errors.AmbiguousCommit as error:
                lost.append(error)
                continue
            except IntegrityError as error:
                if not is_key_conflict(error):
                    raise
                resolution = Resolution.COMMITTED
                return answer_from_record(engine, key, operation, request_fingerprint, deadline=deadline)
            if is_recorded(outcome):
                resolution = Resolution.NOT_COMMITTED
            return outcome
        raise lost[-1]
    finally:
        count_resolutions(operation, resolution, len(lost))


def is_recorded(outcome: object) -> bool:
    """Whether a keyed write's outcome is one its key's record stores (a result, a lasting refusal)."""
    return isinstance(outcome, Booking) or type(outcome).__name__ in _RECORDED_ERRORS


def insert_params(
    key: str,
    operation: str,
    request_fingerprint: str,
    now: datetime,
    *,
    result: Booking | None = None,
    error: errors.BookingError | None = None,
) -> dict[str, Any]:
    """Bind parameters for a record (also used by the hold's combined insert)."""
    assert (result is None) != (error is None), "a record holds exactly one outcome"
    return {
        "key": key,
        "operation": operation,
        "fingerprint": request_fingerprint,
        "result": json.dumps(result.to_json()) if result is not None else None,
        "error_kind": type(error).__name__ if error is not None else None,
        "error_message": str(error) if error is not None else None,
        "now": now,
    }


def record(
    conn: Connection,
    key: str,
    operation: str,
    request_fingerprint: str,
    now: datetime,
    *,
    result: Booking | None = None,
    error: errors.BookingError | None = None,
) -> None:
    """Stores the outcome of a keyed request in the caller's transaction."""
    if error is not None and not is_recorded(error):
        return
    conn.execute(_INSERT, insert_params(key, operation, request_fingerprint, now, result=result, error=error))


#: Records of many results in one statement, from a JSON array (:func:`record_results`).
_INSERT_RESULTS = text(
    record_insert_sql(
        key="r.key", fingerprint="r.fingerprint", result="r.result",
        source="FROM jsonb_to_recordset(CAST(:records AS JSONB)) AS r(key TEXT, fingerprint TEXT, result JSONB)",
    )
)


def record_results(conn: Connection, operation: str, now: datetime, results: Sequence[tuple[str, str, Booking]]) -> None:
    """Stores the results of many keyed requests (``(key, fingerprint, booking)``) in the
    caller's transaction, in one statement: a batch of moves records each under its own key."""
    if results:
        records = [{"key": key, "fingerprint": fp, "result": booking.to_json()} for key, fp, booking in results]
        conn.execute(_INSERT_RESULTS, {"records": json.dumps(records), "operation": operation, "now": now})


_FORGET = text(
    """
    DELETE FROM idempotency_records
    WHERE idempotency_key IN (
        SELECT idempotency_key FROM idempotency_records
        WHERE created_at < :cutoff ORDER BY created_at LIMIT :batch_max
    )
    """
)


def forget_older_than(conn: Connection, cutoff: datetime, *, batch_max: int) -> int:
    """Deletes up to ``batch_max`` records created before ``cutoff``; returns how many.

    Keys are remembered for a retention window (a week by default, Stripe keeps 24 h),
    long enough for any client retry; without this the table grows with every request.
    """
    return conn.execute(_FORGET, {"cutoff": cutoff, "batch_max": batch_max}).rowcount


def is_key_conflict(error: BaseException) -> bool:
    """True when ``error`` is the unique violation of a concurrent request with the same key."""
    orig = getattr(error, "orig", None)
    diag = getattr(orig, "diag", None)
    return getattr(orig, "sqlstate", None) == "23505" and getattr(diag, "constraint_name", None) == KEY_CONSTRAINT
