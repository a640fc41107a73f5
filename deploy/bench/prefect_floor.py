"""What one Prefect flow run costs by itself: the floor under every settlement batch.

Issue 15 asks for ≤ 4 ms of CPU per booking and a paced p50 ≤ 250 ms while settlement
stays one flow run per batch. A run's engine work (seven API calls: the flow, the run, its
Running state, the run read back, the default result storage, the outcome artifact, its
Completed state) costs the same whatever the batch holds, so at a batch of ``B`` bookings
each pays ``floor / B`` of it. This phase measures that floor in the same run as the
phases it explains: ``runs`` flow runs, one after another, of a flow that does nothing but
what the settle flow does around its steps (same options, one table artifact), metered
on this process (the engine), the Prefect server and PostgreSQL.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import flow

from ridgeline.deploy.bench.peers.cpu import CpuMeter
from ridgeline.flows.settle import record_outcomes


@dataclass(frozen=True)
class PrefectFloor:
    runs: int
    #: Wall time of one run, start to Completed, with nothing else running in the benchmark.
    wall_ms_per_run: float
    #: CPU ms per run by process tree: ``client`` (this process: Prefect's engine),
    #: ``prefect`` (the server), ``postgres``, and their ``sum``.
    cpu_ms_per_run: dict[str, float]


@flow(name="settle-floor", log_prints=False, persist_result=False)
def _empty_batch(booking_ids: list[str]) -> dict[str, str]:
    """The settle flow's frame without its steps: parameters in, one artifact, outcomes out."""
    outcomes = dict.fromkeys(booking_ids, "confirmed")
    record_outcomes(outcomes)
    return outcomes


def measure(*, prefect_pid: int, postgres_pid: int, runs: int) -> PrefectFloor:
    """``runs`` empty flow runs against the server this process reports to (``prefect_settings.install`` done)."""
    assert runs > 0
    _empty_batch(["warm-up"])  # the first run also creates the flow and warms the client
    meter = CpuMeter({"prefect": prefect_pid, "postgres": postgres_pid})
    started = time.perf_counter()
    for n in range(runs):
        _empty_batch([f"floor-{n}"])
    wall = time.perf_counter() - started
    return PrefectFloor(runs=runs, wall_ms_per_run=round(wall * 1000 / runs, 1), cpu_ms_per_run=meter.ms_per(runs))
