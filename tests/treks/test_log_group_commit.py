"""Group commit of the decision log (global_coordinator/group_commit.py) on a real coordinator database.

Concurrent writes share transactions and never fail one another; a write that raises
fails only its own caller, and the writes batched with it still commit.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Connection, Engine, text

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.global_coordinator import decision_log as log
from ridgeline.global_coordinator import leadership, schema
from ridgeline.global_coordinator.group_commit import GroupCommit
from ridgeline.regional.storage.db import make_engine, run_transaction

THREADS = 16


@pytest.fixture
def engine(region_servers: dict[str, PostgresServer]) -> Iterator[Engine]:
    url = region_servers["eu-alps"].create_database(f"coordinator_{uuid.uuid4().hex[:12]}")
    made = make_engine(url, pool_size=4)
    schema.migrate(made)
    yield made
    made.dispose()


class CountingTransact:
    """``run_transaction`` on the engine, counting the transactions it is asked for."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls = 0

    def __call__(self, work: Callable[[Connection], Any]) -> Any:
        self.calls += 1
        return run_transaction(self.engine, work)


def _trek(n: int) -> log.TrekRecord:
    now = datetime.now(timezone.utc)
    legs = [log.LegPlan("eu-alps", "argentiere", "argentiere-dorm", date(2027, 1, 1 + n % 20), date(2027, 1, 2 + n % 20), 1)]
    return log.planned(trek_id=str(uuid.uuid4()), customer_id=f"c{n}", legs=legs, now=now, prepare_deadline=now + timedelta(seconds=5), planned_by="planner:test")


def _serialization_retries() -> float:
    return REGISTRY.get_sample_value("ridgeline_db_retries_total", {"sqlstate": "40001"}) or 0.0


def test_concurrent_treks_are_recorded_decided_and_settled_in_shared_transactions_without_retries(engine: Engine) -> None:
    transact = CountingTransact(engine)
    writes = GroupCommit(transact)
    granted = run_transaction(engine, lambda conn: leadership.acquire(conn, holder="coordinator", incarnation="c-1", address="127.0.0.1:1", ttl_seconds=60, lock_wait_ms=1000))
    assert granted is not None
    epoch, _ = granted
    retries_before = _serialization_retries()
    start = threading.Barrier(THREADS)

    def one_trek(n: int) -> log.TrekRecord:
        trek = _trek(n)
        start.wait()
        assert writes(lambda conn: log.new_trek(conn, trek, key=f"key-{trek.trek_id}", fingerprint="f")) == (trek.trek_id, "f")
        outcome = log.PrepareOutcome(0, True, str(uuid.uuid4()), 4200, "EUR")
        charge = log.ChargeRecord("EUR", 4200, f"ch_{n}", 0)
        now = datetime.now(timezone.utc)
        decided = writes(lambda conn: log.record_decision(conn, trek, [outcome], [charge], log.Decision.COMMIT, "paid", now, "node:coordinator", epoch=epoch))
        assert decided.state is log.TrekState.COMMITTING
        assert writes(lambda conn: log.move(conn, trek.trek_id, [log.TrekState.COMMITTING], log.TrekState.COMMITTED, now))
        return decided

    try:
        with ThreadPoolExecutor(THREADS) as pool:
            decided = list(pool.map(one_trek, range(THREADS)))
    finally:
        writes.close()
    assert transact.calls < 3 * THREADS, "concurrent writes shared transactions"
    assert _serialization_retries() == retries_before, "log writers no longer overlap, so none fails another"
    for trek in decided:
        stored = run_transaction(engine, lambda conn, trek_id=trek.trek_id: log.load(conn, trek_id))
        assert stored is not None and stored.state is log.TrekState.COMMITTED and stored.decision is log.Decision.COMMIT
        assert [c.charge_id for c in stored.charges] == [c.charge_id for c in trek.charges]


def test_a_write_that_raises_fails_only_its_caller_and_its_batch_still_commits(engine: Engine) -> None:
    transact = CountingTransact(engine)
    writes = GroupCommit(transact)
    holding, release = threading.Event(), threading.Event()
    treks = [_trek(n) for n in range(4)]

    def held(conn: Connection) -> None:  # keeps the committer busy while the next batch gathers
        holding.set()
        assert release.wait(10)

    def record(trek: log.TrekRecord, *, then_fail: bool) -> tuple[str, str]:
        def work(conn: Connection) -> tuple[str, str]:
            recorded = log.new_trek(conn, trek, key=f"key-{trek.trek_id}", fingerprint="f")
            if then_fail:
                raise ValueError("this caller's own error")
            return recorded

        return writes(work)

    try:
        with ThreadPoolExecutor(len(treks) + 1) as pool:
            first = pool.submit(writes, held)
            assert holding.wait(10)
            calls = [pool.submit(record, trek, then_fail=i == 2) for i, trek in enumerate(treks)]
            while len(writes._waiting) < len(treks):  # noqa: SLF001 - wait until the batch has gathered
                threading.Event().wait(0.01)
            release.set()
            first.result(10)
            with pytest.raises(ValueError, match="own error"):
                calls[2].result(10)
            assert [calls[i].result(10) for i in (0, 1, 3)] == [(treks[i].trek_id, "f") for i in (0, 1, 3)]
    finally:
        writes.close()
    stored = run_transaction(engine, lambda conn: {r[0] for r in conn.execute(text("SELECT CAST(trek_id AS TEXT) FROM treks"))})
    assert stored == {treks[i].trek_id for i in (0, 1, 3)}, "the failed write left nothing; the others committed"
    assert transact.calls == 1 + 1 + len(treks), "the held write, the failed batch, then each write alone"
