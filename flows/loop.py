"""The settlement loop a node runs: claims due settlements in batches and runs a flow per batch.

Batches adapt to load: a pass claims every due settlement up to ``batch_max``, so a busy
node settles large batches back to back (a full batch starts the next pass at once) and
an idle one small batches as soon as they arrive: the node's Book sets ``wake`` once its
hold commits, which ends the loop's pause at once (the pause grows from
``idle_pause_min_seconds`` to ``idle_pause_max_seconds`` while nothing is due, and only
retries, timers and settlements written elsewhere wait for it). Up to
``runs_in_flight_max`` flow runs overlap, so one batch's gateway latency does not idle
the next; while all of them run, what arrives waits for the next free one and its batch
grows with the load. Only settlements of the basecamps whose leases the node holds (the runtime's
fence), and only of the workflow versions the node runs, are claimed, and the claim
itself is fenced: when a basecamp moves, its unfinished settlements are picked up by the
new owner at its next pass. Due workflow timers (settle@2's reminders and balances) are
claimed the same way in the same pass and fired in a flow run of their own.

If the Prefect API is down a flow call fails at once: the run's claim is given back, the
loop pauses, and the holds already taken wait in the database until the API returns
(placing holds never needs Prefect). Reconciliation runs every
``reconcile_interval_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from prometheus_client import Gauge, Histogram

from ridgeline.flows.deposit import fire_timers
from ridgeline.flows.reconcile import reconcile
from ridgeline.flows.runtime import SettlementRuntime
from ridgeline.flows.settle import settle_batch
from ridgeline.regional.errors import BookingError
from ridgeline.regional.settlement import rows as settlements
from ridgeline.regional.storage.db import run_transaction
from ridgeline.regional.workflows import rollout, timers, versions

_log = logging.getLogger(__name__)

BATCH_SIZE = Histogram("ridgeline_settlement_batch_size", "Settlements one flow run takes.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
LAG_SECONDS = Histogram(
    "ridgeline_settlement_lag_seconds",
    "How long the oldest settlement of a batch had been due when the batch was claimed.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

LEFT_ALONE = Gauge(
    "ridgeline_workflow_left_alone_bookings",
    "Bookings of basecamps this node owns that owe a step under a workflow version the node does not run (it leaves them alone).",
    ["workflow"],
)


@dataclass(frozen=True)
class LoopPolicy:
    batch_max: int = 256
    idle_pause_min_seconds: float = 0.05
    idle_pause_max_seconds: float = 1.0
    #: A claimed row is due again after this if its run died (SIGKILL) without a step.
    claim_seconds: float = 30.0
    #: Pause after a flow run could not start (Prefect API down) before trying again.
    api_down_pause_seconds: float = 2.0
    runs_in_flight_max: int = 2
    reconcile_interval_seconds: float = 60.0
    #: Charges younger than this are left to settlement by reconciliation.
    reconcile_grace_seconds: float = 60.0
    #: How often a node that lacks a known workflow version counts what it leaves alone.
    left_alone_interval_seconds: float = 5.0


class SettlementLoop:
    def __init__(
        self,
        runtime_name: str,
        runtime: SettlementRuntime,
        policy: LoopPolicy = LoopPolicy(),
        *,
        wake: threading.Event | None = None,
    ) -> None:
        self._name = runtime_name
        self._rt = runtime
        self.policy = policy
        self._stop = threading.Event()
        #: Set when settlements may be due (a Book committed, stop): ends the pause between passes.
        self._wake = wake if wake is not None else threading.Event()
        self._slots = threading.BoundedSemaphore(policy.runs_in_flight_max)
        self._api_down_until = 0.0
        self._next_reconcile = time.monotonic() + policy.reconcile_interval_seconds
        self._next_left_alone = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="settlement-loop", daemon=True)
        self._runs: list[threading.Thread] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_seconds)
        for run in self._runs:
            run.join(timeout_seconds)

    def _run(self) -> None:
        idle_pause = self.policy.idle_pause_min_seconds
        while not self._stop.is_set():
            self._wake.clear()  # before the claim: a Book committed after it wakes the pause below
            try:
                claimed = self._pass()
            except BookingError as error:  # the region database is unreachable: next pass
                _log.warning("settlement pass skipped: %s", error)
                claimed = 0
            if claimed >= self.policy.batch_max:
                idle_pause = self.policy.idle_pause_min_seconds
                continue
            if claimed:
                idle_pause = self.policy.idle_pause_min_seconds
            self._wake.wait(max(idle_pause, self._api_down_until - time.monotonic()))
            if not claimed:
                idle_pause = min(idle_pause * 2, self.policy.idle_pause_max_seconds)

    def _pass(self) -> int:
        """Claims one batch and starts its flow run; returns how many settlements it claimed."""
        fence = dict(self._rt.fence())
        basecamps = sorted(fence)
        if time.monotonic() >= self._next_left_alone:  # also once it owns nothing: the count falls to 0
            self._next_left_alone = time.monotonic() + self.policy.left_alone_interval_seconds
            self._count_left_alone(basecamps)
        if not basecamps or time.monotonic() < self._api_down_until:
            return 0
        if time.monotonic() >= self._next_reconcile:
            self._next_reconcile = time.monotonic() + self.policy.reconcile_interval_seconds
            self._reconcile(basecamps)
        while not self._slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return 0
        try:
            claimed = settlements.claim_due(
                self._rt.engine, fence=fence, now=self._rt.clock(), batch_max=self.policy.batch_max, claim_seconds=self.policy.claim_seconds,
                workflows=self._rt.workflows,
            )
            due_timers = timers.claim_due(
                self._rt.engine, fence=fence, workflows=self._rt.workflows, now=self._rt.clock(), batch_max=self.policy.batch_max,
                claim_seconds=self.policy.claim_seconds,
            )
            idle = not claimed and not due_timers and not settlements.undelivered(self._rt.engine, basecamps=basecamps, limit=1)
        except BaseException:
            self._slots.release()
            raise
        if idle:
            self._slots.release()
            return 0
        if claimed:
            BATCH_SIZE.observe(len(claimed))
            LAG_SECONDS.observe(max((self._rt.clock() - min(s.created_at for s in claimed)).total_seconds(), 0.0))
        run = threading.Thread(target=self._settle, args=(claimed, due_timers, basecamps), name="settle-run", daemon=True)
        self._runs = [r for r in self._runs if r.is_alive()] + [run]
        run.start()
        return max(len(claimed), len(due_timers))

    def _settle(self, claimed: list[settlements.Settlement], due_timers: list[timers.Timer], basecamps: list[str]) -> None:
        """One flow run for the claimed settlements (and the outbox), one for the due timers;
        a timer whose run could not start is due again once its claim lapses."""
        ids = [s.booking_id for s in claimed]
        try:
            if claimed or not due_timers:
                settle_batch(self._name, ids, basecamps)
            if due_timers:
                fire_timers(self._name, [[t.booking_id, t.step] for t in due_timers])
        except Exception as error:  # noqa: BLE001 - the API down, or the run failed: give the claim back
            _log.warning("settle run for %d booking(s) failed (%s: %s); retrying later", len(ids), type(error).__name__, error)
            self._api_down_until = time.monotonic() + self.policy.api_down_pause_seconds
            try:
                settlements.unclaim(self._rt.engine, claimed, now=self._rt.clock())
            except BookingError as db_error:  # the claim lapses by itself after claim_seconds
                _log.warning("could not give back the claim: %s", db_error)
        finally:
            self._slots.release()

    def _count_left_alone(self, basecamps: list[str]) -> None:
        """Says in metrics (and the log) what this node leaves alone because it lacks the
        version; costs nothing on a node that runs every version this code knows."""
        lacking = set(versions.KNOWN) - self._rt.workflows
        if not lacking:
            return
        found = run_transaction(self._rt.engine, lambda conn: rollout.not_runnable(conn, basecamps, self._rt.workflows))
        for workflow in sorted(lacking):
            LEFT_ALONE.labels(workflow).set(found.get(workflow, 0))
        if found:
            _log.warning("leaving %s alone: this node does not run those versions; a node that does takes them over", found)

    def _reconcile(self, basecamps: list[str]) -> None:
        try:
            report = reconcile(self._name, basecamps, self.policy.reconcile_grace_seconds)
        except Exception as error:  # noqa: BLE001 - the next interval tries again
            _log.warning("reconciliation failed (%s: %s)", type(error).__name__, error)
            return
        if report.get("refunded"):
            _log.warning("reconciliation refunded %d charge(s) without a confirmed booking", report["refunded"])
