"""Region database access: engines and the whole-transaction retry helper.

ARCHITECTURE.md §3: CockroachDB in production, PostgreSQL here, both through the
``cockroachdb+psycopg`` URL scheme and SERIALIZABLE isolation. Serialization failures
(SQLSTATE 40001) and deadlocks (40P01) are retried by re-running the *whole* transaction
on a fresh BEGIN, with capped, jittered exponential backoff and a bounded attempt count.
``sqlalchemy_cockroachdb.run_transaction`` is not used: on PostgreSQL it retries inside
the failed snapshot and never recovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ridgeline.regional.errors import Contention, DatabaseUnavailable, DeadlineExceeded
from ridgeline.regional.metrics import DB_RETRIES
from ridgeline.routing.retry import RetryPolicy

T = TypeVar("T")
Isolation = Literal["SERIALIZABLE", "READ COMMITTED"]

#: SQLSTATEs after which re-running the whole transaction can succeed.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


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

    ``isolation_level="READ COMMITTED"`` is for stand-ins of outside systems only (the
    payment gateway's ledger), whose isolation is their own business; Ridgeline's own
    databases always run SERIALIZABLE, as CockroachDB does.

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
) -> T:
    """Runs ``work`` in one transaction, re-running it whole on a serialization failure.

    ``work`` must be safe to run again from the start: it may only touch the database
    through the connection it is given (never a payment provider). Domain errors raised
    by ``work`` roll the transaction back and propagate unchanged. ``deadline`` is a
    ``time.monotonic()`` instant after which no new attempt starts.

    ``single_statement``: ``work`` issues exactly one statement, run as its own implicit
    transaction (autocommit). That saves the BEGIN and COMMIT round trips, and
    CockroachDB commits such a statement in one phase and retries it server-side.

    A dropped connection (the database restarted, a proxy reset it) is retried once on a
    fresh connection: SQLAlchemy has then invalidated the whole pool, so the retry does
    not meet another stale connection. If the drop hit the COMMIT, the first attempt may
    have committed; every ``work`` here is keyed (idempotency records) or guarded by the
    row's state, so running it again answers the first result instead of acting twice.
    """
    reconnected = False
    for attempt in range(1, policy.attempts_max + 1):
        try:
            if single_statement:
                with engine.connect() as conn:
                    return work(conn.execution_options(isolation_level="AUTOCOMMIT"))
            with engine.connect() as conn, conn.begin():
                return work(conn)
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


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", error)) or type(error).__name__
    return text.splitlines()[0]
