"""Settlement flows in this process: real Prefect server, real gateway process, real PostgreSQL.

The node (in-process gRPC) takes Book calls; a SettlementLoop over the same database runs
one Prefect flow run per batch. Gateway faults are switched at run time, and every verdict
is read from the gateway's own ledger, the region database and the mail spool.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import httpx
import pytest
from drive import night, place_lapsed_hold
from gateway_process import Gateway
from invariants import assert_history_consistent, assert_inventory_matches_bookings, query
from settlement_checks import assert_money_balances, assert_one_message_each, settlement_states, standing_cents, wait_until_settled

from ridgeline.flows import prefect_settings, runtime
from ridgeline.flows.circuit_breaker import BreakerState, CircuitBreaker
from ridgeline.flows.loop import LoopPolicy, SettlementLoop
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.reconcile import reconcile
from ridgeline.flows.runtime import SettlementRuntime, SettlePolicy, build_settlement_runtime, close_settlement_runtime
from ridgeline.flows.settle import settle_batch
from ridgeline.flows.sweep import sweep
from ridgeline.routing.client import BookingClient
from ridgeline.v1 import booking_pb2 as pb

BASECAMPS = ["argentiere", "hoernli", "gouter", "capanna-margherita"]


@dataclass
class Settling:
    name: str
    runtime: SettlementRuntime
    breaker: CircuitBreaker
    url: str
    spool: Path
    loop: SettlementLoop | None

    def start_loop(self) -> None:
        self.loop = SettlementLoop(self.name, self.runtime, LoopPolicy(claim_seconds=3, idle_pause_max_seconds=0.2, reconcile_interval_seconds=3600))
        self.loop.start()


@pytest.fixture
def settling(alps_db, prefect_api: str, payment_gateway: Gateway, tmp_path: Path) -> Iterator[Settling]:
    """A settlement runtime on the test's database, with short bounds so that failures end fast."""
    payment_gateway.faults()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=0.5)
    gateway = _short_gateway(payment_gateway, breaker)
    policy = SettlePolicy(charge_passes_max=2, retry_delay_base_seconds=0.2, refund_grace_seconds=1.0)
    name = f"test-{uuid.uuid4().hex[:8]}"
    # The runtime settles for the test's node from outside it: it writes under the node's leases.
    rt = build_settlement_runtime(name, alps_db.url, gateway, tmp_path / "spool", policy=policy, borrowed_basecamps=BASECAMPS, pool_size=40)
    settling = Settling(name, rt, breaker, alps_db.url, tmp_path / "spool", None)
    yield settling
    if settling.loop is not None:
        settling.loop.stop()
    close_settlement_runtime(name)
    payment_gateway.faults()


def _short_gateway(payment_gateway: Gateway, breaker: CircuitBreaker) -> PaymentGateway:
    """The adapter with short bounds (a dead gateway fails a step within a second)."""
    return PaymentGateway(payment_gateway.url, payment_gateway.transport(), timeout_seconds=0.5, attempts_max=2, backoff_base_seconds=0.01, backoff_cap_seconds=0.05, breaker=breaker)


def _book(client: BookingClient, count: int, *, days_ahead: int = 30, wait: bool = False) -> list[pb.Booking]:
    return [
        client.book("argentiere", "argentiere-dorm", night(days_ahead + i), night(days_ahead + i + 2), 2, f"guest-{i}", hold_ttl_seconds=60, wait=wait)
        for i in range(count)
    ]


def test_the_prefect_api_answers_only_callers_with_its_secret(prefect_api: str) -> None:
    """Flow runs carry booking ids, and whoever could write to the API could cancel them: a
    caller without the server's secret, or with another, is refused; probes still get health."""
    query = {"flows": {"name": {"any_": ["settle"]}}, "limit": 1}
    assert httpx.post(f"{prefect_api}/flow_runs/filter", json=query, timeout=10).status_code == 401
    assert httpx.post(f"{prefect_api}/flow_runs/filter", json=query, auth=("ridgeline", "guessed"), timeout=10).status_code == 401
    assert httpx.get(f"{prefect_api}/health", timeout=10).status_code == 200
    with prefect_settings.api_client() as api:
        assert api.post("flow_runs/filter", json=query).status_code == 200


def test_booked_stays_are_charged_confirmed_and_announced_once_in_one_flow_run(settling: Settling, alps_client: BookingClient, payment_gateway: Gateway, prefect_api: str) -> None:
    booked = _book(alps_client, 5)
    ids = [b.booking_id for b in booked]
    assert all(b.state == pb.BOOKING_STATE_HELD and b.HasField("expires_at") for b in booked), "Book answers at once with the hold"
    assert all(b.payment.state == pb.PAYMENT_STATE_AWAITING_PAYMENT for b in booked)
    plain = alps_client.place_hold("argentiere", "argentiere-dorm", night(40), night(41), 1, "plain")
    assert not plain.HasField("payment"), "a plain hold is not for settlement"

    settling.start_loop()
    assert set(wait_until_settled(settling.url, ids, 20).values()) == {("confirmed", "confirmed")}
    shown = alps_client.get_booking(ids[0])
    assert (shown.state, shown.payment.state, shown.payment.attempts) == (pb.BOOKING_STATE_CONFIRMED, pb.PAYMENT_STATE_CONFIRMED, 1)
    assert shown.payment.charge_id.startswith("ch_") and shown.payment.amount_cents == shown.total_price_cents
    assert alps_client.get_booking(plain.booking_id).state == pb.BOOKING_STATE_HELD, "settlement never touches a plain hold"
    assert_money_balances(settling.url, payment_gateway, ids)
    wait_until_delivered(settling.url, ids)
    assert_one_message_each(settling.url, settling.spool, ids)
    assert_inventory_matches_bookings(settling.url)
    assert_history_consistent(settling.url)

    # Each booking is visible in Prefect: settle runs list it, and their artifacts say what happened.
    query_runs = {"flows": {"name": {"any_": ["settle"]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 200}
    with prefect_settings.api_client() as api:
        runs = [r for r in api.post("flow_runs/filter", json=query_runs).json() if ids[0] in r["parameters"]["booking_ids"]]
    assert runs and all(r["state"]["type"] == "COMPLETED" for r in runs)
    assert set(ids) <= set(runs[-1]["parameters"]["booking_ids"]), "one flow run took the whole batch that was due"
    query_artifacts = {"artifacts": {"flow_run_id": {"any_": [r["id"] for r in runs]}}}
    with prefect_settings.api_client() as api:
        artifacts = api.post("artifacts/filter", json=query_artifacts).json()
    assert {"booking": ids[0], "outcome": "confirmed"} in [row for a in artifacts for row in json.loads(a["data"])]

    waited = alps_client.book("argentiere", "argentiere-dorm", night(50), night(51), 1, "waiter", wait=True)
    assert (waited.state, waited.payment.state) == (pb.BOOKING_STATE_CONFIRMED, pb.PAYMENT_STATE_CONFIRMED), "wait returns once settled"


def test_a_book_wakes_an_idle_loop_so_its_booking_settles_without_waiting_for_the_pause(settling: Settling, alps_node, alps_client: BookingClient) -> None:
    """Issue 15: at low load a booking starts settling when it arrives. The loop's pause is
    made 30 s here; the node's Book wakes it, so the booking is confirmed long before."""
    policy = LoopPolicy(claim_seconds=3, idle_pause_min_seconds=30, idle_pause_max_seconds=30, reconcile_interval_seconds=3600)
    settling.loop = SettlementLoop(settling.name, settling.runtime, policy, wake=alps_node.booked)
    settling.loop.start()
    time.sleep(1.0)  # the first pass found nothing: the loop is in its 30 s pause
    booked = alps_client.book("argentiere", "argentiere-dorm", night(80), night(81), 1, "woken")
    started = time.monotonic()
    assert wait_until_settled(settling.url, [booked.booking_id], 15) == {booked.booking_id: ("confirmed", "confirmed")}
    assert time.monotonic() - started < 15


def wait_until_delivered(url: str, ids: list[str], timeout_seconds: float = 10) -> None:
    deadline = time.monotonic() + timeout_seconds
    while query(url, "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL AND booking_id::text = ANY(%(ids)s)", {"ids": ids})[0].n:
        assert time.monotonic() < deadline, "outbox not delivered"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"decline_rate": 1.0}, id="declined"),
        pytest.param({"latency_ms": 1500}, id="timeout"),
        pytest.param({"outage": True}, id="outage"),
    ],
)
def test_invariant_4_failed_payment_releases_the_hold_and_leaves_no_charge(
    settling: Settling, alps_client: BookingClient, payment_gateway: Gateway, fault: dict[str, object]
) -> None:
    payment_gateway.faults(**fault)
    ids = [b.booking_id for b in _book(alps_client, 3)]
    settling.start_loop()
    # The hold is released as soon as settlement gives up, while the gateway is still failing.
    found = wait_until_settled(settling.url, ids, 20, states=("released", "refunding"))
    assert {booking for _, booking in found.values()} == {"released"}
    shown = alps_client.get_booking(ids[0])
    assert shown.payment.last_error, "the desk sees why"
    payment_gateway.faults()
    final = wait_until_settled(settling.url, ids, 20)
    assert {state for state, _ in final.values()} <= {"released", "refunded"}
    assert_money_balances(settling.url, payment_gateway, ids)
    assert all(standing_cents(payment_gateway, b) == 0 for b in ids)
    if "decline_rate" in fault:
        assert payment_gateway.sql("SELECT DISTINCT status FROM gateway_charges WHERE reference = ANY(%s)", ids) == [("declined",)]
    assert_inventory_matches_bookings(settling.url)
    assert not query(settling.url, "SELECT 1 FROM outbox"), "no message for a booking that was not confirmed"


def test_circuit_breaker_opens_on_a_dead_gateway_and_closes_when_it_returns(settling: Settling, alps_client: BookingClient, payment_gateway: Gateway) -> None:
    ids = [b.booking_id for b in _book(alps_client, 4)]
    # The breaker's own clock, so that a slow machine cannot let the cooldown pass unseen.
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=5.0, clock=lambda: now[0])
    gateway = _short_gateway(payment_gateway, breaker)
    patient = replace(settling.runtime, policy=replace(settling.runtime.policy, charge_passes_max=10), gateway=gateway)
    runtime.register(settling.name, patient)
    payment_gateway.faults(outage=True)
    outcomes = settle_batch(settling.name, ids, BASECAMPS)
    assert set(outcomes.values()) == {"retry later"}
    assert breaker.state is BreakerState.OPEN
    before = payment_gateway.v1_requests()
    settle_batch(settling.name, ids, BASECAMPS)
    assert payment_gateway.v1_requests() == before, "an open breaker fails fast, without calling the gateway"

    payment_gateway.faults()
    now[0] += 5.1  # the cooldown: the next call is the half-open trial, the others still fail fast
    outcomes = settle_batch(settling.name, ids, BASECAMPS)
    assert breaker.state is BreakerState.CLOSED
    assert "confirmed" in outcomes.values()
    assert set(settle_batch(settling.name, ids, BASECAMPS).values()) <= {"confirmed", "nothing to do"}
    assert all(state == ("confirmed", "confirmed") for state in settlement_states(settling.url, ids).values())
    assert_money_balances(settling.url, payment_gateway, ids)
    gateway.close()


def test_reconcile_refunds_charges_without_a_confirmed_booking_and_reports(settling: Settling, alps_client: BookingClient, payment_gateway: Gateway) -> None:
    kept, cancelled = _book(alps_client, 2)
    settle_batch(settling.name, [kept.booking_id, cancelled.booking_id], BASECAMPS)
    alps_client.cancel(cancelled.booking_id, reason="guest ill")
    # A charge the gateway finished after settlement gave up on it: released booking, money taken.
    orphan = _book(alps_client, 1, days_ahead=60)[0]
    alps_client.release(orphan.booking_id)
    settling.runtime.gateway.charge(f"charge:{orphan.booking_id}", orphan.total_price_cents, orphan.currency, reference=orphan.booking_id)
    foreign = settling.runtime.gateway.charge(f"k-{uuid.uuid4()}", 100, "EUR", reference="another-region-booking")

    report = reconcile(settling.name, BASECAMPS, 0.0)
    assert report["refunded"] == 2 and report["confirmed"] >= 1
    ids = [kept.booking_id, cancelled.booking_id, orphan.booking_id]
    assert_money_balances(settling.url, payment_gateway, ids)
    assert standing_cents(payment_gateway, kept.booking_id) == kept.total_price_cents
    assert payment_gateway.sql("SELECT refunded_cents FROM gateway_charges WHERE charge_id = %s", foreign.charge_id) == [(0,)], "not this region's"
    assert reconcile(settling.name, BASECAMPS, 0.0).get("refunded", 0) == 0, "a second pass finds nothing to do"


def test_cancelling_a_paid_booking_refunds_it_at_the_next_settlement_pass(settling: Settling, alps_client: BookingClient, payment_gateway: Gateway) -> None:
    kept, cancelled = _book(alps_client, 2)
    ids = [kept.booking_id, cancelled.booking_id]
    settle_batch(settling.name, ids, BASECAMPS)
    assert standing_cents(payment_gateway, cancelled.booking_id) == cancelled.total_price_cents

    shown = alps_client.cancel(cancelled.booking_id, reason="guest ill")
    assert shown.state == pb.BOOKING_STATE_CANCELLED
    assert alps_client.get_booking(cancelled.booking_id).payment.state == pb.PAYMENT_STATE_REFUNDING, "the refund is due with the cancel"
    assert settle_batch(settling.name, ids, BASECAMPS)[cancelled.booking_id] == "refunded", "no reconciliation pass needed"
    assert standing_cents(payment_gateway, cancelled.booking_id) == 0
    assert standing_cents(payment_gateway, kept.booking_id) == kept.total_price_cents
    assert settlement_states(settling.url, ids) == {kept.booking_id: ("confirmed", "confirmed"), cancelled.booking_id: ("refunded", "cancelled")}
    assert alps_client.get_booking(cancelled.booking_id).payment.state == pb.PAYMENT_STATE_REFUNDED
    assert alps_client.cancel(cancelled.booking_id).state == pb.BOOKING_STATE_CANCELLED, "a repeated cancel moves no money"
    assert settle_batch(settling.name, ids, BASECAMPS)[cancelled.booking_id] != "refunded"
    assert_money_balances(settling.url, payment_gateway, ids)


def test_book_is_idempotent_and_validated_at_the_edge(alps_client: BookingClient) -> None:
    first = alps_client.book("argentiere", "argentiere-dorm", night(30), night(31), 1, "guest", idempotency_key="book-1")
    again = alps_client.book("argentiere", "argentiere-dorm", night(30), night(31), 1, "guest", idempotency_key="book-1")
    assert again.booking_id == first.booking_id
    with pytest.raises(grpc.RpcError) as reused:
        alps_client.place_hold("argentiere", "argentiere-dorm", night(30), night(31), 1, "guest", idempotency_key="book-1")
    assert reused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as bad:
        alps_client.book("argentiere", "argentiere-dorm", night(30), night(31), 0, "guest")
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_stuck_filter_lists_old_bookings_still_held_or_awaiting_payment(alps_client: BookingClient) -> None:
    booked = alps_client.book("argentiere", "argentiere-dorm", night(30), night(31), 1, "slow-payer")
    done = alps_client.place_hold("argentiere", "argentiere-dorm", night(32), night(33), 1, "desk")
    alps_client.confirm(done.booking_id)
    stuck = pb.ListBookingsRequest(stuck_seconds=5)  # generous: a loaded machine takes seconds for the calls above
    assert not alps_client.list_bookings(stuck).bookings, "nothing is older than five seconds yet"
    time.sleep(5.1)
    listed = alps_client.list_bookings(stuck).bookings
    assert [b.booking_id for b in listed] == [booked.booking_id]
    assert listed[0].payment.state == pb.PAYMENT_STATE_AWAITING_PAYMENT
    with pytest.raises(grpc.RpcError) as bad:
        alps_client.list_bookings(pb.ListBookingsRequest(stuck_seconds=-5))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_sweep_flow_expires_lapsed_holds_as_one_run(settling: Settling) -> None:
    lapsed = place_lapsed_hold(settling.runtime.engine, "argentiere", "argentiere-dorm", night(30), night(31), 1)
    assert sweep(settling.name) == 1
    assert settlement_states(settling.url, [lapsed.booking_id]) == {}, "a plain hold has no settlement"
    assert query(settling.url, "SELECT state FROM bookings WHERE booking_id::text = %(id)s", {"id": lapsed.booking_id})[0].state == "expired"
    assert_inventory_matches_bookings(settling.url)
