"""A tests-only crash hook: SIGKILL the coordinator at a named point of the protocol.

``RIDGELINE_COORDINATOR_CRASH_AT=point[:count]`` kills the process the ``count``-th time
(default 1st) it passes ``point``. Points: ``prepared`` (a prepare reply arrived),
``charged`` (charges made, decision not yet written), ``decided`` (decision durable, no
leg told), ``committed`` / ``aborted`` (a leg's commit / abort landed). Unset, it costs
one comparison per point.
"""

from __future__ import annotations

import itertools
import os
import signal

_SETTING = os.environ.get("RIDGELINE_COORDINATOR_CRASH_AT", "")
_POINT, _, _COUNT = _SETTING.partition(":")
_TARGET = int(_COUNT or 1)
_passes = itertools.count(1)


def point(name: str) -> None:
    """Marks a crash point; kills the process here when the environment names it."""
    if name == _POINT and next(_passes) == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
