"""``ridgeline flows sweep|reconcile``: one settlement flow run now, for operators after an incident.

Each runs in this process against a region database and the gateway; nodes run the
same flows on their own loop. ``flows versions|rollout|retire`` (flows_versions.py) act
on workflow versions through the nodes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ridgeline.deploy.cli import flows_versions, options
from ridgeline.deploy.cli.options import parse_duration_seconds

#: ``ridgeline flows``; ``ridgeline.deploy.cli`` adds it under that name.
flows_app = typer.Typer(no_args_is_help=True, help="Settlement flows now (needs PREFECT_API_URL), and workflow versions and their rollout.")
flows_versions.register(flows_app)

DatabaseUrl = Annotated[str, typer.Option("--database-url", envvar="RIDGELINE_DATABASE_URL", help="Region database URL.")]
GatewayUrl = Annotated[str, typer.Option("--gateway-url", envvar="RIDGELINE_GATEWAY_URL", help="Payment gateway base URL.")]


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

    # Sweep and reconcile move no booking: the runtime holds no lease (no fence). It pays
    # and refunds as the nodes do, with the node pair of the global --certs-dir.
    transport = options.node_transport("this flow run")
    spool = Path(tempfile.mkdtemp(prefix="ridgeline-cli-spool-"))
    build_settlement_runtime("cli", database_url, PaymentGateway(gateway_url, transport), spool, application_name="ridgeline-flows-cli")
    try:
        yield "cli"
    finally:
        close_settlement_runtime("cli")
