"""Fair share per principal: a token bucket each, so one noisy agency cannot starve the desks.

Rates are per role (a partner agency gets less than a desk; Ridgeline's own processes
are not limited). A caller over its rate is refused at once with the time until its
next token, which the server puts in the status details (google.rpc.RetryInfo). The
buckets live in one bounded dict: principals idle longest are forgotten first, and a
forgotten principal starts again with a full bucket (it was idle).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ridgeline.trust.identity import Identity, Role

__all__ = ["RoleRate", "FairShare", "DEFAULT_RATES"]

_PRINCIPALS_MAX = 10_000


@dataclass(frozen=True)
class RoleRate:
    """``per_second`` sustained, bursts up to ``burst`` calls."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        assert self.per_second > 0 and self.burst >= 1, f"a rate of {self.per_second}/s with burst {self.burst} admits nothing"


#: None: unlimited. Desks and planners are people at counters; agencies are programs.
DEFAULT_RATES: Mapping[Role, RoleRate | None] = {
    Role.DESK: RoleRate(per_second=500.0, burst=1000.0),
    Role.AGENCY: RoleRate(per_second=100.0, burst=200.0),
    Role.PLANNER: RoleRate(per_second=200.0, burst=400.0),
    Role.SRE: None,
    Role.NODE: None,
}


class FairShare:
    """Admits or refuses one call of a principal; thread-safe, O(1) per call."""

    def __init__(self, rates: Mapping[Role, RoleRate | None] = DEFAULT_RATES, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._rates = dict(rates)
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # actor -> (tokens, at)

    def admit(self, identity: Identity) -> float:
        """0.0 when the call may go ahead, else the seconds until the principal's next token."""
        rate = self._rates.get(identity.role)
        if rate is None:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.pop(identity.actor, (rate.burst, now))
            tokens = min(rate.burst, tokens + (now - at) * rate.per_second)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate.per_second
            self._buckets[identity.actor] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > _PRINCIPALS_MAX:
                self._buckets.popitem(last=False)
        assert wait >= 0.0
        return wait
