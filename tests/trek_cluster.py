"""A real trek cluster for tests: one node per region, the stand-in gateway and coordinator processes.

Nodes run in this process (fresh region databases) unless a test needs to kill one; the
gateway and the coordinator are ``ridgeline`` processes started exactly as in
production, each printing a READY line with its address. The coordinator listens on one
fixed port for the whole module, so a restarted coordinator is found where the nodes
(and the previous one's prepared legs) expect it. Nodes and the coordinator speak mutual
TLS with the session's certificates; tests plan treks as the planner.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import grpc
import psycopg
from certificates import SessionCerts
from invariants import assert_inventory_matches_bookings, query

from ridgeline.deploy.run.postgres import PostgresServer
from ridgeline.deploy.run.processes import ReadyChild, free_port, spawn_ready
from ridgeline.regional.config import NodeConfig
from ridgeline.regional.node import RegionalNode
from ridgeline.routing import night_range
from ridgeline.trust.credentials import Transport
from ridgeline.v1 import trek_pb2 as tpb
from ridgeline.v1 import trek_pb2_grpc as tpb_grpc

REGIONS = ("eu-alps", "na-rockies", "sa-andes")
RIDGELINE = str(Path(sys.executable).parent / "ridgeline")
FINAL = {tpb.TREK_STATE_COMMITTED, tpb.TREK_STATE_ABORTED, tpb.TREK_STATE_CANCELLED}
#: Short protocol timings so that drills finish in seconds: legs prepare within 5 s (a
#: shared 2-core machine can be slow; no drill waits for it), a prepared leg asks about
#: its trek 8 s after that, unfinished treks are redriven every 0.3 s.
COORDINATOR_FLAGS = ("--prepare-timeout", "5", "--decision-grace", "8", "--redrive-interval", "0.3")


def spawn(args: list[str], env: dict[str, str] | None = None, *, security: Sequence[str] = ()) -> ReadyChild:
    """A ``ridgeline`` process that prints ``READY <what> <address>`` once it serves;
    ``security``: the global options before the subcommand (``--certs-dir DIR``)."""
    return spawn_ready([RIDGELINE, *security, *args], what=args[0], env=env)


@dataclass
class TrekCluster:
    region_urls: dict[str, str]
    region_targets: dict[str, str]
    gateway_url: str
    gateway_dsn: str
    coordinator_db_url: str
    coordinator_port: int
    #: A coordinator address the nodes know but nothing serves.
    silent_coordinator_port: int
    certs: SessionCerts
    node_args: dict[str, list[str]] = field(default_factory=dict)
    node_processes: dict[str, ReadyChild] = field(default_factory=dict)
    coordinator: ReadyChild | None = None
    _started: list[ReadyChild] = field(default_factory=list)

    def start_node(self, region: str) -> ReadyChild:
        """A ``ridgeline node`` process for ``region`` on its fixed address (a restart is found there)."""
        node = spawn(self.node_args[region], security=self.certs.cli_args)
        self.node_processes[region] = node
        self._started.append(node)
        return node

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.coordinator_port}"

    def start_coordinator(
        self, crash_at: str = "", *, target: str | None = None, extra: Sequence[str] = (), env: dict[str, str] | None = None, leading: bool = True
    ) -> ReadyChild:
        """A coordinator process on the module's port (or ``target``, another the nodes know);
        ``crash_at`` arms its SIGKILL hook; ``extra``: more of its options; ``env``: more environment.
        With ``leading``, returns once it leads: a coordinator started after one was killed
        follows until the dead one's lease lapses (up to its TTL, 2 s)."""
        env = {**os.environ, **(env or {})}
        env.pop("RIDGELINE_COORDINATOR_CRASH_AT", None)
        if crash_at:
            env["RIDGELINE_COORDINATOR_CRASH_AT"] = crash_at
        listen = target or self.target
        args = ["coordinator", "--database-url", self.coordinator_db_url, "--gateway-url", self.gateway_url, "--listen", listen, *COORDINATOR_FLAGS, *extra]
        for region, target in self.region_targets.items():
            args += ["--region-target", f"{region}={target}"]
        self.coordinator = spawn(args, env, security=self.certs.cli_args)
        self._started.append(self.coordinator)
        if leading:
            self._wait_leading(listen)
        return self.coordinator

    def _wait_leading(self, target: str, timeout_seconds: float = 15.0) -> None:
        """Until the coordinator at ``target`` answers as the leader (NOT_FOUND for a trek nobody planned)."""
        until = time.monotonic() + timeout_seconds
        with self.certs.planner.channel(target) as channel:
            stub = tpb_grpc.TrekServiceStub(channel)
            while True:
                try:
                    stub.GetTrek(tpb.GetTrekRequest(trek_id=str(uuid.uuid4())), timeout=2)
                except grpc.RpcError as error:
                    if error.code() is grpc.StatusCode.NOT_FOUND:
                        return
                    assert time.monotonic() < until, f"the coordinator at {target} does not lead after {timeout_seconds} s: {error.details()}"
                time.sleep(0.05)

    def stop_all(self) -> None:
        for proc in self._started:
            proc.stop()

    def stub(self, transport: Transport | None = None) -> tuple[grpc.Channel, tpb_grpc.TrekServiceStub]:
        """A channel to the coordinator and its TrekService, as ``transport`` (default: the planner)."""
        channel = (transport or self.certs.planner).channel(self.target)
        return channel, tpb_grpc.TrekServiceStub(channel)

    def wait_final(self, trek_id: str, timeout_seconds: float = 20.0) -> tpb.Trek:
        """Polls GetTrek until the trek is final (the coordinator may be restarting meanwhile)."""
        channel, stub = self.stub()
        until = time.monotonic() + timeout_seconds
        trek = None
        try:
            while time.monotonic() < until:
                try:
                    trek = stub.GetTrek(tpb.GetTrekRequest(trek_id=trek_id), timeout=2)
                except grpc.RpcError as error:
                    if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                else:
                    if trek.state in FINAL:
                        return trek
                time.sleep(0.1)
        finally:
            channel.close()
        raise AssertionError(f"trek {trek_id} not final after {timeout_seconds} s: {trek}")

    def trek_id_for_key(self, key: str) -> str:
        """The trek a PlanTrek recorded before its coordinator died (read from the log itself)."""
        rows = query(self.coordinator_db_url, "SELECT CAST(trek_id AS TEXT) AS trek_id FROM treks WHERE idempotency_key = %(key)s", {"key": key})
        assert len(rows) == 1, f"expected one trek for key {key}, found {len(rows)}"
        return rows[0].trek_id

    def assert_atomic_and_paid(self, trek: tpb.Trek) -> None:
        """Invariants 5 and 4 for one trek at rest, from the participants' and the gateway's own tables."""
        held_or_confirmed: list[tuple[int, str]] = []
        price_confirmed = 0
        for region, url in self.region_urls.items():
            rows = query(
                url,
                """SELECT t.leg_index, b.state, b.total_price_cents FROM trek_legs t
                   LEFT JOIN bookings b ON b.booking_id = t.booking_id WHERE t.trek_id = %(trek)s""",
                {"trek": trek.trek_id},
            )
            for row in rows:
                assert row.state != "held", f"trek {trek.trek_id} leg {row.leg_index} in {region} is still held at rest"
                if row.state == "confirmed":
                    held_or_confirmed.append((row.leg_index, region))
                    price_confirmed += row.total_price_cents
        legs = len(trek.legs)
        if trek.state == tpb.TREK_STATE_COMMITTED:
            assert sorted(i for i, _ in held_or_confirmed) == list(range(legs)), f"committed trek with legs {held_or_confirmed}"
        else:
            assert not held_or_confirmed, f"{tpb.TrekState.Name(trek.state)} trek {trek.trek_id} has confirmed legs {held_or_confirmed}"
        with psycopg.connect(self.gateway_dsn) as conn:
            net = conn.execute(
                "SELECT COALESCE(sum(amount_cents - refunded_cents), 0) FROM gateway_charges WHERE reference = %s AND status = 'succeeded'",
                (trek.trek_id,),
            ).fetchone()[0]
        assert net == price_confirmed, f"trek {trek.trek_id}: gateway keeps {net} cents for {price_confirmed} cents of confirmed legs"

    def assert_inventories(self) -> None:
        for url in self.region_urls.values():
            assert_inventory_matches_bookings(url)


def leg(basecamp: str, resource: str, start: date, nights: int = 2, party: int = 1) -> tpb.TrekLeg:
    return tpb.TrekLeg(basecamp_id=basecamp, resource_id=resource, nights=night_range(start, start + timedelta(days=nights)), party_size=party)


def plan_request(key: str, legs: Iterable[tpb.TrekLeg], *, wait: bool = True, customer: str = "planner") -> tpb.PlanTrekRequest:
    return tpb.PlanTrekRequest(idempotency_key=key, customer_id=customer, legs=list(legs), wait=wait)


def call_ignoring_death(call: Callable[[], tpb.Trek]) -> tpb.Trek | None:
    """A call to a coordinator that may be killed under it: its answer, or None if it died."""
    try:
        return call()
    except grpc.RpcError as error:
        assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED), error
        return None


@contextmanager
def running_cluster(
    region_servers: dict[str, PostgresServer],
    fresh_database: Callable,
    certs: SessionCerts,
    *,
    node_process_regions: Iterable[str] = (),
    more_coordinators: Sequence[str] = (),
) -> Iterator[TrekCluster]:
    """Fresh region databases, one node per region (in this process, or a process for
    ``node_process_regions``), a gateway process and an empty coordinator database;
    ``more_coordinators``: addresses of further coordinators the nodes know (HA tests start them)."""
    dbs = {region: fresh_database(region) for region in REGIONS}
    coordinator_port, silent_port = free_port(), free_port()
    # The nodes know the module's coordinator, and one more that never answers (a leg naming
    # it shows what a participant does while its coordinator is unreachable).
    coordinators = (f"127.0.0.1:{coordinator_port}", f"127.0.0.1:{silent_port}", *more_coordinators)
    in_process = {
        region: RegionalNode(
            NodeConfig(
                region=region, node_id=f"trek-{region}", database_url=db.url, sweep_interval_seconds=0.5, coordinator_targets=coordinators, certs_dir=certs.dir
            )
        )
        for region, db in dbs.items()
        if region not in node_process_regions
    }
    targets = {region: node.address for region, node in in_process.items()}
    node_args = {}
    for region in node_process_regions:
        targets[region] = f"127.0.0.1:{free_port()}"
        node_args[region] = ["node", "--region", region, "--database-url", dbs[region].url, "--listen", targets[region], "--sweep-interval", "0.5"]
        node_args[region] += [arg for target in coordinators for arg in ("--coordinator", target)]
    coordinator_db = region_servers["eu-alps"].create_database(f"coordinator_{uuid.uuid4().hex[:10]}")
    gateway_db = f"gateway_{uuid.uuid4().hex[:10]}"
    # HTTPS with the session's node pair: the coordinator pays through it with its own.
    gateway = spawn(["gateway", "--database-url", region_servers["sa-andes"].create_database(gateway_db), "--seed", "11"], security=certs.cli_args)
    cluster = TrekCluster(
        region_urls={r: db.url for r, db in dbs.items()},
        region_targets=targets,
        gateway_url=gateway.address,
        gateway_dsn=region_servers["sa-andes"].libpq_dsn(gateway_db),
        coordinator_db_url=coordinator_db,
        coordinator_port=coordinator_port,
        silent_coordinator_port=silent_port,
        node_args=node_args,
        certs=certs,
    )
    for node in in_process.values():
        node.start()
    try:
        for region in node_process_regions:
            cluster.start_node(region)
        yield cluster
    finally:
        cluster.stop_all()
        gateway.stop()
        for node in in_process.values():
            node.stop(grace_seconds=1)
