"""``ridgeline up``: a whole cluster on this machine, started, watched and stopped as one.

For every region without a database URL it starts a PostgreSQL (system binaries or the
embedded wheel, kept in the state directory so bookings survive ``down``/``up``), or with
``region_databases = "patroni"`` (``up --ha``) a Patroni cluster of three (ha_databases.py), then
migrates each region database and loads the catalog. Unless the cluster file names them,
it also starts the stand-in payment gateway and a lean Prefect server (each on its own
database of a "services" PostgreSQL; PREFECT_API_URL wins over a local Prefect), so the
nodes run settlement. Then it starts every node as its own
``ridgeline node --cluster FILE --node-id ID`` process (as on separate machines),
waits for each READY line and for the region's leases to settle, and prints where
everything listens. From then on a supervisor (``deploy/run/supervisor.py``) restarts any
node, coordinator, gateway, Prefect server or single-server PostgreSQL (a region's, the
services') that dies; drills hold a part down while they need it dead. ``state.json`` in
the state directory lets ``ridgeline down``, ``ridgeline status`` and ``ridgeline chaos
run`` (see :meth:`LocalCluster.attach`) find the cluster from another terminal; ``up``
alone writes it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, render_cluster_file, with_coordinator_metrics
from ridgeline.deploy.cluster.ha_databases import HaDatabases
from ridgeline.deploy.drills.fault_control import FaultControlServer, FaultPath, RemoteFaultPath
from ridgeline.deploy.drills.fault_proxy import FaultProxy
from ridgeline.deploy.run.faults_in_force import FAULTS_DIR, FaultInForce
from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.prefect_server import PrefectServer
from ridgeline.deploy.run.processes import AdoptedProcess, NotReady, ProcessHandle, ReadyChild, alive, command_line, keep_clear, ridgeline_command, spawn_ready
from ridgeline.deploy.run.processes import stop as stop_process
from ridgeline.deploy.run.region import prepare_region_database
from ridgeline.deploy.run.supervisor import HOLDS_DIR, ProcessPart, Supervisor, hold, release
from ridgeline.regional.booking.catalog import load_catalog
from ridgeline.regional.config import NodeConfig
from ridgeline.routing import ClusterClient, ClusterUnreachable
from ridgeline.trust.certs import CertsDir, ensure_local
from ridgeline.trust.credentials import Transport
from ridgeline.trust.private_files import private_dir, write_private

if TYPE_CHECKING:
    from ridgeline.deploy.console.process import ConsoleProcess
    from ridgeline.deploy.payment_gateway.process import GatewayProcess

#: RIDGELINE_STATE_DIR moves it, e.g. to run two clusters side by side.
DEFAULT_STATE_DIR = Path(os.environ.get("RIDGELINE_STATE_DIR", Path.home() / ".ridgeline" / "cluster"))
STATE_FILE = "state.json"

Progress = Callable[[str], None]

_log = logging.getLogger(__name__)


class ClusterStartError(RuntimeError):
    """A part of the cluster did not come up; the message names it and where its log is."""


class Stoppable(Protocol):
    def stop(self, timeout_seconds: float = ...) -> object: ...


@dataclass
class NodeRun:
    node_id: str
    region: str
    address: str
    process: ProcessHandle
    log_path: Path


def database_part(name: str) -> str:
    """The supervised part of the local PostgreSQL ``name`` (a region, or "services")."""
    return f"postgres:{name}"


@dataclass(frozen=True)
class DatabasePart:
    """A PostgreSQL server ``up`` started, as its supervisor sees it. pg_ctl daemonizes the
    postmaster, so it is not up's child and how it ended cannot be known, only that it did;
    started again it is tied to up once more (its guard)."""

    server: PostgresServer

    def pid(self) -> int | None:
        return self.server.pid

    def poll(self) -> str | None:
        return None if self.server.running else "its postmaster is gone"

    def restart(self) -> None:
        self.server.start()


def read_state(state_dir: Path) -> dict[str, object] | None:
    """What a running ``ridgeline up`` recorded, or None when none runs from ``state_dir``."""
    try:
        return json.loads((state_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def state_coordinator(state_dir: Path = DEFAULT_STATE_DIR) -> str | None:
    """The coordinator addresses of the cluster ``ridgeline up`` runs, comma-separated
    (what ``--coordinator`` takes), if it runs any."""
    state = read_state(state_dir)
    if not state or not alive(int(state.get("up_pid", 0))):  # type: ignore[arg-type]
        return None
    coordinators = state.get("coordinators") or {}
    return ",".join(str(c["address"]) for c in coordinators.values()) or state.get("coordinator") or None  # type: ignore[union-attr, return-value]


def state_certs_dir(state_dir: Path = DEFAULT_STATE_DIR) -> Path | None:
    """The certificates directory of the cluster ``ridgeline up`` runs (None: none runs, or insecure)."""
    state = read_state(state_dir)
    if not state or not alive(int(state.get("up_pid", 0))) or not state.get("certs_dir"):  # type: ignore[arg-type]
        return None
    return Path(str(state["certs_dir"]))


def state_seeds(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Node addresses of the cluster ``ridgeline up`` runs, for clients that were given none."""
    state = read_state(state_dir)
    if not state or not alive(int(state.get("up_pid", 0))):  # type: ignore[arg-type]
        return []
    return [str(node["address"]) for node in state.get("nodes", {}).values()]  # type: ignore[union-attr]


class LocalCluster:
    def __init__(
        self, spec: ClusterSpec, state_dir: Path, *, progress: Progress = lambda _: None, settlement: bool = True, insecure: bool = False,
        report: Progress | None = None, console: bool = True,
    ) -> None:
        """``report`` hears the supervisor: every death, restart and give-up (default: the log);
        ``console`` False leaves the operator console out."""
        self.spec = spec
        # The ports the file names stay free for their nodes while up picks the databases' and services'.
        keep_clear(spec.named_ports())
        self.state_dir = state_dir
        #: Every part speaks mutual TLS with the certificates here (made on first start),
        #: unless the operator chose ``--insecure``.
        self.certs = CertsDir(state_dir / "certs")
        self.insecure = insecure
        self._progress = progress
        self._settlement = settlement
        self._services: list[Stoppable] = []
        self.databases: dict[str, PostgresServer] = {}
        #: The regions' Patroni clusters and their etcd when the spec asks for them (region_databases = "patroni").
        self.ha = HaDatabases(state_dir / "patroni")
        self.nodes: dict[str, NodeRun] = {}
        self.cluster_file = state_dir / "cluster.toml"
        self._up_pid = os.getpid()
        #: The first trek coordinator (None: the cluster runs none); every one is in ``coordinators``.
        self.coordinator: NodeRun | None = None
        #: node_id -> every trek coordinator process; one of them leads at a time.
        self.coordinators: dict[str, NodeRun] = {}
        #: The payment gateway `ridgeline up` started (None: the cluster file names one).
        self._gateway_pid: int | None = None
        self._gateway: GatewayProcess | None = None
        #: Restarts what dies once start() returned (None: attached, or not started).
        self._supervisor: Supervisor | None = None
        self._report = report
        self._state_lock = threading.Lock()
        #: The Prefect server `ridgeline up` started (None: PREFECT_API_URL or the file names one).
        self.prefect: PrefectServer | None = None
        #: node_id -> the path the coordinator reaches that node through (drills cut it): a
        #: fault proxy here, or, attached, the same proxy through up's control endpoint.
        self.coordinator_paths: dict[str, FaultPath] = {}
        #: Serves coordinator_paths to other processes (None: attached, or no coordinator).
        self._fault_control: FaultControlServer | None = None
        self._fault_control_url: str | None = None
        #: node address -> the proxy address the coordinator dials (also when attached).
        self._via: dict[str, str] = {}
        self._console_wanted = console
        #: The operator console up runs (None: left out, or attached), and its login token's file.
        self.console: ConsoleProcess | None = None
        self.console_token: Path | None = None

    @classmethod
    def attach(cls, state_dir: Path) -> LocalCluster:
        """The cluster a running ``ridgeline up`` serves from ``state_dir``, to inject faults into.

        Nodes, the coordinator and the Prefect server are driven by pid; a drill holds one
        down before it kills it and releases it to have up's supervisor start it again, so
        every part stays up's child (tied to it) and this process writes no state. The
        coordinator's fault proxies are switched through up's control endpoint. Never call
        stop() on an attached cluster.
        """
        from ridgeline.deploy.cluster.cluster_file import load_cluster_file

        state = read_state(state_dir)
        if not state or not alive(int(state.get("up_pid", 0))):  # type: ignore[arg-type]
            raise ClusterStartError(f"no `ridgeline up` runs from {state_dir}")
        cluster = cls(load_cluster_file(Path(str(state["cluster_file"]))), state_dir, insecure=bool(state.get("insecure")))
        cluster._up_pid = int(state["up_pid"])  # type: ignore[arg-type]
        for node_id, node in state["nodes"].items():  # type: ignore[union-attr]
            cluster.nodes[node_id] = NodeRun(node_id, node["region"], node["address"], AdoptedProcess(int(node["pid"])), Path(node["log"]))
        for region, database in state["databases"].items():  # type: ignore[union-attr]
            if database.get("local"):
                cluster.databases[region] = PostgresServer(state_dir / "postgres" / region, tied=False)  # up's, not ours
        cluster.ha = HaDatabases.open(state_dir / "patroni")
        cluster._gateway_pid = state["services"].get("gateway_pid")  # type: ignore[union-attr]
        if state["services"].get("local"):  # type: ignore[union-attr]
            cluster.databases["services"] = PostgresServer(state_dir / "postgres" / "services", tied=False)
        prefect = state.get("prefect")
        if prefect:
            cluster.prefect = PrefectServer(
                cluster.databases["services"], database_name=prefect["database"], port=int(prefect["port"]), home=Path(prefect["home"])  # type: ignore[index]
            )
            cluster.prefect.adopt(int(prefect["pid"]))  # type: ignore[index]
        cluster._via = dict(state.get("coordinator_via") or {})  # type: ignore[arg-type]
        cluster._fault_control_url = state.get("fault_control")  # type: ignore[assignment]
        if cluster._fault_control_url:
            cluster.coordinator_paths = {node_id: RemoteFaultPath(cluster._fault_control_url, node_id, cluster.client_transport("sre")) for node_id in cluster.nodes}
        for node_id, run in (state.get("coordinators") or {}).items():  # type: ignore[union-attr]
            cluster.coordinators[node_id] = NodeRun(node_id, "", str(run["address"]), AdoptedProcess(int(run["pid"])), Path(run["log"]))
        cluster.coordinator = next(iter(cluster.coordinators.values()), None)
        cluster._settlement = False  # attached: the gateway and Prefect belong to ridgeline up
        return cluster

    def start(self, *, settle_timeout_seconds: float = 60.0) -> None:
        """Brings every part up, or stops what it started and raises ClusterStartError."""
        existing = read_state(self.state_dir)
        if existing and alive(int(existing.get("up_pid", 0))):  # type: ignore[arg-type]
            raise ClusterStartError(f"a cluster already runs from {self.state_dir} (pid {existing['up_pid']}); `ridgeline down` first")
        if existing:  # a killed `up` left it: stop whatever of that run still lives
            self._progress(bring_down(self.state_dir))
        shutil.rmtree(self.state_dir / HOLDS_DIR, ignore_errors=True)
        shutil.rmtree(self.state_dir / FAULTS_DIR, ignore_errors=True)  # a fresh start has no fault in force
        private_dir(self.state_dir)  # state, cluster file, logs, spool, certificates, database secrets
        private_dir(self.state_dir / "logs")
        if not self.insecure and ensure_local(self.certs):
            self._progress(f"made a local CA and certificates in {self.certs.path}")
        try:
            self._start_databases()
            if self._settlement:
                self._start_services()
                # Known ports, written to the cluster file, so `ridgeline status` finds them.
                self.spec = with_coordinator_metrics(self.spec)
            write_private(self.cluster_file, render_cluster_file(self.spec))
            self._start_nodes()
            self._write_state()
            self._wait_for_ownership(settle_timeout_seconds)
            if self._settlement and self.spec.coordinator_listen:
                self._start_coordinator()
            if self._console_wanted:
                self._start_console()
            self._supervise()
            self._write_state()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stops the coordinator, drains every node (SIGTERM, then SIGKILL after 15 s), then
        stops the gateway, Prefect and the databases."""
        if self._supervisor is not None:
            self._supervisor.close()
        runs = list(self.nodes.values()) + list(self.coordinators.values())
        for run in runs:
            if run.process.poll() is None:
                run.process.terminate()
        for run in runs:
            try:
                run.process.wait(15)
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait(5)
        for service in reversed(self._services):
            service.stop()
        if self._fault_control is not None:
            self._fault_control.close()
        with ThreadPoolExecutor(max(len(self.databases), 1)) as pool:
            list(pool.map(PostgresServer.stop, self.databases.values()))
        self.ha.stop()
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    def kill_node(self, node_id: str) -> None:
        """SIGKILL one node, like a machine dying (drills and benchmarks); it stays down,
        held, until :meth:`restart_node`."""
        run = self.nodes[node_id]
        hold(self.state_dir, f"node:{node_id}", "killed by a drill")
        run.process.kill()
        run.process.wait(10)

    def stop_node(self, node_id: str) -> None:
        """SIGTERM one node: it drains and hands its leases back (SIGKILL if it overstays); it
        stays down, held, until :meth:`restart_node`."""
        hold(self.state_dir, f"node:{node_id}", "stopped by a drill")
        stop_process(self.nodes[node_id].process)

    def restart_node(self, node_id: str, *, env: dict[str, str] | None = None) -> None:
        """Lets the supervisor start a killed or stopped node again; returns once it serves.

        With ``env`` (added to its environment: a drill points the node at its database
        through fault proxies this way) the node is this process's own instead: started here,
        still held, so the supervisor leaves it be, and tied to this process, so it dies with
        a drill that dies. The next restart without ``env`` hands the node back to up."""
        old = self.nodes[node_id]
        if env:
            self._start_node(node_id, old.region, old.address, env)
            return
        pid = self._bring_back(f"node:{node_id}")
        if self._supervisor is None:  # attached: up started it, we drive it by pid
            self.nodes[node_id] = NodeRun(node_id, old.region, old.address, AdoptedProcess(pid), old.log_path)

    def kill_coordinator(self, node_id: str) -> None:
        """SIGKILL one trek coordinator, like its machine dying (drills and benchmarks); it stays
        down, held, until :meth:`restart_coordinator`."""
        run = self.coordinators.get(node_id)
        if run is None:
            raise ClusterStartError(f"this cluster runs no trek coordinator {node_id!r}")
        hold(self.state_dir, node_id, "killed by a drill")
        run.process.kill()
        run.process.wait(10)

    def restart_coordinator(self, node_id: str | None = None) -> None:
        """Lets the supervisor start a killed trek coordinator again (``node_id``, or every one
        that is down); returns once each serves. The one that takes the lease re-drives the
        unfinished treks."""
        down = [c for c, run in self.coordinators.items() if node_id in (None, c) and run.process.poll() is not None]
        if not down:
            raise ClusterStartError("no coordinator to restart: none is configured, or every one still runs")
        for coordinator_id in down:
            pid = self._bring_back(coordinator_id)  # a coordinator's part is its id
            if self._supervisor is None:  # attached: up started it, we drive it by pid
                old = self.coordinators[coordinator_id]
                self.coordinators[coordinator_id] = NodeRun(coordinator_id, "", old.address, AdoptedProcess(pid), old.log_path)
        self.coordinator = next(iter(self.coordinators.values()), None)

    def stop_database(self, name: str) -> None:
        """Stops the local PostgreSQL ``name`` (a region's, or "services"), fast shutdown; it
        stays down, held, until :meth:`restart_database`."""
        database = self.databases.get(name)
        if database is None:
            raise ClusterStartError(
                f"the {name} database is not a single PostgreSQL server of this machine's cluster (under --ha Patroni runs it): "
                "a database drill needs one"
            )
        hold(self.state_dir, database_part(name), "stopped by a drill")
        database.stop()

    def restart_database(self, name: str) -> None:
        """Lets the supervisor start the database ``name`` again, on its data directory and
        port; returns once it serves."""
        self._bring_back(database_part(name))

    def stop_prefect(self) -> None:
        """Stops the Prefect server; it stays down, held, until :meth:`restart_prefect`."""
        if self.prefect is None:
            raise ClusterStartError("this cluster did not start its Prefect server (PREFECT_API_URL or the cluster file names it): there is none here to stop")
        hold(self.state_dir, "prefect", "stopped by a drill")
        self.prefect.stop()

    def restart_prefect(self) -> None:
        """Lets the supervisor start the Prefect server again, on the same port and database, so
        the nodes keep their API URL and settlement catches up; returns once it answers."""
        assert self.prefect is not None, "a Prefect server to restart"
        pid = self._bring_back("prefect")
        if self._supervisor is None:
            self.prefect.adopt(pid)

    def _bring_back(self, part: str, timeout_seconds: float = 90.0) -> int:
        """Releases the hold on ``part`` and waits until up's supervisor restarted it; its new pid."""
        old = self._supervision().get(part, {}).get("pid")
        release(self.state_dir, part)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            record = self._supervision().get(part, {})
            if record.get("state") == "running" and record.get("pid") not in (None, old):
                return int(record["pid"])  # type: ignore[arg-type]
            if record.get("state") == "gave-up":
                break
            time.sleep(0.1)
        raise ClusterStartError(f"{part} did not come back within {timeout_seconds:g} s; see {self.state_dir / 'logs'}")

    def _supervision(self) -> dict[str, dict[str, object]]:
        """Each supervised part's pid and state: ours, or the running up's (attached)."""
        if self._supervisor is not None:
            return self._supervisor.snapshot()
        return dict((read_state(self.state_dir) or {}).get("supervision") or {})  # type: ignore[call-overload]

    def _supervise(self) -> None:
        """Hands every part this process started to a supervisor (see the module docstring)."""
        supervisor = Supervisor(self.state_dir, report=self._report or _log.warning, changed=self._write_state, lift=self.lift_fault)
        for node_id, run in self.nodes.items():
            supervisor.watch(f"node:{node_id}", ProcessPart(lambda n=node_id: self.nodes[n].process, lambda r=run: self._start_node(r.node_id, r.region, r.address)))
        for coordinator_id in self.coordinators:  # each coordinator's part is its id
            supervisor.watch(
                coordinator_id, ProcessPart(lambda c=coordinator_id: self.coordinators[c].process, lambda c=coordinator_id: self._start_coordinator(c))
            )
        if self._gateway is not None:
            supervisor.watch("gateway", ProcessPart(lambda: self._gateway.process if self._gateway else None, self._restart_gateway))
        if self.prefect is not None:
            prefect = self.prefect
            supervisor.watch("prefect", ProcessPart(lambda: prefect.process, prefect.start))
        if self.console is not None:
            supervisor.watch("console", ProcessPart(lambda: self.console.process if self.console else None, self._restart_console))
        for name, database in self.databases.items():  # single servers; Patroni restarts its own members
            supervisor.watch(database_part(name), DatabasePart(database))
        self._supervisor = supervisor
        supervisor.start()

    def set_gateway_faults(self, faults: dict[str, object]) -> None:
        """Sets the gateway's run-time faults (``{}`` clears them) as the cluster's operator:
        ``PUT /admin/faults`` admits only ``sre``."""
        if not self.spec.gateway_url:
            raise RuntimeError("this cluster runs no payment gateway")
        with self.client_transport("sre").http_client(self.spec.gateway_url, timeout_seconds=10) as http:
            reply = http.put("/admin/faults", json=faults)
        if reply.status_code != 200:
            raise RuntimeError(f"the gateway refused faults {faults}: {reply.status_code} {reply.text}")

    def lift_fault(self, fault: FaultInForce) -> None:
        """Undoes a fault whose drill died before it did (:mod:`..run.faults_in_force`); the
        supervisor calls it. Each way is idempotent."""
        how = fault.lift
        if how["lift"] == "sigcont":
            pid, args = int(how["pid"]), command_line(int(how["pid"])).split()
            if ["--node-id", how["node_id"]] in (args[i : i + 2] for i in range(len(args))):  # else gone, or the pid is another's now
                os.kill(pid, signal.SIGCONT)
        elif how["lift"] == "gateway":
            self.set_gateway_faults({})
        else:
            raise ValueError(f"{fault.name}: no way to lift {how}")

    def _restart_gateway(self) -> None:
        """The gateway again on its port and database: the nodes keep paying where they did."""
        from ridgeline.deploy.payment_gateway.process import GatewayProcess

        old = self._gateway
        assert old is not None, "a gateway to restart"
        new = GatewayProcess(old.database_url, self.transport, seed=None, listen=old.listen)
        self._services[self._services.index(old)] = new
        self._gateway, self._gateway_pid = new, new.pid

    def _start_console(self, listen: str = "127.0.0.1:0") -> None:
        """The operator console over this cluster file, with a fresh login token for the local operator."""
        from ridgeline.deploy.console.process import ConsoleProcess, write_local_token

        certs = None if self.insecure else self.certs
        old = self.console
        if old is None:  # a restart keeps the token: the operator's link still logs in
            self._progress("starting the operator console")
            self.console_token = write_local_token(certs, self.state_dir)
        self.console = ConsoleProcess(certs, self.cluster_file, self.state_dir, listen=listen, log_path=self.state_dir / "logs" / "console.log")
        if old is None:
            self._services.append(self.console)
        else:
            self._services[self._services.index(old)] = self.console

    def _restart_console(self) -> None:
        """The console again on its port: the operator's browser finds it where it was (sessions start anew)."""
        assert self.console is not None, "a console to restart"
        self._start_console(self.console.listen)

    def _start_databases(self) -> None:
        catalog = load_catalog()
        urls: dict[str, str] = {}

        def start(region: str) -> None:
            server = PostgresServer(self.state_dir / "postgres" / region)
            server.start()
            self.databases[region] = server
            urls[region] = server.create_database(f"ridgeline_{region.replace('-', '_')}")

        local = [r.name for r in self.spec.regions if r.database_url is None]
        if local and self.spec.region_databases == "patroni":
            self._progress(f"starting etcd and a Patroni cluster of 3 members for each of {', '.join(local)}")
            urls.update(self.ha.start(local))
        elif local:
            self._progress(f"starting PostgreSQL for {', '.join(local)}")
            with ThreadPoolExecutor(len(local)) as pool:
                list(pool.map(start, local))
        self.spec = self.spec.with_database_urls(urls)

        def prepare(region: str) -> None:
            url = next(r.database_url for r in self.spec.regions if r.name == region)
            assert url is not None
            prepare_region_database(url, region, catalog, advance_booking_days=NodeConfig.advance_booking_days)

        self._progress("migrating region databases and loading the catalog")
        with ThreadPoolExecutor(len(self.spec.regions)) as pool:
            list(pool.map(prepare, [r.name for r in self.spec.regions]))

    def _start_services(self) -> None:
        """The payment gateway and the Prefect server, unless the cluster file names them."""
        from ridgeline.deploy.payment_gateway.process import GatewayProcess

        prefect_url = os.environ.get("PREFECT_API_URL") or self.spec.prefect_api_url
        if self.spec.gateway_url and prefect_url:
            self.spec = replace(self.spec, prefect_api_url=prefect_url)
            return
        services = PostgresServer(self.state_dir / "postgres" / "services")
        services.start()
        self.databases["services"] = services
        gateway_url = self.spec.gateway_url
        if self.spec.coordinator_listen and not self.spec.coordinator_database_url:
            self.spec = replace(self.spec, coordinator_database_url=services.create_database("ridgeline_coordinator"))
        if not gateway_url:
            self._progress("starting the payment gateway")
            gateway = self._gateway = GatewayProcess(services.create_database("ridgeline_gateway"), self.transport, seed=None)
            self._services.append(gateway)
            self._gateway_pid = gateway.pid
            gateway_url = gateway.url
        if not prefect_url:
            self._progress("starting the Prefect server (lean, on PostgreSQL)")
            self.prefect = PrefectServer(services, home=self.state_dir / "prefect")
            prefect_url = self.prefect.start()
            self._services.append(self.prefect)
        self.spec = replace(self.spec, gateway_url=gateway_url, prefect_api_url=prefect_url)

    def _start_coordinator(self, node_id: str | None = None) -> None:
        """The trek coordinators (or the one ``node_id``), each its own process reading the
        cluster file; one after another, so the first to start leads."""
        # A process attached to the cluster reuses up's proxies, recorded in state.json.
        if not self._via:
            self._open_coordinator_paths()
        for spec in self.spec.coordinators():
            if node_id not in (None, spec.node_id):
                continue
            self._progress(f"starting trek coordinator {spec.node_id}")
            log_path = self.state_dir / "logs" / f"{spec.node_id}.log"
            command = self._command("coordinator", "--cluster", str(self.cluster_file), "--node-id", spec.node_id)
            for node_address, proxy_address in self._via.items():
                command += ["--via", f"{node_address}={proxy_address}"]
            child = _spawn_part(command, f"coordinator {spec.node_id}", log_path)
            self.coordinators[spec.node_id] = NodeRun(spec.node_id, "", spec.listen, child.process, log_path)
        self.coordinator = next(iter(self.coordinators.values()), None)

    def _open_coordinator_paths(self) -> None:
        """A fault proxy per node for the coordinator to dial, so a drill can cut a region off
        from the coordinator alone (nodes and desks unaffected). The proxies live in this
        process and die with it; the control endpoint lets a drill in another process switch them."""
        proxies = {run.node_id: FaultProxy(*_host_port(run.address)) for run in self.nodes.values()}
        self._fault_control = FaultControlServer(proxies, self.transport)
        self._fault_control_url = self._fault_control.url
        self.coordinator_paths = dict(proxies)
        self._via = {self.nodes[node_id].address: proxy.address for node_id, proxy in proxies.items()}

    def _start_nodes(self) -> None:
        specs = [(region, node) for region in self.spec.regions for node in region.nodes]
        self._progress(f"starting {len(specs)} nodes")
        with ThreadPoolExecutor(len(specs)) as pool:
            # Consume every result (each start registers its node), then raise the first failure.
            outcomes = [pool.submit(self._start_node, node.node_id, region.name, node.address) for region, node in specs]
            for outcome in outcomes:
                outcome.exception()
            for outcome in outcomes:
                outcome.result()

    def _start_node(self, node_id: str, region: str, address: str, extra_env: dict[str, str] | None = None) -> NodeRun:
        log_path = self.state_dir / "logs" / f"{node_id}.log"
        command = self._command(
            "node", "--cluster", str(self.cluster_file), "--node-id", node_id,
            "--outbox-dir", str(self.state_dir / "outbox" / region),
        )
        # The cluster's own Prefect API, whatever this process's environment says.
        env = {**os.environ, **({"PREFECT_API_URL": self.spec.prefect_api_url} if self.spec.prefect_api_url else {})}
        if self.prefect is not None:  # and its secret (another API's comes from this environment)
            env.update(self.prefect.client_environment())
        env.update(extra_env or {})
        child = _spawn_part(command, f"node {node_id}", log_path, env)
        run = self.nodes[node_id] = NodeRun(node_id, region, address, child.process, log_path)
        return run

    def _wait_for_ownership(self, timeout_seconds: float) -> None:
        """Waits until every basecamp of every region has an owner (the ring has settled)."""
        self._progress("waiting for every basecamp to have an owner")
        deadline = time.monotonic() + timeout_seconds
        with ClusterClient([run.address for run in self.nodes.values()], transport=self.transport, timeout_seconds=5) as client:
            while True:
                try:
                    infos = client.cluster_info()
                    if len(infos) == len(self.spec.regions) and all(o.address for info in infos for o in info.owners):
                        return
                except ClusterUnreachable:
                    pass
                if time.monotonic() > deadline:
                    raise ClusterStartError(f"basecamps still without an owner after {timeout_seconds:.0f} s; see {self.state_dir / 'logs'}")
                time.sleep(0.25)

    @property
    def transport(self) -> Transport:
        """How this process reaches the cluster's parts: with the node pair, as they reach each other."""
        return Transport.insecure() if self.insecure else Transport.from_dir(self.certs.path)

    def client_transport(self, principal: str) -> Transport:
        """How a drill or a test acts on the cluster as one of the local clients (sre, desk, planner)."""
        return Transport.insecure() if self.insecure else Transport.from_dir(self.certs.path, principal=principal)

    def _command(self, *args: str) -> list[str]:
        """A ``ridgeline`` child command with the cluster's security: its certificates, or --insecure."""
        security = ["--insecure"] if self.insecure else ["--certs-dir", str(self.certs.path)]
        return ridgeline_command(*security, *args)

    def _write_state(self) -> None:
        with self._state_lock:  # the supervisor's thread writes too
            self._write_state_locked()

    def _write_state_locked(self) -> None:
        state = {
            "up_pid": self._up_pid,
            "certs_dir": None if self.insecure else str(self.certs.path),
            "insecure": self.insecure,
            "cluster": self.spec.name,
            "cluster_file": str(self.cluster_file),
            "coordinator": self.coordinator.address if self.coordinator else None,
            "coordinator_pid": self.coordinator.process.pid if self.coordinator else None,
            "coordinators": {
                run.node_id: {"address": run.address, "pid": run.process.pid, "log": str(run.log_path)} for run in self.coordinators.values()
            },
            "coordinator_via": self._via,
            "fault_control": self._fault_control_url,
            "nodes": {
                run.node_id: {"region": run.region, "address": run.address, "pid": run.process.pid, "log": str(run.log_path)}
                for run in self.nodes.values()
            },
            "databases": {
                r.name: {"url": r.database_url, "local": r.name in self.databases, "patroni": r.name in self.ha.regions} for r in self.spec.regions
            },
            "services": {
                "local": "services" in self.databases,
                "gateway_url": self.spec.gateway_url,
                "gateway_pid": self._gateway_pid,
                "prefect_api_url": self.spec.prefect_api_url,
            },
            "prefect": (
                {"pid": self.prefect.pid, "port": self.prefect.port, "database": self.prefect.database_name, "home": str(self.prefect.home)}
                if self.prefect
                else None
            ),
            "console": (
                {"url": self.console.url, "pid": self.console.pid, "token_file": str(self.console_token)} if self.console else None
            ),
            "supervision": self._supervisor.snapshot() if self._supervisor else {},
        }
        # Written aside (0600) and renamed: a process killed mid-write must not leave a torn
        # state.json, which would hide the cluster from `ridgeline down`.
        write_private(self.state_dir / STATE_FILE, json.dumps(state, indent=2))


def _spawn_part(command: list[str], what: str, log_path: Path, env: dict[str, str] | None = None) -> ReadyChild:
    """A part of the cluster in its own session (Ctrl-C reaches up alone, which stops the parts in
    order), serving once this returns; a part that does not come up is stopped and reported."""
    try:
        return spawn_ready(command, what=what, log_path=log_path, env=env, new_session=True)
    except NotReady as error:
        raise ClusterStartError(str(error)) from error


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def bring_down(state_dir: Path, *, timeout_seconds: float = 60.0) -> str:
    """Stops the cluster that ``ridgeline up`` runs from ``state_dir``; says what it did."""
    state = read_state(state_dir)
    if state is None:
        return f"no cluster runs from {state_dir}"
    up_pid = int(state.get("up_pid", 0))  # type: ignore[arg-type]
    if alive(up_pid):
        os.kill(up_pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while alive(up_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive(up_pid):
            return f"stopped cluster {state.get('cluster')} (ridgeline up, pid {up_pid})"
    # `ridgeline up` is gone (killed): stop what it left behind ourselves.
    # Each pid with what its command line says, lest a reused pid be someone else's.
    pids = [(int(node["pid"]), "ridgeline") for node in state.get("nodes", {}).values()]  # type: ignore[union-attr]
    coordinator_pids = {int(run["pid"]) for run in (state.get("coordinators") or {}).values()}  # type: ignore[union-attr]
    coordinator_pids |= {int(state["coordinator_pid"])} if state.get("coordinator_pid") else set()  # type: ignore[arg-type]
    pids += [(pid, "ridgeline") for pid in sorted(coordinator_pids)]
    pids += [(int(state["services"]["gateway_pid"]), "ridgeline")] if state.get("services", {}).get("gateway_pid") else []  # type: ignore[index, union-attr]
    pids += [(int(state["prefect"]["pid"]), "prefect")] if state.get("prefect") else []  # type: ignore[index]
    pids += [(int(state["console"]["pid"]), "ridgeline")] if state.get("console") else []  # type: ignore[index]
    for pid, marker in pids:
        if alive(pid) and marker in command_line(pid):
            os.kill(pid, signal.SIGTERM)
    for region, database in state.get("databases", {}).items():  # type: ignore[union-attr]
        if database.get("local"):
            PostgresServer(state_dir / "postgres" / region).stop()
    if state.get("services", {}).get("local"):  # type: ignore[union-attr]
        PostgresServer(state_dir / "postgres" / "services").stop()
    HaDatabases.open(state_dir / "patroni").stop()
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return f"stopped the parts of cluster {state.get('cluster')} that ridgeline up (pid {up_pid}) left behind"
