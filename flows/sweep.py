"""The sweep flow: expires lapsed holds and returns their units, as one visible flow run.

The node's own Sweeper thread (regional/booking/sweeper.py) stays the one that keeps invariant 3
on an interval: holds must end even while the Prefect API is down, and one SQL statement
every few seconds is not worth a flow run each. This flow runs the same pass on demand
(``ridgeline flows sweep``), recorded in Prefect, for operators after an incident.
"""

from __future__ import annotations

from prefect import flow

from ridgeline.flows import runtime as runtimes
from ridgeline.regional.booking.sweeper import sweep_once


@flow(name="sweep", log_prints=False, persist_result=False)
def sweep(runtime: str, batch_max: int = 500) -> int:
    """Expires every lapsed hold of the region; returns how many."""
    rt = runtimes.lookup(runtime)
    return sweep_once(rt.engine, now=rt.clock(), batch_max=batch_max, actor=rt.actor)
