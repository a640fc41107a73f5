"""The stand-in payment gateway and the adapter settlement uses to call it.

A real gateway process (``ridgeline gateway``) on its own PostgreSQL database, real HTTP
on loopback. Faults are switched at run time through ``PUT /admin/faults``; the gateway's
own tables and its ``/v1`` request counter are the evidence.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psycopg
import pytest
from gateway_process import Gateway, gateway_process
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ridgeline.deploy.payment_gateway.ledger import PAGE_SIZE_MAX, Ledger
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.flows import payments
from ridgeline.flows.circuit_breaker import BreakerState, CircuitBreaker
from ridgeline.flows.payments import (
    ChargeNotFound,
    PaymentConflict,
    PaymentDeclined,
    PaymentGateway,
    PaymentUnavailable,
)

THREADS = 16


@pytest.fixture(scope="module")
def gateway(region_servers: dict[str, PostgresServer]) -> Iterator[Gateway]:
    with gateway_process(region_servers["sa-andes"]) as started:
        yield started


@pytest.fixture(autouse=True)
def healthy(gateway: Gateway) -> None:
    gateway.faults()


@pytest.fixture
def adapter(gateway: Gateway) -> Iterator[Callable[..., PaymentGateway]]:
    made: list[PaymentGateway] = []

    def make(**overrides: Any) -> PaymentGateway:
        options: dict[str, Any] = {"timeout_seconds": 5.0, "attempts_max": 3, "backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05}
        options.update(overrides)
        made.append(PaymentGateway(gateway.url, **options))
        return made[-1]

    yield make
    for client in made:
        client.close()


def _key() -> str:
    return f"k-{uuid.uuid4().hex}"


def _rows_for_key(gateway: Gateway, key: str) -> int:
    return gateway.sql("SELECT count(*) FROM gateway_charges WHERE idempotency_key = %s", key)[0][0]


# -- idempotency (invariant 7) ---------------------------------------------------------


def test_invariant_7_repeated_charge_returns_first_result(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    key = _key()
    first = pay.charge(key, 4200, "EUR", "booking-1")
    again = pay.charge(key, 4200, "EUR", "booking-1")
    assert first == again
    assert (first.status, first.amount_cents, first.refunded_cents) == ("succeeded", 4200, 0)
    assert pay.get_charge(first.charge_id) == first
    assert _rows_for_key(gateway, key) == 1


def test_invariant_7_concurrent_duplicate_charges_charge_once(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    key = _key()
    start = threading.Barrier(THREADS)

    def charge(_: int) -> str:
        start.wait()
        return pay.charge(key, 1500, "EUR", "booking-race").charge_id

    with ThreadPoolExecutor(THREADS) as pool:
        charge_ids = set(pool.map(charge, range(THREADS)))
    assert len(charge_ids) == 1
    assert _rows_for_key(gateway, key) == 1


def test_invariant_7_racing_bodies_under_one_key_charge_once_and_the_rest_conflict(
    gateway: Gateway, adapter: Callable[..., PaymentGateway]
) -> None:
    """Under READ COMMITTED the UNIQUE key decides: the first insert wins, every other body gets 409."""
    pay = adapter()
    key = _key()
    start = threading.Barrier(THREADS)

    def charge(amount: int) -> int | None:
        start.wait()
        try:
            return pay.charge(key, amount, "EUR", "booking-race-bodies").amount_cents
        except PaymentConflict as error:
            assert error.code == "idempotency_key_reused"
            return None

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(charge, range(100, 100 + THREADS)))
    [(stored,)] = gateway.sql("SELECT amount_cents FROM gateway_charges WHERE idempotency_key = %s", key)
    assert [o for o in outcomes if o is not None] == [stored], "only the stored body is answered; every other is refused"


def test_concurrent_charges_of_distinct_keys_never_retry(region_servers: dict[str, PostgresServer]) -> None:
    """The ledger relies on its constraints at READ COMMITTED: racing charges and refunds are
    never serialization failures (under SERIALIZABLE most of them were, BENCHMARKS.md)."""
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    ledger = Ledger(region_servers["sa-andes"].create_database(name))
    try:
        ledger.create_schema()
        retries_before = _serialization_retries()
        start = threading.Barrier(THREADS)

        def charge_and_refund(i: int) -> None:
            start.wait()
            for n in range(5):
                charge = ledger.charge(f"k-{i}-{n}", 1000, "EUR", f"booking-{i}", decline=False)
                ledger.refund(f"r-{i}-{n}", charge.row["charge_id"], 400)

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(charge_and_refund, range(THREADS)))
        assert _serialization_retries() == retries_before
        charges = ledger.list_charges(reference=None, after=None, limit=PAGE_SIZE_MAX)
        assert len(charges) == THREADS * 5 and {c["refunded_cents"] for c in charges} == {400}
    finally:
        ledger.close()


def _serialization_retries() -> float:
    return REGISTRY.get_sample_value("ridgeline_db_retries_total", {"sqlstate": "40001"}) or 0.0


def test_invariant_7_database_refuses_a_second_charge_under_one_key(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    key = _key()
    adapter().charge(key, 300, "EUR", "booking-unique")
    with pytest.raises(psycopg.errors.UniqueViolation):
        gateway.sql(
            "INSERT INTO gateway_charges (charge_id, idempotency_key, status, amount_cents, currency, reference)"
            " VALUES ('ch_duplicate', %s, 'succeeded', 300, 'EUR', 'booking-unique')",
            key,
        )


def test_key_reused_for_a_different_request_is_a_conflict(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    key = _key()
    charge = pay.charge(key, 1000, "EUR", "booking-a")
    with pytest.raises(PaymentConflict, match="idempotency_key_reused") as refused:
        pay.charge(key, 1001, "EUR", "booking-a")
    assert refused.value.code == "idempotency_key_reused"
    refund_key = _key()
    pay.refund(refund_key, charge.charge_id, 100)
    with pytest.raises(PaymentConflict, match="idempotency_key_reused"):
        pay.refund(refund_key, charge.charge_id, 200)
    assert pay.get_charge(charge.charge_id).refunded_cents == 100


# -- refunds (invariant 4) -------------------------------------------------------------


def test_invariant_4_racing_refunds_never_exceed_the_charge(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    charge = pay.charge(_key(), 1000, "EUR", "booking-refunds")
    start = threading.Barrier(THREADS)

    def refund(_: int) -> bool:
        start.wait()
        try:
            pay.refund(_key(), charge.charge_id, 100)
            return True
        except PaymentConflict as error:
            assert error.code == "refund_exceeds_charge"
            return False

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = list(pool.map(refund, range(THREADS)))
    assert outcomes.count(True) == 10
    [(refunded, total)] = gateway.sql(
        "SELECT c.refunded_cents, (SELECT sum(amount_cents) FROM gateway_refunds r WHERE r.charge_id = c.charge_id)"
        " FROM gateway_charges c WHERE c.charge_id = %s",
        charge.charge_id,
    )
    assert refunded == total == 1000


def test_invariant_7_racing_refunds_under_one_key_refund_once(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    charge = pay.charge(_key(), 1000, "EUR", "booking-refund-race")
    key = _key()
    start = threading.Barrier(THREADS)

    def refund(_: int) -> str:
        start.wait()
        return pay.refund(key, charge.charge_id, 600).refund_id

    with ThreadPoolExecutor(THREADS) as pool:
        refund_ids = set(pool.map(refund, range(THREADS)))
    assert len(refund_ids) == 1
    assert gateway.sql("SELECT count(*) FROM gateway_refunds WHERE idempotency_key = %s", key) == [(1,)]
    assert pay.get_charge(charge.charge_id).refunded_cents == 600


def test_invariant_4_database_refuses_refunding_past_the_charge(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    charge = adapter().charge(_key(), 500, "EUR", "booking-check")
    with pytest.raises(psycopg.errors.CheckViolation):
        gateway.sql("UPDATE gateway_charges SET refunded_cents = 501 WHERE charge_id = %s", charge.charge_id)


def test_refund_is_idempotent_and_unknown_charges_are_not_found(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    charge = pay.charge(_key(), 900, "EUR", "booking-refund-once")
    key = _key()
    assert pay.refund(key, charge.charge_id, 300) == pay.refund(key, charge.charge_id, 300)
    assert pay.get_charge(charge.charge_id).refunded_cents == 300
    with pytest.raises(ChargeNotFound):
        pay.refund(_key(), "ch_missing", 1)
    with pytest.raises(ChargeNotFound):
        pay.get_charge("ch_missing")


def test_ledger_lists_every_charge_page_by_page(gateway: Gateway, adapter: Callable[..., PaymentGateway], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(payments, "LIST_PAGE_SIZE", 2)
    pay = adapter()
    reference = f"booking-{uuid.uuid4().hex}"
    made = {pay.charge(_key(), 100 + i, "EUR", reference).charge_id for i in range(5)}
    before = gateway.v1_requests()
    listed = [c.charge_id for c in pay.list_charges(reference=reference)]
    assert sorted(listed) == sorted(made)
    assert gateway.v1_requests() - before == 3  # pages of 2, 2 and 1


# -- faults ----------------------------------------------------------------------------


def test_decline_is_definitive_remembered_and_not_retried(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter()
    key = _key()
    gateway.faults(decline_rate=1.0)
    before = gateway.v1_requests()
    with pytest.raises(PaymentDeclined) as declined:
        pay.charge(key, 2500, "EUR", "booking-declined")
    assert declined.value.code == "card_declined"
    assert gateway.v1_requests() - before == 1, "a decline is never retried"
    gateway.faults()
    with pytest.raises(PaymentDeclined):
        pay.charge(key, 2500, "EUR", "booking-declined")
    assert gateway.sql("SELECT status FROM gateway_charges WHERE idempotency_key = %s", key) == [("declined",)]
    assert pay.breaker.state is BreakerState.CLOSED


def test_invariant_7_lost_replies_retried_with_the_same_key_charge_once(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter(attempts_max=3)
    key = _key()
    gateway.faults(lost_reply_rate=1.0)
    before = gateway.v1_requests()
    with pytest.raises(PaymentUnavailable):
        pay.charge(key, 7300, "EUR", "booking-lost")
    assert gateway.v1_requests() - before == 3, "each lost reply was retried with the same key"
    [(charge_id,)] = gateway.sql("SELECT charge_id FROM gateway_charges WHERE idempotency_key = %s", key)
    gateway.faults()
    assert pay.charge(key, 7300, "EUR", "booking-lost").charge_id == charge_id
    assert _rows_for_key(gateway, key) == 1


def test_metrics_show_each_answer_and_the_faults_in_force(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter(attempts_max=2, backoff_base_seconds=0.01, backoff_cap_seconds=0.01)
    before = _samples(gateway)
    pay.charge(_key(), 500, "EUR", "booking-metered")
    gateway.faults(outage=True)
    with pytest.raises(PaymentUnavailable):
        pay.charge(_key(), 500, "EUR", "booking-metered")
    during = _samples(gateway)
    assert during[("ridgeline_gateway_fault_outage", ())] == 1
    gateway.faults()
    after = _samples(gateway)

    def grew(name: str, *labels: str) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert grew("ridgeline_gateway_requests_total", "charge", "200") == 1
    assert grew("ridgeline_gateway_requests_total", "charge", "503") == 2, "both attempts of the refused charge"
    assert grew("ridgeline_gateway_injected_faults_total", "fail_before") == 2
    assert grew("ridgeline_gateway_request_seconds_count", "charge") == 3
    assert after[("ridgeline_gateway_fault_outage", ())] == 0
    health = httpx.get(f"{gateway.url}/healthz", timeout=5)
    assert (health.status_code, health.json()) == (200, {"status": "serving"})


def _samples(gateway: Gateway) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample of the gateway's /metrics: (name, label values in order) -> value."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sample.labels.values())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.mark.parametrize("fault", [{"error_rate": 1.0}, {"outage": True}], ids=["errors", "outage"])
def test_unavailable_gateway_gives_up_within_bounds_without_charging(
    gateway: Gateway, adapter: Callable[..., PaymentGateway], fault: dict[str, Any]
) -> None:
    pay = adapter(attempts_max=3, backoff_base_seconds=0.05, backoff_cap_seconds=0.1)
    key = _key()
    gateway.faults(**fault)
    before, started = gateway.v1_requests(), time.monotonic()
    with pytest.raises(PaymentUnavailable, match="after 3 attempts"):
        pay.charge(key, 1200, "EUR", "booking-down")
    assert time.monotonic() - started < 2 * 0.1 + 1.0  # two capped backoffs plus three quick 503s
    assert gateway.v1_requests() - before == 3
    assert _rows_for_key(gateway, key) == 0


def test_slow_gateway_times_out_and_the_retry_finds_the_charge(gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> None:
    pay = adapter(timeout_seconds=0.2, attempts_max=2)
    key = _key()
    gateway.faults(latency_ms=600)
    started = time.monotonic()
    with pytest.raises(PaymentUnavailable, match="Timeout"):
        pay.charge(key, 800, "EUR", "booking-slow")
    assert time.monotonic() - started < 2 * 0.2 + 0.05 + 0.5
    gateway.faults()
    time.sleep(0.6)  # the slow requests still land after the client gave up
    pay.charge(key, 800, "EUR", "booking-slow")
    assert _rows_for_key(gateway, key) == 1


# -- circuit breaker -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_outage_fails_fast_half_opens_and_closes_on_recovery(
    gateway: Gateway, adapter: Callable[..., PaymentGateway]
) -> None:
    clock = FakeClock()
    pay = adapter(attempts_max=3, breaker=CircuitBreaker(failure_threshold=3, cooldown_seconds=30, clock=clock))
    gateway.faults(outage=True)
    with pytest.raises(PaymentUnavailable, match="after 3 attempts"):
        pay.charge(_key(), 100, "EUR", "booking-breaker")
    assert pay.breaker.state is BreakerState.OPEN

    before = gateway.v1_requests()
    with pytest.raises(PaymentUnavailable, match="circuit open"):
        pay.charge(_key(), 100, "EUR", "booking-breaker")
    assert gateway.v1_requests() == before, "an open breaker fails without a request"

    clock.now += 30
    assert pay.breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(PaymentUnavailable, match="circuit open"):
        pay.charge(_key(), 100, "EUR", "booking-breaker")
    assert gateway.v1_requests() == before + 1, "half-open lets exactly one trial through"
    assert pay.breaker.state is BreakerState.OPEN

    gateway.faults()
    clock.now += 30
    assert pay.charge(_key(), 100, "EUR", "booking-breaker").status == "succeeded"
    assert pay.breaker.state is BreakerState.CLOSED


def test_breaker_state_machine() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # a success resets the consecutive count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()

    clock.now += 9.9
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow(), "one trial at a time"
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    assert not breaker.allow(), "a failed trial starts a fresh cooldown"
    clock.now += 5
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_breaker_half_open_admits_one_trial_among_racing_threads() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=1, clock=clock)
    breaker.record_failure()
    clock.now += 1
    start = threading.Barrier(THREADS)

    def try_call(_: int) -> bool:
        start.wait()
        return breaker.allow()

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(try_call, range(THREADS))) == 1
