"""``ridgeline ops``: actions and reads through OperatorService, in 80-column tables or JSON."""

from __future__ import annotations

import json

from conftest import Cluster
from drive import night
from typer.testing import CliRunner

from ridgeline.deploy.cli import app
from ridgeline.routing import requests

runner = CliRunner()


def test_ops_commands_release_a_hold_list_it_and_tell_its_timeline_in_80_columns(operated: Cluster, certs) -> None:
    _, booking = operated.stubs("desk")
    held = booking.PlaceHold(requests.hold_request("argentiere", "argentiere-dorm", night(90), night(91), 1, "cli", hold_ttl_seconds=600), timeout=30)
    base = [*certs.cli_args, "ops"]
    target = ["--target", operated.node.address]
    listed = runner.invoke(app, [*base, "in-flight", "stuck", "--basecamp", "argentiere", *target])
    assert listed.exit_code == 0, listed.output
    assert held.booking_id in listed.stdout and max(map(len, listed.stdout.splitlines())) <= 80
    released = runner.invoke(app, [*base, "release", held.booking_id, "--key", "cli-1", "--reason", "by cli", *target, "--json"])
    assert released.exit_code == 0, released.output
    answer = json.loads(released.stdout)
    assert (answer["result"], answer["booking"]["state"], answer["actor"]) == ("ACTION_RESULT_APPLIED", "BOOKING_STATE_RELEASED", "sre:sre")
    repeat = json.loads(runner.invoke(app, [*base, "release", held.booking_id, "--key", "cli-1", "--reason", "by cli", *target, "--json"]).stdout)
    assert repeat["action_id"] == answer["action_id"]
    story = runner.invoke(app, [*base, "timeline", held.booking_id, *target])
    assert story.exit_code == 0, story.output
    assert "operator_action" in story.stdout and "sre:sre" in story.stdout and max(map(len, story.stdout.splitlines())) <= 80
    refused = runner.invoke(app, [*base, "release", held.booking_id, "--as", "agency-a", "--key", "cli-2", *target])
    # The routed client looks the booking up first, which an agency may not see: refused before any action.
    assert refused.exit_code == 2 and refused.output.startswith("error: NOT_FOUND"), refused.output
