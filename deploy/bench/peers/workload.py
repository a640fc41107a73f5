"""The peers' booking workflow (hold → keyed charge → confirm, release on decline) and the client that drives it.

Each peer keeps its bookings in a ``peer_bookings`` table of its own PostgreSQL database:
a hold is a row, unique per (resource, night) while not released, so a replayed step can
neither hold twice nor lose a hold; the charge's idempotency key is the booking id, so a
replay of the charge step takes money once. Both steps are what a durable engine
replays after a crash, so each is idempotent by itself.

The driver runs ``threads`` callers that each wait for their booking's confirmation,
either back to back (``rate`` None: as fast as the system goes) or paced, each booking
started at its fixed arrival time so a system that keeps up never queues.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

from ridgeline.flows.payments import PaymentDeclined, PaymentGateway

SCHEMA = """
CREATE TABLE IF NOT EXISTS peer_bookings (
    booking_id text PRIMARY KEY,
    resource text NOT NULL,
    night date NOT NULL,
    state text NOT NULL,
    charge_id text,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    confirmed_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS peer_bookings_one_hold ON peer_bookings (resource, night) WHERE state <> 'released';
"""
AMOUNT_CENTS = 9_500
_ATTEMPTS = 20


@dataclass(frozen=True)
class Booking:
    booking_id: str
    resource: str
    night: date


def bookings(count: int, prefix: str) -> list[Booking]:
    """``count`` one-night stays on distinct (resource, night) pairs: no contention, the same set for every system."""
    start = date(2027, 1, 1)
    return [Booking(f"{prefix}-{i}", f"room-{i % 8}", start + timedelta(days=i // 8)) for i in range(count)]


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA)


def _execute(conn: psycopg.Connection, sql: str, params: tuple[object, ...]) -> None:
    """One autocommit statement, again on 40001/40P01: the server is SERIALIZABLE and the
    one-hold index makes neighbouring rows conflict under load (Ridgeline's node retries too)."""
    for attempt in range(_ATTEMPTS):
        try:
            conn.execute(sql, params)
            return
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected):
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.002 * (attempt + 1))


def hold(conn: psycopg.Connection, booking: Booking) -> None:
    _execute(
        conn,
        "INSERT INTO peer_bookings (booking_id, resource, night, state) VALUES (%s, %s, %s, 'held') ON CONFLICT (booking_id) DO NOTHING",
        (booking.booking_id, booking.resource, booking.night),
    )


def charge(gateway: PaymentGateway, booking: Booking) -> str | None:
    """The charge id, or None when the card was declined (the caller then releases)."""
    try:
        return gateway.charge(booking.booking_id, AMOUNT_CENTS, "EUR", booking.booking_id).charge_id
    except PaymentDeclined:
        return None


def confirm(conn: psycopg.Connection, booking_id: str, charge_id: str) -> None:
    _execute(
        conn,
        "UPDATE peer_bookings SET state = 'confirmed', charge_id = %s, confirmed_at = clock_timestamp() WHERE booking_id = %s AND state = 'held'",
        (charge_id, booking_id),
    )


def release(conn: psycopg.Connection, booking_id: str) -> None:
    _execute(conn, "UPDATE peer_bookings SET state = 'released' WHERE booking_id = %s AND state = 'held'", (booking_id,))


@dataclass(frozen=True)
class Drive:
    """What the callers saw: seconds from first start to last confirm, and each booking's time to confirmed."""

    seconds: float
    latencies_ms: list[float]
    errors: int

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.latencies_ms) or [float("nan")]
        return {
            "confirmed_per_second": round(len(self.latencies_ms) / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(statistics.median(ordered), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
        }


def drive(book: Callable[[Booking], bool], work: Sequence[Booking], threads: int, rate: float | None) -> Drive:
    """Calls ``book`` (True once confirmed) for every booking from ``threads`` callers; paced at ``rate``/s when given."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    started = time.perf_counter()

    def caller(index: int) -> None:
        nonlocal errors
        for position in range(index, len(work), threads):
            due = started + position / rate if rate else time.perf_counter()
            if rate and (wait := due - time.perf_counter()) > 0:
                time.sleep(wait)
            begin = due if rate else time.perf_counter()
            try:
                confirmed = book(work[position])
            except Exception:  # noqa: BLE001 - a failed booking is counted, the caller goes on with the next
                confirmed = False
            with lock:
                if confirmed:
                    latencies.append((time.perf_counter() - begin) * 1000)
                else:
                    errors += 1

    pool = [threading.Thread(target=caller, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return Drive(time.perf_counter() - started, latencies, errors)


def tally(dsn: str) -> dict[str, int]:
    """Bookings per state, and confirmed ones without a charge (must be 0)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        counts = dict(conn.execute("SELECT state, count(*) FROM peer_bookings GROUP BY state").fetchall())
        [(uncharged,)] = conn.execute("SELECT count(*) FROM peer_bookings WHERE state = 'confirmed' AND charge_id IS NULL").fetchall()
    return {**counts, "confirmed_without_charge": uncharged}
