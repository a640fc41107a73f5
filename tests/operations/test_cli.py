"""The desk CLI against a real node, and the quick-start demo end to end, over mutual TLS.

Desk commands present the session's desk pair: found through ``--certs-dir`` (a global
option, before the subcommand) or RIDGELINE_CERTS_DIR; the demo makes its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from certificates import SessionCerts
from invariants import query
from typer.testing import CliRunner

from ridgeline.deploy.cli import app, render
from ridgeline.regional.node import RegionalNode

runner = CliRunner()


@pytest.fixture
def cli_certs(certs: SessionCerts) -> tuple[str, str]:
    """``--certs-dir DIR``: what every desk command here is started with."""
    return certs.cli_args


def _json(node: RegionalNode, certs_args: tuple[str, str], *args: str) -> object:
    result = runner.invoke(app, [*certs_args, *args, "--target", node.address, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_desk_books_lists_shows_and_cancels_through_the_cli(alps_node: RegionalNode, cli_certs: tuple[str, str]) -> None:
    start = date.today() + timedelta(days=20)
    end = start + timedelta(days=2)
    booked = _json(alps_node, cli_certs, "book", "argentiere", "argentiere-dorm", "--from", str(start), "--to", str(end), "--party", "3", "--customer", "desk-7", "--key", "cli-1", "--desk")
    assert booked["state"] == "BOOKING_STATE_CONFIRMED"
    assert booked["total_price_cents"] == str(6500 * 3 * 2)
    again = _json(alps_node, cli_certs, "book", "argentiere", "argentiere-dorm", "--from", str(start), "--to", str(end), "--party", "3", "--customer", "desk-7", "--key", "cli-1", "--desk")
    assert again["booking_id"] == booked["booking_id"], "the same --key must not book twice"

    availability = _json(alps_node, cli_certs, "availability", "argentiere", "--resource", "argentiere-dorm", "--from", str(start), "--to", str(end))
    assert [n["confirmed"] for n in availability["resources"][0]["nights"]] == [3, 3]

    listed = _json(alps_node, cli_certs, "bookings", "--basecamp", "argentiere", "--state", "confirmed")
    assert [b["booking_id"] for b in listed] == [booked["booking_id"]]

    shown = _json(alps_node, cli_certs, "show", booked["booking_id"])
    assert [t["to_state"] for t in shown["history"]] == ["BOOKING_STATE_HELD", "BOOKING_STATE_CONFIRMED"]

    cancelled = _json(alps_node, cli_certs, "cancel", booked["booking_id"], "--reason", "guest ill")
    assert cancelled["state"] == "BOOKING_STATE_CANCELLED"
    assert cancelled["history"][-1]["reason"] == "guest ill"


def test_agency_b_cannot_see_confirm_or_cancel_agency_as_booking_through_the_cli(alps_node: RegionalNode, alps_db, cli_certs: tuple[str, str]) -> None:
    """Each agency presents its own pair (``--principal``): B meets A's hold as one that does
    not exist, whatever command it tries, and nothing of A's booking changes; A itself
    sees and confirms it."""
    start = date.today() + timedelta(days=24)
    as_a, as_b = (*cli_certs, "--principal", "agency-a"), (*cli_certs, "--principal", "agency-b")
    held = _json(alps_node, as_a, "book", "argentiere", "argentiere-guide", "--from", str(start), "--to", str(start + timedelta(days=1)), "--customer", "a-guest", "--hold-only")
    booking_id = held["booking_id"]
    row = "SELECT state, version, updated_at, (SELECT count(*) FROM booking_history h WHERE h.booking_id = b.booking_id) AS changes FROM bookings b WHERE booking_id = %(id)s"
    before = query(alps_db.url, row, {"id": booking_id})
    for command in (["show", booking_id], ["confirm", booking_id], ["cancel", booking_id, "--reason", "not yours"]):
        refused = runner.invoke(app, [*as_b, *command, "--target", alps_node.address])
        assert refused.exit_code != 0 and "NOT_FOUND" in refused.output, (command, refused.output)
        assert "Traceback" not in refused.output
    assert booking_id not in [b["booking_id"] for b in _json(alps_node, as_b, "bookings", "--basecamp", "argentiere")]
    assert query(alps_db.url, row, {"id": booking_id}) == before, "a refused command wrote"
    assert booking_id in [b["booking_id"] for b in _json(alps_node, as_a, "bookings", "--basecamp", "argentiere")]
    assert _json(alps_node, as_a, "confirm", booking_id)["state"] == "BOOKING_STATE_CONFIRMED"


def test_cli_reports_refusals_as_status_and_message_without_traceback(alps_node: RegionalNode, cli_certs: tuple[str, str]) -> None:
    start = date.today() + timedelta(days=5)
    result = runner.invoke(
        app,
        [*cli_certs, "book", "argentiere", "argentiere-guide", "--from", str(start), "--to", str(start + timedelta(days=1)), "--party", "9", "--customer", "c", "--target", alps_node.address],
    )
    assert result.exit_code == 2
    assert "INVALID_ARGUMENT" in result.output and "exceeds the capacity 6" in result.output
    assert "Traceback" not in result.output


def test_book_hands_the_stay_to_settlement_and_stuck_lists_it(alps_node: RegionalNode, cli_certs: tuple[str, str]) -> None:
    start = date.today() + timedelta(days=20)
    booked = _json(alps_node, cli_certs, "book", "argentiere", "argentiere-dorm", "--from", str(start), "--to", str(start + timedelta(days=1)), "--customer", "web-1")
    assert (booked["state"], booked["payment"]["state"]) == ("BOOKING_STATE_HELD", "PAYMENT_STATE_AWAITING_PAYMENT")
    assert _json(alps_node, cli_certs, "bookings", "--stuck", "1h") == [], "younger than an hour"
    result = runner.invoke(app, [*cli_certs, "bookings", "--stuck", "soon", "--target", alps_node.address])
    assert result.exit_code == 2 and "--stuck must look like" in result.output


def test_tables_render_for_people(alps_node: RegionalNode, certs: SessionCerts, monkeypatch: pytest.MonkeyPatch) -> None:
    # A wide terminal, set on the CLI's console itself: rich reads COLUMNS once, when the console is
    # made at import, so COLUMNS in this invocation's environment would depend on which test (or
    # which pytest worker's environment) imported the CLI first.
    # (`_width`, not the `width` property: undoing a property would freeze the width it read.)
    monkeypatch.setattr(render.console, "_width", 160)
    # The certificates found through the environment this time, as an operator's shell would set it.
    result = runner.invoke(app, ["basecamps", "--target", alps_node.address], env={"RIDGELINE_CERTS_DIR": certs.dir})
    assert result.exit_code == 0
    assert "Refuge d'Argentière" in result.stdout and "argentiere-guide" in result.stdout


def test_demo_starts_a_node_on_its_own_database_and_books_a_stay(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "ridgeline.deploy.cli", "demo", "--data-dir", str(tmp_path / "demo"), "--listen", "127.0.0.1:0", "--exit"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "COLUMNS": "400"},  # rich wraps a long path mid-word at its default 80 columns
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "listening on 127.0.0.1:" in completed.stdout
    assert "Confirmed" in completed.stdout
    assert "ch_" in completed.stdout, "the tour's booking was charged by the settle flow (its charge id is shown)"
    # Secure by default: the demo made its own CA and pairs, keys private, and toured as the desk over them.
    certs = tmp_path / "demo" / "certs"
    assert f"made a local CA and certificates in {certs}" in " ".join(completed.stdout.split())
    assert {p.name for p in certs.iterdir()} >= {"ca.crt", "ca.key", "node.crt", "node.key", "client.desk.crt", "client.desk.key"}
    assert all(key.stat().st_mode & 0o777 == 0o600 for key in certs.glob("*.key"))
    assert "--insecure" not in completed.stdout + completed.stderr


def test_chaos_list_names_every_drill_and_what_it_acts_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from ridgeline.deploy.cli import drills as cli_drills
    from ridgeline.deploy.drills.chaos import DRILLS

    monkeypatch.setattr(cli_drills, "_console", Console(width=400))  # one line per drill
    result = runner.invoke(app, ["chaos", "list"])
    assert result.exit_code == 0, result.output
    for name, make in DRILLS.items():
        assert f"│ {name} " in result.output and make().acts_on in result.output, name
    assert "runs any of them against the running `ridgeline up`" in result.output
