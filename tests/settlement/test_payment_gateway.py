"""The stand-in payment gateway and the adapter settlement uses to call it.

A real gateway process (``ridgeline gateway``) on its own PostgreSQL database, real HTTPS
with mutual TLS on loopback (its own CA); who may call which route is the authorization
table's ``gateway …`` rows, tested as a matrix at the end. Faults are switched at run time through ``PUT /admin/faults``; the gateway's
own tables and its ``/v1`` request counter are the evidence.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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
from ridgeline.trust import policy, tokens
from ridgeline.trust.certs import LOCAL_NODE_NAME, CertsDir, create_client, create_node, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.identity import Role

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
        made.append(PaymentGateway(gateway.url, gateway.transport(), **options))
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
    health = gateway.admin.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "serving"})


def _samples(gateway: Gateway) -> dict[tuple[str, tuple[str, ...]], float]:
    """Every sample of the gateway's /metrics: (name, label values in order) -> value."""
    text = gateway.admin.get("/metrics").text
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


# -- trust (issue 11): mutual TLS and the table's gateway rows ---------------------------

#: (principal of the client pair, or None for the node pair; the role its certificate names)
CALLERS = [(None, Role.NODE), ("sre", Role.SRE), ("desk", Role.DESK), ("planner", Role.PLANNER), ("agency-a", Role.AGENCY)]
GATEWAY_ROUTES = sorted(route for route in policy.TABLE if route.startswith("gateway "))


@pytest.fixture(scope="module")
def callers(gateway: Gateway) -> Iterator[dict[Role, httpx.Client]]:
    """One client per role, each presenting its own pair from the gateway's certificates directory."""
    assert gateway.certs is not None, "these tests need the gateway over TLS"
    create_client(gateway.certs, Role.AGENCY, "agency-a")
    clients = {role: gateway.transport(principal).http_client(gateway.url, timeout_seconds=10) for principal, role in CALLERS}
    yield clients
    for client in clients.values():
        client.close()


def _charges_with_key(gateway: Gateway, key: str) -> int:
    return gateway.sql("SELECT count(*) FROM gateway_charges WHERE idempotency_key = %s", key)[0][0]


def _call(route: str, client: httpx.Client, gateway: Gateway, adapter: Callable[..., PaymentGateway]) -> tuple[httpx.Response, Callable[[], bool]]:
    """Makes the request ``route`` names with ``client``; returns the answer and whether it wrote anything."""
    _, method, template = route.split(" ")
    key = _key()
    if template == "/v1/charges" and method == "POST":
        reply = client.post(template, json={"idempotency_key": key, "amount_cents": 100, "currency": "EUR", "reference": "booking-matrix"})
        return reply, lambda: _charges_with_key(gateway, key) == 1
    if template == "/v1/refunds":
        charge = adapter().charge(_key(), 100, "EUR", "booking-matrix")
        reply = client.post(template, json={"idempotency_key": key, "charge_id": charge.charge_id, "amount_cents": 40})
        return reply, lambda: gateway.sql("SELECT refunded_cents FROM gateway_charges WHERE charge_id = %s", charge.charge_id) == [(40,)]
    if template == "/v1/charges/{charge_id}":
        charge = adapter().charge(_key(), 100, "EUR", "booking-matrix")
        return client.get(f"/v1/charges/{charge.charge_id}"), lambda: False
    if template == "/admin/faults" and method == "PUT":
        reply = client.put(template, json={"decline_rate": 1.0})
        return reply, lambda: gateway.admin.get(template).json()["decline_rate"] == 1.0
    assert method == "GET", f"no request written for {route}: add one"
    return client.get(template), lambda: False


@pytest.mark.parametrize(("principal", "role"), CALLERS, ids=[role.value for _, role in CALLERS])
@pytest.mark.parametrize("route", GATEWAY_ROUTES)
def test_each_role_gets_exactly_what_the_table_says_and_a_refusal_writes_nothing(
    gateway: Gateway, callers: dict[Role, httpx.Client], adapter: Callable[..., PaymentGateway], route: str, principal: str | None, role: Role
) -> None:
    rule = policy.TABLE[route]
    allowed = rule.public or role in rule.roles
    charges_before = gateway.sql("SELECT count(*), COALESCE(SUM(refunded_cents), 0) FROM gateway_charges")[0]
    reply, wrote = _call(route, callers[role], gateway, adapter)
    if allowed:
        assert reply.status_code == 200, (route, role, reply.text)
        return
    assert reply.status_code == 403, (route, role, reply.text)
    assert reply.json() == {"error": "permission_denied", "message": f"{role.value}:{principal or LOCAL_NODE_NAME} may not call {route}: it needs the role {', '.join(sorted(r.value for r in rule.roles))}"}
    assert not wrote(), f"{role.value} was refused {route} but it wrote"
    charges_after = gateway.sql("SELECT count(*), COALESCE(SUM(refunded_cents), 0) FROM gateway_charges")[0]
    assert charges_after[1] == charges_before[1], "a refused call refunded nothing"


def test_every_gateway_route_is_in_the_table_and_nothing_else_answers(gateway: Gateway, callers: dict[Role, httpx.Client]) -> None:
    """The matrix covers the app's routes: a route added without a row is refused to everyone."""
    assert {route.split(" ", 1)[1] for route in GATEWAY_ROUTES} == {
        "POST /v1/charges", "POST /v1/refunds", "GET /v1/charges/{charge_id}", "GET /v1/charges",
        "GET /admin/faults", "PUT /admin/faults", "GET /admin/stats", "GET /metrics", "GET /healthz",
    }
    for method, path in (("GET", "/docs"), ("GET", "/openapi.json"), ("DELETE", "/v1/charges"), ("GET", "/v2/anything")):
        reply = callers[Role.SRE].request(method, path)
        assert (reply.status_code, reply.json()["error"]) == (403, "permission_denied"), (method, path)


def test_plaintext_certificateless_and_foreign_clients_are_refused_and_charge_nothing(gateway: Gateway, tmp_path: Path) -> None:
    assert gateway.url.startswith("https://") and gateway.certs is not None
    key = _key()
    body = {"idempotency_key": key, "amount_cents": 100, "currency": "EUR", "reference": "booking-intruder"}
    with pytest.raises(httpx.TransportError):
        httpx.post(gateway.url.replace("https://", "http://") + "/v1/charges", json=body, timeout=5)
    with pytest.raises(httpx.TransportError):  # the handshake wants a client certificate
        httpx.post(f"{gateway.url}/v1/charges", json=body, verify=ssl.create_default_context(cafile=gateway.certs.ca_cert), timeout=5)
    foreign = CertsDir(tmp_path / "foreign")
    ensure_local(foreign)
    with pytest.raises(httpx.TransportError), Transport.from_dir(foreign.path).http_client(gateway.url, timeout_seconds=5) as intruder:
        intruder.post("/v1/charges", json=body)
    with pytest.raises(ValueError, match="not an https:// URL"):
        gateway.transport().http_client(gateway.url.replace("https://", "http://"), timeout_seconds=5)
    assert _charges_with_key(gateway, key) == 0


def test_bearer_tokens_name_the_caller_and_bad_ones_are_refused_with_401(gateway: Gateway, callers: dict[Role, httpx.Client]) -> None:
    assert gateway.certs is not None
    ca_key = gateway.certs.ca_key.read_bytes()
    desk = callers[Role.DESK]
    expired = tokens.issue(ca_key, Role.NODE, "settler", ttl_seconds=60, now=time.time() - 3600)
    key = _key()
    body = {"idempotency_key": key, "amount_cents": 100, "currency": "EUR", "reference": "booking-token"}
    for header, reason in ((f"Bearer {expired}", "expired"), ("Bearer not-a-token", "not valid"), ("Basic c3JlOnNyZQ==", "Bearer")):
        reply = desk.post("/v1/charges", json=body, headers={"Authorization": header})
        assert (reply.status_code, reply.json()["error"]) == (401, "unauthenticated") and reason in reply.json()["message"], reply.text
    assert _charges_with_key(gateway, key) == 0
    node_token = tokens.issue(ca_key, Role.NODE, "settler", ttl_seconds=60)
    reply = desk.post("/v1/charges", json=body, headers={"Authorization": f"Bearer {node_token}"})
    assert reply.status_code == 200, "the token's node role, not the desk's pair"
    assert _charges_with_key(gateway, key) == 1


def test_refusals_are_counted_by_role_and_status_and_the_adapter_does_not_retry_them(
    gateway: Gateway, callers: dict[Role, httpx.Client]
) -> None:
    assert gateway.certs is not None
    before = _samples(gateway)
    pay = PaymentGateway(gateway.url, gateway.transport("desk"), attempts_max=3, backoff_base_seconds=0.01, backoff_cap_seconds=0.01)
    with pay, pytest.raises(payments.PaymentForbidden, match="403"):
        pay.charge(_key(), 100, "EUR", "booking-desk")
    callers[Role.DESK].post("/v1/charges", json={}, headers={"Authorization": "Bearer junk"})
    after = _samples(gateway)
    grew = {labels: after.get(("ridgeline_gateway_refusals_total", labels), 0) - before.get(("ridgeline_gateway_refusals_total", labels), 0) for labels in (("desk", "403"), ("none", "401"))}
    assert grew == {("desk", "403"): 1, ("none", "401"): 1}, "one refusal each: a 403 is definitive, never retried"
    roles = {role.value for role in Role} | {"none"}
    assert all(labels[0] in roles for name, labels in after if name == "ridgeline_gateway_refusals_total"), "roles in the labels, never principals"


def _served_certificate(gateway: Gateway) -> bytes:
    """The certificate a new connection to the gateway is shown (DER)."""
    assert gateway.certs is not None
    host, port = gateway.url.removeprefix("https://").rsplit(":", 1)
    context = gateway.transport().client_ssl_context()
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
        served = tls.getpeercert(binary_form=True)
    assert served is not None
    return served


def test_a_renewed_node_certificate_is_served_without_a_restart_and_no_call_fails(
    gateway: Gateway, adapter: Callable[..., PaymentGateway]
) -> None:
    assert gateway.certs is not None
    before = _served_certificate(gateway)
    assert before == ssl.PEM_cert_to_DER_cert(gateway.certs.node_cert.read_text())
    stop, failures, calls = threading.Event(), [], [0]

    def pay() -> None:
        pay = adapter(attempts_max=1)
        while not stop.is_set():
            try:
                pay.charge(_key(), 100, "EUR", "booking-rotation")
                calls[0] += 1
            except Exception as error:  # noqa: BLE001 - the test counts every failure
                failures.append(error)

    payers = [threading.Thread(target=pay) for _ in range(4)]
    for payer in payers:
        payer.start()
    time.sleep(0.3)
    create_node(gateway.certs, LOCAL_NODE_NAME, ("localhost", "127.0.0.1"))
    time.sleep(0.5)
    after = _served_certificate(gateway)
    stop.set()
    for payer in payers:
        payer.join()
    assert after != before and after == ssl.PEM_cert_to_DER_cert(gateway.certs.node_cert.read_text()), "new handshakes see the renewed pair"
    assert failures == [] and calls[0] > 0, f"{len(failures)} of {calls[0] + len(failures)} calls failed: {failures[:3]}"
