"""``ridgeline console``: the operator console in the browser (``ridgeline up`` runs one too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ridgeline.deploy.cli import options
from ridgeline.deploy.cli.options import Target, configure_logging, seeds_for
from ridgeline.deploy.cluster.cluster_file import ClusterFileError, load_cluster_file
from ridgeline.deploy.cluster.local_cluster import DEFAULT_STATE_DIR, read_state

commands = typer.Typer()


@commands.command()
def console(
    cluster: Annotated[Path | None, typer.Option("--cluster", help="Cluster file: its nodes, coordinators and gateway (default: the running `ridgeline up`'s).")] = None,
    target: Target = "",
    listen: Annotated[str, typer.Option("--listen", help="host:port to serve HTTPS on (port 0: any free port).")] = "127.0.0.1:8443",
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where `ridgeline chaos run` saved its drill reports (<state dir>/drills).")] = DEFAULT_STATE_DIR,
) -> None:
    """Serve the operator console until SIGTERM/SIGINT (prints a READY line with its URL once serving).

    Log in with an sre or desk token (`ridgeline token create --role sre --principal YOU`,
    or the one `ridgeline up` writes to <state dir>/console.token); a desk token with a
    --scope sees and acts on its own basecamps only. The console calls the cluster over gRPC
    as the person logged in (their token, over the certificates directory's client.sre
    pair) and serves HTTPS with its node pair.
    """
    from ridgeline.deploy.console.server import serve_until_signalled

    configure_logging()
    state_dir = state_dir.expanduser()
    if cluster is None:
        running = read_state(state_dir)
        cluster = Path(str(running["cluster_file"])) if running and running.get("cluster_file") else None
    try:
        spec = load_cluster_file(cluster) if cluster is not None else None
    except ClusterFileError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
    seeds = [t.strip() for t in target.split(",") if t.strip()] or ([n.address for r in spec.regions for n in r.nodes] if spec else seeds_for(""))
    try:
        serve_until_signalled(seeds, listen, options.client_transport("sre"), spec=spec, drills_dir=state_dir / "drills")
    except OSError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
