"""The leader epoch fences every decision in SQL (global_coordinator/leadership.py), on a real PostgreSQL.

A decision written under an epoch that no longer leads is refused and leaves no row; a
takeover waits for a write that holds the fence, so every decision of an epoch is recorded
before the next epoch is granted; a follower's writes are refused before they reach SQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text

from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator import leadership
from ridgeline.global_coordinator.errors import NotLeader
from ridgeline.regional.storage.db import run_transaction

TTL_SECONDS = 1.0


@pytest.fixture
def engine(log_engine: Engine) -> Engine:
    return log_engine


def _new_trek(engine: Engine) -> str:
    now = datetime.now(timezone.utc)
    legs = [log.LegPlan("eu-alps", "argentiere", "argentiere-dorm", date(2027, 2, 1), date(2027, 2, 2), 1)]
    trek = log.planned(trek_id=str(uuid.uuid4()), customer_id="c", legs=legs, now=now, prepare_deadline=now + timedelta(seconds=5), planned_by="planner:test")
    run_transaction(engine, lambda conn: log.new_trek(conn, trek, key=trek.trek_id, fingerprint="f"))
    return trek.trek_id


def _grant(engine: Engine, holder: str) -> int:
    granted = run_transaction(engine, lambda conn: leadership.acquire(conn, holder=holder, incarnation=f"{holder}-1", address=f"{holder}:1", ttl_seconds=TTL_SECONDS, lock_wait_ms=10_000))
    assert granted is not None, f"{holder} was not granted the lease"
    return granted[0]


def _decide(engine: Engine, trek_id: str, epoch: int) -> log.Decision:
    return run_transaction(engine, lambda conn: log.decide(conn, trek_id, log.Decision.ABORT, "test", datetime.now(timezone.utc), "node:test", epoch=epoch))


def _decision_rows(engine: Engine, trek_id: str) -> list:
    return run_transaction(engine, lambda conn: conn.execute(text("SELECT epoch, recorded_at FROM trek_decisions WHERE trek_id = :t"), {"t": trek_id}).all())


def test_a_decision_under_a_stale_epoch_is_refused_and_the_current_epoch_lands(engine: Engine) -> None:
    old = _grant(engine, "coordinator-a")
    assert run_transaction(engine, lambda conn: leadership.acquire(conn, holder="coordinator-b", incarnation="b-1", address="b:1", ttl_seconds=TTL_SECONDS, lock_wait_ms=1000)) is None, (
        "a valid lease is not taken"
    )
    time.sleep(TTL_SECONDS + 0.2)
    new = _grant(engine, "coordinator-b")
    assert new == old + 1, "a takeover increments the epoch"
    trek_id = _new_trek(engine)

    with pytest.raises(NotLeader, match="stale"):
        _decide(engine, trek_id, old)
    assert _decision_rows(engine, trek_id) == [], "the deposed leader's decision left no row"
    assert not run_transaction(engine, lambda conn: leadership.fence(conn, holder="coordinator-a", epoch=old))

    assert _decide(engine, trek_id, new) is log.Decision.ABORT
    assert [row.epoch for row in _decision_rows(engine, trek_id)] == [new], "the decision records the epoch it was written under"


def test_a_takeover_waits_for_a_fenced_write_in_flight_so_it_lands_before_the_next_epoch(engine: Engine) -> None:
    epoch = _grant(engine, "coordinator-a")
    trek_id = _new_trek(engine)
    fenced, finish = threading.Event(), threading.Event()

    def slow_write(conn) -> log.Decision:  # noqa: ANN001 - a Connection
        assert leadership.fence(conn, holder="coordinator-a", epoch=epoch)
        decided = log.decide(conn, trek_id, log.Decision.ABORT, "test", datetime.now(timezone.utc), "node:test", epoch=epoch)
        fenced.set()
        assert finish.wait(10)  # paused before COMMIT, past the lease
        return decided

    writer = threading.Thread(target=lambda: run_transaction(engine, slow_write))
    writer.start()
    assert fenced.wait(10)
    time.sleep(TTL_SECONDS + 0.2)  # the lease has lapsed, the write still holds its fence
    taker = threading.Thread(target=lambda: _grant(engine, "coordinator-b"))
    taker.start()
    time.sleep(0.5)
    assert taker.is_alive(), "the takeover waits for the fenced write to end"
    finish.set()
    writer.join(10)
    taker.join(10)

    (row,) = _decision_rows(engine, trek_id)
    granted = run_transaction(engine, lambda conn: conn.execute(text("SELECT granted_at FROM coordinator_terms WHERE epoch = :e"), {"e": epoch + 1}).scalar_one())
    assert row.epoch == epoch and row.recorded_at < granted, "the old epoch's decision was recorded before the new epoch was granted"


def test_a_follower_refuses_writes_and_names_the_leader(engine: Engine) -> None:
    transact = lambda work: run_transaction(engine, work)  # noqa: E731
    leader = leadership.Leadership(transact, holder="coordinator-a", address="127.0.0.1:7001", lease_ttl_seconds=TTL_SECONDS, heartbeat_interval_seconds=0.2)
    follower = leadership.Leadership(transact, holder="coordinator-b", address="127.0.0.1:7002", lease_ttl_seconds=TTL_SECONDS, heartbeat_interval_seconds=0.2)
    leader.tick()
    follower.tick()
    assert leader.epoch == 1 and follower.epoch is None
    assert follower.hint() == "127.0.0.1:7001"
    with pytest.raises(NotLeader) as refused:
        run_transaction(engine, follower.fence)
    assert refused.value.leader_address == "127.0.0.1:7001"

    time.sleep(TTL_SECONDS + 0.2)  # the leader stopped renewing (never ticked again)
    follower.tick()
    assert follower.epoch == 2, "the follower takes the lapsed lease with the next epoch"
    assert leader.epoch is None, "the old leader's own belief lapsed with its lease"
    with pytest.raises(NotLeader):
        run_transaction(engine, leader.fence)
    assert run_transaction(engine, follower.fence) == 2


def test_a_leader_whose_clock_stood_still_believes_it_leads_but_the_database_refuses_its_decision(engine: Engine) -> None:
    transact = lambda work: run_transaction(engine, work)  # noqa: E731
    stopped_clock = lambda: 0.0  # noqa: E731 - a suspended VM's clock: its lease never seems to lapse
    old = leadership.Leadership(transact, holder="coordinator-a", address="a:1", lease_ttl_seconds=TTL_SECONDS, heartbeat_interval_seconds=0.2, clock=stopped_clock)
    new = leadership.Leadership(transact, holder="coordinator-b", address="b:1", lease_ttl_seconds=TTL_SECONDS, heartbeat_interval_seconds=0.2)
    old.tick()
    time.sleep(TTL_SECONDS + 0.2)
    new.tick()
    assert (old.epoch, new.epoch) == (1, 2), "both believe they lead"
    trek_id = _new_trek(engine)

    def decide_as(coordinator: leadership.Leadership):  # noqa: ANN202
        return lambda conn: log.decide(conn, trek_id, log.Decision.ABORT, "test", datetime.now(timezone.utc), f"node:{coordinator.holder}", epoch=coordinator.fence(conn))

    with pytest.raises(NotLeader):
        run_transaction(engine, decide_as(old))
    assert old.epoch is None, "the refusal ended the old leader's belief"
    assert _decision_rows(engine, trek_id) == []
    assert run_transaction(engine, decide_as(new)) is log.Decision.ABORT
    assert [row.epoch for row in _decision_rows(engine, trek_id)] == [2], "only the current epoch's write landed"


def test_two_processes_under_one_id_contend_for_the_lease_instead_of_taking_it_from_each_other(engine: Engine) -> None:
    transact = lambda work: run_transaction(engine, work)  # noqa: E731
    replicas = [
        leadership.Leadership(transact, holder="coordinator", address=f"127.0.0.1:{port}", lease_ttl_seconds=TTL_SECONDS, heartbeat_interval_seconds=0.2)
        for port in (7101, 7102)
    ]  # e.g. two Kubernetes replicas of one spec, neither given its own --node-id
    for _ in range(3):
        for replica in replicas:
            replica.tick()
    assert [r.epoch for r in replicas] == [1, None], "the first keeps the lease; the second follows it"
    assert replicas[1].hint() == "127.0.0.1:7101"
