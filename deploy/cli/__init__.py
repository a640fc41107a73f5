"""``ridgeline``, the operator and desk command line: this module builds it from the command groups.

Registration points one way: this module imports every command module and adds its
commands; no command module imports this one. Top-level commands (``ridgeline book``)
come from each module's ``commands``, merged in; groups (``ridgeline trek plan``) from
its ``*_app``, added under their name. Shared options live in ``options``.
"""

from __future__ import annotations

import typer

from ridgeline.deploy.cli import bench, certs, cluster, desk, drills, flows, processes, trek

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Ridgeline: safe bookings for alpine basecamps.")
app.add_typer(desk.commands)
app.add_typer(processes.commands)
app.add_typer(cluster.commands)
app.add_typer(drills.commands)
app.add_typer(certs.commands)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(drills.chaos_app, name="chaos")
app.add_typer(flows.flows_app, name="flows")
app.add_typer(trek.trek_app, name="trek")

__all__ = ["app"]
