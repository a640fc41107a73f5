"""Durable timers: a tick over 100,000 pending timers is an index range read (EXPLAIN), claims
are fenced and only of the versions the claimer runs, a timer fires at most once, and a
balance timer whose owner is SIGKILLed after the charge is finished once by the next owner."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

from certificates import SessionCerts
from drive import grant_leases, night
from gateway_process import Gateway
from settlement_checks import wait_until_settled
from sqlalchemy import Engine, text
from versioning import eventually, expected_standing, make_balances_due, pending_timers, rollout, standing, steps_of

from ridgeline.deploy.bench.timer_load import seed_balance_timers, tick_cost
from ridgeline.flows.crash_points import AFTER_BALANCE_CHARGE, CRASH_ENV
from ridgeline.regional.storage.db import run_transaction
from ridgeline.regional.workflows import timers
from ridgeline.routing.client import BookingClient
from ridgeline.v1 import booking_pb2 as pb

ALPS = ["argentiere", "hoernli", "gouter", "capanna-margherita"]
PENDING = 100_000
DUE_NOW = 40


def test_a_tick_over_100000_pending_timers_reads_only_the_due_rows_through_the_index(alps_engine: Engine) -> None:
    now = datetime.now(timezone.utc)
    run_transaction(alps_engine, lambda conn: seed_balance_timers(conn, basecamps=ALPS, count=PENDING, due_at=now + timedelta(days=30), now=now))
    run_transaction(alps_engine, lambda conn: seed_balance_timers(conn, basecamps=ALPS, count=DUE_NOW, due_at=now - timedelta(minutes=1), now=now))
    with alps_engine.connect() as conn:
        conn.execute(text("ANALYZE workflow_timers"))
        conn.commit()
    fence = grant_leases(alps_engine, ALPS)

    def cost(at: datetime):
        return run_transaction(alps_engine, lambda conn: tick_cost(conn, fence=fence, workflows=["settle@2"], now=at, batch_max=256))

    busy, idle = cost(now), cost(now - timedelta(hours=1))
    assert busy.indexed_range and idle.indexed_range, "the claim reads a range of workflow_timers_due, and never scans the table"
    assert busy.claimed == DUE_NOW and busy.timer_rows_read == 2 * DUE_NOW, f"the due rows by the range, then by key to claim them: {busy}"
    assert idle.claimed == 0 and idle.timer_rows_read == 0, f"nothing due: nothing read of {PENDING} pending ({idle})"
    assert run_transaction(alps_engine, lambda conn: conn.execute(text("SELECT count(*) FROM workflow_timers WHERE fired_at IS NULL")).scalar_one()) == PENDING + DUE_NOW


def test_timers_are_claimed_under_a_valid_lease_only_of_runnable_versions_and_fire_once(alps_engine: Engine) -> None:
    now = datetime.now(timezone.utc)
    run_transaction(alps_engine, lambda conn: seed_balance_timers(conn, basecamps=["argentiere"], count=5, due_at=now - timedelta(seconds=1), now=now))
    fence = grant_leases(alps_engine, ["argentiere"])

    def claim(at: datetime, *, with_fence=fence, workflows=("settle@2",)) -> list[timers.Timer]:
        return timers.claim_due(alps_engine, fence=with_fence, workflows=workflows, now=at, batch_max=100, claim_seconds=30)

    assert claim(now, with_fence={"argentiere": fence["argentiere"] + 1}) == [], "a stale epoch claims nothing (invariant 6)"
    assert claim(now, workflows=("settle@1",)) == [], "a claimer that does not run settle@2 leaves its timers alone"
    first = claim(now)
    assert len(first) == 5 and all(t.attempts == 1 for t in first)
    assert claim(now) == [], "claimed: not due again until the claim lapses"
    again = claim(now + timedelta(seconds=31))
    assert sorted(t.booking_id for t in again) == sorted(t.booking_id for t in first), "a claimer that died leaves them due again"
    fired = [run_transaction(alps_engine, lambda conn, t=t: timers.fired(conn, t, now=now)) for t in again + again]
    assert fired == [True] * 5 + [False] * 5, "each timer fires once"
    assert claim(now + timedelta(minutes=5)) == []


def test_a_balance_timer_whose_owner_is_sigkilled_after_the_charge_is_finished_once_by_the_next_owner(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path
) -> None:
    payment_gateway.faults()
    settling = ("--gateway-url", payment_gateway.url, "--outbox-dir", str(tmp_path / "spool"), "--payment-timeout", "0.5",
                "--payment-attempts", "2", "--settle-claim", "2", "--lease-ttl", "2", "--heartbeat-interval", "0.5")
    owner = node_process(alps_db, *settling, env={CRASH_ENV: AFTER_BALANCE_CHARGE})
    rollout(certs, owner.address, "settle@2", 100)
    with BookingClient(owner.address, transport=certs.desk, timeout_seconds=10) as client:
        ids = [client.book("argentiere", "argentiere-dorm", night(40 + i), night(41 + i), 1, f"kill-{i}", hold_ttl_seconds=120).booking_id for i in range(3)]
    wait_until_settled(alps_db.url, ids, 30)
    assert all(pending_timers(alps_db.url, b) == ["reminder", "balance"] for b in ids)

    make_balances_due(alps_db.url)
    assert owner.process.wait(30) == -signal.SIGKILL, "killed right after a balance charge"
    charged = [ref for (ref,) in payment_gateway.sql("SELECT reference FROM gateway_charges WHERE reference = ANY(%s) AND idempotency_key LIKE 'balance:%%'", ids)]
    assert charged and not any("balance charged" in steps_of(alps_db.url, b) for b in charged), "charged, not yet recorded"

    node_process(alps_db, *settling)
    for b in ids:
        eventually(f"{b}'s balance recorded", lambda b=b: "balance charged" in steps_of(alps_db.url, b), timeout_seconds=60)
        assert pending_timers(alps_db.url, b) == ["reminder"]
    keys = payment_gateway.sql("SELECT idempotency_key, count(*) FROM gateway_charges WHERE reference = ANY(%s) GROUP BY 1", ids)
    assert all(n == 1 for _, n in keys) and len(keys) == 2 * len(ids), f"one deposit and one balance charge each: {keys}"
    assert standing(payment_gateway.sql, ids) == expected_standing(alps_db.url, ids)


def test_bookings_stuck_lists_a_booking_whose_timer_is_overdue(alps_engine: Engine, alps_client: BookingClient) -> None:
    now = datetime.now(timezone.utc)
    for due_at in (now - timedelta(hours=2), now + timedelta(days=30)):
        run_transaction(alps_engine, lambda conn, due_at=due_at: seed_balance_timers(conn, basecamps=["argentiere"], count=1, due_at=due_at, now=now))
    [overdue] = run_transaction(alps_engine, lambda conn: conn.execute(text("SELECT CAST(booking_id AS TEXT) FROM workflow_timers WHERE due_at < now()")).scalars().all())
    listed = alps_client.list_bookings(pb.ListBookingsRequest(stuck_seconds=3600)).bookings
    assert [b.booking_id for b in listed] == [overdue], "confirmed and paid so far, but its balance timer is an hour past due"
    assert alps_client.list_bookings(pb.ListBookingsRequest(stuck_seconds=3 * 3600)).bookings == [], "not overdue by three hours"
