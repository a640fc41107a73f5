"""Stopping the child processes deploy/ starts (gateway, Prefect server, benchmark nodes)."""

from __future__ import annotations

import subprocess


def stop_process(process: subprocess.Popen, timeout_seconds: float = 15.0) -> int:  # type: ignore[type-arg]
    """SIGTERM (the child drains), then SIGKILL if it overstays; returns its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_seconds)
    return process.returncode
