"""``ridgeline audit`` passes a healthy region and names every seeded violation.

Each test corrupts a fresh copy of a region database the way a bug or an operator
would (writes that bypass the node) and checks that the audit names the offending row
under the right invariant, and exits non-zero from the CLI."""

from __future__ import annotations

import json
import uuid

import psycopg
from drive import night
from gateway_process import gateway_process
from invariants import libpq_url
from sqlalchemy import text
from typer.testing import CliRunner

from ridgeline.deploy.cli import app
from ridgeline.deploy.drills.audit import run_audit
from ridgeline.flows.payments import PaymentGateway
from ridgeline.global_coordinator import schema as coordinator_schema
from ridgeline.regional.storage.db import make_engine
from ridgeline.routing.client import BookingClient

runner = CliRunner()
GUIDE = "argentiere-guide"  # capacity 6


def _sql(url: str, statement: str, params: dict[str, object] | None = None) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(statement, params or {})


def _violations(url: str) -> dict[str, list[str]]:
    report = run_audit({"eu-alps": url}, hold_grace_seconds=30)
    return {f"{c.invariant} | {c.name}": c.offenders for c in report.checks if not c.passed}


def _busy_region(client: BookingClient) -> dict[str, str]:
    held = client.place_hold("argentiere", GUIDE, night(20), night(22), 2, "held-guest")
    confirmed = client.confirm(client.place_hold("argentiere", GUIDE, night(20), night(21), 4, "full-guest").booking_id)
    released = client.release(client.place_hold("hoernli", "hoernli-dorm", night(5), night(6), 3, "gone-guest").booking_id)
    return {"held": held.booking_id, "confirmed": confirmed.booking_id, "released": released.booking_id}


def test_a_healthy_region_passes_every_check(alps_db, alps_client: BookingClient) -> None:
    _busy_region(alps_client)
    report = run_audit({"eu-alps": alps_db.url})
    assert report.passed, _violations(alps_db.url)
    assert {c.invariant for c in report.checks} == {
        "1 no overbooking", "2 nothing acknowledged is lost", "3 holds end", "6 one writer per basecamp", "7 idempotency",
    }


def test_an_extra_hold_over_capacity_is_named_under_invariant_1(alps_db, alps_client: BookingClient) -> None:
    ids = _busy_region(alps_client)  # argentiere-guide night 20 is now full: 2 held + 4 confirmed of 6
    _sql(
        alps_db.url,
        """INSERT INTO bookings SELECT gen_random_uuid(), basecamp_id, resource_id, first_night, end_night, 1, 'sneaky',
               'held', 1, 0, currency, now(), now(), now() + interval '1 hour', reserved_nights
           FROM bookings WHERE booking_id = %(id)s""",
        {"id": ids["held"]},
    )
    found = _violations(alps_db.url)
    overbooked = found["1 no overbooking | inventory counters equal live bookings, within capacity"]
    assert any(f"{GUIDE} {night(20)}" in line and "bookings hold 3" in line for line in overbooked), overbooked


def test_a_leaked_hold_is_named_under_invariant_3(alps_db, alps_node, alps_client: BookingClient) -> None:
    ids = _busy_region(alps_client)
    alps_node.stop(grace_seconds=0)  # nobody sweeps any more
    _sql(alps_db.url, "UPDATE bookings SET expires_at = now() - interval '10 minutes' WHERE booking_id = %(id)s", {"id": ids["held"]})
    leaked = _violations(alps_db.url)["3 holds end | no hold live 30 s past its expiry"]
    assert len(leaked) == 1 and ids["held"] in leaked[0] and "still held" in leaked[0]


def test_a_lost_acknowledged_booking_and_a_broken_history_are_named_under_invariant_2(alps_db, alps_client: BookingClient) -> None:
    ids = _busy_region(alps_client)
    _sql(alps_db.url, "DELETE FROM booking_history WHERE booking_id = %(id)s", {"id": ids["released"]})
    _sql(alps_db.url, "DELETE FROM bookings WHERE booking_id = %(id)s", {"id": ids["released"]})
    _sql(alps_db.url, "DELETE FROM booking_history WHERE booking_id = %(id)s AND version = 2", {"id": ids["confirmed"]})
    found = _violations(alps_db.url)
    assert any(ids["released"] in line and "does not exist" in line for line in found["2 nothing acknowledged is lost | every acknowledged hold's booking exists"])
    assert any(ids["confirmed"] in line for line in found["2 nothing acknowledged is lost | every booking's history explains its state"])


def test_a_change_under_an_older_epoch_is_named_under_invariant_6_and_an_unkeyed_booking_under_7(alps_db, alps_client: BookingClient) -> None:
    ids = _busy_region(alps_client)
    _sql(alps_db.url, "UPDATE booking_history SET lease_epoch = lease_epoch - 1 WHERE booking_id = %(id)s AND version = 2", {"id": ids["confirmed"]})
    _sql(
        alps_db.url,
        "DELETE FROM idempotency_records WHERE operation = 'PlaceHold' AND result->>'booking_id' = %(id)s",
        {"id": ids["held"]},
    )
    found = _violations(alps_db.url)
    stale = found["6 one writer per basecamp | no change written under an older lease epoch than an earlier one"]
    assert len(stale) == 1 and ids["confirmed"] in stale[0]
    assert any(ids["held"] in line and "0 PlaceHold/Book records" in line for line in found["7 idempotency | every booking was placed under exactly one key"])


def test_the_cli_prints_the_verdicts_as_json_and_exits_non_zero_on_a_violation(alps_db, alps_client: BookingClient) -> None:
    ids = _busy_region(alps_client)
    clean = runner.invoke(app, ["audit", "--database-url", f"eu-alps={alps_db.url}", "--json"])
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["passed"] is True
    _sql(alps_db.url, "UPDATE inventory SET held = held - 2 WHERE resource_id = %(r)s AND night = %(n)s", {"r": GUIDE, "n": night(21)})
    broken = runner.invoke(app, ["audit", "--database-url", f"eu-alps={alps_db.url}"])
    assert broken.exit_code == 1
    assert "VIOLATED" in broken.stdout and f"{GUIDE} {night(21)}" in broken.stdout
    assert ids["held"]  # the hold whose night was corrupted


def test_an_orphan_charge_is_named_under_invariant_4(alps_db, region_servers, certs) -> None:
    # A gateway of its own: the session's holds other tests' charges, which would crowd the offenders.
    with gateway_process(region_servers["sa-andes"], certs=certs.certs) as own:
        orphan = str(uuid.uuid4())  # a reference no booking and no trek has
        with PaymentGateway(own.url, own.transport()) as gateway:
            gateway.charge(f"orphan:{orphan}", 1234, "EUR", reference=orphan)
        report = run_audit({"eu-alps": alps_db.url}, gateway_url=own.url, gateway_transport=own.transport("sre"), money_grace_seconds=0)
    money = next(c for c in report.checks if c.invariant == "4 money balances")
    assert not money.passed and any(orphan in line and "1234 cents stand" in line for line in money.offenders), money


def test_a_half_committed_trek_is_named_under_invariant_5(alps_db, alps_client: BookingClient, fresh_database, region_servers) -> None:
    rockies = fresh_database("na-rockies")
    coordinator_url = region_servers["sa-andes"].create_database(f"coordinator_{uuid.uuid4().hex[:12]}")
    engine = make_engine(coordinator_url, pool_size=1)
    try:
        coordinator_schema.migrate(engine)
        trek_id = str(uuid.uuid4())
        leg = alps_client.place_hold("argentiere", GUIDE, night(40), night(41), 1, "trekker")
        alps_client.confirm(leg.booking_id)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO treks (trek_id, idempotency_key, request_fingerprint, customer_id, state, created_at, prepare_deadline, settled_at, updated_at)"
                    " VALUES (CAST(:t AS UUID), :k, 'f', 'trekker', 'committed', now() - interval '1 hour', now(), now(), now() - interval '1 hour')"
                ),
                {"t": trek_id, "k": f"key-{trek_id}"},
            )
            for index, (region, camp) in enumerate((("eu-alps", "argentiere"), ("na-rockies", "bow-hut"))):
                conn.execute(
                    text(
                        "INSERT INTO trek_legs (trek_id, leg_index, region, basecamp_id, resource_id, first_night, end_night, party_size, state)"
                        " VALUES (:t, :i, :r, :b, 'x', current_date + 40, current_date + 41, 1, 'committed')"
                    ),
                    {"t": trek_id, "i": index, "r": region, "b": camp},
                )
    finally:
        engine.dispose()
    # The participants disagree: eu-alps committed its leg, na-rockies aborted its own.
    _sql(alps_db.url, "INSERT INTO trek_legs VALUES (%(t)s, 0, 'committed', %(b)s, '', now(), now(), now())", {"t": trek_id, "b": leg.booking_id})
    _sql(rockies.url, "INSERT INTO trek_legs VALUES (%(t)s, 1, 'aborted', NULL, '', now(), now(), now())", {"t": trek_id})

    report = run_audit({"eu-alps": alps_db.url, "na-rockies": rockies.url}, coordinator_url=coordinator_url, money_grace_seconds=0)
    treks = next(c for c in report.checks if c.invariant == "5 treks are atomic")
    assert not treks.passed and any(trek_id in line and "'aborted'" in line for line in treks.offenders), treks
