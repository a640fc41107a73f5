"""Region database access: engines and the whole-transaction retry helper.

ARCHITECTURE.md §3: CockroachDB in production, PostgreSQL here, both through the
``cockroachdb+psycopg`` URL scheme and SERIALIZABLE isolation. Serialization failures
(SQLSTATE 40001) and deadlocks (40P01) are retried by re-running the *whole* transaction
on a fresh BEGIN, with capped, jittered exponential backoff and a bounded attempt count.
A COMMIT whose connection was lost is never retried as if it had failed: its outcome is
unknown (:class:`AmbiguousCommit`) until the write's key or its idempotence resolves it.
``sqlalchemy_cockroachdb.run_transaction`` is not used: on PostgreSQL it retries inside
the failed snapshot and never recovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ridgeline.regional.errors import AmbiguousCommit, Contention, DatabaseUnavailable, DeadlineExceeded
from ridgeline.regional.metrics import AMBIGUOUS_COMMITS, AMBIGUOUS_RESOLUTIONS, DB_RETRIES
from ridgeline.routing.retry import Resolution, RetryPolicy

T = TypeVar("T")
Isolation = Literal["SERIALIZABLE", "READ COMMITTED"]

#: SQLSTATEs after which re-running the whole transaction can succeed.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

#: SQLSTATEs (besides class 08) after which a COMMIT in flight may or may not have committed.
_OUTCOME_UNKNOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014", "40003"})

_LOCK_TIMEOUT_SQLSTATE = "55P03"

#: Most re-runs of idempotent work after ambiguous commits, and of a keyed write by its key.
AMBIGUOUS_RERUNS_MAX = 3


#: Serialization failures resolve fast; many short attempts beat few long waits.
DEFAULT_RETRY = RetryPolicy(attempts_max=12, backoff_base_seconds=0.002, backoff_cap_seconds=0.25)


def make_engine(
    url: str,
    *,
    pool_size: int = 16,
    application_name: str = "ridgeline",
    lock_timeout_ms: int | None = None,
    idle_in_transaction_timeout_ms: int | None = None,
    isolation_level: Isolation = "SERIALIZABLE",
) -> Engine:
    """An engine whose every transaction runs SERIALIZABLE, whatever the server default is.

    ``isolation_level="READ COMMITTED"`` is for stand-ins of outside systems (the payment
    gateway's ledger), whose isolation is their own business, and for the hold sweep's one
    statement, whose safety beside the serializable hot path is argued in
    ``booking/expiry.py``; everything else in Ridgeline's databases runs SERIALIZABLE, as
    on CockroachDB.

    ``lock_timeout_ms`` bounds how long a statement waits for a row lock (SQLSTATE 55P03
    when exceeded): for work that must not queue behind one stuck transaction.
    ``idle_in_transaction_timeout_ms`` makes the server end a transaction its client left
    idle that long: a node paused mid-transaction (SIGSTOP, a stalled VM) then cannot keep
    row locks that the basecamp's next owner needs, nor commit after resuming.

    Statement parameters (customer ids, among others) are kept out of every error message
    and log line SQLAlchemy writes (``hide_parameters``): an unexpected error is logged
    whole, and customer identifiers must never reach a log (issue 11, item 9).
    """
    # libpq splits options at spaces; a backslash keeps "read committed" one value.
    options = "-c default_transaction_isolation=" + isolation_level.lower().replace(" ", "\\ ")
    if lock_timeout_ms is not None:
        options += f" -c lock_timeout={int(lock_timeout_ms)}"
    if idle_in_transaction_timeout_ms is not None:
        options += f" -c idle_in_transaction_session_timeout={int(idle_in_transaction_timeout_ms)}"
    return create_engine(
        url,
        isolation_level=isolation_level,
        pool_size=pool_size,
        max_overflow=0,
        # No ping per checkout: after a failover (ARCHITECTURE.md §3) the dead primary's sockets
        # fail at first use as a disconnect, which invalidates the whole pool, and
        # run_transaction goes on with a fresh connection (or, with a COMMIT in flight, says
        # the outcome is unknown); a ping would cost a round trip per transaction for that.
        pool_pre_ping=False,
        pool_timeout=10,
        hide_parameters=True,
        # The server default too, for statements that run as implicit transactions.
        connect_args={
            "application_name": application_name,
            "connect_timeout": 5,
            "options": options,
        },
    )


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE behind a SQLAlchemy or psycopg error, if there is one."""
    orig = getattr(error, "orig", error)
    return getattr(orig, "sqlstate", None)


def run_transaction(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    policy: RetryPolicy = DEFAULT_RETRY,
    deadline: float | None = None,
    single_statement: bool = False,
    operation: str = "transaction",
    idempotent: bool = False,
) -> T:
    """Runs ``work`` in one transaction, re-running it whole on a serialization failure.

    ``work`` must be safe to run again from the start: it may only touch the database
    through the connection it is given (never a payment provider). Domain errors raised
    by ``work`` roll the transaction back and propagate unchanged. ``deadline`` is a
    ``time.monotonic()`` instant after which no new attempt starts.

    ``single_statement``: ``work`` issues exactly one statement, run as its own implicit
    transaction (autocommit). That saves the BEGIN and COMMIT round trips, and
    CockroachDB commits such a statement in one phase and retries it server-side.

    What is retried depends on whether the transaction can have committed:

    * certainly not: a serialization failure or deadlock (also when COMMIT reports it), a
      refused connection, any error of a statement before COMMIT. Contention is retried
      with backoff; a dropped connection once, on a fresh one (SQLAlchemy has then
      invalidated the whole pool, so the retry does not meet another stale connection).
    * unknown: the connection was lost while COMMIT was in flight (or the one statement of
      ``single_statement``). That raises :class:`AmbiguousCommit` naming ``operation``,
      unless the caller declares the work ``idempotent``: idempotent by the rows' state
      (a sweep, a settlement step guarded by its state) or only reading. Such work is run
      again, at most ``AMBIGUOUS_RERUNS_MAX`` times, and counted as resolution ``rerun``.
      Keyed writes resolve it by their key instead (``booking.idempotency.run_keyed``).
    """
    assert operation, "name the operation: it labels the ambiguous-commit metrics"
    lost: list[AmbiguousCommit] = []
    try:
        while True:
            try:
                result = _retried(engine, work, policy, deadline, single_statement, operation)
            except AmbiguousCommit as error:
                if not idempotent or len(lost) >= AMBIGUOUS_RERUNS_MAX or (deadline is not None and time.monotonic() >= deadline):
                    raise
                lost.append(error)
                continue
            count_resolutions(operation, Resolution.RERUN, len(lost))
            return result
    except BaseException:
        count_resolutions(operation, Resolution.UNRESOLVED, len(lost))
        raise


def read_transaction(engine: Engine, work: Callable[[Connection], T], *, deadline: float | None = None, single_statement: bool = False) -> T:
    """``run_transaction`` for work that only reads: a lost COMMIT of a read changed nothing,
    so it is run again like any idempotent work."""
    return run_transaction(engine, work, deadline=deadline, single_statement=single_statement, operation="read", idempotent=True)


def count_resolutions(operation: str, resolution: Resolution, count: int = 1) -> None:
    """Counts ``count`` ambiguous commits of ``operation`` as resolved by ``resolution``."""
    assert count >= 0
    if count:
        AMBIGUOUS_RESOLUTIONS.labels(operation, resolution.value).inc(count)


def _retried(
    engine: Engine, work: Callable[[Connection], T], policy: RetryPolicy, deadline: float | None, single_statement: bool, operation: str
) -> T:
    """One transaction, retried while every failure is certain not to have committed."""
    reconnected = False
    for attempt in range(1, policy.attempts_max + 1):
        try:
            return _once(engine, work, single_statement, operation)
        except DBAPIError as error:
            state = sqlstate(error)
            if state in RETRYABLE_SQLSTATES:
                DB_RETRIES.labels(state).inc()
                if attempt == policy.attempts_max:
                    raise Contention(f"gave up after {attempt} attempts lost to concurrent writers") from error
                pause = policy.backoff_seconds(attempt)
                if deadline is not None and time.monotonic() + pause >= deadline:
                    raise DeadlineExceeded("deadline passed while retrying a contended transaction") from error
                time.sleep(pause)
                continue
            if state == _LOCK_TIMEOUT_SQLSTATE:  # the engine's lock_timeout: a wait the caller bounded on purpose
                raise Contention(f"gave up waiting for a row lock ({_first_line(error)})") from error
            if error.connection_invalidated and not reconnected and (deadline is None or time.monotonic() < deadline):
                DB_RETRIES.labels("reconnect").inc()
                reconnected = True
                continue
            if isinstance(error, OperationalError) or error.connection_invalidated:
                raise DatabaseUnavailable(
                    f"region database unreachable: {_first_line(error)}; retry with the same idempotency key"
                ) from error
            raise
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def _once(engine: Engine, work: Callable[[Connection], T], single_statement: bool, operation: str) -> T:
    """One attempt. An error that leaves the outcome unknown becomes AmbiguousCommit; every
    other error is raised as it is, and is certain not to have committed."""
    with engine.connect() as conn:  # a refused connection: nothing was sent
        if single_statement:
            with _commit_in_flight(operation):
                return work(conn.execution_options(isolation_level="AUTOCOMMIT"))
        transaction = conn.begin()
        try:
            result = work(conn)  # a failure here: the server never saw COMMIT, and rolls back
        except BaseException:
            if transaction.is_active:
                transaction.rollback()
            raise
        with _commit_in_flight(operation):
            transaction.commit()
        return result


@contextmanager
def _commit_in_flight(operation: str) -> Iterator[None]:
    """Turns a connection lost while a commit is in flight into AmbiguousCommit."""
    try:
        yield
    except DBAPIError as error:
        if not outcome_unknown(error):
            raise  # the server answered: whatever it said, it did not commit
        AMBIGUOUS_COMMITS.labels(operation).inc()
        raise AmbiguousCommit(
            f"region database unreachable while {operation} was committing: {_first_line(error)}; "
            "whether it took effect is unknown; retry with the same idempotency key",
            operation=operation,
            sqlstate=sqlstate(error),
        ) from error


def outcome_unknown(error: DBAPIError) -> bool:
    """Whether ``error``, raised by a COMMIT in flight, leaves its outcome unknown.

    Unknown: the connection ended with no answer (psycopg's OperationalError without a
    SQLSTATE, SQLAlchemy's invalidated connection), a connection exception (class 08), the
    server shutting down or crashing under the commit (57P01-57P03), a cancel of the wait
    for a synchronous standby (57014: committed locally, maybe not replicated), or
    CockroachDB's "result is ambiguous" (40003). Any other SQLSTATE is the server refusing
    the commit (40001 at commit, a deferred constraint): certainly not committed.
    """
    state = sqlstate(error)
    if state is None:
        return isinstance(error, OperationalError) or error.connection_invalidated
    return state.startswith("08") or state in _OUTCOME_UNKNOWN_SQLSTATES


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", error)) or type(error).__name__
    return text.splitlines()[0]
