"""``ridgeline``, the operator and desk command line: this module builds it from the command groups.

Registration points one way: this module imports every command module and adds its
commands; no command module imports this one. Top-level commands (``ridgeline book``)
come from each module's ``commands``, merged in; groups (``ridgeline trek plan``) from
its ``*_app``, added under their name. Shared options live in ``options``. The callback also turns tracing on for the process when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (``ridgeline.tracing``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ridgeline import tracing
from ridgeline.deploy.cli import bench, certs, cluster, console, desk, drills, flows, k8s, ops, options, processes, trek

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ridgeline: safe bookings for alpine basecamps.")


@app.callback()
def _security(
    context: typer.Context,
    certs_dir: Annotated[
        Path | None,
        typer.Option("--certs-dir", envvar="RIDGELINE_CERTS_DIR", help="Certificates directory (default: the running `ridgeline up`'s, else the demo's)."),
    ] = None,
    principal: Annotated[
        str | None,
        typer.Option("--principal", envvar="RIDGELINE_PRINCIPAL", help="Client pair to present (client.PRINCIPAL.crt; default: the role the command acts in)."),
    ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="RIDGELINE_TOKEN", help="Bearer token (`ridgeline token create`) naming the caller.")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="No TLS and no authentication, for this command and what it starts. Logged loudly.")] = False,
) -> None:
    """Ridgeline: safe bookings for alpine basecamps. Every port speaks mutual TLS unless --insecure."""
    options.use_security(options.Security(certs_dir, principal, token, insecure))
    # Each process names itself after its command: ridgeline-node, ridgeline-coordinator, ridgeline-book…
    tracing.configure(f"ridgeline-{context.invoked_subcommand or 'cli'}")


app.add_typer(desk.commands)
app.add_typer(processes.commands)
app.add_typer(cluster.commands)
app.add_typer(console.commands)
app.add_typer(drills.commands)
app.add_typer(certs.commands)
app.add_typer(k8s.commands)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(drills.chaos_app, name="chaos")
app.add_typer(flows.flows_app, name="flows")
app.add_typer(trek.trek_app, name="trek")
app.add_typer(k8s.k8s_app, name="k8s")
app.add_typer(ops.ops_app, name="ops")

__all__ = ["app"]
