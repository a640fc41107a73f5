"""Every booking transition names who caused it, in the statement that made it (issue 11, item 4).

Over real gRPC and PostgreSQL: a desk's hold, confirm, release and cancel name the desk,
on the single-statement hold and on the group-commit round alike; the sweeper's expiry
names the node; an --insecure server's callers are ``anonymous``; settlement's confirm
names the settling node. The audit names a change that names nobody, and ``ridgeline
show`` prints the actor beside each transition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from acting import CHANNEL_PRINCIPAL, acting_node, as_identity, stub_to
from drive import night
from gateway_process import Gateway
from invariants import libpq_url, query

from ridgeline.deploy.cli import render
from ridgeline.deploy.drills.audit import run_audit
from ridgeline.flows.payments import PaymentGateway
from ridgeline.flows.runtime import build_settlement_runtime, close_settlement_runtime
from ridgeline.flows.settle import settle_batch
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing import requests
from ridgeline.trust.identity import ANONYMOUS_ACTOR, Identity, Role, node_actor
from ridgeline.v1 import booking_pb2 as pb

ALICE = Identity("alice", Role.DESK)
BOB = Identity("bob", Role.DESK)
GUIDE = "argentiere-guide"


@pytest.fixture(params=[1, 64], ids=["single-statement", "group-commit"])
def node(request, alps_db) -> Iterator[RegionalNode]:
    config = NodeConfig(
        region="eu-alps", node_id="actor-node", database_url=alps_db.url, hold_round_max=request.param,
        hold_ttl_min_seconds=1, sweep_interval_seconds=0.2,
    )  # fmt: skip
    with acting_node(config) as started:
        yield started


@pytest.fixture
def stub(node: RegionalNode) -> Iterator:
    with stub_to(node) as booking_stub:
        yield booking_stub


def _actors(url: str, booking_id: str) -> list[tuple[str, str]]:
    rows = query(url, "SELECT to_state, actor FROM booking_history WHERE booking_id = %(id)s ORDER BY version", {"id": booking_id})
    return [(row.to_state, row.actor) for row in rows]


def _hold(stub, who: Identity | None, days: int, *, ttl: int = 0) -> pb.Booking:
    request = requests.hold_request("argentiere", GUIDE, night(days), night(days + 1), 1, "guest", hold_ttl_seconds=ttl)
    return stub.PlaceHold(request, metadata=as_identity(who) if who else (), timeout=10)


def test_every_transition_records_its_actor_in_the_statement_that_made_it(alps_db, stub) -> None:
    confirmed = _hold(stub, ALICE, 20)
    stub.ConfirmBooking(requests.confirm_request(confirmed.booking_id), metadata=as_identity(ALICE), timeout=10)
    shown = stub.CancelBooking(requests.cancel_request(confirmed.booking_id, reason="guest ill"), metadata=as_identity(BOB), timeout=10)
    released = _hold(stub, BOB, 21)
    stub.ReleaseHold(requests.release_request(released.booking_id), metadata=as_identity(ALICE), timeout=10)
    tokenless = _hold(stub, None, 22)
    lapsing = _hold(stub, ALICE, 23, ttl=1)

    assert _actors(alps_db.url, confirmed.booking_id) == [("held", "desk:alice"), ("confirmed", "desk:alice"), ("cancelled", "desk:bob")]
    assert _actors(alps_db.url, released.booking_id) == [("held", "desk:bob"), ("released", "desk:alice")]
    assert _actors(alps_db.url, tokenless.booking_id) == [("held", f"desk:{CHANNEL_PRINCIPAL}")], "without a token the certificate names the caller"
    assert [t.actor for t in shown.history] == ["desk:alice", "desk:alice", "desk:bob"], "the reply carries the actors too"
    assert (confirmed.created_by, confirmed.history[0].actor) == ("desk:alice", "desk:alice"), "the hold's own reply names its creator"

    deadline = time.monotonic() + 10
    while _actors(alps_db.url, lapsing.booking_id)[-1][0] != "expired" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _actors(alps_db.url, lapsing.booking_id) == [("held", "desk:alice"), ("expired", "node:actor-node")], "the sweeper names its node"
    assert not query(alps_db.url, "SELECT 1 FROM booking_history WHERE actor = '' OR actor IS NULL")


def test_the_audit_names_a_change_that_names_nobody(alps_db, stub) -> None:
    booking = _hold(stub, ALICE, 20)
    assert run_audit({"eu-alps": alps_db.url}).passed
    with psycopg.connect(libpq_url(alps_db.url), autocommit=True) as conn:  # a hand repair that forgot who
        conn.execute("UPDATE booking_history SET actor = '' WHERE booking_id = %(id)s", {"id": booking.booking_id})
        conn.execute("UPDATE bookings SET created_by = '' WHERE booking_id = %(id)s", {"id": booking.booking_id})
    failed = [c for c in run_audit({"eu-alps": alps_db.url}).checks if not c.passed]
    assert [(c.invariant, c.name, c.count) for c in failed] == [("2 nothing acknowledged is lost", "every change names who made it", 2)]
    assert any("v1 (held) does not name who made the change" in line for line in failed[0].offenders)


def test_show_prints_the_actor_beside_each_transition(stub) -> None:
    booking = _hold(stub, ALICE, 20)
    moved = stub.ReleaseHold(requests.release_request(booking.booking_id), metadata=as_identity(BOB), timeout=10)
    with render.console.capture() as captured:
        render.booking(moved)
    shown = captured.get()
    assert "desk:alice" in shown and "desk:bob" in shown and "by" in shown


@pytest.fixture
def settlement(alps_db, prefect_api: str, payment_gateway: Gateway, tmp_path: Path) -> Iterator[str]:
    payment_gateway.faults()
    name = f"actor-{uuid.uuid4().hex[:8]}"
    build_settlement_runtime(
        name, alps_db.url, PaymentGateway(payment_gateway.url, payment_gateway.transport()), tmp_path / "spool", borrowed_basecamps=["argentiere"], actor=node_actor("settling-node")
    )
    yield name
    close_settlement_runtime(name)


@pytest.mark.parametrize("node", [64], indirect=True, ids=["group-commit"])
def test_settlements_confirm_names_the_settling_node(alps_db, stub, settlement: str) -> None:
    booked = stub.Book(requests.book_request("argentiere", GUIDE, night(30), night(31), 1, "payer", hold_ttl_seconds=60), metadata=as_identity(ALICE), timeout=10)
    assert settle_batch(settlement, [booked.booking_id], ["argentiere"]) == {booked.booking_id: "confirmed"}
    assert _actors(alps_db.url, booked.booking_id) == [("held", "desk:alice"), ("confirmed", "node:settling-node")]


def test_an_insecure_node_records_that_nobody_was_identified(alps_db) -> None:
    config = NodeConfig(region="eu-alps", node_id="insecure-node", database_url=alps_db.url, insecure=True)
    with acting_node(config) as node, stub_to(node) as insecure_stub:
        anonymous = _hold(insecure_stub, None, 24)
    assert _actors(alps_db.url, anonymous.booking_id) == [("held", ANONYMOUS_ACTOR)]
