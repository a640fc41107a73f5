"""settle@2 end to end in this process: deposit at booking, reminder and balance on durable
timers after a clock advance, a declined balance cancelled by policy after the grace, a
desk's cancellation refunded by policy. Real node, Prefect, gateway and PostgreSQL; the
money is read from the gateway's own ledger and checked against the booking's steps."""

from __future__ import annotations

import json
from datetime import timedelta

from conftest import Settling
from drive import night
from gateway_process import Gateway
from invariants import assert_history_consistent, assert_inventory_matches_bookings
from settlement_checks import wait_until_settled
from versioning import eventually, expected_standing, pending_timers, standing, steps_of

from ridgeline.regional.settlement import deposits, terms
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing.client import BookingClient
from ridgeline.v1 import booking_pb2 as pb

ARRIVAL_DAYS = 40  # well before every threshold of the default terms (balance 14 days before, reminder 21)


def _plan(settling: Settling, booking_id: str) -> tuple[deposits.Stay, terms.Plan]:
    found = run_transaction(settling.runtime.engine, lambda conn: deposits.stay(conn, booking_id))
    return found, found.plan()


def _book(client: BookingClient, i: int) -> pb.Booking:
    return client.book("argentiere", "argentiere-dorm", night(ARRIVAL_DAYS + i), night(ARRIVAL_DAYS + i + 2), 2, f"v2-{i}", hold_ttl_seconds=120)


def test_settle_v2_charges_the_deposit_then_the_balance_on_its_timer_and_reminds_before(
    settling: Settling, alps_client: BookingClient, payment_gateway: Gateway
) -> None:
    booked = _book(alps_client, 0)
    assert booked.workflow == "settle@2"
    wait_until_settled(settling.url, [booked.booking_id], 30)
    found, plan = _plan(settling, booked.booking_id)
    assert plan.deposit_cents == -(-booked.total_price_cents * 30 // 100) and plan.balance_cents > 0
    assert standing(payment_gateway.sql, [booked.booking_id])[booked.booking_id] == plan.deposit_cents, "only the deposit at booking"
    assert steps_of(settling.url, booked.booking_id) == ["balance due", "deposit charged"]
    assert pending_timers(settling.url, booked.booking_id) == ["reminder", "balance"]
    shown = alps_client.get_booking(booked.booking_id)
    due_local = plan.balance_due_at.astimezone(terms.ZoneInfo(found.time_zone)).date()
    assert [(s.step, s.amount_cents) for s in shown.steps] == [("balance due", plan.balance_cents), ("deposit charged", plan.deposit_cents)]
    assert shown.steps[0].detail == f"on {due_local.isoformat()}" and due_local == found.first_night - timedelta(days=14)

    settling.clock.advance_to(plan.reminder_at + timedelta(minutes=1))
    eventually("the reminder fires", lambda: "reminder sent" in steps_of(settling.url, booked.booking_id))
    message = eventually("the reminder reaches the spool", lambda: list(settling.spool.glob(f"balance_reminder_{booked.booking_id}.json")))
    assert json.loads(message[0].read_text())["kind"] == "balance_reminder"
    assert standing(payment_gateway.sql, [booked.booking_id])[booked.booking_id] == plan.deposit_cents, "the reminder charges nothing"

    settling.clock.advance_to(plan.balance_due_at + timedelta(minutes=1))
    eventually("the balance is charged", lambda: "balance charged" in steps_of(settling.url, booked.booking_id))
    assert standing(payment_gateway.sql, [booked.booking_id])[booked.booking_id] == booked.total_price_cents
    assert pending_timers(settling.url, booked.booking_id) == []
    assert payment_gateway.sql("SELECT count(*) FROM gateway_charges WHERE reference = %s", booked.booking_id) == [(2,)], "deposit and balance, once each"
    assert alps_client.get_booking(booked.booking_id).state == pb.BOOKING_STATE_CONFIRMED
    assert standing(payment_gateway.sql, [booked.booking_id]) == expected_standing(settling.url, [booked.booking_id])
    assert_inventory_matches_bookings(settling.url)
    assert_history_consistent(settling.url)


def test_a_declined_balance_retries_until_the_grace_ends_then_the_policy_cancels(
    settling: Settling, alps_client: BookingClient, payment_gateway: Gateway
) -> None:
    booked = _book(alps_client, 3)
    wait_until_settled(settling.url, [booked.booking_id], 30)
    found, plan = _plan(settling, booked.booking_id)
    payment_gateway.faults(decline_rate=1.0)
    settling.clock.advance_to(plan.balance_due_at + timedelta(minutes=1))
    eventually("the balance is declined", lambda: "balance declined" in steps_of(settling.url, booked.booking_id))
    assert alps_client.get_booking(booked.booking_id).state == pb.BOOKING_STATE_CONFIRMED, "within the grace the booking stands"
    assert pending_timers(settling.url, booked.booking_id) == ["balance"], "retried later"

    settling.clock.advance_to(plan.cancel_after + timedelta(minutes=1))
    eventually("the policy cancels", lambda: "refunded by policy" in steps_of(settling.url, booked.booking_id), timeout_seconds=60)
    assert alps_client.get_booking(booked.booking_id).state == pb.BOOKING_STATE_CANCELLED
    days = terms.days_before_arrival(found.first_night, found.time_zone, settling.clock())
    assert days == 14 - 3, "cancelled at the grace's end, 11 days before arrival: the 50% tier"
    kept = terms.kept_cents(found.terms, total_cents=booked.total_price_cents, paid_cents=plan.deposit_cents, days_before=days)
    assert kept == plan.deposit_cents, "the 50% fee is more than the deposit: the deposit is kept, nothing more charged"
    assert standing(payment_gateway.sql, [booked.booking_id]) == {booked.booking_id: kept} == expected_standing(settling.url, [booked.booking_id])
    assert pending_timers(settling.url, booked.booking_id) == []
    assert_inventory_matches_bookings(settling.url)


def test_a_desk_cancellation_is_refunded_by_the_policy_tier_of_its_day_and_ends_the_timers(
    settling: Settling, alps_client: BookingClient, payment_gateway: Gateway
) -> None:
    """Cancelled 40, 10 and 3 days before arrival (the node's own clock): 100%, 50% and no
    refund. A stay 10 or 3 days out is charged whole at booking (its balance would be due already)."""
    stays = {days: alps_client.book("argentiere", "argentiere-dorm", night(days), night(days + 1), 1, f"cancel-{days}", hold_ttl_seconds=120) for days in (40, 10, 3)}
    ids = [b.booking_id for b in stays.values()]
    wait_until_settled(settling.url, ids, 30)
    assert pending_timers(settling.url, stays[10].booking_id) == [] and steps_of(settling.url, stays[10].booking_id) == ["deposit charged"]
    assert standing(payment_gateway.sql, [stays[10].booking_id])[stays[10].booking_id] == stays[10].total_price_cents, "charged whole"
    for booked in stays.values():
        alps_client.cancel(booked.booking_id, reason="plans changed")
    for booked in stays.values():
        eventually(f"the refund step of {booked.booking_id}", lambda b=booked: "refunded by policy" in steps_of(settling.url, b.booking_id))
    totals = {days: b.total_price_cents for days, b in stays.items()}
    assert standing(payment_gateway.sql, ids) == {
        stays[40].booking_id: 0,  # the deposit, all of it back
        stays[10].booking_id: totals[10] - totals[10] * 50 // 100,
        stays[3].booking_id: totals[3],
    }
    assert standing(payment_gateway.sql, ids) == expected_standing(settling.url, ids)
    assert pending_timers(settling.url, stays[40].booking_id) == [], "a cancellation ends the timers"
    assert_inventory_matches_bookings(settling.url)
