"""Settlement commands: ``ridgeline prefect-server`` and ``ridgeline flows sweep|reconcile``.

Registered on the main typer app by cli.py. The flow commands run one flow run in this
process against a region database and the gateway, for operators after an incident;
nodes run the same flows on their own loop.
"""

from __future__ import annotations

import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ridgeline.deploy.cli import app

flows_app = typer.Typer(no_args_is_help=True, help="Run one settlement flow now (needs PREFECT_API_URL).")
app.add_typer(flows_app, name="flows")

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_DATABASE_URL", help="Region database URL.")]
GatewayUrl = Annotated[str, typer.Option("--gateway-url", envvar="RIDGELINE_GATEWAY_URL", help="Payment gateway base URL.")]


def parse_duration_seconds(value: str, name: str) -> int:
    """``90``, ``90s``, ``10m``, ``2h`` or ``1d`` as seconds."""
    match = _DURATION.match(value.strip())
    if match is None:
        raise typer.BadParameter(f"{name} must look like 90s, 10m, 2h or 1d, not {value!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@app.command("prefect-server")
def prefect_server(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Where its PostgreSQL keeps its files.")] = Path.home() / ".ridgeline" / "prefect",
) -> None:
    """Run a lean, PostgreSQL-backed Prefect server until SIGTERM/SIGINT (prints READY prefect URL)."""
    from ridgeline.deploy.run.postgres import PostgresServer
    from ridgeline.deploy.run.prefect_server import PrefectServer

    database = PostgresServer(data_dir / "postgres")
    database.start()
    try:
        with PrefectServer(database) as server:
            print(f"READY prefect {server.api_url}", flush=True)
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            stop.wait()
    finally:
        database.stop()


@flows_app.command("sweep")
def sweep_now(region: Annotated[str, typer.Option("--region")], database_url: DatabaseUrl, gateway_url: GatewayUrl) -> None:
    """Expire every lapsed hold of the region now, as one flow run."""
    from ridgeline.flows.sweep import sweep

    with _runtime(database_url, gateway_url) as name:
        typer.echo(f"expired {sweep(name)} lapsed hold(s) in {region}")


@flows_app.command("reconcile")
def reconcile_now(
    region: Annotated[str, typer.Option("--region")],
    database_url: DatabaseUrl,
    gateway_url: GatewayUrl,
    grace: Annotated[str, typer.Option("--grace", help="Leave charges younger than this to settlement.")] = "60s",
) -> None:
    """Refund every standing charge of the region's basecamps without a confirmed booking."""
    from ridgeline.flows.reconcile import reconcile
    from ridgeline.flows.runtime import lookup
    from ridgeline.regional.booking.catalog import CatalogView

    with _runtime(database_url, gateway_url) as name:
        basecamps = [b.basecamp_id for b in CatalogView(lookup(name).engine, region).basecamps()]
        typer.echo(reconcile(name, basecamps, float(parse_duration_seconds(grace, "--grace"))))


@contextmanager
def _runtime(database_url: str, gateway_url: str) -> Iterator[str]:
    """A settlement runtime registered under a name for one command, torn down after it."""
    from ridgeline.flows.payments import PaymentGateway
    from ridgeline.flows.runtime import build_settlement_runtime, close_settlement_runtime

    # Sweep and reconcile move no booking: the runtime holds no lease (no fence).
    spool = Path(tempfile.mkdtemp(prefix="ridgeline-cli-spool-"))
    build_settlement_runtime("cli", database_url, PaymentGateway(gateway_url), spool, application_name="ridgeline-flows-cli")
    try:
        yield "cli"
    finally:
        close_settlement_runtime("cli")
