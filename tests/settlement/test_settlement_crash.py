"""Settlement in real node processes: SIGKILL mid-settlement, a dead node's paid hold, Prefect down.

Each node is a ``ridgeline node --gateway-url …`` process running the settlement loop against
the session's Prefect server and gateway. Crash points (flows/crash_points.py) make the
process SIGKILL itself at an exact line; a successor node on the same database must finish
every booking: terminal, charged at most once, one message each (invariants 2, 3, 4, 7).
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
from certificates import SessionCerts
from drive import night
from gateway_process import Gateway
from invariants import assert_history_consistent, assert_inventory_matches_bookings, bookings_by_id, query
from settlement_checks import assert_money_balances, assert_one_message_each, settlement_states, standing_cents, wait_until_settled

from ridgeline.deploy.drills.fault_proxy import FaultProxy
from ridgeline.flows.crash_points import AFTER_CHARGE, AFTER_CONFIRM, CRASH_ENV
from ridgeline.regional.config import NodeConfig
from ridgeline.routing.client import BookingClient

#: Bound by wall-clock time (recovery, expiry, grace): run alone, after the parallel phase (Makefile).
pytestmark = pytest.mark.serial


SWEEP_INTERVAL_SECONDS = 2.0
SWEEP_SLACK_SECONDS = 1.5


def _settling(gateway: Gateway, spool: Path) -> tuple[str, ...]:
    return (
        "--gateway-url", gateway.url, "--outbox-dir", str(spool),
        "--payment-timeout", "0.5", "--payment-attempts", "2", "--charge-passes", "2", "--settle-claim", "2",
    )


def _book_until_refused(address: str, certs: SessionCerts, count: int, ttl_seconds: int = 120) -> list[str]:
    """Books up to ``count`` stays as the desk; stops at the first refusal (the node may die meanwhile)."""
    ids: list[str] = []
    with BookingClient(address, transport=certs.desk, timeout_seconds=5, attempts_max=1) as client:
        for i in range(count):
            try:
                booked = client.book("argentiere", "argentiere-dorm", night(20 + i), night(22 + i), 1, f"crash-{i}", hold_ttl_seconds=ttl_seconds)
            except grpc.RpcError:
                break
            ids.append(booked.booking_id)
    return ids


def _delivered(url: str, ids: list[str], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while query(url, "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL AND booking_id::text = ANY(%(ids)s)", {"ids": ids})[0].n:
        assert time.monotonic() < deadline, "outbox not delivered"
        time.sleep(0.1)


@pytest.mark.parametrize("point", [AFTER_CHARGE, AFTER_CONFIRM])
def test_invariants_2_4_7_sigkill_mid_settlement_then_a_successor_finishes_once(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path, point: str
) -> None:
    payment_gateway.faults()
    spool = tmp_path / "spool"
    node = node_process(alps_db, *_settling(payment_gateway, spool), env={CRASH_ENV: point})
    ids = _book_until_refused(node.address, certs, 6)
    assert node.process.wait(30) == -signal.SIGKILL, "the crash point killed the node"
    assert ids, "no booking was acknowledged"

    charged = {ref for (ref,) in payment_gateway.sql("SELECT reference FROM gateway_charges WHERE reference = ANY(%s) AND status = 'succeeded'", ids)}
    at_crash = settlement_states(alps_db.url, ids)
    assert charged, "killed after a charge"
    if point == AFTER_CHARGE:
        assert any(at_crash[b] == ("awaiting_payment", "held") for b in charged), f"charged but not confirmed: {at_crash}"
    else:
        undelivered = query(alps_db.url, "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL")[0].n
        assert undelivered >= 1, "killed between the confirm (with its message) and delivery"

    node_process(alps_db, *_settling(payment_gateway, spool))
    final = wait_until_settled(alps_db.url, ids, 30)
    assert set(final.values()) == {("confirmed", "confirmed")}, final
    assert_money_balances(alps_db.url, payment_gateway, ids)
    _delivered(alps_db.url, ids, 10)
    assert_one_message_each(alps_db.url, spool, ids)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


@pytest.mark.slow
def test_invariant_3_paid_hold_of_a_dead_node_expires_in_bound_and_its_charge_is_refunded(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path
) -> None:
    payment_gateway.faults()
    spool = tmp_path / "spool"
    ttl_seconds = NodeConfig.hold_ttl_min_seconds
    placer = node_process(alps_db, *_settling(payment_gateway, spool), env={CRASH_ENV: AFTER_CHARGE})
    [booking_id] = _book_until_refused(placer.address, certs, 1, ttl_seconds=ttl_seconds)
    assert placer.process.wait(30) == -signal.SIGKILL
    # Another node of the region sweeps (sweeping needs no lease); it settles nothing, so
    # the paid hold runs out instead of being confirmed by the basecamp's next owner.
    sweeper = node_process(alps_db, "--sweep-interval", str(SWEEP_INTERVAL_SECONDS))
    row = bookings_by_id(alps_db.url, [booking_id])[booking_id]
    assert row.state == "held" and standing_cents(payment_gateway, booking_id) > 0, "charged, then the node died"

    bound = (row.expires_at - datetime.now(timezone.utc)).total_seconds() + SWEEP_INTERVAL_SECONDS + SWEEP_SLACK_SECONDS
    deadline = time.monotonic() + bound
    while bookings_by_id(alps_db.url, [booking_id])[booking_id].state != "expired":
        assert time.monotonic() < deadline, f"still held {bound:.1f} s later"
        time.sleep(0.1)
    assert_inventory_matches_bookings(alps_db.url)

    sweeper.stop()  # hands its leases back: the settling successor owns argentiere at once
    node_process(alps_db, *_settling(payment_gateway, spool))
    assert wait_until_settled(alps_db.url, [booking_id], 30)[booking_id] == ("refunded", "expired")
    assert_money_balances(alps_db.url, payment_gateway, [booking_id])


def test_the_basecamp_s_next_owner_finishes_a_settlement_its_dead_owner_left_half_done(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path
) -> None:
    payment_gateway.faults()
    spool = tmp_path / "spool"
    placer = node_process(alps_db, *_settling(payment_gateway, spool), env={CRASH_ENV: AFTER_CHARGE})
    [booking_id] = _book_until_refused(placer.address, certs, 1)
    assert placer.process.wait(30) == -signal.SIGKILL
    assert settlement_states(alps_db.url, [booking_id])[booking_id] == ("awaiting_payment", "held")

    node_process(alps_db, *_settling(payment_gateway, spool))  # owns argentiere once the dead lease lapses
    assert wait_until_settled(alps_db.url, [booking_id], 30)[booking_id] == ("confirmed", "confirmed")
    assert_money_balances(alps_db.url, payment_gateway, [booking_id])
    _delivered(alps_db.url, [booking_id], 10)
    assert_one_message_each(alps_db.url, spool, [booking_id])


def test_prefect_api_down_holds_are_still_taken_and_settlement_catches_up(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path
) -> None:
    payment_gateway.faults()
    api = urlsplit(prefect_api)
    proxy = FaultProxy(api.hostname or "127.0.0.1", api.port or 80)
    try:
        proxy.down()
        node = node_process(alps_db, *_settling(payment_gateway, tmp_path / "spool"), env={"PREFECT_API_URL": f"http://127.0.0.1:{proxy.port}{api.path}"})
        ids = _book_until_refused(node.address, certs, 4)
        assert len(ids) == 4, "holds are taken while the Prefect API is down"
        time.sleep(2.0)
        assert set(settlement_states(alps_db.url, ids).values()) == {("awaiting_payment", "held")}, "nothing settles without the API"
        proxy.up()
        assert set(wait_until_settled(alps_db.url, ids, 20).values()) == {("confirmed", "confirmed")}
        assert_money_balances(alps_db.url, payment_gateway, ids)
    finally:
        proxy.close()
