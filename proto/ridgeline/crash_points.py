"""Tests-only crash points: a process SIGKILLs itself the k-th time it passes a named point.

A crash test proves that a protocol is safe after a crash exactly at one line (a charge
made but not confirmed, a decision durable but no leg told). Each process kind has its
own environment variable, ``NAME=point[:count]``: the process dies the ``count``-th time
(default the 1st) it passes ``point``. Unset, as in production, a point costs one
environment lookup.

It lives in the root package because every room may import ``ridgeline`` itself, while
the rooms that crash (flows/ for settlement, global_coordinator/ for treks) may not
import each other; the points a room has are named in that room's own module.
"""

from __future__ import annotations

import os
import signal
import threading


class CrashPoints:
    """The crash points of one process kind, armed by the environment variable ``env``."""

    def __init__(self, env: str) -> None:
        assert env.startswith("RIDGELINE_"), "crash switches are Ridgeline's own variables"
        self.env = env
        self._lock = threading.Lock()
        self._passes: dict[str, int] = {}

    def reach(self, name: str) -> None:
        """Marks the point ``name``; kills the process here when the environment names it."""
        point, _, count = os.environ.get(self.env, "").partition(":")
        if name != point:
            return
        with self._lock:
            passes = self._passes[name] = self._passes.get(name, 0) + 1
        if passes == int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)
