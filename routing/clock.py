"""The one wall clock every room reads, and the shape in which it is injected.

Servicers, the coordinator and settlement take a :data:`Clock` so that tests can move
time; in production it is :func:`utc_now`. It lives here, the lowest room with code
that regional/, global_coordinator/, flows/ and deploy/ all import.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

#: Returns "now" as an aware UTC datetime.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Now, aware and in UTC: timestamps stored in the databases and compared across regions."""
    return datetime.now(timezone.utc)
