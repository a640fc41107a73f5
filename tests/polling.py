"""Waiting for what real processes reach in their own time."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(condition: Callable[[], object], seconds: float, what: str | Callable[[], str], *, poll_seconds: float = 0.05) -> None:
    """Returns once ``condition()`` is true; fails naming ``what`` (a text, or a call that
    describes what is still wrong) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what if isinstance(what, str) else what()}")
        time.sleep(poll_seconds)
