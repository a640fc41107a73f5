"""Fair share: a principal over its rate waits, and nobody else waits for it."""

from __future__ import annotations

import pytest

from ridgeline.trust import fair_share
from ridgeline.trust.fair_share import DEFAULT_RATES, FairShare, RoleRate
from ridgeline.trust.identity import Identity, Role


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


RATES = {Role.DESK: RoleRate(per_second=10.0, burst=5.0), Role.AGENCY: RoleRate(per_second=2.0, burst=3.0), Role.PLANNER: None, Role.SRE: None, Role.NODE: None}


def _admitted(share: FairShare, identity: Identity, calls: int) -> int:
    return sum(share.admit(identity) == 0.0 for _ in range(calls))


def test_noisy_agency_is_throttled_while_another_agency_and_a_desk_pass() -> None:
    clock = FakeClock()
    share = FairShare(RATES, clock=clock)
    noisy, quiet, desk = Identity("noisy", Role.AGENCY), Identity("quiet", Role.AGENCY), Identity("front", Role.DESK)
    assert _admitted(share, noisy, 100) == 3, "the burst, then nothing until tokens refill"
    assert _admitted(share, quiet, 3) == 3, "another principal of the same role has its own bucket"
    assert _admitted(share, desk, 5) == 5, "and so does a principal of another role"
    assert share.admit(noisy) > 0.0


def test_retry_delay_is_the_time_until_the_next_token() -> None:
    clock = FakeClock()
    share = FairShare(RATES, clock=clock)
    agency = Identity("noisy", Role.AGENCY)
    assert _admitted(share, agency, 3) == 3
    assert share.admit(agency) == pytest.approx(0.5), "2 tokens/s: the next one in 0.5 s"
    clock.now += 0.2
    assert share.admit(agency) == pytest.approx(0.3), "a refused call spends nothing"
    clock.now += 0.3
    assert share.admit(agency) == 0.0, "after the delay it says, the call passes"
    assert share.admit(agency) == pytest.approx(0.5)


def test_bucket_refills_at_the_rate_and_never_past_the_burst() -> None:
    clock = FakeClock()
    share = FairShare(RATES, clock=clock)
    desk = Identity("front", Role.DESK)
    assert _admitted(share, desk, 5) == 5
    clock.now += 0.35
    assert _admitted(share, desk, 10) == 3, "10/s for 0.35 s: three whole tokens"
    clock.now += 3600
    assert _admitted(share, desk, 10) == 5, "an hour idle refills to the burst, no more"


def test_unlimited_roles_are_never_throttled() -> None:
    share = FairShare(RATES, clock=FakeClock())
    for role in (Role.SRE, Role.NODE, Role.PLANNER):
        assert _admitted(share, Identity("p-1", role), 1000) == 1000


def test_default_rates_limit_people_and_partners_but_not_ridgelines_own_processes() -> None:
    assert DEFAULT_RATES[Role.NODE] is None and DEFAULT_RATES[Role.SRE] is None
    agency, desk = DEFAULT_RATES[Role.AGENCY], DEFAULT_RATES[Role.DESK]
    assert agency is not None and desk is not None and agency.per_second < desk.per_second


def test_buckets_are_bounded_and_the_longest_idle_principal_is_forgotten_first() -> None:
    clock = FakeClock()
    share = FairShare(RATES, clock=clock)
    first = Identity("first", Role.AGENCY)
    assert _admitted(share, first, 4) == 3, "first is out of tokens"
    for n in range(fair_share._PRINCIPALS_MAX):
        share.admit(Identity(f"agency-{n}", Role.AGENCY))
    assert len(share._buckets) == fair_share._PRINCIPALS_MAX
    assert share.admit(first) == 0.0, "forgotten, so it starts again with a full bucket"
    assert len(share._buckets) == fair_share._PRINCIPALS_MAX


def test_a_rate_that_admits_nothing_is_refused() -> None:
    with pytest.raises(AssertionError):
        RoleRate(per_second=0.0, burst=10.0)
    with pytest.raises(AssertionError):
        RoleRate(per_second=1.0, burst=0.5)
