"""``ridgeline demo``: one regional node on an embedded PostgreSQL, with the sample catalog.

The database lives in ``--data-dir`` and is reused on the next run, so bookings made in
one demo are still there in the next. Beside the node: the stand-in payment gateway (its
own process and database), a lean Prefect server (unless ``PREFECT_API_URL`` points at
one) and the node's settlement loop, so the tour's booking is paid and confirmed by the
settle flow. Ctrl-C drains the node and stops everything.
"""

from __future__ import annotations

import os
import signal
import threading
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
            SettlementConfig(gateway.url, transport, data_dir / "outbox"), node_id=config.node_id, database_url=url, fence=node.keeper.ownership.fence
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
            _wait_for_signal()
    finally:
        if settler is not None:
            settler.stop()
        if node is not None:
            node.stop()
        if prefect is not None:
            prefect.stop()
        if gateway is not None:
            gateway.stop()
        database.stop()


def _wait_for_signal() -> None:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
