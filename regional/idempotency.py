"""Idempotency records: the first result of a keyed request, returned to every repeat.

Invariant 7. A record is written in the same transaction as the effect it describes,
so a crash can never leave an effect without its record or a record without its effect.
Definitive refusals (sold out, illegal transition…) are recorded too: the first result
of a request is its answer, even when the answer was no. Transient failures (contention,
an unreachable database) are not recorded, so a retry with the same key can succeed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from . import errors
from .model import Booking

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

_LOOKUP = text(
    """
    SELECT operation, request_fingerprint, result, error_kind, error_message
    FROM idempotency_records WHERE idempotency_key = :key
    """
)

_INSERT = text(
    """
    INSERT INTO idempotency_records
        (idempotency_key, operation, request_fingerprint, result, error_kind, error_message, created_at)
    VALUES (:key, :operation, :fingerprint, CAST(:result AS JSONB), :error_kind, :error_message, :now)
    """
)


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
    if error is not None and type(error).__name__ not in _RECORDED_ERRORS:
        return
    conn.execute(_INSERT, insert_params(key, operation, request_fingerprint, now, result=result, error=error))


def is_key_conflict(error: BaseException) -> bool:
    """True when ``error`` is the unique violation of a concurrent request with the same key."""
    orig = getattr(error, "orig", None)
    diag = getattr(orig, "diag", None)
    return getattr(orig, "sqlstate", None) == "23505" and getattr(diag, "constraint_name", None) == KEY_CONSTRAINT
