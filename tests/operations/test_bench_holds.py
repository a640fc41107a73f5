"""``ridgeline bench holds --traced`` in its short form: the run BENCHMARKS.md records, at
one second a phase, so that the command keeps working and its traced phase really traces.

The figures of so short a run mean nothing (BENCHMARKS.md has the full runs); what is
checked is what makes them mean something: every phase placed holds without errors, the
traced node handed about one span per hold to its exporter (a PlaceHold's server span),
and the report carries the ratio the verdict reads and the in-process price of a span.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_command import run_bench


@pytest.mark.parametrize("exporter", ["none", "otlp"])
def test_the_traced_phase_exports_a_span_per_hold_and_the_report_prices_it(tmp_path: Path, exporter: str) -> None:
    report, printed = run_bench(
        tmp_path, "holds", "--traced", "--trace-exporter", exporter, "--seconds", "1", "--threads", "2", "--workers", "2", timeout_seconds=240
    )
    phases = {p["phase"]: p for p in report["phases"]}
    assert set(phases) == {"ceiling", "grpc", "grpc-traced"}
    assert all(p["ops"] > 0 and not p["errors"] for p in phases.values()), phases
    assert 0.9 <= report["spans_per_traced_hold"] <= 1.5, "one server span per PlaceHold (plus the warm-up's)"
    assert len(report["traced_ratios"]) == 1 and report["traced_goal_ratio"] == 0.95
    assert report["span_cost_us"] > 0 and 0 < report["span_share_of_node_cpu"] < 1, "the in-process price of a span, against the node's"
    assert "traced/untraced" in printed
