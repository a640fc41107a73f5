"""The booking domain's Caller applies exactly trust.policy's scoped rules, for every role and scope."""

from __future__ import annotations

import itertools

from ridgeline.regional.booking.access import caller_of
from ridgeline.trust import policy
from ridgeline.trust.identity import ANONYMOUS_ACTOR, Identity, Role

REGION = "eu-alps"
SCOPES = (frozenset(), frozenset({"hoernli"}), frozenset({"eu-alps"}), frozenset({"na-rockies"}), frozenset({"hoernli", "gouter"}))
CREATORS = ("agency:a", "agency:b", "desk:d", "")


def test_caller_reaches_a_booking_exactly_when_policy_may_touch_says_so() -> None:
    identities = [None] + [Identity(p, role, scope) for role, scope, p in itertools.product(Role, SCOPES, ("a", "d"))]
    for identity, basecamp, creator in itertools.product(identities, ("hoernli", "argentiere"), CREATORS):
        caller = caller_of(identity, REGION)
        expected = policy.may_touch(identity, basecamp_id=basecamp, region=REGION, created_by=creator)
        assert caller.reaches(basecamp_id=basecamp, created_by=creator) == expected, (identity, basecamp, creator)


def test_keys_are_the_callers_own_and_an_insecure_servers_stay_as_sent() -> None:
    agency = caller_of(Identity("a", Role.AGENCY), REGION)
    assert agency.own_key("k") == "agency:a/k" != caller_of(Identity("b", Role.AGENCY), REGION).own_key("k")
    anonymous = caller_of(None, REGION)
    assert (anonymous.actor, anonymous.own_key("k"), anonymous.restricted) == (ANONYMOUS_ACTOR, "k", False)
