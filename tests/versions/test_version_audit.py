"""The audit's version check: every booking took only the steps of its version and none is
stranded; and the money check counts a settle@2 booking's deposit, balance and policy
refund. Bookings made by the real node and settlement, then corrupted by hand in SQL."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from certificates import SessionCerts
from conftest import Settling
from drive import night
from gateway_process import Gateway, gateway_process
from invariants import libpq_url
from settlement_checks import wait_until_settled
from versioning import rollout

from ridgeline.deploy.drills.audit import check_money
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.regional.storage.audit_sql import audit_region
from ridgeline.routing.client import BookingClient

VERSION_CHECK = "every booking took only its version's steps, none stranded"


@pytest.fixture(scope="module")
def payment_gateway(region_servers: dict[str, PostgresServer], certs: SessionCerts) -> Iterator[Gateway]:
    """A gateway of this module's own: the money check reads the whole ledger, and the
    session's gateway holds every other test's charges."""
    with gateway_process(region_servers["sa-andes"], certs=certs.certs) as started:
        yield started


def _version_offenders(settling: Settling) -> list[str]:
    [check] = [c for c in audit_region(settling.runtime.engine, "eu-alps", hold_grace_seconds=60, key_retention_seconds=3600) if c.name == VERSION_CHECK]
    return check.offenders


def test_the_audit_names_a_booking_whose_steps_are_not_its_version_s_or_that_is_stranded(
    settling: Settling, alps_node, alps_client: BookingClient, payment_gateway: Gateway, certs: SessionCerts
) -> None:
    v2 = alps_client.book("argentiere", "argentiere-dorm", night(40), night(41), 1, "v2", hold_ttl_seconds=120)
    rollout(certs, alps_node.address, "settle", rollback=True)
    v1 = alps_client.book("argentiere", "argentiere-dorm", night(42), night(43), 1, "v1", hold_ttl_seconds=120)
    plain = alps_client.place_hold("argentiere", "argentiere-dorm", night(44), night(45), 1, "plain")
    wait_until_settled(settling.url, [v1.booking_id, v2.booking_id], 30)
    assert (v1.workflow, v2.workflow, plain.workflow) == ("settle@1", "settle@2", "hold@1")
    assert _version_offenders(settling) == []
    money = check_money({"eu-alps": settling.url}, payment_gateway.url, payment_gateway.transport(), grace_seconds=0)
    assert money.passed, f"a confirmed settle@2 booking holds its deposit, not its price: {money.offenders}"

    with psycopg.connect(libpq_url(settling.url)) as conn:
        conn.execute("INSERT INTO workflow_steps (booking_id, step, at, actor) VALUES (%s, 'balance charged', now(), 'node:x')", (v1.booking_id,))
        conn.execute("UPDATE workflow_timers SET fired_at = now() WHERE booking_id = %s AND step = 'balance'", (v2.booking_id,))
        conn.execute("INSERT INTO workflow_steps (booking_id, step, at, actor) VALUES (%s, 'gift voucher', now(), 'node:x')", (v2.booking_id,))
        conn.execute("INSERT INTO workflow_timers (booking_id, step, basecamp_id, workflow, due_at, next_attempt_at) VALUES (%s, 'balance', 'argentiere', 'hold@1', now(), now())", (plain.booking_id,))
    assert _version_offenders(settling) == [
        f"booking {b} ({w}, {s}) {p}"
        for b, w, s, p in sorted([
            (v1.booking_id, "settle@1", "confirmed", "took settle@2 steps"),
            (v2.booking_id, "settle@2", "confirmed", "owes its balance and has no timer for it (stranded)"),
            (v2.booking_id, "settle@2", "confirmed", "took a step settle@2 does not have"),
            (plain.booking_id, "hold@1", "held", "has workflow timers"),
        ], key=lambda r: (r[0], r[3]))
    ]
