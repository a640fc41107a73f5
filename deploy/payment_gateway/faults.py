"""Run-time fault injection for the stand-in gateway.

Tests and drills change these through ``PUT /admin/faults`` while the gateway runs, so
one process can be made slow, flaky or down and then healed. Every random draw comes
from one seeded generator so a run with ``--seed`` is reproducible.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from pydantic import BaseModel, Field

#: Upper bound for injected delays: a fault must never hang a test for minutes.
LATENCY_MAX_MS = 60_000


class FaultSettings(BaseModel):
    """What the gateway does wrong, per ``/v1`` request; all zero means a healthy provider."""

    latency_ms: int = Field(default=0, ge=0, le=LATENCY_MAX_MS, description="Fixed delay before handling, milliseconds.")
    jitter_ms: int = Field(default=0, ge=0, le=LATENCY_MAX_MS, description="Extra uniform delay in [0, jitter_ms], milliseconds.")
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share answered 503 without doing anything.")
    lost_reply_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share done and committed, then answered 503.")
    decline_rate: float = Field(default=0.0, ge=0.0, le=1.0, description="Share of new charges declined (402).")
    outage: bool = Field(default=False, description="Answer 503 to every /v1 request.")


@dataclass(frozen=True)
class FaultPlan:
    """The faults drawn for one request, decided up front so the handler reads straight."""

    delay_seconds: float
    fail_before: bool
    lose_reply: bool
    decline: bool


class FaultInjector:
    """Holds the current settings and draws per-request faults from one seeded generator."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._settings = FaultSettings()

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    def update(self, settings: FaultSettings) -> None:
        with self._lock:
            self._settings = settings

    def plan(self) -> FaultPlan:
        """Draws this request's faults; an outage fails everything before any work."""
        with self._lock:
            s, rnd = self._settings, self._random
            jitter_ms = rnd.uniform(0, s.jitter_ms) if s.jitter_ms else 0.0
            return FaultPlan(
                delay_seconds=(s.latency_ms + jitter_ms) / 1000.0,
                fail_before=s.outage or rnd.random() < s.error_rate,
                lose_reply=rnd.random() < s.lost_reply_rate,
                decline=rnd.random() < s.decline_rate,
            )


def sleep_for(plan: FaultPlan) -> None:
    """Injected latency; runs in the request's worker thread, like a slow provider."""
    if plan.delay_seconds > 0:
        time.sleep(plan.delay_seconds)
