"""OperatorService against a real node, settlement loop, gateway and PostgreSQL: keyed actions
racing their own repeats, refusals by role and scope, bulk per booking, and the audit after each."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc
import pytest
from conftest import AGENCIES, SCOPED_DESK, Cluster
from drive import night
from gateway_process import Gateway
from invariants import query
from settlement_checks import assert_money_balances, standing_cents, wait_until_settled

from ridgeline.deploy.drills.audit import run_audit
from ridgeline.routing import requests
from ridgeline.routing.client import ClusterClient
from ridgeline.routing.operator_client import OperatorClient
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import operator_pb2 as opb

T = TypeVar("T")
RACERS = 8


def _race(work: Callable[[int], T]) -> list[T]:
    """``work(i)`` on RACERS threads released together by a barrier."""
    barrier = threading.Barrier(RACERS)

    def run(i: int) -> T:
        barrier.wait(30)
        return work(i)

    with ThreadPoolExecutor(RACERS) as pool:
        return list(pool.map(run, range(RACERS)))


def _book(booking: object, days_ahead: int, customer: str, *, camp: str = "argentiere", resource: str = "argentiere-dorm") -> pb.Booking:
    return booking.Book(requests.book_request(camp, resource, night(days_ahead), night(days_ahead + 2), 1, customer, hold_ttl_seconds=600), timeout=30)


def _assert_audit_clean(url: str) -> None:
    report = run_audit({"eu-alps": url}, hold_grace_seconds=30)
    assert all(c.passed for c in report.checks), [c for c in report.checks if not c.passed]


def _actions_of(url: str, booking_id: str) -> list:
    return query(url, "SELECT action_id, actor, result FROM operator_actions WHERE booking_id = %(b)s", {"b": booking_id})


def _wait_attempted(url: str, booking_id: str, timeout_seconds: float = 20) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not query(url, "SELECT 1 FROM settlements WHERE booking_id = %(b)s AND attempts > 0", {"b": booking_id}):
        assert time.monotonic() < deadline, "settlement never tried the charge"
        time.sleep(0.1)


def test_a_retry_raced_by_its_repeats_reports_the_real_outcome_once(operated: Cluster, payment_gateway: Gateway) -> None:
    """Gateway down: eight racing retries with one key are one action, answering the booking
    still held with the gateway's error (not "done"); back up, a new retry confirms it."""
    operator, booking = operated.stubs("sre")
    payment_gateway.faults(outage=True)
    held = _book(booking, 30, "stuck-guest")
    _wait_attempted(operated.url, held.booking_id)
    ask = opb.BookingActionRequest(idempotency_key="retry-1", booking_id=held.booking_id, reason="gateway flapped", wait_seconds=10)
    answers = _race(lambda i: operator.RetrySettlement(ask, timeout=40))
    assert len({a.action_id for a in answers}) == 1, "one key, one action"
    first = answers[0]
    assert first.result == opb.ACTION_RESULT_STILL_PENDING and first.actor == "sre:sre"
    assert first.booking.state == pb.BOOKING_STATE_HELD and first.booking.payment.state == pb.PAYMENT_STATE_AWAITING_PAYMENT
    assert first.booking.payment.attempts >= 2 and first.booking.payment.last_error in first.detail, first.detail
    assert [(r.actor, r.result) for r in _actions_of(operated.url, held.booking_id)] == [("sre:sre", "still_pending")]

    payment_gateway.faults()
    done = operator.RetrySettlement(opb.BookingActionRequest(idempotency_key="retry-2", booking_id=held.booking_id, wait_seconds=15), timeout=40)
    assert done.result == opb.ACTION_RESULT_APPLIED, done.detail
    assert (done.booking.state, done.booking.payment.state) == (pb.BOOKING_STATE_CONFIRMED, pb.PAYMENT_STATE_CONFIRMED)
    again = operator.RetrySettlement(ask, timeout=40)
    assert (again.action_id, again.result) == (first.action_id, first.result), "a repeat answers the first outcome"
    assert again.booking.state == pb.BOOKING_STATE_CONFIRMED, "with the booking as it is now"
    assert_money_balances(operated.url, payment_gateway, [held.booking_id])
    _assert_audit_clean(operated.url)


def test_a_release_raced_by_its_repeats_releases_once_and_leaves_no_charge(operated: Cluster, payment_gateway: Gateway) -> None:
    operator, booking = operated.stubs("desk")
    payment_gateway.faults(outage=True)
    paid = _book(booking, 31, "leaving-guest")
    plain = booking.PlaceHold(requests.hold_request("argentiere", "argentiere-dorm", night(35), night(36), 1, "plain", hold_ttl_seconds=600), timeout=30)
    _wait_attempted(operated.url, paid.booking_id)
    payment_gateway.faults()  # the gateway is back: the release races the settlement loop
    for held in (paid, plain):
        ask = opb.BookingActionRequest(idempotency_key=f"release-{held.booking_id}", booking_id=held.booking_id, reason="guest left")
        answers = _race(lambda i: operator.ReleaseHold(ask, timeout=40))
        assert len({a.action_id for a in answers}) == 1
        assert {a.result for a in answers} == {opb.ACTION_RESULT_APPLIED}
        assert answers[0].booking.state == pb.BOOKING_STATE_RELEASED
        history = [(t.to_state, t.actor, t.reason) for t in answers[0].booking.history]
        assert history[-1] == (pb.BOOKING_STATE_RELEASED, "desk:desk", "guest left"), history
        assert len(_actions_of(operated.url, held.booking_id)) == 1
    final = wait_until_settled(operated.url, [paid.booking_id], 20)
    assert final[paid.booking_id] == ("refunded", "released")
    assert standing_cents(payment_gateway, paid.booking_id) == 0
    assert_money_balances(operated.url, payment_gateway, [paid.booking_id])
    refused = operator.ReleaseHold(opb.BookingActionRequest(idempotency_key="late", booking_id=paid.booking_id), timeout=30)
    assert refused.result == opb.ACTION_RESULT_ALREADY_DONE
    _assert_audit_clean(operated.url)


def test_a_refund_raced_by_its_repeats_checks_the_ledger_once(operated: Cluster, payment_gateway: Gateway) -> None:
    """A declined payment ends released; an operator who doubts it asks for a refund: the
    refund step reads the gateway's ledger, and the booking's payment ends refunded."""
    operator, booking = operated.stubs("sre")
    payment_gateway.faults(decline_rate=1.0)
    declined = _book(booking, 32, "declined-guest")
    assert wait_until_settled(operated.url, [declined.booking_id], 20)[declined.booking_id] == ("released", "released")
    payment_gateway.faults()
    ask = opb.BookingActionRequest(idempotency_key="refund-1", booking_id=declined.booking_id, reason="guest says charged", wait_seconds=15)
    answers = _race(lambda i: operator.RefundCharge(ask, timeout=40))
    assert len({a.action_id for a in answers}) == 1
    assert answers[0].result == opb.ACTION_RESULT_APPLIED, answers[0].detail
    assert answers[0].booking.payment.state == pb.PAYMENT_STATE_REFUNDED
    confirmed = _book(booking, 33, "happy-guest")
    wait_until_settled(operated.url, [confirmed.booking_id], 20)
    with pytest.raises(grpc.RpcError) as refusal:
        operator.RefundCharge(opb.BookingActionRequest(idempotency_key="refund-2", booking_id=confirmed.booking_id), timeout=30)
    assert refusal.value.code() is grpc.StatusCode.FAILED_PRECONDITION and "cancel" in refusal.value.details()
    assert_money_balances(operated.url, payment_gateway, [declined.booking_id, confirmed.booking_id])
    _assert_audit_clean(operated.url)


def test_actions_are_refused_to_agencies_and_to_a_desk_outside_its_basecamps(operated: Cluster) -> None:
    _, booking = operated.stubs("desk")
    held = booking.PlaceHold(requests.hold_request("argentiere", "argentiere-dorm", night(40), night(41), 1, "someone", hold_ttl_seconds=600), timeout=30)
    ask = opb.BookingActionRequest(idempotency_key="nope", booking_id=held.booking_id)
    for principal in (AGENCIES[0], SCOPED_DESK):
        operator, _ = operated.stubs(principal)
        for call in (operator.ReleaseHold, operator.RetrySettlement, operator.RefundCharge):
            with pytest.raises(grpc.RpcError) as refused:
                call(ask, timeout=30)
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED, (principal, refused.value.details())
    scoped, _ = operated.stubs(SCOPED_DESK)
    bulk = opb.BulkActionRequest(idempotency_key="b", action=opb.OPERATOR_ACTION_RELEASE_HOLD, filter=opb.BookingFilter(basecamp_id="argentiere"))
    with pytest.raises(grpc.RpcError) as refused:
        scoped.BulkAction(bulk, timeout=30)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert _actions_of(operated.url, held.booking_id) == [], "a refusal writes nothing"
    assert query(operated.url, "SELECT state FROM bookings WHERE booking_id = %(b)s", {"b": held.booking_id})[0].state == "held"
    _assert_audit_clean(operated.url)


def test_a_bulk_retry_over_a_filter_reports_each_booking(operated: Cluster, payment_gateway: Gateway) -> None:
    operator, booking = operated.stubs("sre")
    payment_gateway.faults(outage=True)
    stuck = [_book(booking, 50 + i, f"bulk-{i}", camp="hoernli", resource="hoernli-dorm") for i in range(3)]
    plain = booking.PlaceHold(requests.hold_request("hoernli", "hoernli-dorm", night(60), night(61), 1, "plain", hold_ttl_seconds=600), timeout=30)
    elsewhere = _book(booking, 50, "other-camp")
    for b in stuck:
        _wait_attempted(operated.url, b.booking_id)
    payment_gateway.faults()
    key = str(uuid.uuid4())
    ask = opb.BulkActionRequest(
        idempotency_key=key, action=opb.OPERATOR_ACTION_RETRY_SETTLEMENT, reason="gateway back",
        filter=opb.BookingFilter(basecamp_id="hoernli", state=pb.BOOKING_STATE_HELD), wait_seconds=20,
    )
    reply = operator.BulkAction(ask, timeout=60)
    by_id = {o.booking_id: o for o in reply.outcomes}
    assert set(by_id) == {b.booking_id for b in stuck} | {plain.booking_id}, "the filter took hoernli's held bookings only"
    assert not reply.truncated
    for b in stuck:
        assert by_id[b.booking_id].result == opb.ACTION_RESULT_APPLIED, by_id[b.booking_id].detail
        assert by_id[b.booking_id].booking.state == pb.BOOKING_STATE_CONFIRMED
    assert by_id[plain.booking_id].result == opb.ACTION_RESULT_REFUSED and "no payment" in by_id[plain.booking_id].detail
    again = operator.BulkAction(ask, timeout=60)
    # The filter now selects only the plain hold (the others are confirmed); its key answers the first outcome.
    assert [(o.booking_id, o.action_id) for o in again.outcomes] == [(plain.booking_id, by_id[plain.booking_id].action_id)], "a repeated bulk repeats nothing"
    assert query(operated.url, "SELECT count(*) AS n FROM operator_actions")[0].n == 4
    assert _actions_of(operated.url, elsewhere.booking_id) == []
    _assert_audit_clean(operated.url)


def test_in_flight_pages_and_the_timeline_tell_a_stuck_booking_s_story(operated: Cluster, payment_gateway: Gateway) -> None:
    operator, booking = operated.stubs("sre")
    payment_gateway.faults(outage=True)
    held = [_book(booking, 70 + i, f"page-{i}") for i in range(5)]
    _wait_attempted(operated.url, held[0].booking_id)
    seen, token = [], ""
    while True:
        page = operator.ListInFlight(opb.ListInFlightRequest(kind=opb.IN_FLIGHT_KIND_STUCK, basecamp_id="argentiere", page_size=2, page_token=token), timeout=30)
        seen += [i.booking_id for i in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == [b.booking_id for b in held], "oldest first, every one once"
    operator.RetrySettlement(opb.BookingActionRequest(idempotency_key="t", booking_id=held[0].booking_id, reason="look", wait_seconds=2), timeout=30)
    story = operator.GetTimeline(opb.GetTimelineRequest(booking_id=held[0].booking_id), timeout=30)
    kinds = [e.kind for e in story.entries]
    assert opb.TIMELINE_KIND_TRANSITION in kinds and opb.TIMELINE_KIND_SETTLEMENT in kinds and opb.TIMELINE_KIND_OPERATOR_ACTION in kinds
    action = next(e for e in story.entries if e.kind == opb.TIMELINE_KIND_OPERATOR_ACTION)
    assert action.actor == "sre:sre" and "retry_settlement (look)" in action.detail
    assert [e.at.ToDatetime() for e in story.entries] == sorted(e.at.ToDatetime() for e in story.entries)
    listed = operator.ListActions(opb.ListActionsRequest(booking_id=held[0].booking_id), timeout=30)
    assert [a.actor for a in listed.actions] == ["sre:sre"]
    payment_gateway.faults()


def test_the_operator_client_routes_actions_and_reads_by_the_booking_s_basecamp(operated: Cluster, certs) -> None:
    _, booking = operated.stubs("desk")
    held = booking.PlaceHold(requests.hold_request("gouter", "gouter-dorm", night(80), night(81), 1, "routed", hold_ttl_seconds=600), timeout=30)
    with ClusterClient([operated.node.address], transport=certs.sre, timeout_seconds=30) as cluster:
        client = OperatorClient(cluster, timeout_seconds=30)
        stuck = client.list_in_flight(opb.ListInFlightRequest(kind=opb.IN_FLIGHT_KIND_STUCK), region="eu-alps")
        assert held.booking_id in [i.booking_id for i in stuck.items]
        released = client.release_hold(held.booking_id, reason="routed release", idempotency_key="routed")
        assert released.result == opb.ACTION_RESULT_APPLIED and released.booking.state == pb.BOOKING_STATE_RELEASED
        assert client.release_hold(held.booking_id, reason="routed release", idempotency_key="routed").action_id == released.action_id
        story = client.timeline(held.booking_id)
        assert any(e.kind == opb.TIMELINE_KIND_OPERATOR_ACTION and e.actor == "sre:sre" for e in story.entries)
        assert [a.action_id for a in client.list_actions(opb.ListActionsRequest(booking_id=held.booking_id), region="eu-alps").actions] == [released.action_id]
    _assert_audit_clean(operated.url)
