"""Bounded retries with capped, full-jitter exponential backoff, shared by every room.

Full jitter (a uniform pause in [0, min(cap, base * 2**attempt)]) spreads retries of
many clients that failed together, so they do not come back in lockstep (AWS
Architecture Blog, "Exponential Backoff And Jitter"). Every retry loop in Ridgeline
has an attempt bound; this is the one place that computes its pauses.

What may be retried at all is decided here too: a failure raised before a write could
commit may be retried; a lost COMMIT (:class:`CommitOutcomeUnknown`) may not, until its
outcome is resolved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


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


class CommitOutcomeUnknown(Exception):
    """A write whose COMMIT was in flight when its connection was lost: it may have committed
    or not, and nothing the client saw can tell which.

    Never retried blindly (ARCHITECTURE.md §3, *Ambiguous commits*): it is resolved by the
    write's key (its idempotency record, or a re-run that meets that record and answers the
    first result), or re-run because the write is idempotent by the rows' state. Here in
    routing so every room can recognise it: a region raises ``regional.errors.AmbiguousCommit``,
    and the coordinator's decision log can raise its own subclass.
    """

    def __init__(self, message: str, *, operation: str) -> None:
        super().__init__(message)
        assert operation, "an ambiguous commit names the operation it attempted"
        #: What was attempted (a bounded name, e.g. ``PlaceHold``, ``sweep``): a metric label.
        self.operation = operation


class Resolution(StrEnum):
    """How an unknown commit outcome ended: the ``resolution`` label of the metrics."""

    #: The key's record was found (by the re-run's key conflict): the first attempt had committed.
    COMMITTED = "committed"
    #: The re-run with the same key applied the write: no attempt before it had committed.
    NOT_COMMITTED = "not_committed"
    #: Idempotent by state: run again, and which of the two it was is neither known nor needed.
    RERUN = "rerun"
    #: Still unknown (the database stayed away, the deadline passed, an unrecorded refusal):
    #: the caller is told UNAVAILABLE and retries with the same key.
    UNRESOLVED = "unresolved"
