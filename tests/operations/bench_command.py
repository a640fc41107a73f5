"""Runs ``ridgeline bench NAME …`` as a person does, with ``--json``, for the benchmarks' short-form tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_bench(tmp_path: Path, name: str, *args: str, timeout_seconds: float) -> tuple[dict, str]:
    """The report ``--json`` wrote and what the command printed; fails the test, with the
    command's stderr, unless it exited 0."""
    report_path = tmp_path / f"{name}.json"
    command = [sys.executable, "-m", "ridgeline.deploy.cli", "bench", name, *args, "--json", str(report_path)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_seconds, check=False)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(report_path.read_text()), finished.stdout
