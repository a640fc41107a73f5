"""Invariant 3 under the load that once starved the sweeper (issue 12, item 5).

Seen: one eu-alps node left under load after its peer was SIGKILLed; its sweeper lost
every attempt of a pass to concurrent writers and skipped the pass, twice, and 26 of 576
holds were expired 6.1-12.2 s after their expiry, beyond the promised sweep interval.

Here: a real node (group commit on, its own sweeper) serves many client threads that
hold and release on the very inventory rows where holds keep lapsing, placed as if by a
dead peer. A watcher notes when each lapsed hold is seen expired. Every one must be
expired within one sweep interval of its expiry (plus a slack for this loaded 2-core
machine, tighter than what was seen), and no unit may leak.

One pass may lose: on a saturated CI machine a pass lost all 12 of its batches to the
sweeper's 100 ms lock timeout behind the hot path's group-commit rounds and ended at its
deadline; the next pass starts at once, so its holds ended up to two intervals late. The
test allows that once per run, with a bound of two intervals; a second such pass, or
a hold later than that, fails it (a known limit: README, Not done).
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone

import psycopg
import pytest
from certificates import SessionCerts
from drive import night, owner_address, place_lapsed_hold, writer_epoch
from invariants import assert_history_consistent, assert_inventory_matches_bookings, bookings_by_id, libpq_url, query
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from ridgeline.regional.booking import holds
from ridgeline.regional.booking.model import Nights
from ridgeline.regional.booking.sweeper import sweep_pass
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.regional.storage.db import make_engine
from ridgeline.routing import ClusterClient
from ridgeline.routing.client import BookingClient

#: Bound by wall-clock time (recovery, expiry, grace): run alone, after the parallel phase (Makefile).
pytestmark = pytest.mark.serial


SWEEP_INTERVAL_SECONDS = 2.0
#: Beyond one interval: the pass's own statements and its thread's turn on the GIL beside
#: twelve load threads, on a loaded 2-core machine (up to 1.43 s seen in CI, the watcher's
#: own query then included). Still under a second interval, so in a run with no pass cut
#: short a late pass is caught; one cut short is counted instead (at most one allowed).
SLACK_SECONDS = 1.6
LOAD_SECONDS = 16.0
LOAD_THREADS = 12
#: Holds lapse at about this rate while the load runs, each after a TTL of 1-3 s.
LAPSING_PER_SECOND = 40
ROWS = {"argentiere": "argentiere-dorm", "hoernli": "hoernli-dorm", "gouter": "gouter-dorm", "capanna-margherita": "margherita-dorm"}
FIRST, END = night(90), night(92)


@pytest.fixture
def loaded_node(alps_db, certs: SessionCerts) -> Iterator[RegionalNode]:  # noqa: ANN001
    config = NodeConfig(
        region="eu-alps", node_id="sweeping", database_url=alps_db.url, certs_dir=certs.dir,
        workers=LOAD_THREADS + 4, max_concurrent_rpcs=64, sweep_interval_seconds=SWEEP_INTERVAL_SECONDS,
    )
    node = RegionalNode(config)
    node.start()
    yield node
    node.stop(grace_seconds=1)


def _wait_for_leases(node: RegionalNode, certs: SessionCerts) -> None:
    deadline = time.monotonic() + 30
    with ClusterClient([node.address], transport=certs.desk) as client:
        while time.monotonic() < deadline:
            if all(owner_address(client, basecamp) == node.address for basecamp in ROWS):
                return
            time.sleep(0.2)
    raise AssertionError("the node did not take the basecamps' leases within 30 s")


def _passes_cut_short() -> float:
    """Sweep passes in this process that spent their whole interval and left lapsed holds."""
    return REGISTRY.get_sample_value("ridgeline_sweep_passes_total", {"outcome": "deadline"}) or 0.0


def _batches_lost_to_lock_waits() -> float:
    """Sweep batches in this process that gave up waiting for a row lock (SQLSTATE 55P03)."""
    return REGISTRY.get_sample_value("ridgeline_sweep_batch_failures_total", {"reason": "55P03"}) or 0.0


@pytest.mark.timeout(240)
def test_invariant_3_every_hold_lapsing_under_racing_load_is_expired_within_one_sweep_interval(loaded_node, alps_engine: Engine, alps_db, certs) -> None:  # noqa: ANN001
    stop = threading.Event()
    lapsing: dict[str, datetime] = {}  # booking id -> expires_at
    seen_expired: dict[str, datetime] = {}
    load_done, failures = [0], []

    def load(i: int) -> None:
        rng = random.Random(i)
        with BookingClient(loaded_node.address, transport=certs.desk, timeout_seconds=10) as client:
            while not stop.is_set():
                basecamp = rng.choice(list(ROWS))
                try:
                    held = client.place_hold(basecamp, ROWS[basecamp], FIRST, END, 1, f"load-{i}")
                    if rng.random() < 0.3:
                        client.cancel(client.confirm(held.booking_id).booking_id)
                    else:
                        client.release(held.booking_id)
                    load_done[0] += 1
                except Exception as error:  # noqa: BLE001 - counted, and the test names them
                    failures.append(repr(error)[:200])

    def place_lapsing() -> None:
        rng = random.Random(99)
        epochs = {basecamp: writer_epoch(alps_engine, basecamp) for basecamp in ROWS}  # the node's own leases
        while not stop.is_set():
            basecamp = rng.choice(list(ROWS))
            request = holds.HoldRequest(
                idempotency_key=str(uuid.uuid4()), basecamp_id=basecamp, resource_id=ROWS[basecamp], nights=Nights(FIRST, END),
                party_size=1, customer_id="lapsing", ttl_seconds=rng.randint(1, 3), unit_price_cents=100, currency="EUR",
                actor="node:dead-peer", node_actor="node:dead-peer",
            )
            booking = holds.place_hold(alps_engine, request, epoch=epochs[basecamp], now=datetime.now(timezone.utc))
            lapsing[booking.booking_id] = booking.expires_at
            time.sleep(1 / LAPSING_PER_SECOND)

    def watch() -> None:
        while not stop.is_set() or len(seen_expired) < len(lapsing):
            # Stamped before the query: its snapshot is taken as it starts, so a row it
            # reads as expired was expired by then, however long the loaded server takes.
            now = datetime.now(timezone.utc)
            rows = query(alps_db.url, "SELECT CAST(booking_id AS TEXT) AS id FROM bookings WHERE state = 'expired'")
            for row in rows:
                seen_expired.setdefault(row.id, now)
            if stop.is_set() and time.monotonic() > watch_until[0]:
                return
            time.sleep(0.1)

    _wait_for_leases(loaded_node, certs)
    cut_short_before, lock_waits_lost_before = _passes_cut_short(), _batches_lost_to_lock_waits()
    watch_until = [float("inf")]
    threads = [threading.Thread(target=load, args=(i,)) for i in range(LOAD_THREADS)]
    threads += [threading.Thread(target=place_lapsing), threading.Thread(target=watch)]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_SECONDS)
    watch_until[0] = time.monotonic() + 3 + SWEEP_INTERVAL_SECONDS + SLACK_SECONDS
    stop.set()
    for thread in threads:
        thread.join(60)

    late = sorted(
        ((seen_expired[b] - expires).total_seconds() if b in seen_expired else float("inf"), b) for b, expires in lapsing.items()
    )
    cut_short = _passes_cut_short() - cut_short_before
    lock_waits_lost = _batches_lost_to_lock_waits() - lock_waits_lost_before
    bound = SWEEP_INTERVAL_SECONDS * (1 + min(cut_short, 1)) + SLACK_SECONDS  # a cut-short pass: the next one at once
    beyond = [(round(delay, 2), b) for delay, b in late if delay > bound]
    print(
        f"{len(lapsing)} lapsing holds, {load_done[0]} load cycles, worst {late[-1][0]:.2f} s, {len(beyond)} beyond {bound} s,"
        f" {cut_short:.0f} pass(es) cut short by their deadline, {lock_waits_lost:.0f} batch(es) lost to lock waits"
    )
    assert len(lapsing) >= 100 and load_done[0] >= 100, "the load did not run"
    assert cut_short <= 1, f"{cut_short:.0f} sweep passes spent their whole interval and left lapsed holds (one is allowed, see above)"
    assert not beyond, (
        f"{len(beyond)} of {len(lapsing)} lapsed holds expired later than {bound} s after their expiry"
        f" ({cut_short:.0f} sweep pass(es) cut short by their deadline, {lock_waits_lost:.0f} batch(es) lost to lock waits): {beyond[:10]}"
    )
    assert len(failures) < load_done[0] / 100, f"{len(failures)} load calls failed: {failures[:5]}"
    assert_inventory_matches_bookings(alps_db.url)
    assert_history_consistent(alps_db.url)
    assert not query(alps_db.url, "SELECT 1 FROM bookings WHERE state = 'held' AND expires_at < now() - interval '5 seconds' LIMIT 1")


def test_invariant_3_a_failed_batch_is_retried_within_the_pass_instead_of_abandoning_it(alps_db, alps_engine: Engine) -> None:  # noqa: ANN001
    """A transaction keeps the lapsed hold's inventory row locked for longer than the sweep's
    lock timeout: the first batches fail, the pass retries them, and the hold is expired by
    this same pass once the row is free, well before the pass's deadline."""
    lapsed = place_lapsed_hold(alps_engine, "argentiere", "argentiere-locker", night(95), night(96), 2)
    sweep_engine = make_engine(alps_db.url, pool_size=1, lock_timeout_ms=NodeConfig.sweep_lock_timeout_ms, isolation_level="READ COMMITTED")
    failures_before = REGISTRY.get_sample_value("ridgeline_sweep_batch_failures_total", {"reason": "55P03"}) or 0.0
    locked, blocking_seconds = threading.Event(), 0.6
    with psycopg.connect(libpq_url(alps_db.url)) as blocker:

        def block() -> None:
            with blocker.transaction():
                blocker.execute("SELECT 1 FROM inventory WHERE resource_id = 'argentiere-locker' AND night = %s FOR UPDATE", (night(95),))
                locked.set()
                time.sleep(blocking_seconds)

        holder = threading.Thread(target=block)
        holder.start()
        assert locked.wait(10)
        started = time.monotonic()
        result = sweep_pass(sweep_engine, lambda: datetime.now(timezone.utc), batch_max=10, actor="node:test-sweeper", deadline=started + 5)
        took = time.monotonic() - started
        holder.join()
    sweep_engine.dispose()

    failed = (REGISTRY.get_sample_value("ridgeline_sweep_batch_failures_total", {"reason": "55P03"}) or 0.0) - failures_before
    assert result.complete and result.expired == 1, result
    assert result.failed_batches >= 2 and failed == result.failed_batches, (result, failed)
    assert blocking_seconds * 0.5 < took < 5, f"the pass took {took:.2f} s"
    assert bookings_by_id(alps_db.url)[lapsed.booking_id].state == "expired"
    assert_inventory_matches_bookings(alps_db.url)
