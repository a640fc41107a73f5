"""``ridgeline demo``: one regional node on an embedded PostgreSQL, with the sample catalog.

The database lives in ``--data-dir`` and is reused on the next run, so bookings made in
one demo are still there in the next. Beside the node: the stand-in payment gateway (its
own process and database), a lean Prefect server (unless ``PREFECT_API_URL`` points at
one) and the node's settlement loop, so the tour's booking is paid and confirmed by the
settle flow. Ctrl-C or SIGTERM drains the node and stops everything within
:data:`SHUTDOWN_GRACE_SECONDS`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from ridgeline.deploy.payment_gateway.process import GatewayProcess
from ridgeline.deploy.run.node_settlement import NodeSettlement, SettlementConfig
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.prefect_server import PrefectServer
from ridgeline.deploy.run.region import prepare_region_database
from ridgeline.regional.booking.catalog import load_catalog
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.trust.certs import CertsDir, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.private_files import private_dir

_console = Console(stderr=False)


def run_demo(*, data_dir: Path, region: str, listen: str, tour: Callable[[str, Transport], None] | None, serve: bool, insecure: bool = False) -> None:
    """Starts the database and the node, runs ``tour`` (if any) with the node's address and
    the local desk's transport, then serves or exits.

    Security is the default: the demo makes its own CA and certificates in
    ``data_dir/certs`` on first start (``ridgeline`` commands find them there); ``insecure``
    is the explicit, logged opt-out.

    The tour is the CLI's: it shows each reply with the CLI's tables, and nothing in
    deploy/cluster imports the CLI (the CLI imports this room).
    """
    stop = _stop_on_signal() if serve else threading.Event()
    catalog = load_catalog()
    if not catalog.in_region(region):
        raise SystemExit(f"region {region!r} has no basecamps; choose one of {', '.join(catalog.regions)}")
    private_dir(data_dir)
    certs = CertsDir(data_dir / "certs")
    if not insecure and ensure_local(certs):
        _console.print(f"made a local CA and certificates in {certs.path}")
    desk = Transport.insecure() if insecure else Transport.from_dir(certs.path, principal="desk")
    database = PostgresServer(data_dir / "postgres")
    database.start()
    node: RegionalNode | None = None
    gateway: GatewayProcess | None = None
    prefect: PrefectServer | None = None
    settler: NodeSettlement | None = None
    try:
        url = database.create_database(f"ridgeline_{region.replace('-', '_')}")
        config = NodeConfig(
            region=region, node_id=f"{region}-demo", database_url=url, listen_address=listen,
            certs_dir=None if insecure else str(certs.path), insecure=insecure,
        )
        basecamps = prepare_region_database(url, region, catalog, advance_booking_days=config.advance_booking_days)
        try:
            node = RegionalNode(config)
        except OSError as error:
            raise SystemExit(f"ridgeline demo: {error} (choose another with --listen)") from None
        node.start()
        transport = node.transport  # the node's pair: the gateway admits nodes to pay
        gateway = GatewayProcess(database.create_database("ridgeline_gateway"), transport)
        if not os.environ.get("PREFECT_API_URL"):
            prefect = PrefectServer(database)
            prefect.start()
            os.environ.update(prefect.client_environment())
        settler = NodeSettlement(
            SettlementConfig(gateway.url, transport, data_dir / "outbox"), node_id=config.node_id, database_url=url, fence=node.keeper.ownership.fence,
            booked=node.booked,
        )
        settler.start()
        _console.print(
            f"[bold green]Ridgeline demo[/]: region [bold]{region}[/] ({basecamps} basecamps) "
            f"on PostgreSQL ({database.engine_used}, port {database.port}, data in {data_dir})"
        )
        _console.print(f"node {config.node_id} listening on [bold]{node.address}[/]")
        _console.print(f"payment gateway {gateway.url}, Prefect API {os.environ['PREFECT_API_URL']}, mail spool {data_dir / 'outbox'}")
        if tour is not None:
            tour(node.address, desk)
        if serve:
            # The CLI finds the demo's certificates by itself when --data-dir is the default one.
            cli = "ridgeline --insecure" if insecure else f"ridgeline --certs-dir {certs.path}"
            _console.print(
                "\nTry, in another terminal:\n"
                f"  {cli} basecamps --target {node.address}\n"
                f"  {cli} availability argentiere --target {node.address}\n"
                f"  {cli} book argentiere argentiere-dorm --from <date> --to <date> --party 2 --customer you --wait --target {node.address}\n"
                f"  {cli} bookings --stuck 10m --target {node.address}\n"
                "Ctrl-C stops the node and the database."
            )
            while not stop.wait(1.0):
                pass
    finally:
        _shut_down(settler, node, prefect, gateway, database)


#: How long ``demo`` takes at most to stop after SIGTERM or Ctrl-C, well within the 15 s
#: Docker and Kubernetes grant before SIGKILL: settlement and the node's drain, in parallel,
#: then the gateway and Prefect, in parallel, then the database. A part that overstays its
#: share gets SIGKILL; and should SIGKILL reach demo itself first, its children still stop
#: (``deploy/run/parent_death.py``).
SHUTDOWN_GRACE_SECONDS = 10.0
_DRAIN_SECONDS = 4.0  # in-flight calls and settlement passes; a pass cut short is resumed on the next start
_SERVICE_STOP_SECONDS = 2.0  # SIGTERM, then SIGKILL after this


def _shut_down(settler: NodeSettlement | None, node: RegionalNode | None, prefect: PrefectServer | None, gateway: GatewayProcess | None, database: PostgresServer) -> None:
    """Stops everything within :data:`SHUTDOWN_GRACE_SECONDS`, the database last."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
    _in_parallel([settler.stop] if settler else [], seconds=_DRAIN_SECONDS, also=[lambda: node.stop(grace_seconds=_DRAIN_SECONDS / 2)] if node else [])
    _in_parallel(
        [lambda: prefect.stop(_SERVICE_STOP_SECONDS)] if prefect else [], seconds=2 * _SERVICE_STOP_SECONDS,
        also=[lambda: gateway.stop(_SERVICE_STOP_SECONDS)] if gateway else [],
    )
    database.stop(timeout_seconds=max(deadline - time.monotonic(), 1.0))


def _in_parallel(stops: list[Callable[[], object]], *, seconds: float, also: list[Callable[[], object]]) -> None:
    """Runs the stops side by side and waits for them at most ``seconds``: one that overstays
    is left to die with the process (what it guards is crash-safe in the database)."""
    threads = [threading.Thread(target=stop, daemon=True) for stop in stops + also]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.0))


def _stop_on_signal() -> threading.Event:
    """Set by SIGTERM or SIGINT; taken over before anything starts, so a signal during
    start-up still stops everything in order instead of killing demo mid-way."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
