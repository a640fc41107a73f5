"""The cancellation policy in the basecamp's time zone, over arrival dates, zones and cancel
times: first its arithmetic against a reference written here, then end to end, where a
settle@2 booking is cancelled at a drawn instant and the gateway's ledger must hold what
the policy keeps (invariant 4 at rest, checked against the booking's own steps)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
from conftest import Settling
from drive import night
from gateway_process import Gateway
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from invariants import assert_inventory_matches_bookings, libpq_url, query
from settlement_checks import wait_until_settled
from versioning import eventually, expected_standing, standing, steps_of

from ridgeline.regional.settlement import deposits, terms
from ridgeline.regional.storage.db import run_transaction
from ridgeline.routing.client import BookingClient

#: Zones at the edges: +14, -11, quarter hours, half-hour DST, southern DST, no DST.
ZONES = ("Europe/Zurich", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kathmandu", "Australia/Lord_Howe", "America/St_Johns", "America/Santiago", "UTC")
DEFAULT = terms.Terms(30, 14, 21, 3, (terms.RefundTier(30, 100), terms.RefundTier(7, 50)))


def reference_refund_percent(first_night: date, zone: str, at: datetime) -> int:
    """Written apart from terms.py: the day the guest cancels, on the basecamp's wall calendar."""
    days = (first_night - at.astimezone(ZoneInfo(zone)).date()).days
    return 100 if days >= 30 else 50 if days >= 7 else 0


instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(timezone.utc))


@given(at=instants, ahead_hours=st.integers(-48, 90 * 24), zone=st.sampled_from(ZONES), total=st.integers(0, 10_000_000), paid_share=st.integers(0, 100))
def test_the_refund_follows_the_basecamp_s_calendar_day_at_every_threshold(at: datetime, ahead_hours: int, zone: str, total: int, paid_share: int) -> None:
    first_night = (at + timedelta(hours=ahead_hours)).astimezone(ZoneInfo(zone)).date()
    days = terms.days_before_arrival(first_night, zone, at)
    percent = terms.refund_percent(DEFAULT, days)
    assert percent == reference_refund_percent(first_night, zone, at)
    paid = total * paid_share // 100
    kept = terms.kept_cents(DEFAULT, total_cents=total, paid_cents=paid, days_before=days)
    assert kept == min(paid, total - total * percent // 100), "the fee, never more than was paid"
    assert terms.kept_cents(DEFAULT, total_cents=total, paid_cents=paid, days_before=days + 1) <= kept, "cancelling earlier never keeps more"


@given(first_night=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)), zone=st.sampled_from(ZONES), days=st.sampled_from([31, 30, 29, 8, 7, 6, 0]))
def test_a_threshold_day_starts_at_the_basecamp_s_midnight(first_night: date, zone: str, days: int) -> None:
    midnight = terms.local_midnight(first_night - timedelta(days=days), zone)
    assert terms.days_before_arrival(first_night, zone, midnight) == days
    assert terms.days_before_arrival(first_night, zone, midnight - timedelta(seconds=1)) == days + 1, "one second earlier is the day before there"


@given(created=instants, ahead_days=st.integers(1, 120), zone=st.sampled_from(ZONES), total=st.integers(0, 5_000_000))
def test_the_plan_splits_the_price_and_times_the_balance_on_local_midnights(created: datetime, ahead_days: int, zone: str, total: int) -> None:
    first_night = created.astimezone(ZoneInfo(zone)).date() + timedelta(days=ahead_days)
    plan = terms.plan(DEFAULT, total_cents=total, first_night=first_night, time_zone=zone, now=created)
    assert plan.deposit_cents + plan.balance_cents == total
    if plan.balance_due_at is None:
        assert plan.deposit_cents == total, "too close (or free): everything now"
        assert total == 0 or terms.local_midnight(first_night - timedelta(days=14), zone) <= created
        return
    local_due = plan.balance_due_at.astimezone(ZoneInfo(zone))
    assert (local_due.date(), local_due.hour, local_due.minute) == (first_night - timedelta(days=14), 0, 0)
    assert plan.deposit_cents == -(-total * 30 // 100) and plan.cancel_after == plan.balance_due_at + timedelta(days=3)
    assert plan.reminder_at is None or created < plan.reminder_at < plan.balance_due_at


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_invariant_4_holds_at_rest_after_a_settle_v2_cancellation_at_any_time_in_any_zone(
    data: st.DataObject, settling: Settling, alps_client: BookingClient, payment_gateway: Gateway
) -> None:
    """Each example: a basecamp time zone, an arrival, a Book under settle@2, the clock moved
    to a drawn instant (the balance fires if it fell due, the policy cancels past the grace)
    and a desk's cancellation there; at rest the ledger holds exactly what the policy keeps."""
    settling.clock.reset()
    zone = data.draw(st.sampled_from(ZONES), label="zone")
    with psycopg.connect(libpq_url(settling.url)) as conn:
        conn.execute("UPDATE basecamps SET time_zone = %s WHERE basecamp_id = 'argentiere'", (zone,))
    arrival = data.draw(st.integers(3, 60), label="arrival in days")
    booked = alps_client.book("argentiere", "argentiere-guide", night(arrival), night(arrival + 1), 1, "hypothesis", hold_ttl_seconds=300)
    wait_until_settled(settling.url, [booked.booking_id], 60)
    stay = run_transaction(settling.runtime.engine, lambda conn: deposits.stay(conn, booked.booking_id))
    plan = stay.plan()
    cancel_at = settling.clock() + timedelta(minutes=data.draw(st.integers(1, (arrival + 1) * 24 * 60), label="cancel after minutes"))
    settling.clock.advance_to(cancel_at)
    if plan.balance_due_at is not None and cancel_at >= plan.balance_due_at:
        fired = "cancelled by policy" if cancel_at >= plan.cancel_after else "balance charged"
        eventually(fired, lambda: fired in steps_of(settling.url, booked.booking_id), timeout_seconds=60)
    alps_client.cancel(booked.booking_id, reason="hypothesis")  # already cancelled by the policy: answered as it is
    eventually("the policy's refund step", lambda: "refunded by policy" in steps_of(settling.url, booked.booking_id), timeout_seconds=60)

    [cancelled] = query(settling.url, "SELECT at FROM booking_history WHERE booking_id::text = %(id)s AND to_state = 'cancelled'", {"id": booked.booking_id})
    paid = booked.total_price_cents if plan.balance_due_at is None or "balance charged" in steps_of(settling.url, booked.booking_id) else plan.deposit_cents
    percent = reference_refund_percent(stay.first_night, zone, cancelled.at)
    held = standing(payment_gateway.sql, [booked.booking_id])
    assert held == {booked.booking_id: min(paid, booked.total_price_cents - booked.total_price_cents * percent // 100)}, (zone, arrival, cancelled.at, plan)
    assert held == expected_standing(settling.url, [booked.booking_id]), "the ledger matches the steps the version recorded"
    assert_inventory_matches_bookings(settling.url)
