"""The cluster: ownership moves when a node dies or joins, a paused owner cannot write,
misrouted calls are told the owner, and the routing client follows moves by itself.

Nodes here run with 2 s leases renewed every 0.5 s, so that failovers fit in a test."""

from __future__ import annotations

import collections
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
import pytest
from certificates import SessionCerts
from conftest import RegionDatabase
from drive import night, outcome, owner_address
from invariants import assert_inventory_matches_bookings, bookings_by_id, query

from ridgeline.deploy.run.processes import ReadyChild
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing import BookingClient, ClusterClient, night_range, owner_hint
from ridgeline.routing.keeper import NodeIdInUse
from ridgeline.routing.ring import propose_owners
from ridgeline.v1 import booking_pb2 as pb
from ridgeline.v1 import booking_pb2_grpc as pb_grpc
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

LEASE_TTL = 2.0
HEARTBEAT = 0.5
LEASE_FLAGS = ("--lease-ttl", str(LEASE_TTL), "--heartbeat-interval", str(HEARTBEAT))
#: The trek coordinator the in-process nodes know (nothing serves it: these tests only prepare).
COORDINATOR = "127.0.0.1:1"
#: The ring splits eu-alps 2/2 between these ids (hoernli and gouter on -1).
NODE_IDS = ("eu-alps-1", "eu-alps-2")
ALPS = ("argentiere", "hoernli", "gouter", "capanna-margherita")
DORMS = {"argentiere": "argentiere-dorm", "hoernli": "hoernli-dorm", "gouter": "gouter-dorm", "capanna-margherita": "margherita-dorm"}


def _wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _holders(url: str) -> dict[str, tuple[str, int]]:
    """basecamp -> (holder, epoch) of the leases valid now, on the database's clock."""
    rows = query(url, "SELECT basecamp_id, holder, epoch FROM basecamp_leases WHERE expires_at > now()")
    return {r.basecamp_id: (r.holder, r.epoch) for r in rows}


def _settled(url: str, node_ids: tuple[str, ...]) -> bool:
    """Every basecamp held by the node the ring proposes for it."""
    return _holders(url) and {b: h for b, (h, _) in _holders(url).items()} == propose_owners(node_ids, ALPS)


@pytest.fixture
def two_node_processes(alps_db: RegionDatabase, node_process: Callable[..., ReadyChild]) -> dict[str, ReadyChild]:
    with ThreadPoolExecutor(2) as pool:
        started = list(pool.map(lambda node_id: node_process(alps_db, "--node-id", node_id, *LEASE_FLAGS), NODE_IDS))
    nodes = dict(zip(NODE_IDS, started, strict=True))
    assert _wait(lambda: _settled(alps_db.url, NODE_IDS), 10), f"leases did not settle: {_holders(alps_db.url)}"
    return nodes


def _in_process_node(db: RegionDatabase, node_id: str, certs: SessionCerts) -> RegionalNode:
    node = RegionalNode(
        NodeConfig(
            region=db.region, node_id=node_id, database_url=db.url, workers=4, lease_ttl_seconds=LEASE_TTL, heartbeat_interval_seconds=HEARTBEAT,
            coordinator_targets=(COORDINATOR,), certs_dir=certs.dir,
        )
    )  # fmt: skip
    node.start()
    return node


@pytest.fixture
def in_process_nodes(alps_db: RegionDatabase, certs: SessionCerts) -> Iterator[Callable[[str], RegionalNode]]:
    started: list[RegionalNode] = []

    def start(node_id: str) -> RegionalNode:
        started.append(_in_process_node(alps_db, node_id, certs))
        return started[-1]

    yield start
    for node in started:
        node.stop(grace_seconds=0)


def test_a_joining_node_takes_about_one_nth_of_the_basecamps_and_only_from_others() -> None:
    basecamps = [f"camp-{i}" for i in range(3000)]
    for before in (2, 3, 5, 8):
        old_nodes = [f"node-{i}" for i in range(before)]
        new_nodes = [*old_nodes, "node-new"]
        old, new = propose_owners(old_nodes, basecamps), propose_owners(new_nodes, basecamps)
        moved = [b for b in basecamps if old[b] != new[b]]
        assert all(new[b] == "node-new" for b in moved), "a join moved basecamps between existing nodes"
        share = len(moved) / len(basecamps)
        ideal = 1 / len(new_nodes)
        assert 0.6 * ideal <= share <= 1.4 * ideal, f"{before}->{before + 1} nodes moved {share:.2%}, ideal {ideal:.2%}"
        # And a leaving node's basecamps are the only ones that move back.
        assert [b for b in basecamps if new[b] != old[b]] == [b for b in basecamps if new[b] == "node-new"]


def test_a_joining_node_gets_its_share_of_leases_and_nothing_else_moves(alps_db: RegionDatabase, in_process_nodes) -> None:
    in_process_nodes("eu-alps-1")
    in_process_nodes("eu-alps-2")
    assert _wait(lambda: _settled(alps_db.url, NODE_IDS), 10)
    before = _holders(alps_db.url)
    in_process_nodes("eu-alps-3")
    three = (*NODE_IDS, "eu-alps-3")
    assert _wait(lambda: _settled(alps_db.url, three), 10), f"no handover to the new node: {_holders(alps_db.url)}"
    after = _holders(alps_db.url)
    moved = {b for b in ALPS if after[b][0] != before[b][0]}
    assert moved and all(after[b][0] == "eu-alps-3" for b in moved)
    assert all(after[b][1] > before[b][1] for b in moved), "a handover must bump the epoch"
    assert all(after[b][1] == before[b][1] for b in set(ALPS) - moved), "a renewal must keep the epoch"


def test_a_misrouted_write_is_failed_precondition_with_the_owner_and_reads_work_anywhere(alps_db: RegionDatabase, in_process_nodes, certs) -> None:
    nodes = {node_id: in_process_nodes(node_id) for node_id in NODE_IDS}
    assert _wait(lambda: _settled(alps_db.url, NODE_IDS), 10)
    owner_id = propose_owners(NODE_IDS, ALPS)["argentiere"]
    other = nodes[next(n for n in NODE_IDS if n != owner_id)]
    stub = pb_grpc.BookingServiceStub(certs.desk.channel(other.address))
    request = pb.PlaceHoldRequest(
        idempotency_key="misrouted-1", basecamp_id="argentiere", resource_id="argentiere-dorm",
        nights=night_range(night(20), night(21)), party_size=1, customer_id="misrouted",
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.PlaceHold(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    hint = owner_hint(refused.value)
    assert hint is not None and hint.node_id == owner_id and hint.address == nodes[owner_id].address
    assert "argentiere is owned by node" in refused.value.details()
    # Nothing was recorded under the key: the same request succeeds at the owner.
    placed = pb_grpc.BookingServiceStub(certs.desk.channel(hint.address)).PlaceHold(request, timeout=10)
    assert stub.GetBooking(pb.GetBookingRequest(booking_id=placed.booking_id), timeout=10).booking_id == placed.booking_id


def test_a_second_node_under_a_live_node_s_id_is_refused(alps_db: RegionDatabase, in_process_nodes) -> None:
    in_process_nodes("eu-alps-1")
    with pytest.raises(NodeIdInUse, match="node id eu-alps-1 is in use by a live node at 127.0.0.1:"):
        in_process_nodes("eu-alps-1")


def test_the_client_finds_the_new_owner_after_a_move_without_the_caller_doing_anything(alps_db: RegionDatabase, in_process_nodes, certs) -> None:
    nodes = {node_id: in_process_nodes(node_id) for node_id in NODE_IDS}
    assert _wait(lambda: _settled(alps_db.url, NODE_IDS), 10)
    owner_id = propose_owners(NODE_IDS, ALPS)["argentiere"]
    survivor = next(n for n in NODE_IDS if n != owner_id)
    with ClusterClient([nodes[survivor].address], transport=certs.desk, timeout_seconds=15) as client:
        first = client.place_hold("argentiere", "argentiere-dorm", night(20), night(21), 1, "mover")
        assert owner_address(client, "argentiere") == nodes[owner_id].address
        nodes[owner_id].stop(grace_seconds=0)  # hands its leases back; the survivor takes them
        second = client.place_hold("argentiere", "argentiere-dorm", night(22), night(23), 1, "mover")
        confirmed = client.confirm(first.booking_id)
    assert confirmed.state == pb.BOOKING_STATE_CONFIRMED
    assert _holders(alps_db.url)["argentiere"][0] == survivor
    assert set(bookings_by_id(alps_db.url, [first.booking_id, second.booking_id])) == {first.booking_id, second.booking_id}


@pytest.mark.slow
def test_killed_owner_s_basecamps_are_writable_again_within_ttl_plus_heartbeat_and_nothing_acknowledged_is_lost(
    alps_db: RegionDatabase, two_node_processes: dict[str, ReadyChild], certs: SessionCerts
) -> None:
    victim_id = "eu-alps-1"
    victim_camps = [b for b, owner in propose_owners(NODE_IDS, ALPS).items() if owner == victim_id]
    acknowledged: list[str] = []
    successes: dict[str, list[float]] = collections.defaultdict(list)
    lock = threading.Lock()
    stop = threading.Event()
    seeds = [n.address for n in two_node_processes.values()]

    def desk(index: int) -> None:
        with ClusterClient(seeds, transport=certs.desk, timeout_seconds=10) as client:
            i = 0
            while not stop.is_set():
                basecamp = ALPS[(index + i) % len(ALPS)]
                first = night(10 + (index * 37 + i) % 200)
                i += 1
                result = outcome(lambda: client.place_hold(basecamp, DORMS[basecamp], first, first + timedelta(days=1), 1, f"desk-{index}"))
                if result.ok:
                    with lock:
                        acknowledged.append(result.reply.booking_id)
                        successes[basecamp].append(time.monotonic())

    desks = [threading.Thread(target=desk, args=(i,)) for i in range(4)]
    for thread in desks:
        thread.start()
    try:
        assert _wait(lambda: all(successes[b] for b in ALPS), 10), "load never reached every basecamp"
        two_node_processes[victim_id].kill()
        killed = time.monotonic()
        bound = LEASE_TTL + HEARTBEAT
        writable = _wait(lambda: all(any(t > killed for t in successes[b]) for b in victim_camps), bound + 6)
    finally:
        stop.set()
        for thread in desks:
            thread.join(30)
    assert writable, f"{victim_camps} not writable again {bound + 6:.1f} s after the kill"
    failover = max(min(t for t in successes[b] if t > killed) - killed for b in victim_camps)
    # The client backs off while the basecamp is between owners: allow one backoff cap on top.
    assert failover <= bound + 1.5, f"failover took {failover:.2f} s (lease TTL {LEASE_TTL} s + heartbeat {HEARTBEAT} s)"
    survivor = next(n for n in NODE_IDS if n != victim_id)
    assert all(_holders(alps_db.url)[b][0] == survivor for b in victim_camps)
    stored = bookings_by_id(alps_db.url, acknowledged)
    assert set(stored) == set(acknowledged), f"{len(set(acknowledged) - set(stored))} acknowledged bookings lost"
    assert_inventory_matches_bookings(alps_db.url)


@pytest.mark.slow
def test_a_paused_owner_cannot_write_after_its_lease_lapsed(alps_db: RegionDatabase, two_node_processes: dict[str, ReadyChild], certs: SessionCerts) -> None:
    paused_id = propose_owners(NODE_IDS, ALPS)["argentiere"]
    paused = two_node_processes[paused_id]
    survivor_id = next(n for n in NODE_IDS if n != paused_id)
    with BookingClient(paused.address, transport=certs.desk) as client:
        earlier = client.place_hold("argentiere", "argentiere-dorm", night(20), night(21), 1, "before-pause")
    epoch_before = _holders(alps_db.url)["argentiere"][1]

    paused.process.send_signal(signal.SIGSTOP)
    try:
        # Generous: this test is about what the paused owner can write, not how fast the
        # takeover is (the SIGKILL test above bounds that); a loaded machine delays heartbeats.
        assert _wait(lambda: _holders(alps_db.url).get("argentiere", ("", 0))[0] == survivor_id, LEASE_TTL + HEARTBEAT + 15), "no takeover"
        with ClusterClient([two_node_processes[survivor_id].address], transport=certs.desk, timeout_seconds=10) as cluster:
            cluster.place_hold("argentiere", "argentiere-dorm", night(30), night(31), 1, "after-takeover")
        # Calls that reach the paused node now: it wakes up still believing it owns argentiere.
        stub = pb_grpc.BookingServiceStub(certs.desk.channel(paused.address))
        hold = pb.PlaceHoldRequest(
            idempotency_key="paused-1", basecamp_id="argentiere", resource_id="argentiere-dorm",
            nights=night_range(night(40), night(41)), party_size=1, customer_id="paused-writer",
        )
        confirm = pb.ConfirmBookingRequest(idempotency_key="paused-2", booking_id=earlier.booking_id)
        with ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(outcome, lambda: stub.PlaceHold(hold, timeout=10)),
                     pool.submit(outcome, lambda: stub.ConfirmBooking(confirm, timeout=10))]
            time.sleep(0.3)
            paused.process.send_signal(signal.SIGCONT)
            results = [c.result() for c in calls]
    finally:
        paused.process.send_signal(signal.SIGCONT)
    assert all(r.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE) for r in results), results
    assert not query(alps_db.url, "SELECT 1 FROM bookings WHERE customer_id = 'paused-writer'"), "the paused owner placed a hold"
    assert bookings_by_id(alps_db.url, [earlier.booking_id])[earlier.booking_id].state == "held", "the paused owner confirmed"
    # The woken node is the ring's owner again, so argentiere may be between two holders now.
    seen: dict[str, tuple[str, int]] = {}
    assert _wait(lambda: seen.update(_holders(alps_db.url)) or "argentiere" in seen, LEASE_TTL + HEARTBEAT + 15), "argentiere stays unowned"
    assert seen["argentiere"][1] > epoch_before
    assert_inventory_matches_bookings(alps_db.url)


def test_a_trek_leg_is_prepared_only_by_its_basecamp_s_owner(alps_db: RegionDatabase, in_process_nodes, certs) -> None:
    nodes = {node_id: in_process_nodes(node_id) for node_id in NODE_IDS}
    assert _wait(lambda: _settled(alps_db.url, NODE_IDS), 10)
    owner_id = propose_owners(NODE_IDS, ALPS)["argentiere"]
    other = nodes[next(n for n in NODE_IDS if n != owner_id)]
    trek_id = str(uuid.uuid4())
    request = tpb.PrepareLegRequest(
        trek_id=trek_id, leg_index=0,
        leg=tpb.TrekLeg(basecamp_id="argentiere", resource_id="argentiere-dorm", nights=night_range(night(20), night(22)), party_size=1),
        customer_id="planner", hold_ttl_seconds=60, coordinator_target=COORDINATOR,
    )
    with pytest.raises(grpc.RpcError) as refused:
        tpb_grpc.TrekLegServiceStub(certs.node.channel(other.address)).PrepareLeg(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    hint = owner_hint(refused.value)
    assert hint is not None and hint.node_id == owner_id
    assert not query(alps_db.url, "SELECT 1 FROM trek_legs WHERE trek_id = %(t)s", {"t": trek_id}), "a non-owner wrote the leg's fence row"
    prepared = tpb_grpc.TrekLegServiceStub(certs.node.channel(hint.address)).PrepareLeg(request, timeout=10)
    assert prepared.state == tpb.LEG_STATE_PREPARED
