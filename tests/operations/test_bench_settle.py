"""``ridgeline bench settle`` in its short form: every phase BENCHMARKS.md records, with a
handful of bookings, so that the command keeps working end to end.

The figures of so short a run mean nothing (BENCHMARKS.md has the full runs); what is
checked is what makes them mean something: each phase confirmed every booking it booked
and metered CPU where it settles in the node, the baseline ran one flow run per booking
while the node's loop batched, and the Prefect floor ran its empty flow runs and priced
them per booking.
"""

from __future__ import annotations

from pathlib import Path

from bench_command import run_bench

BOOKINGS, BASELINE_BOOKINGS, FLOOR_RUNS = 24, 4, 5


def test_every_phase_confirms_all_its_bookings_and_the_prefect_floor_is_priced(tmp_path: Path) -> None:
    report, printed = run_bench(
        tmp_path, "settle", "--bookings", str(BOOKINGS), "--baseline-bookings", str(BASELINE_BOOKINGS), "--threads", "2", "--paced", "8",
        "--floor-runs", str(FLOOR_RUNS), timeout_seconds=280,
    )  # fmt: skip
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == {"batched", "baseline", "paced"}
    for name, p in phases.items():
        assert p["confirmed"] == p["bookings"] and p["confirmed_per_second"] > 0 and 0 < p["p50_ms"] <= p["p99_ms"], (name, p)
    assert phases["baseline"]["flow_runs"] == BASELINE_BOOKINGS and phases["baseline"]["cpu_ms"] is None, "the baseline: one flow run per booking"
    for name in ("batched", "paced"):
        p = phases[name]
        assert 1 <= p["flow_runs"] < BOOKINGS, f"{name}: the node's loop settles in batches, not one run per booking: {p['flow_runs']}"
        assert p["cpu_ms"]["node"] > 0 and p["cpu_ms"]["settlement"] >= p["cpu_ms"]["node"], (name, p["cpu_ms"])
    assert report["ratio"] > 0
    floor = report["prefect_floor"]
    assert floor["runs"] == FLOOR_RUNS and floor["wall_ms_per_run"] > 0, floor
    assert all(floor["cpu_ms_per_run"][tree] > 0 for tree in ("client", "prefect", "postgres")), "an empty flow run still costs the engine, the server and its database"
    assert "Prefect floor, 5 empty flow runs" in printed and "bookings/run" in printed, printed[-2000:]
    assert "ratio batched/baseline" in printed
    assert "…" not in printed, f"a table cut a cell short in an 80-column pipe: {printed[:2000]}"
