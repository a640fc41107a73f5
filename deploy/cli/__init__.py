"""``ridgeline``: the operator and desk command line.

Desk commands talk to the cluster through the routing client: ``--target`` (or
RIDGELINE_TARGET) names one or more seed nodes, comma-separated; without it they use the
cluster ``ridgeline up`` runs, else the demo node. ``demo`` starts one node locally,
``up``/``down``/``status`` a whole cluster; ``node`` runs one regional node process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import grpc
import typer
from google.protobuf.message import Message

from ridgeline.deploy.cli import render
from ridgeline.regional.config import NodeConfig
from ridgeline.routing import ClusterClient, ClusterUnreachable, UnknownBasecamp
from ridgeline.v1 import booking_pb2 as pb

if TYPE_CHECKING:
    from ridgeline.deploy.run.node_settlement import SettlementConfig

DEFAULT_TARGET = "127.0.0.1:50051"

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ridgeline: safe bookings for alpine basecamps.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print ratios against a baseline of the same run.")
app.add_typer(bench_app, name="bench")

Target = Annotated[
    str,
    typer.Option("--target", envvar="RIDGELINE_TARGET", help="Seed node(s) host:port, comma-separated (default: the `ridgeline up` cluster, else the demo node)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Deadline for each call, seconds.")]


def _parse_day(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{name} must be a date like 2026-12-01, not {value!r}") from None


def seeds_for(target: str) -> list[str]:
    """The seed addresses a command uses: ``--target``, else the running local cluster, else the demo."""
    from ridgeline.deploy.cluster.local_cluster import state_seeds

    given = [t.strip() for t in target.split(",") if t.strip()]
    return given or state_seeds() or [DEFAULT_TARGET]


@contextmanager
def _client(target: str, timeout: float) -> Iterator[ClusterClient]:
    """A routing client whose failures end the command with the status and message, no traceback."""
    client = ClusterClient(seeds_for(target), timeout_seconds=timeout)
    try:
        yield client
    except grpc.RpcError as error:
        typer.secho(f"error: {error.code().name}: {error.details()}", err=True, fg="red")
        raise typer.Exit(2) from None
    except (ClusterUnreachable, UnknownBasecamp) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(2) from None
    finally:
        client.close()


Reply = TypeVar("Reply", bound=Message | list[pb.Booking])


def _show(json_out: bool, reply: Reply, table: Callable[[Reply], None]) -> None:
    if json_out:
        render.as_json(reply)
    else:
        table(reply)


@app.command()
def basecamps(target: Target = "", json_out: Json = False, timeout: Timeout = 10.0) -> None:
    """List the basecamps and resources of every region."""
    with _client(target, timeout) as client:
        _show(json_out, client.list_basecamps(), render.basecamps)


@app.command()
def availability(
    basecamp: Annotated[str, typer.Argument(help="Basecamp id, e.g. argentiere.")],
    start: Annotated[str, typer.Option("--from", help="First night (YYYY-MM-DD); default today.")] = "",
    end: Annotated[str, typer.Option("--to", help="Check-out day (YYYY-MM-DD); default 7 nights later.")] = "",
    resource: Annotated[str, typer.Option("--resource", help="Only this resource.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Free units per resource and night."""
    first = _parse_day(start, "--from") if start else date.today()
    last = _parse_day(end, "--to") if end else first + timedelta(days=7)
    with _client(target, timeout) as client:
        _show(json_out, client.availability(basecamp, first, last, resource), render.availability)


@app.command()
def book(
    basecamp: Annotated[str, typer.Argument(help="Basecamp id.")],
    resource: Annotated[str, typer.Argument(help="Resource id, e.g. argentiere-dorm.")],
    start: Annotated[str, typer.Option("--from", help="First night (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option("--to", help="Check-out day (YYYY-MM-DD).")],
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    party: Annotated[int, typer.Option("--party", help="Units (beds, places, lockers).")] = 1,
    hold_only: Annotated[bool, typer.Option("--hold-only", help="Place the hold and leave it unconfirmed.")] = False,
    desk: Annotated[bool, typer.Option("--desk", help="Paid at the desk: hold and confirm at once, no settlement.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Return once the payment is settled (within --timeout).")] = False,
    ttl: Annotated[int, typer.Option("--ttl", help="Hold TTL in seconds (0: node default).")] = 0,
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Book a stay: the node charges it and confirms it (Book); or --desk, or --hold-only."""
    first, last = _parse_day(start, "--from"), _parse_day(end, "--to")
    with _client(target, timeout) as client:
        hold_key = key or None
        if not (hold_only or desk):
            booking = client.book(basecamp, resource, first, last, party, customer, hold_ttl_seconds=ttl, wait=wait, idempotency_key=hold_key)
            _show(json_out, booking, render.booking)
            return
        booking = client.place_hold(basecamp, resource, first, last, party, customer, hold_ttl_seconds=ttl, idempotency_key=hold_key)
        if desk and booking.state == pb.BOOKING_STATE_HELD:
            confirm_key = f"{key}:confirm" if key else None
            booking = client.confirm(booking.booking_id, idempotency_key=confirm_key)
        _show(json_out, booking, render.booking)


@app.command()
def bookings(
    basecamp: Annotated[str, typer.Option("--basecamp", help="Only this basecamp.")] = "",
    state: Annotated[str, typer.Option("--state", help="held, confirmed, released, expired or cancelled.")] = "",
    start: Annotated[str, typer.Option("--from", help="With a night on or after this date.")] = "",
    end: Annotated[str, typer.Option("--to", help="With a night before this date.")] = "",
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest first).")] = 50,
    region: Annotated[str, typer.Option("--region", help="Region to list when no --basecamp is given (default: every region).")] = "",
    stuck: Annotated[str, typer.Option("--stuck", help="Only bookings older than this (e.g. 90s, 10m, 2h) still held or awaiting payment.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """List bookings, newest first."""
    from ridgeline.deploy.cli.flows import parse_duration_seconds

    request = pb.ListBookingsRequest(basecamp_id=basecamp, page_size=min(limit, 500), stuck_seconds=parse_duration_seconds(stuck, "--stuck") if stuck else 0)
    if state:
        try:
            request.state = pb.BookingState.Value(f"BOOKING_STATE_{state.upper()}")
        except ValueError:
            raise typer.BadParameter(f"--state must be held, confirmed, released, expired or cancelled, not {state!r}") from None
    if start or end:
        first = _parse_day(start, "--from") if start else date(2000, 1, 1)
        last = _parse_day(end, "--to") if end else first + timedelta(days=366)
        request.nights.start.CopyFrom(pb.Date(year=first.year, month=first.month, day=first.day))
        request.nights.end.CopyFrom(pb.Date(year=last.year, month=last.month, day=last.day))
    with _client(target, timeout) as client:
        regions = [client.region_of(basecamp)] if basecamp else ([region] if region else client.regions())
        found: list[pb.Booking] = []
        for name in regions:
            page = pb.ListBookingsRequest()
            page.CopyFrom(request)
            while len(found) < limit:
                reply = client.list_bookings(page, region=name)
                found.extend(reply.bookings)
                if not reply.next_page_token:
                    break
                page.page_token = reply.next_page_token
        found.sort(key=lambda b: b.created_at.ToDatetime(), reverse=True)
        _show(json_out, found[:limit], render.bookings)


@app.command()
def show(
    booking_id: Annotated[str, typer.Argument(help="Booking id.")],
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """One booking with its full history."""
    with _client(target, timeout) as client:
        _show(json_out, client.get_booking(booking_id), render.booking)


@app.command()
def cancel(
    booking_id: Annotated[str, typer.Argument(help="Booking id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the booking's history.")] = "",
    key: Annotated[str, typer.Option("--key", help="Idempotency key; repeat it to retry safely.")] = "",
    target: Target = "",
    json_out: Json = False,
    timeout: Timeout = 10.0,
) -> None:
    """Cancel a confirmed booking, or release a hold; the units go back on sale."""
    with _client(target, timeout) as client:
        current = client.get_booking(booking_id)
        if current.state == pb.BOOKING_STATE_HELD:
            booking = client.release(booking_id, reason=reason, idempotency_key=key or None)
        else:
            booking = client.cancel(booking_id, reason=reason, idempotency_key=key or None)
        _show(json_out, booking, render.booking)


@app.command()
def node(
    region: Annotated[str, typer.Option("--region", help="Region this node serves (from the cluster file with --cluster).")] = "",
    database_url: Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_DATABASE_URL", help="cockroachdb+psycopg:// URL of the region database.")] = "",
    node_id: Annotated[str, typer.Option("--node-id", help="Name of this node (with --cluster: its entry in the file).")] = "",
    cluster: Annotated[Path | None, typer.Option("--cluster", help="Cluster file: region, database, listen address and seeds come from this node's entry.")] = None,
    listen: Annotated[str, typer.Option("--listen", help="host:port to serve on (port 0: any free port).")] = "127.0.0.1:0",
    workers: Annotated[int, typer.Option("--workers", help="gRPC worker threads and database connections.")] = 16,
    hold_ttl: Annotated[int, typer.Option("--hold-ttl", help="Default hold TTL, seconds.")] = 900,
    sweep_interval: Annotated[float, typer.Option("--sweep-interval", help="Seconds between hold sweeps.")] = 5.0,
    hold_round_max: Annotated[int, typer.Option("--hold-round-max", help="Holds per group-commit round (1: one statement per hold).")] = NodeConfig.hold_round_max,
    prepare: Annotated[bool, typer.Option("--prepare/--no-prepare", help="Migrate and load the sample catalog first.")] = False,
    lease_ttl: Annotated[float, typer.Option("--lease-ttl", help="Basecamp lease TTL, seconds: the longest a dead owner blocks its basecamps.")] = NodeConfig.lease_ttl_seconds,
    heartbeat_interval: Annotated[float, typer.Option("--heartbeat-interval", help="Membership heartbeat and lease renewal period, seconds.")] = NodeConfig.heartbeat_interval_seconds,
    advertise: Annotated[str, typer.Option("--advertise", help="host:port others reach this node at (default: the listen address).")] = "",
    metrics_listen: Annotated[str, typer.Option("--metrics-listen", help="host:port of the Prometheus endpoint (port 0: any free port; 'off': none).")] = "127.0.0.1:0",
    gateway_url: Annotated[str, typer.Option("--gateway-url", envvar="RIDGELINE_GATEWAY_URL", help="Payment gateway base URL: run the settlement loop (needs PREFECT_API_URL).")] = "",
    outbox_dir: Annotated[Path | None, typer.Option("--outbox-dir", help="Mail spool for confirmation messages (default ~/.ridgeline/outbox/REGION).")] = None,
    payment_timeout: Annotated[float, typer.Option("--payment-timeout", help="Seconds per payment gateway attempt.")] = 2.0,
    payment_attempts: Annotated[int, typer.Option("--payment-attempts", help="Attempts per gateway call (same key).")] = 3,
    charge_passes: Annotated[int, typer.Option("--charge-passes", help="Settlement passes with an unknown payment outcome before the hold is released.")] = 3,
    claim_seconds: Annotated[float, typer.Option("--settle-claim", help="Seconds before a claimed settlement whose run died is due again.")] = 30.0,
) -> None:
    """Run one regional node until SIGTERM/SIGINT (prints a READY line once serving)."""
    from ridgeline.deploy.run.region import prepare_region_database
    from ridgeline.regional.booking.catalog import load_catalog

    _configure_logging()
    if cluster is not None:
        config, spec_gateway = _cluster_node_config(cluster, node_id, workers=workers, hold_ttl=hold_ttl, sweep_interval=sweep_interval, hold_round_max=hold_round_max)
        settlement = _settlement(config.region, gateway_url or spec_gateway, outbox_dir, payment_timeout, payment_attempts, charge_passes, claim_seconds)
        _serve(config, settlement)
        return
    if not region or not database_url:
        raise typer.BadParameter("give --region and --database-url, or --cluster FILE --node-id ID")
    config = NodeConfig(
        region=region,
        node_id=node_id or f"{region}-{os.getpid()}",
        database_url=database_url,
        listen_address=listen,
        workers=workers,
        max_concurrent_rpcs=max(64, workers * 4),
        hold_ttl_default_seconds=hold_ttl,
        sweep_interval_seconds=sweep_interval,
        hold_round_max=hold_round_max,
        lease_ttl_seconds=lease_ttl,
        heartbeat_interval_seconds=heartbeat_interval,
        advertise_address=advertise or None,
        metrics_listen_address=None if metrics_listen == "off" else metrics_listen,
    )
    if prepare:
        prepare_region_database(database_url, region, load_catalog(), advance_booking_days=config.advance_booking_days)
    settlement = _settlement(region, gateway_url, outbox_dir, payment_timeout, payment_attempts, charge_passes, claim_seconds)
    _serve(config, settlement)


def _settlement(
    region: str, gateway_url: str, outbox_dir: Path | None, payment_timeout: float, payment_attempts: int, charge_passes: int, claim_seconds: float
) -> SettlementConfig | None:
    """The settlement loop's settings when a gateway is given, else None (no settlement)."""
    if not gateway_url:
        return None
    from ridgeline.deploy.run.node_settlement import settlement_config

    return settlement_config(
        gateway_url, outbox_dir or Path.home() / ".ridgeline" / "outbox" / region,
        payment_timeout=payment_timeout, payment_attempts=payment_attempts, charge_passes=charge_passes, claim_seconds=claim_seconds,
    )


def _serve(config: NodeConfig, settlement: SettlementConfig | None) -> None:
    from ridgeline.deploy.run.node_process import serve_until_signalled
    from ridgeline.regional.node import SchemaMismatch
    from ridgeline.routing.keeper import NodeIdInUse

    try:
        serve_until_signalled(config, settlement=settlement)
    except (OSError, SchemaMismatch, NodeIdInUse) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None


def _cluster_node_config(path: Path, node_id: str, *, workers: int, hold_ttl: int, sweep_interval: float, hold_round_max: int) -> tuple[NodeConfig, str]:
    """``ridgeline node --cluster FILE --node-id ID``: the node as the cluster file describes it,
    and the file's payment gateway URL ("" when it has none)."""
    from ridgeline.deploy.cluster.cluster_file import ClusterFileError, load_cluster_file

    try:
        spec = load_cluster_file(path)
        config = spec.node_config(
            node_id,
            workers=workers,
            max_concurrent_rpcs=max(64, workers * 4),
            hold_ttl_default_seconds=hold_ttl,
            sweep_interval_seconds=sweep_interval,
            hold_round_max=hold_round_max,
        )
    except ClusterFileError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
    if spec.prefect_api_url and not os.environ.get("PREFECT_API_URL"):
        os.environ["PREFECT_API_URL"] = spec.prefect_api_url
    return config, spec.gateway_url or ""


@app.command()
def gateway(
    database_url: Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_GATEWAY_DATABASE_URL", help="cockroachdb+psycopg:// URL of the gateway's own database.")],
    listen: Annotated[str, typer.Option("--listen", help="host:port to serve HTTP on (port 0: any free port).")] = "127.0.0.1:0",
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for injected faults, for reproducible drills.")] = None,
) -> None:
    """Run the local stand-in payment gateway until SIGTERM/SIGINT (prints a READY line once serving)."""
    from sqlalchemy.exc import OperationalError

    from ridgeline.deploy.payment_gateway.server import serve_until_signalled

    _configure_logging()
    try:
        serve_until_signalled(database_url, listen, seed=seed)
    except (OSError, OperationalError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the embedded database keeps its files.")] = Path.home() / ".ridgeline" / "demo",
    region: Annotated[str, typer.Option("--region", help="Region to serve.")] = "eu-alps",
    listen: Annotated[str, typer.Option("--listen", help="host:port for the node.")] = DEFAULT_TARGET,
    tour: Annotated[bool, typer.Option("--tour/--no-tour", help="Book something to show the flow.")] = True,
    serve: Annotated[bool, typer.Option("--serve/--exit", help="Keep serving until Ctrl-C, or exit after the tour.")] = True,
) -> None:
    """Start a region node on an embedded PostgreSQL with the sample catalog."""
    from ridgeline.deploy.cluster.demo import run_demo

    _configure_logging()
    run_demo(data_dir=data_dir, region=region, listen=listen, tour=tour, serve=serve)


def _configure_logging() -> None:
    logging.basicConfig(level=os.environ.get("RIDGELINE_LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


# Benchmarks register themselves on bench_app; cluster, drill, settlement and trek commands on app.
from ridgeline.deploy.bench import cluster_bench as bench_cluster  # noqa: E402,F401
from ridgeline.deploy.bench import holds_bench as bench_holds
from ridgeline.deploy.bench import settlement_bench as bench_settle
from ridgeline.deploy.bench import treks_bench as bench_treks
from ridgeline.deploy.cli import cluster as cli_cluster
from ridgeline.deploy.cli import drills as cli_drills
from ridgeline.deploy.cli import flows as cli_settle
from ridgeline.deploy.cli import trek as cli_trek

