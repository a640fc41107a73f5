"""Named points where a test can make the settling process die at once (SIGKILL).

Tests set ``RIDGELINE_CRASH_AT`` to a point's name in a node process's environment to
prove that settlement is safe after a crash exactly there (invariants 2, 3, 4, 7).
Unset, as in production, a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "RIDGELINE_CRASH_AT"
#: The gateway charged; the booking is not confirmed yet.
AFTER_CHARGE = "after-charge"
#: Confirm and outbox message committed; the message is not delivered yet.
AFTER_CONFIRM = "after-confirm"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
