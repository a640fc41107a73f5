"""A throwaway cluster for benchmarks, run as production runs it: one node per region, the gateway, coordinators.

Every part is a ``ridgeline`` process on fresh databases of one PostgreSQL server (one
per region, one for the coordinators' log, one for the gateway), speaking the run's
security (deploy/bench/security.py). The nodes know every coordinator's address before
any starts (they take legs only from those); coordinators start one after another, so
the first leads, and a benchmark may SIGKILL one and start it again on its address.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ridgeline.deploy.bench.security import BenchSecurity
from ridgeline.deploy.run.processes import ReadyChild, free_port, spawn_ready

if TYPE_CHECKING:
    from ridgeline.deploy.run.postgres import PostgresServer

#: One resource with room per region: a trek takes one unit of each for one night.
LEGS = (("eu-alps", "hoernli", "hoernli-dorm"), ("na-rockies", "bow-hut", "bow-bunk"), ("sa-andes", "plaza-de-mulas", "mulas-dome"))


class BenchStack:
    """The running processes: ``nodes`` (region -> address) and ``coordinators`` (id -> process)."""

    def __init__(self, stack: ExitStack, security: BenchSecurity, logs: Path, coordinator_args: list[str], listens: dict[str, str]) -> None:
        self.nodes: dict[str, str] = {}
        self.coordinators: dict[str, ReadyChild] = {}
        self._stack, self._security, self._logs = stack, security, logs
        self._coordinator_args, self._listens = coordinator_args, listens

    @property
    def coordinator_addresses(self) -> list[str]:
        return list(self._listens.values())

    def start_coordinator(self, node_id: str) -> ReadyChild:
        """Starts coordinator ``node_id`` (again) on its address; returns once it serves."""
        args = [*self._coordinator_args, "--node-id", node_id, "--listen", self._listens[node_id]]
        self.coordinators[node_id] = self._stack.enter_context(self.serve(args, self._logs / f"{node_id}.log"))
        return self.coordinators[node_id]

    def serve(self, args: list[str], log_path: Path) -> ReadyChild:
        """A ``ridgeline`` process with the run's security, serving once this returns (SIGTERMed when the stack closes)."""
        return spawn_ready(self._security.command(*args), what=args[0], log_path=log_path, new_session=True, stop_timeout_seconds=20)


@contextmanager
def bench_stack(
    server: PostgresServer, security: BenchSecurity, logs: Path, *, coordinators: Sequence[str] = ("coordinator",), coordinator_options: Sequence[str] = ()
) -> Iterator[BenchStack]:
    """The nodes, the gateway and ``coordinators`` (ids, started in order) on fresh databases of
    ``server`` named after ``logs`` (one directory per stack); stops every process after."""
    from ridgeline.deploy.run.region import prepare_region_database
    from ridgeline.regional.booking.catalog import load_catalog
    from ridgeline.regional.config import NodeConfig

    logs.mkdir(parents=True)
    prefix = logs.name.replace("-", "_")
    listens = {node_id: f"127.0.0.1:{free_port()}" for node_id in coordinators}
    with ExitStack() as stack:
        catalog = load_catalog()
        running = BenchStack(stack, security, logs, [], listens)
        for region, _, _ in LEGS:
            url = server.create_database(f"{prefix}_{region.replace('-', '_')}")
            prepare_region_database(url, region, catalog, advance_booking_days=NodeConfig.advance_booking_days)
            node_args = ["node", "--region", region, "--database-url", url, *(arg for listen in listens.values() for arg in ("--coordinator", listen))]
            running.nodes[region] = stack.enter_context(running.serve(node_args, logs / f"{region}.log")).address
        gateway = stack.enter_context(running.serve(["gateway", "--database-url", server.create_database(f"{prefix}_gateway")], logs / "gateway.log")).address
        targets = [arg for region, address in running.nodes.items() for arg in ("--region-target", f"{region}={address}")]
        running._coordinator_args = [  # noqa: SLF001 - set once the gateway's address is known
            "coordinator", "--database-url", server.create_database(f"{prefix}_coordinator"), "--gateway-url", gateway, *targets, *coordinator_options,
        ]  # fmt: skip
        for node_id in coordinators:
            running.start_coordinator(node_id)
        yield running
