"""Commands that run one process until SIGTERM/SIGINT: ``node``, ``gateway``, ``coordinator``,
``prefect-server``, and ``demo`` (a node with its gateway and Prefect on an embedded PostgreSQL).

Each prints a READY line once serving; that is how ``ridgeline up``, the benchmarks and
the tests start them as children (``python -m ridgeline.deploy.cli node …``). The heavy
imports (the node, SQLAlchemy, Prefect) are inside the commands: every other command
loads this module too.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ridgeline.deploy.cli import options, render
from ridgeline.deploy.cli.options import DEFAULT_TARGET, configure_logging
from ridgeline.regional.config import COORDINATOR_TARGETS_MAX, NodeConfig
from ridgeline.routing.client import BookingClient
from ridgeline.trust.credentials import Transport

if TYPE_CHECKING:
    from ridgeline.deploy.run.node_settlement import SettlementConfig

#: Top-level commands; ``ridgeline.deploy.cli`` merges them into ``ridgeline``.
commands = typer.Typer()


@commands.command()
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
    charge_passes: Annotated[int, typer.Option("--charge-passes", envvar="RIDGELINE_CHARGE_PASSES", help="Settlement passes with an unknown payment outcome before the hold is released.")] = 3,
    claim_seconds: Annotated[float, typer.Option("--settle-claim", help="Seconds before a claimed settlement whose run died is due again.")] = 30.0,
    coordinators: Annotated[
        list[str] | None,
        typer.Option("--coordinator", help="host:port of the cluster's trek coordinator, the only one whose legs this node prepares (repeatable; with --cluster: its [coordinator] listen)."),
    ] = None,
    workflows: Annotated[
        str, typer.Option("--workflows", help="Workflow versions this node runs, comma-separated (fewer only to stand in for an older node).")
    ] = ",".join(NodeConfig.workflows),
) -> None:
    """Run one regional node until SIGTERM/SIGINT (prints a READY line once serving)."""
    from ridgeline.deploy.run.region import prepare_region_database
    from ridgeline.regional.booking.catalog import load_catalog

    configure_logging()
    if cluster is not None:
        if coordinators:
            raise typer.BadParameter("with --cluster, the cluster file's [coordinator] listen names the coordinator; drop --coordinator")
        config, spec_gateway = _cluster_node_config(cluster, node_id, workers=workers, hold_ttl=hold_ttl, sweep_interval=sweep_interval, hold_round_max=hold_round_max)
        settlement = _settlement(config.region, gateway_url or spec_gateway, outbox_dir, payment_timeout, payment_attempts, charge_passes, claim_seconds)
        _serve(dataclasses.replace(config, workflows=_workflows(workflows)), settlement)
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
        coordinator_targets=_coordinator_targets(coordinators or []),
        workflows=_workflows(workflows),
    )
    if prepare:
        prepare_region_database(database_url, region, load_catalog(), advance_booking_days=config.advance_booking_days)
    settlement = _settlement(region, gateway_url, outbox_dir, payment_timeout, payment_attempts, charge_passes, claim_seconds)
    _serve(config, settlement)


def _workflows(listed: str) -> tuple[str, ...]:
    """``--workflows`` values, checked against the versions this code knows."""
    from ridgeline.regional.workflows.versions import KNOWN

    named = tuple(dict.fromkeys(v.strip() for v in listed.split(",") if v.strip()))
    unknown = [v for v in named if v not in KNOWN]
    if unknown or not named:
        raise typer.BadParameter(f"--workflows takes versions of {', '.join(KNOWN)}; not {', '.join(unknown) or 'nothing'}")
    return named


def _coordinator_targets(targets: list[str]) -> tuple[str, ...]:
    """``--coordinator`` values, checked: the node dials these and no other."""
    for target in targets:
        host, sep, port = target.rpartition(":")
        if not (sep and host and port.isdigit()):
            raise typer.BadParameter(f"--coordinator must be host:port, not {target!r}")
    if len(set(targets)) > COORDINATOR_TARGETS_MAX:
        raise typer.BadParameter(f"at most {COORDINATOR_TARGETS_MAX} --coordinator addresses")
    return tuple(dict.fromkeys(targets))


def _settlement(
    region: str, gateway_url: str, outbox_dir: Path | None, payment_timeout: float, payment_attempts: int, charge_passes: int, claim_seconds: float
) -> SettlementConfig | None:
    """The settlement loop's settings when a gateway is given, else None (no settlement)."""
    if not gateway_url:
        return None
    from ridgeline.deploy.run.node_settlement import settlement_config

    # The node pays as itself: the gateway admits the node role to charge and refund.
    return settlement_config(
        gateway_url, options.node_transport("the node's settlement"), outbox_dir or Path.home() / ".ridgeline" / "outbox" / region,
        payment_timeout=payment_timeout, payment_attempts=payment_attempts, charge_passes=charge_passes, claim_seconds=claim_seconds,
    )


def _serve(config: NodeConfig, settlement: SettlementConfig | None) -> None:
    from ridgeline.deploy.run.node_process import serve_until_signalled
    from ridgeline.regional.node import SchemaMismatch
    from ridgeline.routing.keeper import NodeIdInUse
    from ridgeline.trust.certs import CertificateError

    certs_dir, insecure = options.serving_certs()
    config = dataclasses.replace(config, certs_dir=certs_dir, insecure=insecure)
    try:
        serve_until_signalled(config, settlement=settlement)
    except (OSError, SchemaMismatch, NodeIdInUse, CertificateError) as error:
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


@commands.command()
def gateway(
    database_url: Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_GATEWAY_DATABASE_URL", help="cockroachdb+psycopg:// URL of the gateway's own database.")],
    listen: Annotated[str, typer.Option("--listen", help="host:port to serve HTTP on (port 0: any free port).")] = "127.0.0.1:0",
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for injected faults, for reproducible drills.")] = None,
) -> None:
    """Run the local stand-in payment gateway until SIGTERM/SIGINT (prints a READY line once serving)."""
    from sqlalchemy.exc import OperationalError

    from ridgeline.deploy.payment_gateway.server import serve_until_signalled

    configure_logging()
    # HTTPS with the node pair of the global --certs-dir, callers need a client
    # certificate; plain HTTP only with the global --insecure.
    transport = options.node_transport("the payment gateway")
    try:
        serve_until_signalled(database_url, listen, transport, seed=seed)
    except (OSError, OperationalError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None


@commands.command()
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where the embedded database keeps its files.")] = Path.home() / ".ridgeline" / "demo",
    region: Annotated[str, typer.Option("--region", help="Region to serve.")] = "eu-alps",
    listen: Annotated[str, typer.Option("--listen", help="host:port for the node.")] = DEFAULT_TARGET,
    tour: Annotated[bool, typer.Option("--tour/--no-tour", help="Book something to show the flow.")] = True,
    serve: Annotated[bool, typer.Option("--serve/--exit", help="Keep serving until Ctrl-C, or exit after the tour.")] = True,
) -> None:
    """Start a region node on an embedded PostgreSQL with the sample catalog."""
    from ridgeline.deploy.cluster.demo import run_demo

    configure_logging()
    run_demo(data_dir=data_dir, region=region, listen=listen, tour=_tour if tour else None, serve=serve, insecure=options.SECURITY.insecure)


def _tour(address: str, transport: Transport) -> None:
    """Books a stay at the region's first basecamp, as the local desk, and shows each step."""
    with BookingClient(address, transport=transport, timeout_seconds=30) as client:
        camp = client.list_basecamps().basecamps[0]
        resource = camp.resources[0]
        first = datetime.now(timezone.utc).date() + timedelta(days=14)
        last = first + timedelta(days=2)
        render.console.rule(f"Availability at {camp.name}")
        render.availability(client.availability(camp.basecamp_id, first, last, resource.resource_id))
        customer = f"demo-{uuid.uuid4().hex[:6]}"
        booked = client.book(camp.basecamp_id, resource.resource_id, first, last, 2, customer, wait=True)
        render.console.rule("Confirmed: booked (2 units, 2 nights), charged and confirmed by the settle flow")
        render.booking(booked)
        render.availability(client.availability(camp.basecamp_id, first, last, resource.resource_id))


@commands.command("prefect-server")
def prefect_server(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where its PostgreSQL keeps its files.")] = Path.home() / ".ridgeline" / "prefect",
) -> None:
    """Run a lean, PostgreSQL-backed Prefect server until SIGTERM/SIGINT (prints READY prefect URL).

    Its API asks for the secret in ``<data dir>/home/api-auth``: give it to the nodes as
    PREFECT_API_AUTH_STRING."""
    from ridgeline.deploy.run.postgres import PostgresServer
    from ridgeline.deploy.run.prefect_server import AUTH_FILE, PrefectServer
    from ridgeline.deploy.run.termination import Termination

    database = PostgresServer(data_dir / "postgres")
    database.start()
    try:
        with PrefectServer(database, home=data_dir / "home") as server:
            print(f"READY prefect {server.api_url} (PREFECT_API_AUTH_STRING is in {server.home / AUTH_FILE})", flush=True)
            Termination().wait()
    finally:
        database.stop()


@commands.command()
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
    node_id: Annotated[str, typer.Option("--node-id", help="This coordinator's id, the leader lease's holder name (with --cluster: its entry; default: the first).")] = "",
    lease_ttl: Annotated[
        float, typer.Option("--lease-ttl", show_default=False, help="Leader lease TTL, seconds: the longest a dead leader stops treks (default 2, or lease_ttl_seconds of the cluster file's coordinator table).")
    ] = 0.0,
    heartbeat_interval: Annotated[
        float, typer.Option("--heartbeat-interval", show_default=False, help="Leader lease renewal period, seconds (default 0.5, or the cluster file's heartbeat_interval_seconds).")
    ] = 0.0,
) -> None:
    """Run a trek coordinator until SIGTERM/SIGINT (prints a READY line once serving).

    Several may run over one decision log: one leads, the others follow and take over."""
    from sqlalchemy.exc import OperationalError

    from ridgeline.deploy.cluster.coordinator_spec import DEFAULT_COORDINATOR_ID, CoordinatorTiming
    from ridgeline.deploy.run.coordinator_process import serve_until_signalled
    from ridgeline.global_coordinator.protocol import CoordinatorConfig

    targets: dict[str, str] = {}
    for spec in region_targets or []:
        region, sep, address = spec.partition("=")
        if not sep or not region or ":" not in address:
            raise typer.BadParameter(f"--region-target must be REGION=host:port, not {spec!r}")
        targets[region] = address
    seeds = list(targets.values())
    advertise = ""  # the address it is bound to
    timing = CoordinatorTiming()
    if cluster is not None:
        from ridgeline.deploy.cluster.cluster_file import ClusterFileError, load_cluster_file

        try:
            spec_file = load_cluster_file(cluster)
        except ClusterFileError as error:
            raise typer.BadParameter(str(error)) from None
        seeds = seeds or [address for addresses in spec_file.seeds().values() for address in addresses]
        gateway_url = gateway_url or spec_file.gateway_url or ""
        database_url = database_url or spec_file.coordinator_database_url or ""
        if spec_file.coordinators():
            try:
                mine = spec_file.coordinator(node_id) if node_id else spec_file.coordinators()[0]
            except ClusterFileError as error:
                raise typer.BadParameter(str(error)) from None
            node_id = mine.node_id
            # Legs name the coordinator by the address the nodes know it by (the file's), even
            # when it binds elsewhere (0.0.0.0 behind a Kubernetes Service): nodes refuse others.
            advertise = mine.listen
            listen = mine.listen if listen == "127.0.0.1:0" else listen
            metrics_listen = mine.metrics if metrics_listen == "127.0.0.1:0" and mine.metrics else metrics_listen
            timing = spec_file.coordinator_timing
    if not (database_url and gateway_url and seeds):
        raise typer.BadParameter("the coordinator needs --database-url, --gateway-url and --region-target (or a --cluster file naming them)")
    configure_logging()
    config = CoordinatorConfig(
        advertise_target=advertise, prepare_timeout_seconds=prepare_timeout, decision_grace_seconds=decision_grace, redrive_interval_seconds=redrive_interval,
        node_id=node_id or DEFAULT_COORDINATOR_ID, lease_ttl_seconds=lease_ttl or timing.lease_ttl_seconds,
        heartbeat_interval_seconds=heartbeat_interval or timing.heartbeat_interval_seconds,
    )  # fmt: skip
    if not 0 < config.heartbeat_interval_seconds * 2 <= config.lease_ttl_seconds:
        raise typer.BadParameter("--lease-ttl must be at least twice --heartbeat-interval")
    transport = options.node_transport("the trek coordinator")
    try:
        serve_until_signalled(database_url, listen, seeds, gateway_url, config, transport=transport, metrics_listen=metrics_listen, dial=_pairs(via or [], "--via"))
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
