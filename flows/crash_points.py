"""Named points where a test can make the settling process die at once (SIGKILL).

Tests set ``RIDGELINE_CRASH_AT`` to a point's name (``point[:count]``, see
:mod:`ridgeline.crash_points`) in a node process's environment to prove that settlement
is safe after a crash exactly there (invariants 2, 3, 4, 7).
"""

from __future__ import annotations

from ridgeline.crash_points import CrashPoints

CRASH_ENV = "RIDGELINE_CRASH_AT"
#: The gateway charged; the booking is not confirmed yet.
AFTER_CHARGE = "after-charge"
#: Confirm and outbox message committed; the message is not delivered yet.
AFTER_CONFIRM = "after-confirm"
#: settle@2: the gateway charged a balance; its step and its timer are not recorded yet.
AFTER_BALANCE_CHARGE = "after-balance-charge"

crash_point = CrashPoints(CRASH_ENV).reach
