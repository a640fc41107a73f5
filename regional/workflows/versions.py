"""The workflow versions a booking can run, and how a new booking is given one.

Every booking records the version of the workflow that advances it (``settle@1``,
``settle@2``, ``trek@1``, ``hold@1``) in the statement that creates it, and only that
version's code ever moves it on (ARCHITECTURE.md §11). Which version a *new* Book gets is
cluster state, the ``workflow_rollouts`` row of its workflow (migration r0007), read
inside the creating statement itself, so a rollout takes effect at one instant for the
whole region and no node decides from a stale cache.

A rollout ramps a target version to ``percent`` of new bookings; the rest get the
previous version. The choice is a pure function of the request's idempotency key
(:func:`rollout_bucket`): a booking id is minted anew by every attempt that did not land,
while the key is what every retry of the request carries, so a retry is given the same
version whether or not its first attempt landed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: The workflow of a Book (settled by payment): the one that is rolled out.
SETTLE = "settle"
SETTLE_V1 = "settle@1"
SETTLE_V2 = "settle@2"
#: A trek leg: moved by its coordinator's decision (ARCHITECTURE.md §5).
TREK_V1 = "trek@1"
#: A plain hold (PlaceHold): confirmed, released or cancelled by its caller, or expired.
HOLD_V1 = "hold@1"
#: Every version this code can run, oldest first; a node advertises the ones it runs.
KNOWN: tuple[str, ...] = (HOLD_V1, SETTLE_V1, SETTLE_V2, TREK_V1)
#: Buckets of the rollout percentage: a request falls in one of 0..99.
BUCKETS = 100


@dataclass(frozen=True, order=True)
class Version:
    """``name@number``, e.g. ``settle@2``."""

    name: str
    number: int

    def __str__(self) -> str:
        return f"{self.name}@{self.number}"


def parse(text: str) -> Version:
    """The version ``text`` names; ValueError when it is not ``name@number``."""
    name, at, number = text.partition("@")
    if not (at and name.isalpha() and name.islower() and number.isdigit() and int(number) > 0):
        raise ValueError(f"{text!r} is not a workflow version (name@number, e.g. settle@2)")
    return Version(name, int(number))


def rollout_bucket(idempotency_key: str) -> int:
    """Which of the 100 buckets a request falls in: the same for every retry of it."""
    assert idempotency_key, "every booking request carries a key"
    bucket = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:8], "big") % BUCKETS
    assert 0 <= bucket < BUCKETS
    return bucket


def chosen_sql(workflow: str, bucket: str) -> str:
    """The SQL expression of the version a new booking of ``workflow`` gets now: the rollout's
    target when the request's ``bucket`` is below its percentage, else its previous version.

    A missing rollout row makes the expression NULL, which the NOT NULL column refuses:
    a booking never exists without its version.
    """
    assert workflow.isalpha(), workflow
    return (
        "(SELECT CASE WHEN " + bucket + " < r.percent THEN r.target ELSE r.previous END"
        f" FROM workflow_rollouts AS r WHERE r.workflow = '{workflow}')"
    )
