"""``ridgeline flows versions|rollout|retire`` and ``bookings --workflow`` against a real node,
as the SRE (the default principal of these commands) and as a desk (refused)."""

from __future__ import annotations

import json

from certificates import SessionCerts
from drive import night
from typer.testing import CliRunner

from ridgeline.deploy.cli import app
from ridgeline.regional.node import RegionalNode
from ridgeline.routing.client import BookingClient

runner = CliRunner()


def _cli(certs: SessionCerts, node: RegionalNode, *args: str, columns: int = 80):
    return runner.invoke(app, ["--certs-dir", certs.dir, *args, "--target", node.address], env={"COLUMNS": str(columns)})


def test_an_sre_ramps_rolls_back_and_lists_versions_from_the_cli(alps_node: RegionalNode, alps_client: BookingClient, certs: SessionCerts) -> None:
    ramped = _cli(certs, alps_node, "flows", "rollout", "settle@2", "--percent", "100", "--region", "eu-alps")
    assert ramped.exit_code == 0, ramped.output
    assert all(len(line) <= 80 for line in ramped.stdout.splitlines()), "readable at 80 columns"
    assert "settle@2" in ramped.stdout and "100%" in ramped.stdout
    booked = alps_client.book("argentiere", "argentiere-dorm", night(30), night(31), 1, "cli")
    assert booked.workflow == "settle@2"

    listed = json.loads(_cli(certs, alps_node, "flows", "versions", "--json").stdout)
    [alps] = [r for r in listed if r["region"] == "eu-alps"]
    in_flight = {v["version"]: int(v.get("in_flight", 0)) for v in alps["versions"]}
    assert in_flight["settle@2"] == 1, alps

    given = _cli(certs, alps_node, "flows", "retire", "settle@2", "--region", "eu-alps")
    assert given.exit_code == 2 and "FAILED_PRECONDITION" in given.output and "new settle bookings get" in given.output
    back = _cli(certs, alps_node, "flows", "rollout", "settle", "--rollback", "--region", "eu-alps")
    assert back.exit_code == 0, back.output
    in_use = _cli(certs, alps_node, "flows", "retire", "settle@2", "--region", "eu-alps")
    assert in_use.exit_code == 2 and "in flight" in in_use.output, "the next step tells what to do: wait for them to finish"
    both = _cli(certs, alps_node, "flows", "rollout", "settle@2", "--percent", "10", "--rollback")
    assert both.exit_code == 2 and "--percent" in both.output

    shown = json.loads(_cli(certs, alps_node, "bookings", "--workflow", "settle@2", "--region", "eu-alps", "--json").stdout)
    assert [b["booking_id"] for b in shown] == [booked.booking_id]
    desk = runner.invoke(app, ["--certs-dir", certs.dir, "--principal", "desk", "flows", "versions", "--target", alps_node.address])
    assert desk.exit_code == 2 and "PERMISSION_DENIED" in desk.output, "versions are an SRE's"
