"""A tests-only crash hook: SIGKILL the coordinator at a named point of the protocol.

``RIDGELINE_COORDINATOR_CRASH_AT=point[:count]`` kills the process the ``count``-th time
(default 1st) it passes ``point`` (see :mod:`ridgeline.crash_points`). Points:
``prepared`` (a prepare reply arrived), ``charged`` (charges made, decision not yet
written), ``decided`` (decision durable, no leg told), ``committed`` / ``aborted`` (a
leg's commit / abort landed).
"""

from __future__ import annotations

from ridgeline.crash_points import CrashPoints

CRASH_ENV = "RIDGELINE_COORDINATOR_CRASH_AT"

point = CrashPoints(CRASH_ENV).reach
