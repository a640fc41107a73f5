"""``ridgeline coordinator`` and ``ridgeline trek plan|show|cancel|list``: cross-region treks.

Planner commands talk to the coordinator over gRPC (``--target``, or
RIDGELINE_COORDINATOR); gRPC failures end the command with the status and message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import grpc
import typer

from ridgeline.deploy.cli import Json, Timeout, _configure_logging, _parse_day, app, render, render_trek
from ridgeline.routing import night_range
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

#: The coordinator of the built-in local cluster (`ridgeline up`).
DEFAULT_COORDINATOR = "127.0.0.1:26070"

trek_app = typer.Typer(no_args_is_help=True, help="Cross-region treks: every leg booked and paid, or none.")
app.add_typer(trek_app, name="trek")

Coordinator = Annotated[
    str, typer.Option("--target", envvar="RIDGELINE_COORDINATOR", help="Coordinator address host:port (default: the `ridgeline up` cluster's).")
]


@contextmanager
def _stub(target: str) -> Iterator[tpb_grpc.TrekServiceStub]:
    from ridgeline.deploy.cluster.local_cluster import state_coordinator

    channel = grpc.insecure_channel(target or state_coordinator() or DEFAULT_COORDINATOR)
    try:
        yield tpb_grpc.TrekServiceStub(channel)
    except grpc.RpcError as error:
        typer.secho(f"error: {error.code().name}: {error.details()}", err=True, fg="red")
        raise typer.Exit(2) from None
    finally:
        channel.close()


def parse_leg(spec: str) -> tpb.TrekLeg:
    """``BASECAMP:RESOURCE:FROM:TO[:PARTY]``, e.g. ``argentiere:argentiere-dorm:2026-12-20:2026-12-22:2``."""
    parts = spec.split(":")
    if len(parts) not in (4, 5):
        raise typer.BadParameter(f"--leg must be BASECAMP:RESOURCE:FROM:TO[:PARTY], not {spec!r}")
    start, end = _parse_day(parts[2], "--leg FROM"), _parse_day(parts[3], "--leg TO")
    party = parts[4] if len(parts) == 5 else "1"
    if not party.isdigit():
        raise typer.BadParameter(f"--leg PARTY must be a number, not {party!r}")
    return tpb.TrekLeg(basecamp_id=parts[0], resource_id=parts[1], nights=night_range(start, end), party_size=int(party))


def _show_trek(json_out: bool, trek: tpb.Trek) -> None:
    if json_out:
        render.as_json(trek)
    else:
        render_trek.trek(trek)


@trek_app.command()
def plan(
    legs: Annotated[list[str], typer.Option("--leg", help="BASECAMP:RESOURCE:FROM:TO[:PARTY]; repeat for each leg, in route order.")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Return once the trek is settled (or the timeout passes).")] = True,
    target: Coordinator = "",
    json_out: Json = False,
    timeout: Timeout = 30.0,
) -> None:
    """Book every leg of a trek and charge it once, or book nothing."""
    request = tpb.PlanTrekRequest(idempotency_key=key or str(uuid.uuid4()), customer_id=customer, legs=[parse_leg(s) for s in legs], wait=wait)
    with _stub(target) as stub:
        _show_trek(json_out, stub.PlanTrek(request, timeout=timeout))


@trek_app.command()
def show(trek_id: Annotated[str, typer.Argument(help="Trek id.")], target: Coordinator = "", json_out: Json = False, timeout: Timeout = 10.0) -> None:
    """One trek: its legs, decision, charges and timings."""
    with _stub(target) as stub:
        _show_trek(json_out, stub.GetTrek(tpb.GetTrekRequest(trek_id=trek_id), timeout=timeout))


@trek_app.command()
def cancel(
    trek_id: Annotated[str, typer.Argument(help="Trek id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the trek's record.")] = "",
    target: Coordinator = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Abort an undecided trek, or cancel every leg of a committed one and refund it."""
    with _stub(target) as stub:
        _show_trek(json_out, stub.CancelTrek(tpb.CancelTrekRequest(trek_id=trek_id, reason=reason), timeout=timeout))


@trek_app.command(name="list")
def list_treks(
    state: Annotated[str, typer.Option("--state", help="preparing, committing, committed, aborting, aborted, cancelling or cancelled.")] = "",
    stuck: Annotated[int, typer.Option("--stuck", help="Only unfinished treks older than this many seconds.")] = 0,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest first).")] = 50,
    target: Coordinator = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """List treks, newest first."""
    request = tpb.ListTreksRequest(stuck_after_seconds=stuck, page_size=min(max(limit, 1), 500))
    if state:
        try:
            request.state = tpb.TrekState.Value(f"TREK_STATE_{state.upper()}")
        except ValueError:
            raise typer.BadParameter(f"--state {state!r} is not a trek state") from None
    with _stub(target) as stub:
        reply = stub.ListTreks(request, timeout=timeout)
    if json_out:
        render.as_json(list(reply.treks))
    else:
        render_trek.treks(reply.treks)


@app.command()
def coordinator(
    database_url: Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_COORDINATOR_DATABASE_URL", help="cockroachdb+psycopg:// URL of the coordinator's own database.")] = "",
    region_targets: Annotated[list[str] | None, typer.Option("--region-target", help="REGION=host:port of a node serving the region (a seed of the routing client); repeat per region.")] = None,
    gateway_url: Annotated[str, typer.Option("--gateway-url", envvar="RIDGELINE_GATEWAY_URL", help="Payment gateway base URL.")] = "",
    listen: Annotated[str, typer.Option("--listen", help="host:port to serve on (port 0: any free port).")] = "127.0.0.1:0",
    cluster: Annotated[Path | None, typer.Option("--cluster", help="Cluster file: seeds, gateway, the coordinator's listen and metrics addresses and database come from it.")] = None,
    metrics_listen: Annotated[str, typer.Option("--metrics-listen", help="host:port of the Prometheus endpoint (port 0: any free port).")] = "127.0.0.1:0",
    via: Annotated[list[str] | None, typer.Option("--via", help="NODE=PROXY: reach the node at host:port NODE through host:port PROXY (a fault proxy for drills); repeatable.")] = None,
    prepare_timeout: Annotated[float, typer.Option("--prepare-timeout", help="Seconds every leg has to prepare.")] = 5.0,
    decision_grace: Annotated[float, typer.Option("--decision-grace", help="Seconds a prepared leg waits past the prepare deadline before asking.")] = 30.0,
    redrive_interval: Annotated[float, typer.Option("--redrive-interval", help="Seconds between passes over unfinished treks.")] = 2.0,
) -> None:
    """Run the global trek coordinator until SIGTERM/SIGINT (prints a READY line once serving)."""
    from sqlalchemy.exc import OperationalError

    from ridgeline.deploy.run.coordinator_process import serve_until_signalled
    from ridgeline.global_coordinator.protocol import CoordinatorConfig

    targets: dict[str, str] = {}
    for spec in region_targets or []:
        region, sep, address = spec.partition("=")
        if not sep or not region or ":" not in address:
            raise typer.BadParameter(f"--region-target must be REGION=host:port, not {spec!r}")
        targets[region] = address
    seeds = list(targets.values())
    if cluster is not None:
        from ridgeline.deploy.cluster.cluster_file import ClusterFileError, load_cluster_file

        try:
            spec_file = load_cluster_file(cluster)
        except ClusterFileError as error:
            raise typer.BadParameter(str(error)) from None
        seeds = seeds or [address for addresses in spec_file.seeds().values() for address in addresses]
        gateway_url = gateway_url or spec_file.gateway_url or ""
        database_url = database_url or spec_file.coordinator_database_url or ""
        if listen == "127.0.0.1:0" and spec_file.coordinator_listen:
            listen = spec_file.coordinator_listen
        if metrics_listen == "127.0.0.1:0" and spec_file.coordinator_metrics:
            metrics_listen = spec_file.coordinator_metrics
    if not (database_url and gateway_url and seeds):
        raise typer.BadParameter("the coordinator needs --database-url, --gateway-url and --region-target (or a --cluster file naming them)")
    _configure_logging()
    config = CoordinatorConfig(
        advertise_target="", prepare_timeout_seconds=prepare_timeout, decision_grace_seconds=decision_grace, redrive_interval_seconds=redrive_interval
    )
    try:
        serve_until_signalled(database_url, listen, seeds, gateway_url, config, metrics_listen=metrics_listen, dial=_pairs(via or [], "--via"))
    except (OSError, OperationalError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None


def _pairs(items: list[str], option: str) -> dict[str, str]:
    """``A=B`` options as a mapping."""
    pairs = {}
    for item in items:
        left, sep, right = item.partition("=")
        if not sep or ":" not in left or ":" not in right:
            raise typer.BadParameter(f"{option} takes host:port=host:port, not {item!r}")
        pairs[left] = right
    return pairs
