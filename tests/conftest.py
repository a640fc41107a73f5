"""Shared fixtures: real PostgreSQL servers (one per simulated region) and real gRPC nodes.

Each region gets its own throwaway PostgreSQL cluster for the whole session, started in
parallel and removed at the end. Inside it a template database is migrated and loaded
with the sample catalog once; every test that writes gets a fresh copy of that template
(``CREATE DATABASE … TEMPLATE``), so tests never see each other's bookings.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from certificates import SessionCerts, make_session_certs
from gateway_process import Gateway, gateway_process
from sqlalchemy import Engine

from ridgeline.deploy.run.postgres import PostgresServer, PostgresSettings
from ridgeline.deploy.run.processes import ReadyChild, ridgeline_command, spawn_ready
from ridgeline.deploy.run.region import prepare_region_database
from ridgeline.regional.booking.catalog import load_catalog
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.regional.storage.db import make_engine
from ridgeline.routing.client import BookingClient

REGIONS = ("eu-alps", "na-rockies", "sa-andes")
TEMPLATE = "ridgeline_template"
_database_numbers = itertools.count()


#: Test directories whose modules share a session fixture that costs a whole cluster start
#: (the console's): ``make test`` runs each such directory on one worker.
ONE_WORKER_DIRECTORIES = frozenset({"console"})


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile`` (``make test``'s parallel phase) with the modules of each directory
    in ``ONE_WORKER_DIRECTORIES`` on one worker, where a session fixture they share starts
    once: the console's cluster took a minute or more to start on each of three workers.

    Not ``--dist loadgroup`` with ``xdist_group`` marks: pytest-xdist 3.8 marks a group by
    rewriting ``item._nodeid``, which pytest 9.2 no longer reads, so its groups are ignored.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileOrDirectory(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:  # the scope a test is scheduled with
            module = nodeid.split("::", 1)[0]
            directory = module.rpartition("/")[0]
            return directory if directory.rpartition("/")[2] in ONE_WORKER_DIRECTORIES else module

    return FileOrDirectory(config, log)


@pytest.fixture(scope="session")
def region_servers() -> Iterator[dict[str, PostgresServer]]:
    """One PostgreSQL cluster per region on free loopback ports, each with a prepared template."""
    root = Path(tempfile.mkdtemp(prefix="ridgeline-test-pg-"))
    # Throwaway clusters: not durable (no fsync), which makes start and the shutdown checkpoint
    # after dozens of test databases several times faster. Crash drills here kill nodes, not
    # PostgreSQL; a drill that kills the server must start a durable one of its own.
    servers = {region: PostgresServer(root / region, settings=PostgresSettings(durable=False)) for region in REGIONS}
    catalog = load_catalog()

    def boot(region: str) -> None:
        server = servers[region]
        server.start()
        url = server.create_database(TEMPLATE)
        prepare_region_database(url, region, catalog, advance_booking_days=NodeConfig.advance_booking_days)

    try:
        with ThreadPoolExecutor(len(REGIONS)) as pool:
            list(pool.map(boot, REGIONS))
        yield servers
    finally:
        # In parallel, like the boot: each fast shutdown ends with a checkpoint of seconds.
        with ThreadPoolExecutor(len(REGIONS)) as pool:
            list(pool.map(PostgresServer.stop, servers.values()))
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class RegionDatabase:
    region: str
    url: str
    dsn: str


@pytest.fixture(scope="session")
def fresh_database(region_servers: dict[str, PostgresServer]) -> Callable[[str], RegionDatabase]:
    """Makes a fresh copy of a region's prepared template database (session-scoped factory, so
    that module-scoped fixtures can share one database)."""

    def make(region: str = "eu-alps") -> RegionDatabase:
        server = region_servers[region]
        name = f"t{os.getpid()}_{next(_database_numbers)}"
        url = server.create_database(name, template=TEMPLATE)  # owned by the application role, as the template
        return RegionDatabase(region, url, server.libpq_dsn(name))

    return make


@pytest.fixture
def alps_db(fresh_database: Callable[[str], RegionDatabase]) -> RegionDatabase:
    return fresh_database("eu-alps")


@pytest.fixture
def alps_engine(alps_db: RegionDatabase) -> Iterator[Engine]:
    engine = make_engine(alps_db.url, pool_size=8)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> SessionCerts:
    """The session's certificates: every node and client in the tests speaks mutual TLS."""
    return make_session_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def alps_node(alps_db: RegionDatabase, certs: SessionCerts) -> Iterator[RegionalNode]:
    """A real gRPC node for eu-alps on a loopback port, in this process."""
    node = RegionalNode(
        NodeConfig(region="eu-alps", node_id="test-node", database_url=alps_db.url, workers=16, max_concurrent_rpcs=256, certs_dir=certs.dir)
    )
    node.start()
    yield node
    node.stop(grace_seconds=1)


@pytest.fixture
def alps_client(alps_node: RegionalNode, certs: SessionCerts) -> Iterator[BookingClient]:
    """A desk's client of ``alps_node``."""
    with BookingClient(alps_node.address, transport=certs.desk, timeout_seconds=30) as client:
        yield client


@pytest.fixture
def node_process(certs: SessionCerts) -> Iterator[Callable[..., ReadyChild]]:
    """Starts regional nodes in their own processes (``ridgeline node``, with the session's
    certificates), for crash tests; ``env`` adds to this process's environment. Stops them afterwards."""
    started: list[ReadyChild] = []

    def start(db: RegionDatabase, *extra: str, env: dict[str, str] | None = None) -> ReadyChild:
        command = ridgeline_command(*certs.cli_args, "node", "--region", db.region, "--database-url", db.url, *extra)
        started.append(spawn_ready(command, what=f"node for {db.region}", env={**os.environ, **env} if env else None, stop_timeout_seconds=10))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def prefect_api(region_servers: dict[str, PostgresServer]) -> Iterator[str]:
    """One lean Prefect server for the session (4-10 s to start), on a database of sa-andes's
    cluster; this process and every node process it starts report flow runs to it."""
    from ridgeline.deploy.run.prefect_server import PrefectServer
    from ridgeline.flows import prefect_settings

    with PrefectServer(region_servers["sa-andes"], database_name="prefect") as server:
        prefect_settings.install(server.api_url, server.auth_string)
        yield server.api_url


@pytest.fixture(scope="session")
def payment_gateway(region_servers: dict[str, PostgresServer], certs: SessionCerts) -> Iterator[Gateway]:
    """The stand-in payment gateway process, shared by the settlement tests (faults reset per test),
    over mutual TLS with the session's certificates: nodes pay through it with their own pair."""
    with gateway_process(region_servers["sa-andes"], certs=certs.certs) as started:
        yield started
