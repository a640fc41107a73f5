"""Versions across crashes, rollouts and a rolling upgrade, in real node processes.

Each node is ``ridgeline node --gateway-url …`` with its settlement loop, against the
session's Prefect server and gateway, over mutual TLS. Verdicts come from the region
database (versions, history, steps, actors), the gateway's ledger and the nodes' metrics.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from certificates import SessionCerts
from drive import night
from gateway_process import Gateway
from invariants import assert_history_consistent, assert_inventory_matches_bookings, query
from settlement_checks import wait_until_settled
from versioning import eventually, expected_standing, make_balances_due, pending_timers, rollout, standing, steps_of, workflows

from ridgeline.flows.crash_points import AFTER_CHARGE, CRASH_ENV
from ridgeline.routing.client import ClusterClient
from ridgeline.v1 import booking_pb2 as pb

OLD_WORKFLOWS = "hold@1,settle@1,trek@1"


def _node_args(gateway: Gateway, spool: Path, node_id: str, *extra: str) -> tuple[str, ...]:
    return (
        "--node-id", node_id, "--gateway-url", gateway.url, "--outbox-dir", str(spool), "--payment-timeout", "0.5", "--payment-attempts", "2",
        "--settle-claim", "2", "--lease-ttl", "2", "--heartbeat-interval", "0.5", *extra,
    )


def _book(address: str, certs: SessionCerts, first_day: int, count: int) -> list[pb.Booking]:
    """One-night stays from ``first_day``, each under a key of its own night: the rollout's
    choice is a function of the key, so a partial ramp splits these bookings the same way
    every run (random keys left 12 bookings all on one side once in 4,096 runs at 50 %)."""
    with ClusterClient([address], transport=certs.desk, timeout_seconds=10) as client:
        return [
            client.book(
                "argentiere", "argentiere-dorm", night(first_day + i), night(first_day + i + 1), 1, f"guest-{first_day + i}",
                hold_ttl_seconds=300, idempotency_key=f"rolling-upgrade-{first_day + i}",
            )
            for i in range(count)
        ]


def _settle_v1_shape(url: str, gateway: Gateway, ids: list[str]) -> None:
    """Exactly as settle@1 finishes: confirmed, charged the whole price once, no steps, no timers."""
    rows = query(url, "SELECT booking_id::text AS id, state, total_price_cents FROM bookings WHERE booking_id::text = ANY(%(ids)s)", {"ids": ids})
    assert {r.state for r in rows} == {"confirmed"}, rows
    assert standing(gateway.sql, ids) == {r.id: r.total_price_cents for r in rows}
    assert all(steps_of(url, b) == [] and pending_timers(url, b) == [] for b in ids), "settle@1 takes no settle@2 step"
    assert gateway.sql("SELECT count(*) FROM gateway_charges WHERE reference = ANY(%s) AND status = 'succeeded'", ids) == [(len(ids),)]


def test_old_bookings_finish_as_settle_1_new_ones_as_settle_2_across_crashes_a_rollout_and_a_rollback(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path
) -> None:
    payment_gateway.faults()
    spool = tmp_path / "spool"
    # settle@1 bookings on a node that does not settle, which then crashes.
    placer = node_process(alps_db, "--node-id", "placer", "--lease-ttl", "2", "--heartbeat-interval", "0.5")
    old = [b.booking_id for b in _book(placer.address, certs, 30, 4)]
    assert set(workflows(alps_db.url, old).values()) == {"settle@1"}
    placer.kill()
    # A settling node that crashes after its first charge.
    first = node_process(alps_db, *_node_args(payment_gateway, spool, "first"), env={CRASH_ENV: AFTER_CHARGE})
    assert first.process.wait(30) == -signal.SIGKILL, "killed after a charge, before its confirm"

    second = node_process(alps_db, *_node_args(payment_gateway, spool, "second"))
    rollout(certs, second.address, "settle@2", 100)
    new = [b.booking_id for b in _book(second.address, certs, 40, 4)]
    assert set(workflows(alps_db.url, new).values()) == {"settle@2"}
    wait_until_settled(alps_db.url, old + new, 60)
    assert all(pending_timers(alps_db.url, b) == ["reminder", "balance"] for b in new), "settle@2 in flight: its timers wait"
    second.kill()

    third = node_process(alps_db, *_node_args(payment_gateway, spool, "third"))
    back = rollout(certs, third.address, "settle", rollback=True)
    assert [(r.target, r.percent) for r in back.rollouts] == [("settle@1", 100)]
    after = [b.booking_id for b in _book(third.address, certs, 50, 3)]
    assert set(workflows(alps_db.url, after).values()) == {"settle@1"}, "after the rollback new bookings are settle@1 again"
    make_balances_due(alps_db.url)
    for b in new:
        eventually(f"{b} finishes as settle@2", lambda b=b: "balance charged" in steps_of(alps_db.url, b), timeout_seconds=60)
    wait_until_settled(alps_db.url, after, 60)

    _settle_v1_shape(alps_db.url, payment_gateway, old + after)
    assert all(steps_of(alps_db.url, b) == ["balance due", "deposit charged", "balance charged"] for b in new)
    assert all(pending_timers(alps_db.url, b) == ["reminder"] for b in new), "the reminder waits for its own day"
    assert standing(payment_gateway.sql, new) == expected_standing(alps_db.url, new)
    assert set(workflows(alps_db.url, old + new + after).values()) == {"settle@1", "settle@2"}
    assert workflows(alps_db.url, old) == {b: "settle@1" for b in old} and workflows(alps_db.url, new) == {b: "settle@2" for b in new}
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)


def _owners(address: str, certs: SessionCerts) -> set[str]:
    with ClusterClient([address], transport=certs.desk, timeout_seconds=10) as client:
        return {o.node_id for info in client.cluster_info() if info.region == "eu-alps" for o in info.owners}


def _left_alone(metrics_address: str) -> float:
    text = httpx.get(f"http://{metrics_address}/metrics", timeout=10).text
    lines = [line for line in text.splitlines() if line.startswith('ridgeline_workflow_left_alone_bookings{workflow="settle@2"}')]
    return float(lines[0].split()[-1]) if lines else 0.0


def _actors(url: str, ids: list[str]) -> set[str]:
    rows = query(
        url,
        "SELECT actor FROM booking_history WHERE booking_id::text = ANY(%(ids)s) UNION SELECT actor FROM workflow_steps WHERE booking_id::text = ANY(%(ids)s)",
        {"ids": ids},
    )
    return {r.actor for r in rows}


def test_a_mixed_cluster_never_advances_a_booking_with_the_wrong_version_and_never_strands_one(
    alps_db, node_process, certs: SessionCerts, prefect_api: str, payment_gateway: Gateway, tmp_path: Path
) -> None:
    payment_gateway.faults()
    spool = tmp_path / "spool"
    old = node_process(alps_db, *_node_args(payment_gateway, spool, "old", "--workflows", OLD_WORKFLOWS))
    new = node_process(alps_db, *_node_args(payment_gateway, spool, "new"))
    eventually("both own basecamps before the rollout", lambda: _owners(old.address, certs) == {"old", "new"}, timeout_seconds=20)

    rollout(certs, new.address, "settle@2", 50)
    eventually("the old node hands every basecamp over", lambda: _owners(old.address, certs) == {"new"}, timeout_seconds=20)
    mixed = [b.booking_id for b in _book(old.address, certs, 30, 12)]
    versions = workflows(alps_db.url, mixed)
    assert set(versions.values()) == {"settle@1", "settle@2"}, versions
    wait_until_settled(alps_db.url, mixed, 60)
    assert "node:old" not in _actors(alps_db.url, mixed), "the old node owned nothing, so it moved nothing"

    # The only node that runs settle@2 dies: liveness wins, the old node owns, and leaves
    # settle@2 alone, and says so, until a node that runs it is back.
    new.kill()
    eventually("the old node takes over", lambda: _owners(old.address, certs) == {"old"}, timeout_seconds=20)
    waiting = [b.booking_id for b in _book(old.address, certs, 60, 12)]
    by_version = workflows(alps_db.url, waiting)
    v2 = [b for b, v in by_version.items() if v == "settle@2"]
    v1 = [b for b, v in by_version.items() if v == "settle@1"]
    assert v1 and v2, by_version
    wait_until_settled(alps_db.url, v1, 60)
    with ClusterClient([old.address], transport=certs.desk, timeout_seconds=10) as client:
        metrics = next(m.metrics_address for info in client.cluster_info() for m in info.members if m.node_id == "old")
    eventually("the old node reports what it leaves alone", lambda: _left_alone(metrics) >= len(v2), timeout_seconds=20)
    states = query(alps_db.url, "SELECT DISTINCT state FROM settlements WHERE booking_id::text = ANY(%(ids)s)", {"ids": v2})
    assert [r.state for r in states] == ["awaiting_payment"], "never advanced by a node that lacks its version"

    back = node_process(alps_db, *_node_args(payment_gateway, spool, "new-again"))
    eventually("the upgraded node takes every basecamp", lambda: _owners(back.address, certs) == {"new-again"}, timeout_seconds=20)
    wait_until_settled(alps_db.url, v2, 60)
    assert all(pending_timers(alps_db.url, b) == ["reminder", "balance"] for b in v2), "settled as settle@2"
    assert "node:old" not in _actors(alps_db.url, [b for b in mixed + waiting if workflows(alps_db.url, [b])[b] == "settle@2"])
    eventually("nothing left alone", lambda: _left_alone(metrics) == 0, timeout_seconds=20)
    ids = mixed + waiting
    assert standing(payment_gateway.sql, ids) == expected_standing(alps_db.url, ids)
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
