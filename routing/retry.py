"""Bounded retries with capped, full-jitter exponential backoff, shared by every room.

Full jitter (a uniform pause in [0, min(cap, base * 2**attempt)]) spreads retries of
many clients that failed together, so they do not come back in lockstep (AWS
Architecture Blog, "Exponential Backoff And Jitter"). Every retry loop in Ridgeline
has an attempt bound; this is the one place that computes its pauses.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    attempts_max: int
    backoff_base_seconds: float
    backoff_cap_seconds: float

    def __post_init__(self) -> None:
        if self.attempts_max < 1:
            raise ValueError("attempts_max must be >= 1")
        assert 0 <= self.backoff_base_seconds <= self.backoff_cap_seconds, "backoff base must not exceed its cap"

    def backoff_seconds(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.backoff_cap_seconds, self.backoff_base_seconds * 2**attempt))
