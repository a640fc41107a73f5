"""CPU time summed over process trees (psutil): every process a phase involves, children included.

A phase's cost is the difference of two readings. PostgreSQL backends come and go: one
that exited was reaped by the postmaster, so its time is in the postmaster's
``children_user``/``children_system``, which psutil reports for the root of each tree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import psutil


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, its live descendants, and the children it reaped."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        descendants = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for child in descendants:
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def self_cpu_seconds() -> float:
    """This process's own threads only: the client, whose children are the servers counted apart."""
    times = psutil.Process(os.getpid()).cpu_times()
    return times.user + times.system


class CpuMeter:
    """Readings of named process trees (``client`` is this process's own threads)."""

    def __init__(self, trees: Mapping[str, int]) -> None:
        self._trees = dict(trees)
        self._before = self._read()

    def _read(self) -> dict[str, float]:
        readings = {name: tree_cpu_seconds(pid) for name, pid in self._trees.items()}
        readings["client"] = self_cpu_seconds()
        return readings

    def ms_per(self, count: int) -> dict[str, float]:
        """CPU ms per unit (a confirmed booking) of each tree since the meter started, and their ``sum``."""
        after = self._read()
        spent = {name: (after[name] - self._before[name]) * 1000 / max(count, 1) for name in after}
        spent["sum"] = sum(spent.values())
        return {name: round(value, 2) for name, value in spent.items()}
