"""Never stranded: a node that lacks a workflow version in use owns no basecamp while a node
that has every version is live; with none such, liveness wins and the old node owns (and
leaves what it cannot run alone). Real lease keepers on a real region database, ticked
by hand so every round is observable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
from drive import night
from sqlalchemy import Engine

from ridgeline.regional.booking.holds import HoldRequest, place_hold
from ridgeline.regional.booking.model import Nights
from ridgeline.regional.storage.db import run_transaction
from ridgeline.regional.workflows import rollout
from ridgeline.regional.workflows.versions import KNOWN, SETTLE_V2
from ridgeline.routing import leases
from ridgeline.routing.keeper import LeaseKeeper, LeaseSettings

OLD = frozenset(KNOWN) - {SETTLE_V2}


@pytest.fixture
def keepers(alps_engine: Engine) -> Iterator[dict[str, LeaseKeeper]]:
    made = {
        name: LeaseKeeper(
            lambda work: run_transaction(alps_engine, work), node_id=name, region="eu-alps", address=f"127.0.0.1:{port}",
            settings=LeaseSettings(5.0, 1.0), capabilities=caps, in_use=rollout.in_use,
        )
        for name, port, caps in (("old", 1, OLD), ("new", 2, frozenset(KNOWN)))
    }
    yield made
    for keeper in made.values():
        keeper.stop(release=True)


def _rounds(*keepers: LeaseKeeper, count: int = 2) -> None:
    for _ in range(count):
        for keeper in keepers:
            keeper.tick()


def _basecamps(engine: Engine) -> set[str]:
    return set(run_transaction(engine, lambda conn: leases.region_basecamps(conn, "eu-alps")))


def test_a_node_lacking_a_version_in_use_hands_its_basecamps_to_one_that_has_it(alps_engine: Engine, keepers: dict[str, LeaseKeeper]) -> None:
    old, new = keepers["old"], keepers["new"]
    everything = _basecamps(alps_engine)
    _rounds(old)
    with pytest.raises(rollout.RolloutRefused, match="no live node"):
        run_transaction(alps_engine, lambda conn: rollout.ramp(conn, SETTLE_V2, 10, region="eu-alps", actor="sre:test"))

    _rounds(old, new)
    assert set(old.ownership.fence()) | set(new.ownership.fence()) == everything
    assert old.ownership.fence(), "settle@2 is not in use: the old node is as good an owner as any"

    run_transaction(alps_engine, lambda conn: rollout.ramp(conn, SETTLE_V2, 10, region="eu-alps", actor="sre:test"))
    _rounds(old, new)
    assert not old.ownership.fence(), "new bookings may get settle@2: the node without it owns nothing"
    assert set(new.ownership.fence()) == everything

    # A settle@2 booking in flight keeps the version in use after the rollout goes back.
    run_transaction(alps_engine, lambda conn: rollout.ramp(conn, SETTLE_V2, 100, region="eu-alps", actor="sre:test"))
    request = HoldRequest(
        idempotency_key="k", basecamp_id="argentiere", resource_id="argentiere-dorm", nights=Nights(night(30), night(31)), party_size=1,
        customer_id="c", ttl_seconds=600, unit_price_cents=4500, currency="EUR", actor="desk:d", node_actor="node:new", settle=True,
    )
    booked = place_hold(alps_engine, request, epoch=new.ownership.epoch_of("argentiere"), now=datetime.now(timezone.utc))
    assert booked.workflow == SETTLE_V2
    run_transaction(alps_engine, lambda conn: rollout.roll_back(conn, "settle", actor="sre:test"))
    assert run_transaction(alps_engine, lambda conn: rollout.in_use(conn, [SETTLE_V2])) == {SETTLE_V2}
    _rounds(old, new)
    assert not old.ownership.fence(), "its settle@2 booking would be left alone"

    # With no node that runs everything, liveness wins: the old node owns, and (its loop)
    # leaves settle@2 alone until a node that runs it is back.
    new.stop(release=True)
    _rounds(old)
    assert set(old.ownership.fence()) == everything
