"""``ridgeline up``, ``down`` and ``status``: a whole cluster from one command."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import grpc
import httpx
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ridgeline.deploy.cli import options, render
from ridgeline.deploy.cli.options import Json, Target, Timeout, client_transport, configure_logging, seeds_for
from ridgeline.deploy.cluster.cluster_file import ClusterFileError, ClusterSpec, default_cluster, load_cluster_file
from ridgeline.deploy.cluster.local_cluster import DEFAULT_STATE_DIR, ClusterStartError, LocalCluster, bring_down, read_state
from ridgeline.deploy.cluster.scrape import CoordinatorFigures, scrape, scrape_coordinator, scrape_gateway
from ridgeline.deploy.drills.audit import DEFAULT_HOLD_GRACE_SECONDS, DEFAULT_MONEY_GRACE_SECONDS, print_report, run_audit, write_textfile
from ridgeline.deploy.run.etcd import EtcdError
from ridgeline.deploy.run.postgres import PostgresError
from ridgeline.deploy.run.processes import alive
from ridgeline.routing import ClusterClient, ClusterUnreachable
from ridgeline.routing.ring import propose_owners
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import cluster_pb2 as cpb

_console = Console()

#: Top-level commands; ``ridgeline.deploy.cli`` merges them into ``ridgeline``.
commands = typer.Typer()

ClusterFile = Annotated[Path | None, typer.Option("--cluster", help="Cluster file (default: 3 regions x 2 nodes on loopback, local databases).")]
StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the local databases, logs and state.json live.")]


@commands.command()
def up(
    cluster: ClusterFile = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    settlement: Annotated[bool, typer.Option("--settlement/--no-settlement", help="Start the payment gateway and Prefect (unless the cluster file names them) and settle Book.")] = True,
    ha: Annotated[bool, typer.Option("--ha", help="Run each local region database as a Patroni cluster of 3 over etcd (needs Debian's patroni and etcd-server).")] = False,
    console: Annotated[bool, typer.Option("--console/--no-console", help="Start the operator console (HTTPS; its URL and login link are printed).")] = True,
) -> None:
    """Start a whole cluster here, wait until it serves, print where, and run until Ctrl-C or `ridgeline down`."""
    configure_logging()
    logging.getLogger("alembic").setLevel(logging.WARNING)
    spec = _spec(cluster)
    if ha:
        spec = replace(spec, region_databases="patroni")
    local = LocalCluster(
        spec, state_dir.expanduser(), progress=lambda step: _console.print(f"[dim]{step}…[/]"), settlement=settlement, insecure=options.SECURITY.insecure,
        report=lambda event: _console.print(f"[bold yellow]{escape(event)}[/]"), console=console,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        local.start()
    except (ClusterStartError, OSError, PostgresError, EtcdError) as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None
    _print_started(local)
    try:
        while not stop.wait(1.0):
            pass  # the supervisor restarts what dies meanwhile, and says so
    finally:
        _console.print("stopping the cluster…")
        local.stop()
        _console.print("stopped")


@commands.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Stop the cluster `ridgeline up` runs (nodes drain, then the local databases stop)."""
    _console.print(bring_down(state_dir.expanduser()))


@commands.command()
def status(
    target: Target = "",
    cluster: Annotated[Path | None, typer.Option("--cluster", help="Cluster file naming the coordinator and gateway to summarise (default: the running `ridgeline up`'s).")] = None,
    json_out: Json = False,
    timeout: Timeout = 5.0,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Regions, nodes with their health, the ring's proposal and who holds each basecamp's
    lease; then the trek coordinator and the payment gateway, when a cluster file names them."""
    transport = client_transport("sre")
    with ClusterClient(seeds_for(target), transport=transport, timeout_seconds=timeout) as client:
        try:
            infos = client.cluster_info()
        except ClusterUnreachable as error:
            typer.secho(f"error: {error}", err=True, fg="red")
            raise typer.Exit(2) from None
    if json_out:
        render.as_json(infos)
        return
    for info in infos:
        _print_region(info, timeout, transport)
    spec = _spec(cluster) if cluster else _running_spec(state_dir.expanduser()) if not target else None
    if spec is not None:
        _print_services(spec, timeout, transport)
    if not target and not cluster:
        _print_processes(state_dir.expanduser())


def _print_processes(state_dir: Path) -> None:
    """What the running `ridgeline up`'s supervisor knows: each process's pid, restarts and last exit."""
    state = read_state(state_dir)
    if state is None or not alive(int(state.get("up_pid", 0))) or not state.get("supervision"):  # type: ignore[arg-type]
        return
    table = Table(title=f"processes (supervised by ridgeline up, pid {state['up_pid']})")
    for column in ("process", "pid", "state", "restarts", "last exit"):
        table.add_column(column)
    styles = {"running": "green", "restarting": "yellow", "held": "yellow", "gave-up": "bold red"}
    for name, part in state["supervision"].items():  # type: ignore[union-attr]
        when = f" at {time.strftime('%H:%M:%S', time.localtime(part['last_exit_at']))}" if part.get("last_exit_at") else ""
        held = f" by pid {part['held_by']}" if part.get("held_by") else ""
        table.add_row(
            name, str(part.get("pid") or ""), f"[{styles.get(part['state'], 'white')}]{part['state']}{held}[/]", str(part["restarts"]),
            f"{part['last_exit']}{when}" if part.get("last_exit") else "-",
        )
    _console.print(table)


def _running_spec(state_dir: Path) -> ClusterSpec | None:
    """The cluster file of the `ridgeline up` running from ``state_dir``, if one runs."""
    state = read_state(state_dir)
    if state is None or not alive(int(state.get("up_pid", 0))):  # type: ignore[arg-type]
        return None
    return _spec(Path(str(state["cluster_file"])))


def _print_services(spec: ClusterSpec, timeout: float, transport: Transport) -> None:
    """The coordinator's and the gateway's health and figures from their /metrics."""
    table = Table(title="services")
    for column in ("service", "address", "health", "figures since start", "metrics"):
        table.add_column(column)
    for coordinator in spec.coordinators():
        figures = scrape_coordinator(coordinator.metrics, timeout) if coordinator.metrics else None
        health = _health(coordinator.listen, timeout, transport)
        table.add_row(f"trek {coordinator.node_id}", coordinator.listen, health, _coordinator_summary(figures), coordinator.metrics or "")
    if spec.gateway_url:
        figures = scrape_gateway(spec.gateway_url, transport, timeout)
        health = _gateway_health(spec.gateway_url, transport, timeout) if figures is None or not figures.outage else "[yellow]outage injected[/]"
        summary = f"{figures.requests} payment calls, {figures.unavailable} answered 5xx, p99 {_bound(figures.p99_seconds)}" if figures else ""
        table.add_row("payment gateway", spec.gateway_url, health, summary, f"{spec.gateway_url}/metrics")
    if table.row_count:
        _console.print(table)


def _gateway_health(url: str, transport: Transport, timeout: float) -> str:
    try:
        with transport.http_client(url, timeout_seconds=timeout) as http:
            answer = http.get("/healthz")
    except (httpx.HTTPError, ValueError):
        return "[red]unreachable[/]"
    return "[green]serving[/]" if answer.status_code == 200 else f"[red]not serving ({answer.status_code})[/]"


def _coordinator_summary(figures: CoordinatorFigures | None) -> str:
    """Whether the coordinator leads (its epoch, since when) or follows, then its decisions."""
    if figures is None:
        return ""
    if not figures.leader_epoch:
        return f"follows; {figures.decided_commit} committed, {figures.decided_abort} aborted since start"
    since = time.strftime("%H:%M:%S UTC", time.gmtime(figures.leader_since))
    return (
        f"LEADS (epoch {figures.leader_epoch}, since {since}); {figures.decided_commit} committed, {figures.decided_abort} aborted, "
        f"decision p99 {_bound(figures.decision_p99_seconds)}, {figures.unfinished} unfinished"
    )


def _bound(seconds: float | None) -> str:
    return f"≤ {seconds * 1000:g} ms" if seconds is not None else "-"


@commands.command()
def audit(
    cluster: ClusterFile = None,
    database_url: Annotated[
        list[str] | None, typer.Option("--database-url", help="REGION=URL of a region database (repeatable); default: the cluster file, else the running `ridgeline up` cluster.")
    ] = None,
    hold_grace: Annotated[float, typer.Option("--hold-grace", help="Seconds a lapsed hold may stay unswept before it counts as leaked.")] = DEFAULT_HOLD_GRACE_SECONDS,
    gateway_url: Annotated[str, typer.Option("--gateway-url", envvar="RIDGELINE_GATEWAY_URL", help="Payment gateway to check money against (default: the cluster file's).")] = "",
    coordinator_database_url: Annotated[str, typer.Option("--coordinator-database-url", help="The coordinator's database, to check treks (default: the cluster file's).")] = "",
    money_grace: Annotated[float, typer.Option("--money-grace", help="Seconds after a booking's last change before its money must balance.")] = DEFAULT_MONEY_GRACE_SECONDS,
    textfile: Annotated[Path | None, typer.Option("--textfile", help="Also write the verdict here for node_exporter's textfile collector (the alert rules read it).")] = None,
    json_out: Json = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Check every invariant in the databases; print each verdict with its offenders; exit 1 on a violation."""
    urls, spec = _audit_targets(cluster, database_url or [], state_dir.expanduser())
    ledger = gateway_url or (spec.gateway_url if spec else None)
    report = run_audit(
        urls,
        hold_grace_seconds=hold_grace,
        gateway_url=ledger,
        gateway_transport=client_transport("sre") if ledger else None,  # the ledger is read as sre; the databases need no pair
        coordinator_url=coordinator_database_url or (spec.coordinator_database_url if spec else None),
        money_grace_seconds=money_grace,
    )
    print_report(report, json_out=json_out, console=_console)
    if textfile is not None:
        write_textfile(report, textfile)
    if not report.passed:
        raise typer.Exit(1)


def _audit_targets(cluster: Path | None, given: list[str], state_dir: Path) -> tuple[dict[str, str], ClusterSpec | None]:
    """Region database URLs, and the cluster file they came from (if any)."""
    if given:
        pairs = [item.split("=", 1) for item in given]
        if any(len(pair) != 2 or not pair[0] or not pair[1] for pair in pairs):
            raise typer.BadParameter("--database-url takes REGION=URL")
        return dict(pairs), None  # type: ignore[arg-type]
    if cluster is None:
        state = read_state(state_dir)
        if state is None:
            raise typer.BadParameter(f"no --database-url, no --cluster, and no cluster runs from {state_dir}")
        cluster = Path(str(state["cluster_file"]))
    spec = _spec(cluster)
    missing = [r.name for r in spec.regions if not r.database_url]
    if missing:
        raise typer.BadParameter(f"the cluster file has no database_url for {', '.join(missing)}")
    return {r.name: str(r.database_url) for r in spec.regions}, spec


def _spec(cluster: Path | None) -> ClusterSpec:
    try:
        return load_cluster_file(cluster) if cluster else default_cluster()
    except ClusterFileError as error:
        typer.secho(f"error: {error}", err=True, fg="red")
        raise typer.Exit(1) from None


def _print_started(local: LocalCluster) -> None:
    table = Table(title=f"Ridgeline cluster {local.spec.name} is serving")
    for column in ("region", "node", "address", "pid", "log"):
        table.add_column(column)
    for run in local.nodes.values():
        table.add_row(run.region, run.node_id, run.address, str(run.process.pid), str(run.log_path))
    _console.print(table)
    databases = Table(title="Region databases")
    databases.add_column("region")
    databases.add_column("url")
    for region in local.spec.regions:
        databases.add_row(region.name, region.database_url or "")
    _console.print(databases)
    if local.spec.gateway_url:
        _console.print(f"Payment gateway: {local.spec.gateway_url}   Prefect API: {local.spec.prefect_api_url}")
    if local.coordinators:
        listed = ", ".join(f"{run.node_id} {run.address}" for run in local.coordinators.values())
        _console.print(f"Trek coordinators (one leads, `ridgeline status` shows which): {listed} (ridgeline trek plan|show|list)")
    if local.console is not None and local.console_token is not None:
        from ridgeline.deploy.console.process import login_link

        _console.print(
            f"Operator console: {local.console.url} (log in with the token in {local.console_token}, or open {login_link(local.console.url, local.console_token)})",
            soft_wrap=True,
        )
    _console.print(
        f"Cluster file: {local.cluster_file}\n"
        "Try: ridgeline status · ridgeline basecamps · ridgeline book hoernli hoernli-dorm --from … --to … --customer you\n"
        "Ctrl-C here, or `ridgeline down` elsewhere, stops everything."
    )


def _health(address: str, timeout: float, transport: Transport) -> str:
    with transport.channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as error:
            return f"[red]{error.code().name.lower()}[/]"
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).lower()
    return f"[green]{name}[/]" if reply.status == health_pb2.HealthCheckResponse.SERVING else f"[yellow]{name}[/]"


def _print_region(info: cpb.ClusterInfo, timeout: float, transport: Transport) -> None:
    members = Table(title=f"{info.region}: nodes (answered by {info.node_id})")
    for column in ("node", "address", "heartbeat age", "health", "basecamps held", "rpcs", "errors", "hold p99", "db retries", "metrics"):
        members.add_column(column)
    held: dict[str, list[str]] = {}
    for owner in info.owners:
        if owner.node_id:
            held.setdefault(owner.node_id, []).append(owner.basecamp_id)
    for member in info.members:
        figures = scrape(member.metrics_address, timeout) if member.metrics_address else None
        numbers = (
            [str(figures.rpcs), str(figures.errors), _bound(figures.hold_p99_seconds), str(figures.db_retries)]
            if figures
            else ["", "", "", ""]
        )
        members.add_row(
            member.node_id,
            member.address,
            f"{member.heartbeat_age_seconds:.1f} s",
            _health(member.address, timeout, transport),
            str(len(held.get(member.node_id, []))),
            *numbers,
            member.metrics_address,
        )
    _console.print(members)
    proposal = propose_owners([m.node_id for m in info.members], [o.basecamp_id for o in info.owners])
    owners = Table(title=f"{info.region}: ownership")
    for column in ("basecamp", "ring proposes", "lease holder", "epoch", "lease left"):
        owners.add_column(column)
    for owner in info.owners:
        holder = owner.node_id or "[red]none (failover)[/]"
        if owner.node_id and owner.node_id != proposal.get(owner.basecamp_id):
            holder = f"[yellow]{owner.node_id} (moving)[/]"
        left = f"{owner.lease_remaining_seconds:.1f} s" if owner.node_id else ""
        owners.add_row(owner.basecamp_id, proposal.get(owner.basecamp_id, ""), holder, str(owner.epoch or ""), left)
    _console.print(owners)
