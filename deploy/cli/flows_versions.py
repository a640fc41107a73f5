"""``ridgeline flows versions|rollout|retire``: workflow versions as an SRE operation.

Each acts through ClusterService on one node of each region (every region has its own
rollout state in its own database), as the ``sre`` principal by default: the
authorization table admits no other role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from ridgeline.deploy.cli import render
from ridgeline.deploy.cli.options import Json, Target, Timeout, cluster_client
from ridgeline.routing.client import ClusterClient
from ridgeline.v1 import cluster_pb2 as cpb
from ridgeline.v1 import cluster_pb2_grpc as cpb_grpc

Region = Annotated[str, typer.Option("--region", help="Only this region (default: every region).")]
Call = Callable[[cpb_grpc.ClusterServiceStub], cpb.WorkflowVersions]


def register(app: typer.Typer) -> None:
    """Adds the commands to the ``flows`` group."""
    app.command("versions")(versions)
    app.command("rollout")(rollout)
    app.command("retire")(retire)


def versions(region: Region = "", target: Target = "", json_out: Json = False, timeout: Timeout = 10.0) -> None:
    """Versions each node can run, bookings in flight per version, and the rollouts."""
    _each_region(region, target, timeout, json_out, lambda stub: stub.ListWorkflowVersions(cpb.ListWorkflowVersionsRequest(), timeout=timeout))


def rollout(
    version: Annotated[str, typer.Argument(help="The version new bookings get, e.g. settle@2 (with --rollback: its workflow).")],
    percent: Annotated[int, typer.Option("--percent", help="Share of new bookings, by request key: 1..100.")] = 0,
    rollback: Annotated[bool, typer.Option("--rollback", help="New bookings return to the previous version; in-flight ones finish on theirs.")] = False,
    region: Region = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Ramp a workflow version for new bookings (10, 50, 100 %), or roll the ramp back."""
    if rollback == bool(percent):
        raise typer.BadParameter("give --percent 1..100 to ramp, or --rollback (without --percent)")
    request = cpb.SetRolloutRequest(version=version, percent=percent, rollback=rollback)
    _each_region(region, target, timeout, json_out, lambda stub: stub.SetRollout(request, timeout=timeout))


def retire(
    version: Annotated[str, typer.Argument(help="A version nothing in flight uses, e.g. settle@1.")],
    region: Region = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Retire a version: refused while a booking in flight runs it or a rollout gives it."""
    request = cpb.RetireWorkflowVersionRequest(version=version)
    _each_region(region, target, timeout, json_out, lambda stub: stub.RetireWorkflowVersion(request, timeout=timeout))


def _each_region(region: str, target: str, timeout: float, json_out: bool, call: Call) -> None:
    with cluster_client(target, timeout, principal="sre") as client:
        replies = [call(cpb_grpc.ClusterServiceStub(client.channel(_node_of(client, name)))) for name in ([region] if region else client.regions())]
    if json_out:
        render.as_json(replies)
        return
    for reply in replies:
        _show(reply)


def _node_of(client: ClusterClient, region: str) -> str:
    for info in client.cluster_info():
        if info.region == region and info.members:
            return info.members[0].address
    typer.secho(f"error: no live node of region {region!r} answered; check `ridgeline status`", err=True, fg="red")
    raise typer.Exit(2)


def _show(reply: cpb.WorkflowVersions) -> None:
    table = Table(title=f"Workflow versions in {reply.region}")
    for column in ("version", "in flight", "nodes that run it", "retired"):
        table.add_column(column, no_wrap=column == "version")
    for v in reply.versions:
        table.add_row(v.version, str(v.in_flight), ", ".join(v.nodes) or "none", "yes" if v.retired else "")
    render.console.print(table)
    rollouts = Table(title="Rollouts (new bookings)")
    for column in ("workflow", "target", "previous", "percent", "changed by"):
        rollouts.add_column(column)
    for r in reply.rollouts:
        rollouts.add_row(r.workflow, r.target, r.previous, f"{r.percent}%", r.changed_by)
    render.console.print(rollouts)
