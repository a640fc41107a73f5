"""A node that loses its database but not its clients stops claiming its basecamps, and they move.

Two eu-alps nodes share the region database; one reaches it through fault proxies
(deploy/drills/database_paths.py, what the ``cut-node-from-database`` drill uses). The
path is blackholed: the cut node's keeper rounds hang, yet within one lease TTL it no
longer believes it owns anything (its view expires with the leases), its peer takes
the basecamps once the leases lapse in the database, and the routing client writes
there. When the path returns the node rejoins and gets its share back; nothing
acknowledged is lost and the audit passes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import grpc
from drive import night, owner_address
from invariants import assert_inventory_matches_bookings

from ridgeline.deploy.drills.audit import check_acknowledged, run_audit
from ridgeline.deploy.drills.database_paths import through_proxies
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing import ClusterClient, ClusterUnreachable
from ridgeline.routing.ring import propose_owners
from ridgeline.v1 import booking_pb2 as pb

LEASE_TTL = 2.0
HEARTBEAT = 0.5
NODE_IDS = ("eu-alps-1", "eu-alps-2")
ALPS = ("argentiere", "hoernli", "gouter", "capanna-margherita")
#: Generous: the lease lapses after LEASE_TTL, the peer takes it at its next heartbeat, the
#: client needs a try or two to find it (the bound in the drill is the same sum, plus slack).
MOVE_MAX_SECONDS = 20.0


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _node(node_id: str, url: str, certs) -> RegionalNode:  # noqa: ANN001
    node = RegionalNode(
        NodeConfig(region="eu-alps", node_id=node_id, database_url=url, workers=4, lease_ttl_seconds=LEASE_TTL, heartbeat_interval_seconds=HEARTBEAT, certs_dir=certs.dir)
    )
    node.start()
    return node


def test_a_node_cut_from_its_database_stops_claiming_and_its_basecamps_move_to_its_peer(alps_db, certs) -> None:  # noqa: ANN001
    path = through_proxies(alps_db.url)
    cut_node = _node(NODE_IDS[0], path.url, certs)
    peer = _node(NODE_IDS[1], alps_db.url, certs)
    try:
        ring = propose_owners(list(NODE_IDS), ALPS)
        moving = sorted(b for b, owner in ring.items() if owner == NODE_IDS[0])
        assert moving, "the ring gives the cut node something to lose"
        assert _wait(lambda: set(cut_node.keeper.ownership.fence()) == set(moving), 10), cut_node.keeper.ownership.fence()
        acknowledged: dict[str, str] = {}
        with ClusterClient([cut_node.address, peer.address], transport=certs.desk, timeout_seconds=3) as client:
            for camp in moving:
                booking = client.place_hold(camp, _dorm(camp), night(20), night(21), 1, "cut-guest")
                acknowledged[booking.booking_id] = pb.BookingState.Name(booking.state)

            path.cut(lasting_seconds=120)  # lifts itself should the test die first
            cut_at = time.monotonic()
            assert _wait(lambda: not cut_node.keeper.ownership.fence(), LEASE_TTL + 1.0), (
                f"the cut node still claims {cut_node.keeper.ownership.fence()} {time.monotonic() - cut_at:.1f} s after losing its database"
            )
            moved_after = {}
            for camp in moving:
                while camp not in moved_after:
                    assert time.monotonic() - cut_at < MOVE_MAX_SECONDS, f"{camp} not writable through the peer {MOVE_MAX_SECONDS:g} s after the cut"
                    try:
                        booking = client.place_hold(camp, _dorm(camp), night(22), night(23), 1, "cut-guest", idempotency_key=str(uuid.uuid4()))
                    except (grpc.RpcError, ClusterUnreachable):
                        continue
                    acknowledged[booking.booking_id] = pb.BookingState.Name(booking.state)
                    moved_after[camp] = time.monotonic() - cut_at
            assert {owner_address(client, camp) for camp in moving} == {peer.address}
            print(f"\ncut {NODE_IDS[0]} from its database: writable through {NODE_IDS[1]} after " + ", ".join(f"{c} {s:.2f} s" for c, s in moved_after.items()))

            path.restore()
            assert _wait(lambda: set(cut_node.keeper.ownership.fence()) == set(moving), 20), (
                f"after the path returned the node holds {cut_node.keeper.ownership.fence()}, not its share {moving}"
            )
    finally:
        peer.stop(grace_seconds=1)
        cut_node.stop(grace_seconds=1)
        path.close()
    assert_inventory_matches_bookings(alps_db.url)
    audit = run_audit({"eu-alps": alps_db.url}, money_grace_seconds=0)
    audit.checks.append(check_acknowledged({"eu-alps": alps_db.url}, acknowledged))
    assert audit.passed, audit.to_json()


def _dorm(basecamp: str) -> str:
    return {"argentiere": "argentiere-dorm", "hoernli": "hoernli-dorm", "gouter": "gouter-dorm", "capanna-margherita": "margherita-dorm"}[basecamp]
