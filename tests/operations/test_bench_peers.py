"""``ridgeline bench peers`` in a tiny form: every system confirms every booking once, and takes money only for bookings.

Needs `make bench-peers` (the bench extra and the Restate server binary): deselected from
the default run (pyproject.toml), run with ``-m bench_peers``; fails naming the target
when what it needs is missing.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.bench_peers

BOOKINGS, THREADS = 20, 2


def test_every_system_confirms_every_booking_once_and_charges_match() -> None:
    from ridgeline.deploy.bench.peers.requirements import PeersMissing, require_peers

    try:
        require_peers()
    except PeersMissing as error:
        pytest.fail(str(error))
    from ridgeline.deploy.bench.peers import peers_bench

    report = peers_bench.run_peers_benchmark(bookings=BOOKINGS, threads=THREADS, latency_ms=50, paced=True)
    phases = report["phases"]
    assert isinstance(phases, list)
    assert [(p["system"], p["mode"]) for p in phases] == [("ridgeline", "burst"), ("restate", "burst"), ("dbos", "burst"), ("ridgeline", "paced"), ("restate", "paced"), ("dbos", "paced")]
    for phase in phases:
        label = f"{phase['system']} {phase['mode']}"
        assert phase["confirmed"] == BOOKINGS, label
        assert phase["charges"] == BOOKINGS, f"{label}: charges at the gateway {phase['charges']} for {BOOKINGS} bookings"
        if phase["system"] != "ridgeline":
            assert phase["states"] == {"confirmed": BOOKINGS, "confirmed_without_charge": 0}, label
        assert phase["confirmed_per_second"] > 0 and 0 < phase["p50_ms"] <= phase["p99_ms"] and phase["cpu_ms_per_booking"] > 0, label
    ratios = peers_bench.ratios(report)
    assert {r["system"]: r for r in ratios if r["mode"] == "burst"}.keys() == {"ridgeline", "restate", "dbos"}
    assert min(r["throughput"] for r in ratios if r["system"] != "ridgeline" and r["mode"] == "burst") <= 1.0
