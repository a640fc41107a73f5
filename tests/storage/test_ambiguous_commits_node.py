"""A real node whose database connection is cut at the commit of a group-commit round.

The round places several callers' holds with one statement in an implicit transaction;
cut after the server committed it, the node cannot know which holds landed. Each caller's
key must tell (ARCHITECTURE.md §3, *Ambiguous commits*): the callers whose hold landed are
answered that hold, the others get theirs placed now, and no key has two holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from certificates import SessionCerts
from commit_cut_proxy import CommitCutProxy, Cut
from drive import night
from invariants import assert_inventory_matches_bookings, query
from prometheus_client import REGISTRY

from ridgeline.regional.booking import holds
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient
from ridgeline.routing.retry import Resolution
from ridgeline.v1 import booking_pb2 as pb

CALLERS = 8


@pytest.fixture
def cut_node(alps_db, region_servers, certs: SessionCerts) -> Iterator[tuple[CommitCutProxy, BookingClient]]:  # noqa: ANN001
    # Only the holds' implicit transactions are cut: the lease keeper's COMMITs pass.
    proxy = CommitCutProxy(region_servers["eu-alps"].port, marker=b"idempotency_records", commits=False)
    node = RegionalNode(NodeConfig(region="eu-alps", node_id="cut-node", database_url=proxy.url(alps_db.url), certs_dir=certs.dir))
    node.start()
    try:
        with BookingClient(node.address, transport=certs.desk, timeout_seconds=20, attempts_max=1) as client:
            yield proxy, client
    finally:
        node.stop(grace_seconds=1)
        proxy.close()


def _resolved(resolution: Resolution) -> float:
    labels = {"operation": holds.OPERATION, "resolution": resolution.value}
    return REGISTRY.get_sample_value("ridgeline_db_ambiguous_resolutions_total", labels) or 0.0


@pytest.mark.parametrize("cut", ["after", "before"])
def test_invariants_1_7_holds_of_a_round_whose_commit_was_cut_land_once_each(cut_node, alps_db, cut: Cut) -> None:  # noqa: ANN001
    proxy, client = cut_node
    client.place_hold("argentiere", "argentiere-dorm", night(70), night(71), 1, "warm-up", idempotency_key="warm-up")
    before = {r: _resolved(r) for r in Resolution}
    proxy.plan([cut])

    def hold(i: int) -> pb.Booking:
        return client.place_hold("argentiere", "argentiere-dorm", night(60), night(62), 1, f"guest-{i}", idempotency_key=f"round-{i}")

    with ThreadPoolExecutor(CALLERS) as pool:
        answered = list(pool.map(hold, range(CALLERS)))

    assert proxy.cuts == [cut], "the round (or the first single hold) had its commit cut"
    assert all(b.state == pb.BOOKING_STATE_HELD for b in answered)
    rows = query(alps_db.url, "SELECT customer_id, CAST(booking_id AS TEXT) AS booking_id FROM bookings WHERE customer_id LIKE 'guest-%%'")
    assert sorted((r.customer_id, r.booking_id) for r in rows) == sorted((f"guest-{i}", b.booking_id) for i, b in enumerate(answered)), (
        "each caller has exactly one hold, the one it was answered"
    )
    assert_inventory_matches_bookings(alps_db.url)
    gained = {r: _resolved(r) - before[r] for r in Resolution}
    if cut == "after":  # the round's holds are found by their keys; any it did not place are placed now
        assert gained[Resolution.COMMITTED] >= 1, gained
    else:  # nothing landed: every hold of the round is placed by its re-run
        assert gained[Resolution.COMMITTED] == 0 and gained[Resolution.NOT_COMMITTED] >= 1, gained
    assert gained[Resolution.UNRESOLVED] == 0, gained
