"""Checks of settlement against its evidence: the region database, the gateway's own ledger,
and the mail spool. Each is computed by SQL or file listing, independently of the code under test."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from gateway_process import Gateway
from invariants import query

TERMINAL = ("confirmed", "released", "refunded")


def settlement_states(url: str, booking_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """booking id -> (settlement state, booking state)."""
    rows = query(
        url,
        "SELECT s.booking_id::text AS id, s.state, b.state AS booking_state FROM settlements s JOIN bookings b USING (booking_id)"
        " WHERE s.booking_id::text = ANY(%(ids)s)",
        {"ids": list(booking_ids)},
    )
    return {row.id: (row.state, row.booking_state) for row in rows}


def wait_until_settled(url: str, booking_ids: list[str], timeout_seconds: float, states: tuple[str, ...] = TERMINAL) -> dict[str, tuple[str, str]]:
    """Polls until every booking's settlement is in ``states``; returns the last reading."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        found = settlement_states(url, booking_ids)
        if len(found) == len(booking_ids) and all(state in states for state, _ in found.values()):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled after {timeout_seconds} s: {found}")
        time.sleep(0.1)


def standing_cents(gateway: Gateway, booking_id: str) -> int:
    """What the gateway holds for this booking now: succeeded charges minus their refunds."""
    [(standing,)] = gateway.sql(
        "SELECT COALESCE(SUM(amount_cents - refunded_cents), 0) FROM gateway_charges WHERE reference = %s AND status = 'succeeded'",
        booking_id,
    )
    return int(standing)


def assert_money_balances(url: str, gateway: Gateway, booking_ids: list[str]) -> None:
    """Invariant 4 for these bookings: a confirmed one has exactly its price standing, any other nothing;
    and never more than one charge per booking (invariant 7)."""
    prices = {row.id: (row.state, row.total_price_cents) for row in query(
        url, "SELECT booking_id::text AS id, state, total_price_cents FROM bookings WHERE booking_id::text = ANY(%(ids)s)", {"ids": booking_ids}
    )}
    charges = Counter(reference for (reference,) in gateway.sql("SELECT reference FROM gateway_charges WHERE reference = ANY(%s)", booking_ids))
    for booking_id in booking_ids:
        state, price = prices[booking_id]
        expected = price if state == "confirmed" else 0
        assert standing_cents(gateway, booking_id) == expected, f"{booking_id} is {state}: {standing_cents(gateway, booking_id)} standing, {expected} expected"
        assert charges[booking_id] <= 1, f"{booking_id} was charged {charges[booking_id]} times"


def assert_one_message_each(url: str, spool: Path, confirmed_ids: list[str]) -> None:
    """Every confirmed booking enqueued exactly one message, delivered exactly once (one spool file)."""
    rows = query(url, "SELECT booking_id::text AS id, delivered_at FROM outbox WHERE booking_id::text = ANY(%(ids)s)", {"ids": confirmed_ids})
    per_booking = Counter(row.id for row in rows)
    assert all(per_booking[b] == 1 for b in confirmed_ids), f"outbox rows per booking: {per_booking}"
    assert all(row.delivered_at is not None for row in rows), "every message is marked delivered"
    files = Counter(path.name.removeprefix("booking_confirmed_").removesuffix(".json") for path in spool.glob("*.json"))
    assert all(files[b] == 1 for b in confirmed_ids), f"spool files per booking: {files}"
    assert not list(spool.glob(".*.partial")), "no partial message left in the spool"
