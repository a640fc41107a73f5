"""``ridgeline bench cluster``, region-primary part: time from SIGKILL of a Patroni primary to the first write.

A throwaway cluster of one region (eu-alps, one node) runs its database on Patroni, as
``ridgeline up --ha`` does. Two desks place holds through the routing client without
pause; the leader's PostgreSQL is SIGKILLed; the time from the kill to the first hold
that succeeds again is one sample. Beside it, the time until Patroni's REST API names a
new running leader: what a client that asked the REST API instead of trying every host
(libpq's multi-host ``target_session_attrs=read-write``) could at best have gained
(ARCHITECTURE.md §3 explains the choice from these two figures). Between samples the
cluster heals (the old primary rejoins as a replica). Goal: at most 5 s.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import grpc
from rich.console import Console

from ridgeline.deploy.cluster.cluster_file import ClusterSpec, NodeSpec, RegionSpec, with_free_ports
from ridgeline.deploy.cluster.local_cluster import LocalCluster
from ridgeline.deploy.run.patroni import FailoverTiming, PatroniCluster
from ridgeline.routing import ClusterClient, ClusterUnreachable

__all__ = ["DatabaseFailoverResult", "run_database_failovers"]

_err = Console(stderr=True)
GOAL_SECONDS = 5.0
#: A sample that takes longer than this failed.
_SAMPLE_MAX_SECONDS = 60.0
#: How long the cluster may take to heal between samples.
_HEAL_SECONDS = 120.0


@dataclass(frozen=True)
class DatabaseFailoverResult:
    #: SIGKILL of the primary's PostgreSQL -> first hold that succeeds again.
    samples_seconds: list[float]
    #: SIGKILL -> Patroni's REST API names another running leader (None: not seen before the write).
    rest_api_seconds: list[float | None]
    ttl_seconds: int
    loop_wait_seconds: int
    retry_timeout_seconds: int

    @property
    def median(self) -> float:
        return statistics.median(self.samples_seconds)

    @property
    def worst(self) -> float:
        return max(self.samples_seconds)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "median": self.median, "max": self.worst, "goal_seconds": GOAL_SECONDS}


def run_database_failovers(samples: int, *, secure: bool = True) -> DatabaseFailoverResult:
    """``samples`` failovers on a throwaway one-region HA cluster (removed at the end)."""
    assert samples > 0, "at least one sample"
    root = Path(tempfile.mkdtemp(prefix="ridgeline-bench-dbfailover-"))
    spec = with_free_ports(ClusterSpec(name="ha", region_databases="patroni", regions=(RegionSpec("eu-alps", (NodeSpec("eu-alps-1", "eu-alps", "127.0.0.1:0"),)),)))
    local = LocalCluster(spec, root, progress=lambda step: _err.print(f"[dim]{step}…[/]"), settlement=False, insecure=not secure)
    try:
        local.start()
        patroni = local.ha.regions["eu-alps"]
        writes, rest = [], []
        for sample in range(samples):
            patroni.wait_healthy(_HEAL_SECONDS)
            _err.print(f"[dim]region-primary failover {sample + 1}/{samples}: SIGKILL the PostgreSQL of {patroni.leader()}[/]")
            write_seconds, rest_seconds = _one_failover(local, patroni, sample)
            writes.append(write_seconds)
            rest.append(rest_seconds)
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)
    timing = FailoverTiming()
    return DatabaseFailoverResult(writes, rest, timing.ttl_seconds, timing.loop_wait_seconds, timing.retry_timeout_seconds)


def _one_failover(local: LocalCluster, patroni: PatroniCluster, sample: int) -> tuple[float, float | None]:
    seeds = [run.address for run in local.nodes.values()]
    with ClusterClient(seeds, transport=local.client_transport("desk")) as client:
        camps = [(b.basecamp_id, b.resources[0].resource_id) for b in client.list_basecamps("eu-alps").basecamps]
    successes: list[float] = []
    stop = threading.Event()

    def desk(index: int) -> None:
        rng = random.Random(sample * 100 + index)
        with ClusterClient(seeds, transport=local.client_transport("desk"), timeout_seconds=2) as desk_client:
            while not stop.is_set():
                basecamp, resource = rng.choice(camps)
                night = date.today() + timedelta(days=2 + rng.randrange(300))
                try:
                    desk_client.place_hold(basecamp, resource, night, night + timedelta(days=1), 1, "db-failover", hold_ttl_seconds=600)
                    successes.append(time.monotonic())
                except (grpc.RpcError, ClusterUnreachable):
                    time.sleep(0.01)

    desks = [threading.Thread(target=desk, args=(i,), daemon=True) for i in range(2)]
    for thread in desks:
        thread.start()
    try:
        time.sleep(1.0)
        old = patroni.kill_leader_postgres()
        killed = time.monotonic()
        rest_seconds: float | None = None
        while not any(t > killed for t in successes):
            if time.monotonic() - killed > _SAMPLE_MAX_SECONDS:
                raise RuntimeError(f"no hold succeeded within {_SAMPLE_MAX_SECONDS:g} s of killing the primary {old}")
            if rest_seconds is None and patroni.leader() not in (None, old):
                rest_seconds = time.monotonic() - killed
            time.sleep(0.02)
    finally:
        stop.set()
        for thread in desks:
            thread.join(10)
    return min(t for t in successes if t > killed) - killed, rest_seconds
